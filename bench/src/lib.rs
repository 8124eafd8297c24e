//! `drover bench`: starts a local cluster (or uses `--coordinators`),
//! drains it with real `drover worker` processes, and reports throughput,
//! failover time, memory per task and CPU per task on both sides, as a
//! table and, with `--json`, as a file. A raw-gRPC load generator
//! (simulated workers with no executor) runs beside them as the labelled
//! reference, and drives the latency and heartbeat scenarios.
//!
//! # Layout
//!
//! - [`local`]: the coordinator processes the bench starts and kills.
//! - [`workers`]: the real worker processes.
//! - [`real`]: the scenarios drained by real workers (the headline).
//! - [`load`]: submitters and simulated workers, and what they count.
//! - [`scenarios`]: the raw-client scenarios.
//! - [`observe`]: the coordinators' CPU, memory, fsyncs and batching over a
//!   window, from `/proc` and their `/metrics` ([`procfs`], [`scrape`]).
//! - [`stats`]: latency percentiles.
//! - [`error`]: the bench's error.
//!
//! The CLI subcommand (`drover bench`) parses [`BenchArgs`] and calls
//! [`run`]; the bench starts coordinators and workers as child processes
//! of that same binary.

pub mod error;
mod load;
mod local;
mod observe;
mod procfs;
mod real;
mod scenarios;
mod scrape;
mod stats;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use local::LocalCluster;
use scenarios::Env;

/// Which workers drain the draining scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerKind {
    /// `drover worker` processes with the `noop` executor (the headline).
    Real,
    /// The raw-gRPC load generator: simulated workers, no executor.
    Raw,
}

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Tasks per second at saturation (real workers, with the raw-client
    /// reference and their ratio).
    Throughput,
    /// Latency at a fixed offered load (`--rate`).
    Latency,
    /// SIGKILL the leader under load; time until leases flow again.
    Failover,
    /// One `--partitions` backfill submitted and drained; coordinator
    /// memory per task.
    Scale,
    /// `--heartbeat-workers` workers heartbeating; coordinator CPU.
    Heartbeats,
    /// Every scenario above, in that order, on one cluster.
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Throughput)]
    scenario: Scenario,
    /// Coordinators in the local cluster the bench starts.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Who drains throughput, failover and scale: real `drover worker`
    /// processes, or the raw-gRPC load generator.
    #[arg(long, value_enum, default_value_t = WorkerKind::Real)]
    worker_kind: WorkerKind,
    /// Real worker processes.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Slots of each real worker.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// Throughput with real workers also runs the raw-client reference in
    /// the same run and reports their ratio; this skips it.
    #[arg(long)]
    no_reference: bool,
    /// Simulated workers of the raw-gRPC load generator.
    #[arg(long, default_value_t = 32)]
    raw_workers: usize,
    /// Noop tasks in the throughput scenario.
    #[arg(long, default_value_t = 500_000)]
    tasks: u64,
    /// Jobs the throughput scenario splits its tasks into.
    #[arg(long, default_value_t = 20)]
    jobs: u64,
    /// Tasks a simulated worker leases per call and completes per call
    /// (at most 1000, the cluster's `max_lease_batch`).
    /// Real workers follow the cluster's own batch limits.
    #[arg(long, default_value_t = 512)]
    batch: u32,
    /// Offered load of the latency scenario, in tasks per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long the latency and heartbeat scenarios offer their load.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Leader kills in the failover scenario.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// Partitions of the scale scenario's backfill.
    #[arg(long, default_value_t = 10_000_000)]
    partitions: u64,
    /// Workers in the heartbeat scenario.
    #[arg(long, default_value_t = 1000)]
    heartbeat_workers: usize,
    /// Tasks each of them holds (and heartbeats).
    #[arg(long, default_value_t = 4)]
    tasks_per_worker: u32,
    /// Their heartbeat interval (a cluster setting, restored afterwards).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the local cluster keeps its data and logs [default: a
    /// temporary directory, removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs the bench. `coordinators` is set when the user named a cluster to
/// use instead of starting one.
pub async fn run(args: BenchArgs, coordinators: Option<Vec<String>>) -> Result<ExitCode> {
    if args.workers == 0
        || args.raw_workers == 0
        || args.slots == 0
        || !(1..=1000).contains(&args.batch)
    {
        error::bail!(
            "--workers, --raw-workers and --slots must be at least 1, and --batch between 1 and 1000"
        );
    }
    let temp;
    let root = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("drover-bench-")
                .tempdir()
                .context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let (cluster, addresses) = match coordinators {
        Some(addresses) => {
            println!("drover bench against {}", addresses.join(","));
            (None, addresses)
        }
        None => {
            println!(
                "drover bench: starting {} coordinators under {}",
                args.nodes,
                root.display()
            );
            let cluster = LocalCluster::start(args.nodes, &root).await?;
            let addresses = cluster.grpc_addresses();
            (Some(cluster), addresses)
        }
    };
    let mut env = Env {
        cluster,
        coordinators: addresses,
        workers: args.raw_workers,
        batch: args.batch,
        real_workers: args.workers,
        slots: args.slots,
        root: root.clone(),
    };
    let real = args.worker_kind == WorkerKind::Real;
    let mut out = Map::new();
    out.insert("nodes".into(), json!(args.nodes));
    out.insert(
        "workerKind".into(),
        json!(if real { "real" } else { "raw" }),
    );
    out.insert("build".into(), json!(build_profile()));
    let all = args.scenario == Scenario::All;
    if all || args.scenario == Scenario::Throughput {
        let raw = if !real || !args.no_reference {
            Some(scenarios::throughput(&env, args.tasks, args.jobs).await?)
        } else {
            None
        };
        let r = match raw {
            Some(raw) if real => real::throughput(&env, args.tasks, args.jobs, Some(raw)).await?,
            Some(raw) => raw,
            None => real::throughput(&env, args.tasks, args.jobs, None).await?,
        };
        out.insert("tasks_per_second".into(), r["tasksPerSecond"].clone());
        out.insert("throughput".into(), r);
    }
    if all || args.scenario == Scenario::Latency {
        let r = scenarios::latency(&env, args.rate, args.duration).await?;
        out.insert("latency".into(), r);
    }
    if all || args.scenario == Scenario::Scale {
        let r = if real {
            real::scale(&env, args.partitions).await?
        } else {
            scenarios::scale(&env, args.partitions).await?
        };
        out.insert("scale".into(), r);
    }
    if all || args.scenario == Scenario::Heartbeats {
        let r = scenarios::heartbeats(
            &env,
            args.heartbeat_workers,
            args.tasks_per_worker,
            args.heartbeat_interval,
            args.duration,
        )
        .await?;
        out.insert("heartbeats".into(), r);
    }
    // Last: it leaves a restarted node behind.
    if all || args.scenario == Scenario::Failover {
        let r = if real {
            real::failover(&mut env, args.kills).await?
        } else {
            scenarios::failover(&mut env, args.kills).await?
        };
        out.insert("failover".into(), r);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&Value::Object(out))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether this binary is optimised: debug figures are not comparable.
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
