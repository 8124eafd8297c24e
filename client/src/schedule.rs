//! `drover schedule list` and `drover schedule status ID`: the schedules a
//! spec with a `schedule` created, when they fire, and what their runs did.
//! A schedule is stopped with `drover job cancel ID`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use drover_net::Coordinators;
use drover_proto::v1::{
    CatchupPolicy, Job, JobListKind, JobState, ListJobsRequest, OverlapPolicy, ScheduleStatus,
};
use serde_json::{Value, json};

use crate::job::fetch::{get_job, list_jobs};
use crate::job::render;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List schedules, newest first: cron, zone, last and next fire.
    List(ListArgs),
    /// One schedule: its cron, zone, policies, fire times, recent runs and
    /// notes (skips, planning errors).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only schedules of this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Only schedules whose name starts with this.
    #[arg(long)]
    name: Option<String>,
    /// Include cancelled schedules.
    #[arg(long)]
    all: bool,
    /// At most this many schedules.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The schedule id (`s3`), as `job submit` printed it.
    id: String,
    /// Recent runs listed.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: ScheduleCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        ScheduleCommand::List(args) => list(args, coordinators).await,
        ScheduleCommand::Status(args) => status(args, coordinators).await,
    }
}

async fn list(args: ListArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let states = if args.all {
        Vec::new()
    } else {
        [JobState::Pending, JobState::Running, JobState::Succeeded]
            .iter()
            .map(|s| *s as i32)
            .collect()
    };
    let request = ListJobsRequest {
        namespace: args.namespace.clone().unwrap_or_default(),
        name_prefix: args.name.clone().unwrap_or_default(),
        states,
        kind: JobListKind::Schedules as i32,
        ..ListJobsRequest::default()
    };
    let schedules = list_jobs(coordinators, request, args.limit).await?;
    if args.json {
        let list: Vec<Value> = schedules.iter().map(|s| schedule_json(s, &[])).collect();
        crate::job::print_json(&json!({ "schedules": list }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if schedules.is_empty() {
        outln!("no schedules");
        return Ok(ExitCode::SUCCESS);
    }
    let width = render::id_width(&schedules, 2);
    outln!(
        "{:<width$} {:<12} {:<24} {:<16} {:<18} {:<9} {:<21} {:<21} RUNS",
        "ID",
        "NAMESPACE",
        "NAME",
        "CRON",
        "TIMEZONE",
        "STATE",
        "LAST FIRE",
        "NEXT FIRE"
    );
    for s in &schedules {
        let status = s.schedule.clone().unwrap_or_default();
        let plan = status.plan.clone().unwrap_or_default();
        outln!(
            "{:<width$} {:<12} {:<24} {:<16} {:<18} {:<9} {:<21} {:<21} {}",
            render::short_id(s),
            s.namespace,
            s.name,
            plan.cron,
            plan.timezone,
            state(s),
            render::short_time(status.last_fire_unix_ms),
            render::short_time(plan.next_fire_unix_ms.first().copied().unwrap_or(0)),
            status.run_count,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let schedule = get_job(coordinators, &args.id).await?;
    if schedule.schedule.is_none() {
        bail!(
            "{} is a job, not a schedule; see `drover job status {}`",
            schedule.job_id,
            schedule.job_id
        );
    }
    show(schedule, args.runs, args.json, coordinators).await
}

/// Prints `schedule` (a scheduled job's record) with its `runs` most
/// recent runs; `drover job status` of a schedule shows the same.
pub async fn show(
    schedule: Job,
    runs: usize,
    json: bool,
    coordinators: &Coordinators,
) -> Result<ExitCode> {
    let request = ListJobsRequest {
        parent_job_id: schedule.job_id.clone(),
        ..ListJobsRequest::default()
    };
    let runs = list_jobs(coordinators, request, runs).await?;
    if json {
        crate::job::print_json(&schedule_json(&schedule, &runs))?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = schedule.schedule.clone().unwrap_or_default();
    let plan = status.plan.clone().unwrap_or_default();
    let zone: Option<chrono_tz::Tz> = plan.timezone.parse().ok();
    let at = |ms: i64| zoned(ms, zone);
    outln!(
        "{} {}/{}  {}",
        schedule.job_id,
        schedule.namespace,
        schedule.name,
        state(&schedule)
    );
    if !schedule.state_reason.is_empty() {
        outln!("  reason:     {}", schedule.state_reason);
    }
    outln!("  cron:       {}  in {}", plan.cron, plan.timezone);
    outln!(
        "  catch-up:   {}  overlap: {}",
        catchup(&plan.catchup, plan.max_catchup),
        overlap(plan.overlap)
    );
    outln!("  created:    {}", at(schedule.created_unix_ms));
    outln!("  last fire:  {}", at(status.last_fire_unix_ms));
    match plan.next_fire_unix_ms.as_slice() {
        [] => outln!("  next fire:  -"),
        [first, rest @ ..] => {
            outln!("  next fire:  {}", at(*first));
            for t in rest.iter().take(4) {
                outln!("              {}", at(*t));
            }
        }
    }
    outln!(
        "  runs:       {} started, {} skipped",
        status.run_count,
        status.skipped_count
    );
    if !runs.is_empty() {
        outln!();
        let width = render::id_width(&runs, 3);
        outln!(
            "{:<width$} {:<10} {:>11}  {:<8} FIRE TIME",
            "RUN",
            "STATE",
            "DONE/TOTAL",
            "ELAPSED"
        );
        for r in &runs {
            let counts = r.task_counts.unwrap_or_default();
            outln!(
                "{:<width$} {:<10} {:>11}  {:<8} {}",
                render::short_id(r),
                render::job_state(r.state),
                format!("{}/{}", render::finished(&counts), counts.total),
                render::elapsed(r.started_unix_ms, r.finished_unix_ms),
                at(r.fire_unix_ms),
            );
        }
    }
    if !status.notes.is_empty() {
        outln!();
        outln!("NOTES");
        for n in status.notes.iter().rev().take(10).rev() {
            outln!("  {}  {}", render::short_time(n.at_unix_ms), n.text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Active, finished (a cron with no more fire times) or cancelled.
fn state(schedule: &Job) -> &'static str {
    match JobState::try_from(schedule.state) {
        Ok(JobState::Cancelled) => "cancelled",
        Ok(JobState::Succeeded) => "finished",
        _ => "active",
    }
}

/// A time in the schedule's zone, with UTC beside it:
/// `2026-12-06 02:00 CET (01:00Z)`.
pub fn zoned(ms: i64, zone: Option<chrono_tz::Tz>) -> String {
    let Some(utc) = render::time(ms) else {
        return "-".to_owned();
    };
    match zone {
        Some(tz) if tz != chrono_tz::UTC => format!(
            "{} ({})",
            utc.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            utc.format("%H:%MZ")
        ),
        _ => utc.format("%Y-%m-%d %H:%MZ").to_string(),
    }
}

fn catchup(policy: &i32, max: u32) -> String {
    match CatchupPolicy::try_from(*policy) {
        Ok(CatchupPolicy::All) => format!("all (at most {max})"),
        Ok(p) => render::enum_name(p.as_str_name(), "CATCHUP_POLICY_"),
        Err(_) => format!("unknown({policy})"),
    }
}

fn overlap(policy: i32) -> String {
    OverlapPolicy::try_from(policy).map_or_else(
        |_| format!("unknown({policy})"),
        |p| render::enum_name(p.as_str_name(), "OVERLAP_POLICY_"),
    )
}

fn time_json(ms: i64) -> Value {
    render::time(ms).map_or(Value::Null, |t: DateTime<Utc>| {
        Value::String(t.to_rfc3339())
    })
}

/// A schedule as `schedule list --json` and `schedule status --json` print
/// it; `runs` only in the latter.
pub fn schedule_json(s: &Job, runs: &[Job]) -> Value {
    let status: ScheduleStatus = s.schedule.clone().unwrap_or_default();
    let plan = status.plan.clone().unwrap_or_default();
    json!({
        "id": s.job_id,
        "namespace": s.namespace,
        "name": s.name,
        "state": state(s),
        "reason": s.state_reason,
        "cron": plan.cron,
        "timezone": plan.timezone,
        "catchup": catchup(&plan.catchup, plan.max_catchup),
        "maxCatchup": plan.max_catchup,
        "overlap": overlap(plan.overlap),
        "createdAt": time_json(s.created_unix_ms),
        "lastFireAt": time_json(status.last_fire_unix_ms),
        "nextFireAt": plan.next_fire_unix_ms.iter().map(|t| time_json(*t)).collect::<Vec<_>>(),
        "runsStarted": status.run_count,
        "runsSkipped": status.skipped_count,
        "runs": runs.iter().map(|r| {
            let mut run = render::job_json(r);
            run["fireAt"] = time_json(r.fire_unix_ms);
            run
        }).collect::<Vec<_>>(),
        "notes": status.notes.iter().map(|n| json!({
            "at": time_json(n.at_unix_ms),
            "text": n.text,
        })).collect::<Vec<_>>(),
    })
}
