//! The `drover` binary: a thin layer that parses arguments and hands each
//! subcommand to its module. Errors are printed as one line, never a
//! backtrace, and map to a non-zero exit code.

mod job;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Drover: a distributed batch job scheduler for annotation and feature workloads.
#[derive(Debug, Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: a distributed batch job scheduler for annotation and feature workloads.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with job specs and jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Job(cmd) => job::run(cmd),
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
