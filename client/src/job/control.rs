//! `drover job cancel` and `drover job retry`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drover_net::Coordinators;
use drover_proto::v1::{CancelJobRequest, RetryJobRequest};

use super::render;

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job or schedule id (any unique start of it, 4+ hex digits).
    id: String,
    /// Why, recorded in the job's events.
    #[arg(long, default_value = "cancelled from the command line")]
    reason: String,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn cancel(args: CancelArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let request = CancelJobRequest {
        job_id: args.id.clone(),
        reason: args.reason.clone(),
    };
    let r = coordinators
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.cancel_job(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    let state = render::job_state(r.state);
    if args.json {
        super::print_json(&serde_json::json!({
            "id": args.id, "state": state, "changed": r.changed,
        }))?;
    } else if r.changed {
        outln!("{} cancelled; its running tasks are being stopped", args.id);
    } else {
        outln!("{} had already ended ({state}); nothing to cancel", args.id);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The job id (any unique start of it); its failed and cancelled tasks run again.
    id: String,
    /// Why, recorded in the job's events.
    #[arg(long, default_value = "retried from the command line")]
    reason: String,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn retry(args: RetryArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let request = RetryJobRequest {
        job_id: args.id.clone(),
        templates: vec![],
        reason: args.reason.clone(),
    };
    let r = coordinators
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.retry_job(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    let state = render::job_state(r.state);
    if args.json {
        super::print_json(&serde_json::json!({
            "id": args.id, "state": state, "requeued": r.requeued_task_count,
        }))?;
    } else {
        outln!(
            "{}: {} tasks queued again; the job is {state}",
            args.id,
            r.requeued_task_count
        );
    }
    Ok(ExitCode::SUCCESS)
}
