//! `drover job list` and `drover job status`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drover_net::Coordinators;
use drover_proto::v1::{Job, JobListKind, ListJobsRequest, ListTasksRequest, Task, TaskState};

use super::fetch::{get_job, list_jobs};
use super::render;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Only jobs in these states (pending, running, succeeded, failed,
    /// cancelled; repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = render::parse_job_state)]
    state: Vec<drover_proto::v1::JobState>,
    /// Only jobs whose name starts with this.
    #[arg(long)]
    name: Option<String>,
    /// Only jobs with this label (`--label team=vision`; repeatable or
    /// comma-separated, all must match).
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    label: Vec<(String, String)>,
    /// List scheduled jobs too (`drover schedule list` lists only them).
    #[arg(long)]
    all: bool,
    /// At most this many jobs.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// `key=value`, as labels are written in specs.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{text}` is not a label; write key=value")),
    }
}

pub async fn list(args: ListArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let request = ListJobsRequest {
        namespace: args.namespace.clone().unwrap_or_default(),
        states: args.state.iter().map(|s| *s as i32).collect(),
        name_prefix: args.name.clone().unwrap_or_default(),
        labels: args.label.iter().cloned().collect(),
        kind: if args.all {
            JobListKind::Unspecified
        } else {
            JobListKind::Jobs
        } as i32,
        ..ListJobsRequest::default()
    };
    let jobs = list_jobs(coordinators, request, args.limit).await?;
    if args.json {
        let list: Vec<_> = jobs.iter().map(render::job_json).collect();
        super::print_json(&serde_json::json!({ "jobs": list }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        outln!("no jobs");
        return Ok(ExitCode::SUCCESS);
    }
    let width = render::id_width(&jobs, 2);
    outln!(
        "{:<width$} {:<12} {:<24} {:<10} {:>11}  {:<8} CREATED",
        "ID",
        "NAMESPACE",
        "NAME",
        "STATE",
        "DONE/TOTAL",
        "ELAPSED"
    );
    for j in &jobs {
        let counts = j.task_counts.unwrap_or_default();
        outln!(
            "{:<width$} {:<12} {:<24} {:<10} {:>11}  {:<8} {}",
            render::short_id(j),
            j.namespace,
            j.name,
            render::job_state(j.state),
            format!("{}/{}", render::finished(&counts), counts.total),
            render::elapsed(j.started_unix_ms, j.finished_unix_ms),
            render::short_time(j.created_unix_ms),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job or schedule id (any unique start of it, 4+ hex digits).
    id: String,
    /// Tasks listed in the table (the ones needing attention first);
    /// `--json` lists them all.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Tasks fetched per page.
const TASK_PAGE: u32 = 1000;
/// Tasks fetched at most, even for `--json`: a job can have millions.
const TASKS_MAX: usize = 100_000;

pub async fn status(args: StatusArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let job = get_job(coordinators, &args.id).await?;
    if job.schedule.is_some() && !args.json {
        return crate::schedule::show(job, 10, false, coordinators).await;
    }
    let (tasks, truncated) = list_tasks(coordinators, &job.job_id).await?;
    if args.json {
        let tasks: Vec<_> = tasks.iter().map(render::task_json).collect();
        let mut out = render::job_json(&job);
        out["tasks"] = serde_json::Value::Array(tasks);
        out["tasksTruncated"] = serde_json::Value::Bool(truncated);
        super::print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_status(&job, &tasks, args.tasks);
    Ok(ExitCode::SUCCESS)
}

/// Every task of a job up to [`TASKS_MAX`], and whether there were more.
async fn list_tasks(coordinators: &Coordinators, job_id: &str) -> Result<(Vec<Task>, bool)> {
    let mut tasks = Vec::new();
    let mut token = String::new();
    loop {
        let request = ListTasksRequest {
            job_id: job_id.to_owned(),
            page_size: TASK_PAGE,
            page_token: token.clone(),
            ..ListTasksRequest::default()
        };
        let page = coordinators
            .jobs(|mut c| {
                let r = request.clone();
                async move { c.list_tasks(r).await.map(|r| r.into_inner()) }
            })
            .await?;
        tasks.extend(page.tasks);
        token = page.next_page_token;
        if token.is_empty() {
            return Ok((tasks, false));
        }
        if tasks.len() >= TASKS_MAX {
            return Ok((tasks, true));
        }
    }
}

/// Running, retrying and failed tasks come before the rest: they are what
/// someone looking at a job's status wants to see.
fn attention_rank(t: &Task) -> u8 {
    match TaskState::try_from(t.state) {
        Ok(TaskState::Failed | TaskState::UpstreamFailed) => 0,
        Ok(TaskState::Leased) => 1,
        Ok(TaskState::Backoff) => 2,
        Ok(TaskState::Ready) => 3,
        Ok(TaskState::Blocked) => 4,
        _ => 5,
    }
}

/// Where each data task's result is: the spec's `output`, whose
/// `_manifest.json` names the files once the task's last stage succeeds.
fn print_results(job: &Job) {
    // A spec task's templates are `task` or `task/stage`; the last in
    // stage order is the one that publishes.
    let mut last: Vec<(&str, &drover_proto::v1::TemplateProgress)> = Vec::new();
    for t in job.templates.iter().filter(|t| !t.output.is_empty()) {
        let task = t.name.split('/').next().unwrap_or(&t.name);
        match last.iter_mut().find(|(name, _)| *name == task) {
            Some(entry) if entry.1.stage <= t.stage => entry.1 = t,
            Some(_) => {}
            None => last.push((task, t)),
        }
    }
    if last.is_empty() {
        return;
    }
    outln!();
    outln!("  {:<20} {:<44} STATUS", "RESULT OF", "AT");
    for (task, t) in last {
        let c = t.counts.unwrap_or_default();
        let sensor = t.kind == drover_proto::v1::TaskKind::SensorFeatureBackfill as i32;
        let at = if sensor {
            format!("{}/date=*/", t.output.trim_end_matches('/'))
        } else {
            format!("{}/", t.output.trim_end_matches('/'))
        };
        let status = if c.total > 0 && c.succeeded + c.skipped == c.total {
            "ready: _manifest.json names its files".to_owned()
        } else if sensor {
            format!("each date when its {} task succeeds", t.name)
        } else {
            format!("when {} succeeds", t.name)
        };
        outln!("  {task:<20} {at:<44} {status}");
    }
}

fn print_status(job: &Job, tasks: &[Task], shown: usize) {
    let counts = job.task_counts.unwrap_or_default();
    outln!("job {}  {}/{}", job.job_id, job.namespace, job.name);
    let mut state = render::job_state(job.state);
    if !job.state_reason.is_empty() {
        state = format!("{state} ({})", job.state_reason);
    }
    outln!("  state    {state}");
    outln!(
        "  tasks    {}/{} done: {}",
        render::finished(&counts),
        counts.total,
        render::counts_line(&counts)
    );
    outln!(
        "  created  {}   elapsed {}",
        render::short_time(job.created_unix_ms),
        render::elapsed(job.started_unix_ms, job.finished_unix_ms)
    );
    if !job.templates.is_empty() {
        outln!();
        outln!(
            "  {:<20} {:<24} {:>5} {:>11}  {:<20} {:<8} STATUS",
            "TEMPLATE",
            "KIND",
            "STAGE",
            "DONE/TOTAL",
            "STARTED",
            "ELAPSED"
        );
        for t in &job.templates {
            let c = t.counts.unwrap_or_default();
            outln!(
                "  {:<20} {:<24} {:>5} {:>11}  {:<20} {:<8} {}",
                t.name,
                render::task_kind(t.kind),
                t.stage,
                format!("{}/{}", render::finished(&c), c.total),
                render::short_time(t.started_unix_ms),
                render::elapsed(t.started_unix_ms, t.finished_unix_ms),
                render::counts_line(&c)
            );
        }
    }
    print_results(job);
    if tasks.is_empty() || shown == 0 {
        return;
    }
    let mut order: Vec<&Task> = tasks.iter().collect();
    order.sort_by_key(|t| attention_rank(t));
    outln!();
    // Whole ids: a table of one job's tasks cannot tell what prefix of
    // them no other job shares.
    let width = order
        .iter()
        .map(|t| t.task_id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    outln!(
        "  {:<width$} {:<28} {:<15} {:>7}  {:<24} {:<20} {:<8} NOTE",
        "TASK",
        "TEMPLATE[PARTITION]",
        "STATE",
        "ATTEMPT",
        "WORKER",
        "STARTED",
        "DURATION"
    );
    for t in order.iter().take(shown) {
        let note = if !t.last_error.is_empty() {
            t.last_error.clone()
        } else if !t.progress_message.is_empty() {
            t.progress_message.clone()
        } else {
            String::new()
        };
        let attempt = if t.attempt == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}", t.attempt, t.max_attempts)
        };
        outln!(
            "  {:<width$} {:<28} {:<15} {:>7}  {:<24} {:<20} {:<8} {}",
            t.task_id,
            format!("{}[{}]", t.template, t.partition_key),
            render::task_state(t.state),
            attempt,
            if t.worker_id.is_empty() {
                "-"
            } else {
                &t.worker_id
            },
            render::short_time(t.started_unix_ms),
            render::elapsed(t.started_unix_ms, t.finished_unix_ms),
            note.lines().next().unwrap_or("")
        );
    }
    if tasks.len() > shown {
        outln!(
            "  ... {} more tasks (--tasks N or --json)",
            tasks.len() - shown
        );
    }
}
