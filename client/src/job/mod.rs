//! `drover job ...`: plan specs locally, and submit, inspect, watch, cancel
//! and retry jobs on the cluster, and read their tasks' logs.
//!
//! Exit codes: 0 success (and, for `--wait` and `watch`, a job that
//! succeeded); 1 an invalid spec or a job that failed; 3 a job that was
//! cancelled; 2 anything else going wrong (unreachable cluster, unknown
//! job), printed as one line.

mod control;
mod events;
pub mod fetch;
mod logs;
mod plan;
pub mod render;
pub mod status;
mod submit;
mod watch;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use drover_proto::v1::JobState;

use drover_net::Coordinators;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Validate a spec and print its expanded task graph (exit 1 when invalid).
    Plan(plan::PlanArgs),
    /// Print the JSON Schema of the job spec format, for editors.
    Schema,
    /// Submit a spec; with --wait, follow it and exit with its outcome.
    Submit(submit::SubmitArgs),
    /// List jobs, newest first.
    List(status::ListArgs),
    /// A job's state, task counts, per-template progress and tasks.
    Status(status::StatusArgs),
    /// Live progress of a job; exits with its outcome (0 succeeded,
    /// 1 failed, 3 cancelled).
    Watch(watch::WatchArgs),
    /// A job's event history: leases, completions, failures, fencing.
    Events(events::EventsArgs),
    /// Why a task is not running yet.
    Why(events::WhyArgs),
    /// The log of a task's attempt; --follow prints it as it grows.
    Logs(logs::LogsArgs),
    /// Cancel a job (or stop a schedule); running tasks are stopped.
    Cancel(control::CancelArgs),
    /// Run a job's failed and cancelled tasks again.
    Retry(control::RetryArgs),
}

pub fn run(cmd: JobCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        JobCommand::Plan(args) => plan::run(args),
        JobCommand::Schema => {
            let schema = drover_jobspecs::schema::job_schema();
            outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        remote => crate::runtime()?.block_on(run_remote(remote, coordinators)),
    }
}

async fn run_remote(cmd: JobCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        JobCommand::Submit(args) => submit::run(args, coordinators).await,
        JobCommand::List(args) => status::list(args, coordinators).await,
        JobCommand::Status(args) => status::status(args, coordinators).await,
        JobCommand::Watch(args) => watch::run(args, coordinators).await,
        JobCommand::Events(args) => events::events(args, coordinators).await,
        JobCommand::Why(args) => events::why(args, coordinators).await,
        JobCommand::Logs(args) => logs::logs(args, coordinators).await,
        JobCommand::Cancel(args) => control::cancel(args, coordinators).await,
        JobCommand::Retry(args) => control::retry(args, coordinators).await,
        JobCommand::Plan(_) | JobCommand::Schema => unreachable!("handled locally"),
    }
}

/// The exit code for a job that ended in `state`.
fn outcome_code(state: i32) -> ExitCode {
    match JobState::try_from(state) {
        Ok(JobState::Succeeded) => ExitCode::SUCCESS,
        Ok(JobState::Cancelled) => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

pub fn print_json(value: &serde_json::Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
