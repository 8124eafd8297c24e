//! The `drover` command line: parses arguments and hands each subcommand
//! to its module ([`run`]). Errors are printed as one line, never a
//! backtrace, and map to a non-zero exit code. The binary (`main.rs`) is
//! only this; `tests/deploy_check.rs` parses the deploy files' command
//! lines with [`Cli`].

// The command output macros (`outln!`), for every module.
#[macro_use]
extern crate drover_client;

mod autoscale;
mod certs;
pub mod coordinator;
mod datagen;
mod dev;
mod security;
mod shell;
mod telemetry;
mod worker;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Drover: a distributed batch job scheduler for annotation and feature workloads.
#[derive(Debug, Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: a distributed batch job scheduler for annotation and feature workloads.",
    propagate_version = true
)]
pub struct Cli {
    /// Coordinators to talk to, comma-separated; the CLI follows the leader.
    #[arg(
        long,
        global = true,
        env = "DROVER_COORDINATORS",
        default_value = "127.0.0.1:7070"
    )]
    coordinators: String,
    /// Log line format of `coordinator`, `worker` and `dev` on stderr:
    /// `text` for people, `json` (one object per line, with the fields of
    /// the enclosing spans such as a task's `trace_id`) for log pipelines.
    #[arg(
        long,
        global = true,
        env = "DROVER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(flatten)]
    security: security::SecurityArgs,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with job specs and jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Schedules (specs with a `schedule`): list them, or one's fire times
    /// and runs.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Run a coordinator.
    Coordinator(coordinator::CoordinatorArgs),
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run a worker (`drover worker --slots 4`), or list and drain workers.
    Worker(WorkerCli),
    /// Run everything in one process: a single-node coordinator and workers.
    Dev(dev::DevArgs),
    /// Start and stop local workers from the coordinator's scaling signal,
    /// with the cooldowns of the AWS policy (`drover autoscale --max 4 --
    /// --slots 2`).
    Autoscale(autoscale::AutoscaleArgs),
    /// Measure throughput, failover and scale on a local cluster (or
    /// `--coordinators`) drained by real `drover worker` processes, beside
    /// a raw-client reference; latency and heartbeat load with simulated
    /// workers.
    Bench(drover_bench::BenchArgs),
    /// Generate datasets with a known truth (`drover datagen annotations`).
    #[command(subcommand)]
    Datagen(datagen::DatagenCommand),
    /// Create the CA and certificates of a mutual-TLS cluster.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// API tokens (bootstrap, create, list, revoke, whoami) and roles for
    /// client certificates (bind, unbind, bindings).
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Namespace policies: the dataset URLs (and whether `command`) each
    /// namespace's specs may use.
    #[command(subcommand)]
    Policy(policies::PolicyCommand),
    /// Print a shell completion script (`drover completions bash`).
    Completions(shell::CompletionsArgs),
    /// Write man pages for drover and every subcommand (`drover man --out
    /// DIR`).
    Man(shell::ManArgs),
}

/// `drover worker [OPTIONS]` runs a worker; `drover worker list|drain`
/// manage the ones running.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct WorkerCli {
    #[command(subcommand)]
    command: Option<workers::WorkerCommand>,
    #[command(flatten)]
    run: worker::WorkerArgs,
}

/// Runs the command line the process was started with.
pub fn run() -> ExitCode {
    let matches = Cli::command().get_matches();
    // `bench` starts its own cluster unless one was named explicitly.
    let named_cluster = matches!(
        matches.value_source("coordinators"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Every client command dials the cluster the same way.
    let cluster = || -> anyhow::Result<drover_net::Coordinators> {
        Ok(drover_net::Coordinators::parse(&cli.coordinators).with_dialer(cli.security.dialer()?))
    };
    let result = match cli.command {
        Command::Job(cmd) => cluster().and_then(|c| job::run(cmd, &c)),
        Command::Coordinator(args) => runtime().and_then(|rt| {
            let telemetry = init_logging(&rt, cli.log_format, "info", Some("drover-coordinator"));
            let result = rt
                .block_on(coordinator::run(args, &cli.security))
                .map(|()| ExitCode::SUCCESS);
            telemetry.shutdown();
            result
        }),
        Command::Worker(WorkerCli {
            command: Some(cmd), ..
        }) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| rt.block_on(workers::run(cmd, &coordinators)))
        }),
        Command::Worker(WorkerCli { command: None, run }) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| {
                let telemetry = init_logging(&rt, cli.log_format, "info", Some("drover-worker"));
                let result = rt
                    .block_on(worker::run(run, coordinators))
                    .map(|()| ExitCode::SUCCESS);
                telemetry.shutdown();
                result
            })
        }),
        Command::Dev(args) => runtime().and_then(|rt| {
            // `drover dev` prints its own progress; only warnings from the
            // parts.
            let telemetry = init_logging(&rt, cli.log_format, "warn", Some("drover-dev"));
            let result = rt.block_on(dev::run(args));
            telemetry.shutdown();
            result
        }),
        Command::Bench(args) => {
            let coordinators = named_cluster.then(|| {
                drover_net::Coordinators::parse(&cli.coordinators)
                    .addresses()
                    .to_vec()
            });
            runtime().and_then(|rt| {
                init_logging(&rt, cli.log_format, "warn", None);
                rt.block_on(drover_bench::run(args, coordinators))
                    .map_err(anyhow::Error::from)
            })
        }
        Command::Autoscale(args) => runtime().and_then(|rt| {
            init_logging(&rt, cli.log_format, "warn", None);
            rt.block_on(autoscale::run(args, &cli.coordinators))
        }),
        Command::Datagen(cmd) => runtime().and_then(|rt| rt.block_on(datagen::run(cmd))),
        Command::Cluster(cmd) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| rt.block_on(cluster::run(cmd, &coordinators)))
        }),
        Command::Schedule(cmd) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| rt.block_on(schedule::run(cmd, &coordinators)))
        }),
        Command::Certs(cmd) => certs::run(cmd),
        Command::Completions(args) => shell::completions(args, Cli::command()),
        Command::Man(args) => shell::man(args, Cli::command()),
        Command::Token(cmd) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| rt.block_on(tokens::run(cmd, &coordinators)))
        }),
        Command::Policy(cmd) => cluster().and_then(|coordinators| {
            runtime().and_then(|rt| rt.block_on(policies::run(cmd, &coordinators)))
        }),
    };
    match result {
        Ok(code) => code,
        Err(err) if stdout::ended_by_closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain on one line: "reading x.yaml: No such file".
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

use drover_client::{cluster, job, policies, runtime, schedule, stdout, tokens, workers};

/// Logs to stderr in `format`, at `DROVER_LOG` (an `EnvFilter`, such as
/// `info` or `drover_coordinator=debug`) or else `default_level`. Each
/// attempt a worker in this process runs also gets its events in its own
/// log, at `info` and above whatever stderr shows, so a quiet `drover dev`
/// still keeps what its tasks said. With `service`, spans are exported
/// over OTLP when the environment asks (see [`telemetry`]); the returned
/// exporter is shut down after the command, while `rt` still runs.
fn init_logging(
    rt: &tokio::runtime::Runtime,
    format: LogFormat,
    default_level: &str,
    service: Option<&str>,
) -> telemetry::Telemetry {
    let _inside = rt.enter();
    let telemetry = service.map(telemetry::Telemetry::start).unwrap_or_default();
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = match format {
        LogFormat::Text => stderr
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => stderr
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let attempt_logs = drover_worker::task_log::capture::layer()
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(attempt_logs)
        .with(telemetry.layer())
        .try_init();
    telemetry
}
