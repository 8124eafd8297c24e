//! `drover-chaos`: a long chaos campaign against real `drover` processes,
//! or a sweep of the deterministic simulation over many seeds.
//!
//! `cargo run -p drover-chaos --release -- --seed 7 --duration 10m --nodes 5`
//! `cargo run -p drover-chaos --release -- --sim --seed 1 --seeds 1000`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use drover_chaos::campaign::{self, CampaignConfig};
use drover_chaos::harness;
use drover_chaos::sim::{SimConfig, Sweep};

/// Runs coordinators and workers under faults, then checks the history.
#[derive(Debug, Parser)]
#[command(name = "drover-chaos")]
struct Args {
    /// Seed of every random choice; printed, so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the fault phase (e.g. 90s, 10m).
    #[arg(long, default_value = "2m", value_parser = humantime_duration)]
    duration: Duration,
    /// Coordinators: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// How long jobs may take to end once the faults are healed.
    #[arg(long, default_value = "2m", value_parser = humantime_duration)]
    heal_bound: Duration,
    /// Only these faults (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    faults: Option<Vec<String>>,
    /// Bugs to plant in the coordinators (skip-fencing, double-lease,
    /// ack-before-fsync), to see the checkers catch them.
    #[arg(long, default_value = "")]
    planted_bugs: String,
    /// Where the run's files go [default: ./drover-data/chaos/seed-S].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run the deterministic simulation instead of real processes: the
    /// state machine and Raft core in virtual time, `--seeds` seeds from
    /// `--seed` (1 by default).
    #[arg(long)]
    sim: bool,
    /// With `--sim`: how many seeds.
    #[arg(long, default_value_t = 100, requires = "sim")]
    seeds: u64,
    /// With `--sim`: the profile, `default`, `membership` (nodes removed
    /// and added), or `fast-clock` / `slow-clock` (node 1's wall clock an
    /// hour off).
    #[arg(long, default_value = "default", requires = "sim")]
    profile: String,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 90s or 10m: {e}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.sim {
        return sim(&args);
    }
    if !matches!(args.nodes, 3 | 5) {
        bail!("--nodes must be 3 or 5");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let run_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("./drover-data/chaos/seed-{seed}")));
    println!(
        "drover-chaos: seed {seed}, {:?} of faults, {} nodes, run dir {}",
        args.duration,
        args.nodes,
        run_dir.display()
    );
    let binary = harness::drover_binary().context("finding the drover binary")?;
    let summary = campaign::run(CampaignConfig {
        seed,
        duration: args.duration,
        nodes: args.nodes,
        workers: args.workers,
        clients: args.clients,
        heal_bound: args.heal_bound,
        planted_bugs: args.planted_bugs,
        faults: args.faults,
        run_dir,
        binary,
    })
    .await?;
    print!("{}", summary.table());
    if !summary.report.ok() {
        eprintln!(
            "drover-chaos: {} violations; replay with --seed {seed}",
            summary.report.violations.len()
        );
        std::process::exit(1);
    }
    Ok(())
}

/// `--sim`: a sweep of the simulation, one line per seed, then the totals.
fn sim(args: &Args) -> Result<()> {
    let mut config = SimConfig::profile(&args.profile).with_context(|| {
        format!(
            "no simulation profile `{}`: use default, membership, fast-clock or slow-clock",
            args.profile
        )
    })?;
    config.planted = args
        .planted_bugs
        .parse()
        .map_err(|e| anyhow::anyhow!("--planted-bugs: {e}"))?;
    let first = args.seed.unwrap_or(1);
    println!(
        "drover-chaos --sim: seeds {first}..{}, profile {}",
        first.saturating_add(args.seeds),
        args.profile
    );
    let sweep = Sweep::run(first, args.seeds, &config, |summary| {
        let verdict = if summary.passed() { "ok" } else { "VIOLATION" };
        println!(
            "seed {:>6}  {verdict:<9} {} nodes, {} ops, {} entries",
            summary.seed, summary.nodes, summary.ops_invoked, summary.committed_entries
        );
    });
    print!("\n{sweep}");
    if !sweep.passed() {
        eprintln!(
            "drover-chaos: {} of {} seeds broke an invariant",
            sweep.failed.len(),
            sweep.seeds
        );
        std::process::exit(1);
    }
    Ok(())
}
