//! The `drover` binary: a thin layer that parses arguments and hands each
//! subcommand to its module. Errors are printed as one line, never a
//! backtrace, and map to a non-zero exit code.

mod client;
mod cluster;
mod coordinator;
mod dev;
mod job;
mod worker;
mod workers;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Drover: a distributed batch job scheduler for annotation and feature workloads.
#[derive(Debug, Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: a distributed batch job scheduler for annotation and feature workloads.",
    propagate_version = true
)]
struct Cli {
    /// Coordinators to talk to, comma-separated; the CLI follows the leader.
    #[arg(
        long,
        global = true,
        env = "DROVER_COORDINATORS",
        default_value = "127.0.0.1:7070"
    )]
    coordinators: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with job specs and jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Run a coordinator.
    Coordinator(coordinator::CoordinatorArgs),
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run a worker (`drover worker --slots 4`), or list and drain workers.
    Worker(WorkerCli),
    /// Run everything in one process: a single-node coordinator and workers.
    Dev(dev::DevArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Job(cmd) => job::run(cmd, &client::Coordinators::parse(&cli.coordinators)),
        Command::Coordinator(args) => runtime().and_then(|rt| {
            init_logging();
            rt.block_on(coordinator::run(args))
                .map(|()| ExitCode::SUCCESS)
        }),
        Command::Worker(WorkerCli {
            command: Some(cmd), ..
        }) => {
            let coordinators = client::Coordinators::parse(&cli.coordinators);
            runtime().and_then(|rt| rt.block_on(workers::run(cmd, &coordinators)))
        }
        Command::Worker(WorkerCli { command: None, run }) => {
            let coordinators = client::Coordinators::parse(&cli.coordinators).0;
            runtime().and_then(|rt| {
                init_logging();
                rt.block_on(worker::run(run, coordinators))
                    .map(|()| ExitCode::SUCCESS)
            })
        }
        Command::Dev(args) => runtime().and_then(|rt| {
            init_logging_quiet();
            rt.block_on(dev::run(args))
        }),
        Command::Cluster(cmd) => {
            let coordinators = client::Coordinators::parse(&cli.coordinators);
            runtime().and_then(|rt| rt.block_on(cluster::run(cmd, &coordinators)))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the context chain on one line: "reading x.yaml: No such file".
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `drover dev` prints its own progress; only warnings from the parts.
fn init_logging_quiet() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
