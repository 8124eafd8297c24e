//! `drover job events` (a job's history) and `drover job why` (why a task
//! is not running).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drover_net::Coordinators;
use drover_proto::v1::explain_task_response::Reason;
use drover_proto::v1::{ExplainTaskRequest, Job, JobEvent, JobEventsRequest};

use super::render;
use super::watch::{self, Watcher};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The job id (any unique start of it, 4+ hex digits).
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
    /// Stable JSON on standard output; with `--follow`, one event object
    /// per line.
    #[arg(long)]
    json: bool,
    /// Keep printing events as they happen until the job ends, then exit
    /// with its outcome (0 succeeded, 1 failed, 3 cancelled), as `job
    /// watch` does. A broken stream is resumed after the last event shown.
    #[arg(long, short = 'f')]
    follow: bool,
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
            .jobs(|mut c| {
                let r = request.clone();
                async move { c.job_events(r).await.map(|r| r.into_inner()) }
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
    if args.follow {
        return follow(&args, events, oldest, coordinators).await;
    }
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
        outln!("(events before #{oldest} were trimmed from this job's history)");
    }
    for e in &events {
        outln!("{}", render::event_line(e));
    }
    if events.is_empty() {
        outln!("no events");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `history`, then every later event of the job (of `args.task`
/// only, if given) as it happens, until the job ends.
async fn follow(
    args: &EventsArgs,
    history: Vec<JobEvent>,
    oldest: u64,
    coordinators: &Coordinators,
) -> Result<ExitCode> {
    let mut printer = Printer {
        json: args.json,
        task: args.task.clone(),
        after: args.after,
    };
    if !args.json && oldest > args.after + 1 {
        outln!("(events before #{oldest} were trimmed from this job's history)");
    }
    for e in &history {
        printer.event(e);
    }
    let job = watch::stream(coordinators, &args.id, printer.after, &[], &mut printer).await?;
    Ok(super::outcome_code(job.state))
}

/// Prints events as they arrive, each once.
struct Printer {
    json: bool,
    task: Option<String>,
    /// The last sequence number printed.
    after: u64,
}

impl watch::Watcher for Printer {
    fn event(&mut self, e: &JobEvent) {
        // A resumed stream could repeat what the history page showed.
        if e.seq <= self.after {
            return;
        }
        self.after = e.seq;
        if self.task.as_ref().is_some_and(|t| *t != e.task_id) {
            return;
        }
        if self.json {
            outln!("{}", render::event_json(e));
        } else {
            outln!("{}", render::event_line(e));
        }
    }

    fn update(&mut self, _job: &Job) {}

    fn finish(&mut self, _job: &Job) {}

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
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
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.explain_task(r).await.map(|r| r.into_inner()) }
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
        outln!(
            "{}  {} (attempt {}/{})",
            t.task_id,
            render::task_state(t.state),
            t.attempt,
            t.max_attempts
        );
    }
    outln!("{}", r.summary);
    Ok(ExitCode::SUCCESS)
}
