//! `drover job events` (a job's history) and `drover job why` (why a task
//! is not running).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drover_proto::v1::explain_task_response::Reason;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::{ExplainTaskRequest, JobEvent, JobEventsRequest};

use super::render;
use crate::client::Coordinators;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The job id (`j12`).
    id: String,
    /// Only events of this task.
    #[arg(long)]
    task: Option<String>,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many events.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Events fetched per call; the server caps pages too.
const PAGE: u32 = 1000;

pub async fn events(args: EventsArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let mut events: Vec<JobEvent> = Vec::new();
    let mut after = args.after;
    let mut oldest;
    loop {
        let request = JobEventsRequest {
            job_id: args.id.clone(),
            after_seq: after,
            limit: PAGE.min(args.limit.max(1) as u32),
            task_id: args.task.clone().unwrap_or_default(),
            kinds: vec![],
        };
        let page = coordinators
            .call(|ch| {
                let r = request.clone();
                async move {
                    JobServiceClient::new(ch)
                        .job_events(r)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?;
        oldest = page.oldest_seq;
        events.extend(page.events);
        // Stop on a page that made no progress, whatever `more` says.
        let progressed = page.next_after_seq > after;
        after = page.next_after_seq;
        if !page.more || !progressed || events.len() >= args.limit {
            break;
        }
    }
    events.truncate(args.limit);
    if args.json {
        let list: Vec<_> = events.iter().map(render::event_json).collect();
        super::print_json(&serde_json::json!({
            "jobId": args.id,
            "oldestSeq": oldest,
            "events": list,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if oldest > args.after + 1 {
        println!("(events before #{oldest} were trimmed from this job's history)");
    }
    for e in &events {
        println!("{}", render::event_line(e));
    }
    if events.is_empty() {
        println!("no events");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The task id, as `job status` lists it.
    task_id: String,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn why(args: WhyArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let request = ExplainTaskRequest {
        task_id: args.task_id.clone(),
    };
    let r = coordinators
        .call(|ch| {
            let r = request.clone();
            async move {
                JobServiceClient::new(ch)
                    .explain_task(r)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    if args.json {
        let reason = match &r.reason {
            Some(Reason::Dependency(d)) => serde_json::json!({
                "kind": "dependency",
                "blocking": d.blocking.iter().map(|u| serde_json::json!({
                    "template": u.template, "remaining": u.remaining,
                    "total": u.total, "failed": u.failed,
                })).collect::<Vec<_>>(),
            }),
            Some(Reason::MaxParallel(m)) => serde_json::json!({
                "kind": "maxParallel", "maxParallel": m.max_parallel, "leased": m.leased,
            }),
            Some(Reason::FairShare(f)) => serde_json::json!({
                "kind": "fairShare", "namespace": f.namespace, "weight": f.weight,
                "usedSlots": f.used_slots, "fairShareSlots": f.fair_share_slots,
                "tasksAhead": f.tasks_ahead,
            }),
            Some(Reason::NoMatchingWorker(n)) => serde_json::json!({
                "kind": "noMatchingWorker", "requiredLabels": n.required_labels,
                "taskKind": render::task_kind(n.kind), "aliveWorkers": n.alive_workers,
            }),
            Some(Reason::BackoffUntil(b)) => serde_json::json!({
                "kind": "backoff",
                "until": render::time(b.backoff_until_unix_ms).map(|t| t.to_rfc3339()),
                "attempt": b.attempt, "lastError": b.last_error,
            }),
            Some(Reason::NotPending(n)) => serde_json::json!({
                "kind": "notPending", "state": render::task_state(n.state),
            }),
            None => serde_json::Value::Null,
        };
        super::print_json(&serde_json::json!({
            "task": r.task.as_ref().map(render::task_json),
            "summary": r.summary,
            "reason": reason,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(t) = &r.task {
        println!(
            "{}  {} (attempt {}/{})",
            t.task_id,
            render::task_state(t.state),
            t.attempt,
            t.max_attempts
        );
    }
    println!("{}", r.summary);
    Ok(ExitCode::SUCCESS)
}
