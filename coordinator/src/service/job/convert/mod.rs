//! Wire <-> domain conversions. Nothing outside this module builds or reads
//! a prost message field by field, apart from assembling responses.

use std::collections::{BTreeMap, BTreeSet};

use drover_jobspecs::Plan;
use drover_jobspecs::schedule::{Catchup, Overlap};
use drover_proto::v1::{
    CatchupPolicy, Job as WireJob, JobPlan, JobState as WireJobState, OutputFile as WireOutputFile,
    OutputManifest, OverlapPolicy, ScheduleNote, SchedulePlan, ScheduleStatus, Task, TaskCounts,
    TaskKind, TaskState as WireTaskState, TemplatePlan, TemplateProgress,
};
use tonic::Status;

use super::JobRef;
use super::scan::{JobFilter, JobsCursor};
use crate::state::job::stage_order;
use crate::state::job::{Counts, Job};
use crate::state::schedule::Schedule;
use crate::state::types::Manifest;
use crate::state::{JobState, StateMachine, TaskKey, TaskState};

mod diagnostics;
mod events;
mod explain;

pub use diagnostics::{diagnostic, encode_diagnostic_list, render_diagnostics};
pub use events::{event, event_concerns, event_kind};
pub use explain::explain;

// ---- ids and tokens ----

/// The ListJobs page token.
pub fn jobs_token(cursor: JobsCursor) -> String {
    format!("{}.{}", cursor.job_before, cursor.schedule_before)
}

/// Parses a ListJobs page token; empty is the first page.
pub fn parse_jobs_token(token: &str) -> Result<JobsCursor, Status> {
    if token.is_empty() {
        return Ok(JobsCursor::START);
    }
    token
        .split_once('.')
        .and_then(|(j, s)| {
            Some(JobsCursor {
                job_before: j.parse().ok()?,
                schedule_before: s.parse().ok()?,
            })
        })
        .ok_or_else(|| Status::invalid_argument(format!("bad page token `{token}`")))
}

/// The ListTasks page token.
pub fn tasks_token(template: u32, partition: u64) -> String {
    format!("{template}.{partition}")
}

/// Parses a ListTasks page token into a template index and partition.
pub fn parse_tasks_token(token: &str) -> Result<Option<(u32, u64)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once('.')
        .and_then(|(t, p)| Some((t.parse().ok()?, p.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| Status::invalid_argument(format!("bad page token `{token}`")))
}

// ---- enums ----

/// Wire job state.
pub fn job_state(state: JobState) -> WireJobState {
    match state {
        JobState::Pending => WireJobState::Pending,
        JobState::Running => WireJobState::Running,
        JobState::Succeeded => WireJobState::Succeeded,
        JobState::Failed => WireJobState::Failed,
        JobState::Cancelled => WireJobState::Cancelled,
    }
}

/// Domain job state of a wire filter value; `None` matches every state.
fn job_state_filter(state: i32) -> Option<JobState> {
    match WireJobState::try_from(state).ok()? {
        WireJobState::Unspecified => None,
        WireJobState::Pending => Some(JobState::Pending),
        WireJobState::Running => Some(JobState::Running),
        WireJobState::Succeeded => Some(JobState::Succeeded),
        WireJobState::Failed => Some(JobState::Failed),
        WireJobState::Cancelled => Some(JobState::Cancelled),
    }
}

/// Wire task state.
pub fn task_state(state: TaskState) -> WireTaskState {
    match state {
        TaskState::Blocked => WireTaskState::Blocked,
        TaskState::Ready => WireTaskState::Ready,
        TaskState::Backoff => WireTaskState::Backoff,
        TaskState::Leased => WireTaskState::Leased,
        TaskState::Succeeded => WireTaskState::Succeeded,
        TaskState::Failed => WireTaskState::Failed,
        TaskState::Cancelled => WireTaskState::Cancelled,
        TaskState::Skipped => WireTaskState::Skipped,
        TaskState::UpstreamFailed => WireTaskState::UpstreamFailed,
    }
}

/// A task state filter: `None` when it matches every state (empty, or
/// naming UNSPECIFIED); values unknown to this server match nothing.
pub fn task_states(states: &[i32]) -> Option<BTreeSet<TaskState>> {
    let mut set = BTreeSet::new();
    for s in states {
        let state = match WireTaskState::try_from(*s) {
            Ok(WireTaskState::Unspecified) => return None,
            Ok(WireTaskState::Blocked) => TaskState::Blocked,
            Ok(WireTaskState::Ready) => TaskState::Ready,
            Ok(WireTaskState::Backoff) => TaskState::Backoff,
            Ok(WireTaskState::Leased) => TaskState::Leased,
            Ok(WireTaskState::Succeeded) => TaskState::Succeeded,
            Ok(WireTaskState::Failed) => TaskState::Failed,
            Ok(WireTaskState::Cancelled) => TaskState::Cancelled,
            Ok(WireTaskState::Skipped) => TaskState::Skipped,
            Ok(WireTaskState::UpstreamFailed) => TaskState::UpstreamFailed,
            Err(_) => continue,
        };
        set.insert(state);
    }
    (!states.is_empty()).then_some(set)
}

/// The executor kind of a kind name.
pub fn task_kind(kind: &str) -> TaskKind {
    drover_proto::names::task_kind_named(kind)
}

fn catchup(c: Catchup) -> CatchupPolicy {
    match c {
        Catchup::None => CatchupPolicy::None,
        Catchup::Latest => CatchupPolicy::Latest,
        Catchup::All => CatchupPolicy::All,
    }
}

fn overlap(o: Overlap) -> OverlapPolicy {
    match o {
        Overlap::Forbid => OverlapPolicy::Forbid,
        Overlap::Allow => OverlapPolicy::Allow,
        Overlap::Replace => OverlapPolicy::Replace,
    }
}

/// The ListJobs filters of a request.
pub fn job_filter(
    namespace: String,
    states: &[i32],
    name_prefix: String,
    parent: Option<JobRef>,
) -> Result<JobFilter, Status> {
    let mut set = BTreeSet::new();
    let mut any = states.is_empty();
    for s in states {
        match job_state_filter(*s) {
            Some(state) => {
                set.insert(state);
            }
            None if *s == WireJobState::Unspecified as i32 => any = true,
            None => {}
        }
    }
    Ok(JobFilter {
        namespace: (!namespace.is_empty()).then_some(namespace),
        states: (!any).then_some(set),
        name_prefix,
        parent,
        ..JobFilter::default()
    })
}

// ---- plans ----

/// The wire form of a plan; `fire_times` are the schedule's next fire
/// times (unix ms), computed by the caller as of the time it chose.
pub fn plan(plan: &Plan, fire_times: Vec<i64>) -> JobPlan {
    let graph = &plan.graph;
    let spec = &plan.spec;
    let mut stage_of: Vec<u32> = Vec::with_capacity(graph.templates.len());
    for t in &graph.templates {
        let stage = t
            .depends_on
            .iter()
            .filter_map(|d| stage_of.get(*d))
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        stage_of.push(stage);
    }
    let declared: BTreeMap<&str, usize> = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut order: Vec<usize> = (0..graph.templates.len()).collect();
    order.sort_by_key(|i| {
        let task = graph.templates[*i].task.as_str();
        (
            stage_of[*i],
            declared.get(task).copied().unwrap_or(usize::MAX),
            *i,
        )
    });
    let templates = order
        .into_iter()
        .map(|i| {
            let t = &graph.templates[i];
            TemplatePlan {
                name: t.id.clone(),
                kind: task_kind(t.kind) as i32,
                partition_count: t.partition_count,
                depends_on: t
                    .depends_on
                    .iter()
                    .filter_map(|d| graph.templates.get(*d))
                    .map(|d| d.id.clone())
                    .collect(),
                stage: stage_of[i],
                sample_partition_keys: (0..t.partition_count.min(super::SAMPLE_PARTITION_KEYS))
                    .filter_map(|p| t.partitions.key(p))
                    .filter(|k| !k.is_empty())
                    .collect(),
                max_attempts: t.retries.max.saturating_add(1),
                timeout_ms: i64::try_from(t.timeout_ms).unwrap_or(i64::MAX),
                required_labels: t.constraints.clone(),
            }
        })
        .collect();
    JobPlan {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        labels: spec.labels.clone(),
        priority: u32::from(spec.priority),
        max_parallel: spec.max_parallel,
        templates,
        stage_count: stage_of.iter().max().map_or(0, |s| s + 1),
        total_task_count: graph.total_tasks,
        schedule: spec.schedule.as_ref().map(|s| SchedulePlan {
            cron: s.cron.clone(),
            timezone: s.timezone.name().to_owned(),
            next_fire_unix_ms: fire_times,
            catchup: catchup(s.catchup) as i32,
            max_catchup: s.max_catchup,
            overlap: overlap(s.overlap) as i32,
        }),
        spec_fingerprint: plan.spec_hash.clone(),
    }
}

// ---- jobs ----

/// Wire task counts.
/// `c` on the wire, `upstream_failed` of its failed tasks told apart.
pub fn counts(c: &Counts, upstream_failed: u64) -> TaskCounts {
    TaskCounts {
        blocked: c.blocked,
        ready: c.ready,
        backoff: c.backoff,
        leased: c.leased,
        succeeded: c.succeeded,
        failed: c.failed.saturating_sub(upstream_failed),
        cancelled: c.cancelled,
        skipped: c.skipped,
        total: c.total(),
        upstream_failed,
    }
}

/// A job's counts on the wire.
pub fn job_counts(job: &Job) -> TaskCounts {
    counts(
        &job.counts,
        job.templates
            .iter()
            .map(crate::state::Template::upstream_failed)
            .sum(),
    )
}

/// Why a job is in its state: the cancel reason, or which tasks failed
/// (with `detail`, the first failed task that ran and its error).
fn state_reason(job: &Job, detail: bool) -> String {
    match job.state {
        JobState::Cancelled => job.cancel_reason.clone().unwrap_or_default(),
        JobState::Failed => {
            let failed_task = detail
                .then(|| {
                    job.templates.iter().enumerate().find_map(|(t, template)| {
                        (template.counts.failed > 0)
                            .then(|| {
                                template
                                    .tasks
                                    .iter()
                                    .find(|(_, r)| r.state == TaskState::Failed)
                            })
                            .flatten()
                            .map(|(p, r)| {
                                let key = TaskKey {
                                    job: job.id,
                                    template: t as u32,
                                    partition: *p,
                                };
                                match &r.last_error {
                                    Some(e) => format!("task {key} failed: {e}"),
                                    None => format!("task {key} failed"),
                                }
                            })
                    })
                })
                .flatten();
            failed_task.unwrap_or_else(|| {
                format!(
                    "{} of {} tasks failed",
                    job.counts.failed,
                    job.counts.total()
                )
            })
        }
        _ => String::new(),
    }
}

/// The wire form of a job. `detail` adds per-template progress (GetJob
/// and WatchJob; ListJobs leaves it out); `include_spec` adds the spec,
/// which the state keeps only for runs of a schedule.
pub fn job(sm: &StateMachine, job: &Job, detail: bool, include_spec: bool) -> WireJob {
    let schedule = job.schedule.and_then(|s| sm.core().schedules.get(&s));
    let templates = if detail {
        let stages = job.stages();
        stage_order(&stages)
            .into_iter()
            .filter_map(|t| {
                let template = job.templates.get(t as usize)?;
                Some(TemplateProgress {
                    name: template.def.id.clone(),
                    kind: task_kind(&template.def.kind) as i32,
                    stage: stages[t as usize],
                    depends_on: template
                        .def
                        .depends_on
                        .iter()
                        .filter_map(|d| job.templates.get(*d as usize))
                        .map(|d| d.def.id.clone())
                        .collect(),
                    partition_count: template.def.count,
                    counts: Some(counts(&template.counts, template.upstream_failed())),
                    started_unix_ms: sm.template_times(job.id, t).0.unwrap_or(0),
                    finished_unix_ms: sm.template_times(job.id, t).1.unwrap_or(0),
                    output: super::data_output(&template.def.kind, &template.def.config_json),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let (spec_yaml, params) = match schedule.filter(|_| include_spec) {
        Some(s) => (s.spec_yaml.clone(), s.params.iter().cloned().collect()),
        None => (String::new(), BTreeMap::new()),
    };
    WireJob {
        short_id: sm.short_id(JobRef::Job(job.id)),
        job_id: job.id.to_string(),
        namespace: job.namespace.clone(),
        name: job.name.clone(),
        labels: job.labels.clone(),
        priority: u32::from(job.priority),
        state: job_state(job.state) as i32,
        state_reason: state_reason(job, detail),
        created_unix_ms: job.created_ms,
        started_unix_ms: job.started_ms.unwrap_or(0),
        finished_unix_ms: job.finished_ms.unwrap_or(0),
        task_counts: Some(job_counts(job)),
        templates,
        max_parallel: job.max_parallel,
        source_name: schedule.map(|s| s.file.clone()).unwrap_or_default(),
        idempotency_key: job.idempotency_key.clone().unwrap_or_default(),
        spec_fingerprint: job.spec_hash.clone(),
        parent_job_id: job.schedule.map(|s| s.to_string()).unwrap_or_default(),
        fire_unix_ms: job.fire_time_ms.unwrap_or(0),
        schedule: None,
        last_event_seq: job.events.last_seq(),
        spec_yaml,
        params,
    }
}

/// The cron status of a schedule, with its next fire times from now.
fn schedule_plan(sm: &StateMachine, s: &Schedule) -> SchedulePlan {
    let next_fire_unix_ms = s.next_fire_times(sm.now_ms(), super::FIRE_TIMES_DEFAULT);
    SchedulePlan {
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        next_fire_unix_ms,
        catchup: catchup(s.catchup) as i32,
        max_catchup: s.max_catchup,
        overlap: overlap(s.overlap) as i32,
    }
}

/// The wire form of a schedule: a scheduled job that runs no tasks
/// itself. `detail` adds the idempotency key (a scan of the namespace's
/// keys); the caller fills labels and priority from the spec.
pub fn schedule_job(sm: &StateMachine, s: &Schedule, detail: bool, include_spec: bool) -> WireJob {
    let state = super::schedule_state(s);
    let cancel_note = s
        .notes
        .iter()
        .rev()
        .find_map(|(at, text)| text.strip_prefix("cancelled: ").map(|r| (*at, r)));
    let idempotency_key = if detail {
        sm.core()
            .idempotency
            .range((s.namespace.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == s.namespace)
            .find(|(_, (submitted, _))| *submitted == crate::state::Submitted::Schedule(s.id))
            .map(|((_, key), _)| key.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    WireJob {
        short_id: sm.short_id(JobRef::Schedule(s.id)),
        job_id: s.id.to_string(),
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        labels: if detail {
            super::scan::schedule_labels(s, sm.now_ms())
        } else {
            BTreeMap::new()
        },
        state: job_state(state) as i32,
        state_reason: match (state, cancel_note) {
            (JobState::Cancelled, Some((_, reason))) => reason.to_owned(),
            _ => String::new(),
        },
        created_unix_ms: s.created_ms,
        finished_unix_ms: match (state, cancel_note) {
            (JobState::Cancelled, Some((at, _))) => at,
            _ => 0,
        },
        task_counts: Some(TaskCounts::default()),
        source_name: s.file.clone(),
        idempotency_key,
        spec_fingerprint: s.spec_hash.clone(),
        schedule: Some(ScheduleStatus {
            plan: Some(schedule_plan(sm, s)),
            last_fire_unix_ms: s.last_fire_ms.unwrap_or(0),
            run_count: s.runs_started,
            skipped_count: s.runs_skipped,
            notes: if detail {
                let skip = s.notes.len().saturating_sub(super::SCHEDULE_NOTES_SHOWN);
                s.notes
                    .iter()
                    .skip(skip)
                    .map(|(at, text)| ScheduleNote {
                        at_unix_ms: *at,
                        text: text.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }),
        spec_yaml: if include_spec {
            s.spec_yaml.clone()
        } else {
            String::new()
        },
        params: if include_spec {
            s.params.iter().cloned().collect()
        } else {
            BTreeMap::new()
        },
        ..WireJob::default()
    }
}

// ---- tasks ----

/// The wire form of an accepted output's manifest.
pub fn output_manifest(m: &Manifest) -> OutputManifest {
    OutputManifest {
        output_prefix: m.prefix.clone(),
        files: m
            .files
            .iter()
            .map(|f| WireOutputFile {
                path: f.path.clone(),
                rows: f.rows,
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            })
            .collect(),
        schema_json: m.schema_json.clone(),
        code_version: m.code_version.clone(),
        input_fingerprint: m.input_fingerprint.clone(),
        created_unix_ms: 0,
    }
}

/// The wire form of one task, from its record, its output, or the
/// template's cursor.
pub fn task(sm: &StateMachine, job: &Job, t: u32, p: u64, state: TaskState) -> Task {
    let Some(template) = job.templates.get(t as usize) else {
        return Task::default();
    };
    let key = TaskKey {
        job: job.id,
        template: t,
        partition: p,
    };
    let record = template.tasks.get(&p);
    let output = template.outputs.get(p);
    let history = sm.task_history_of(key);
    Task {
        task_id: key.to_string(),
        job_id: job.id.to_string(),
        template: template.def.id.clone(),
        partition_index: p,
        partition_key: template.def.partitions.key(p).unwrap_or_default(),
        state: task_state(state) as i32,
        // A task running since before task history has none yet: its
        // record still knows the attempt and the worker.
        attempt: history
            .as_ref()
            .map(|h| h.attempts)
            .or(record.map(|r| r.attempt))
            .unwrap_or(0),
        // A retried job's tasks get a fresh budget on top of what
        // they had.
        max_attempts: template
            .def
            .retries
            .max
            .saturating_add(1)
            .saturating_add(sm.retry_base_of(key)),
        worker_id: history
            .as_ref()
            .and_then(|h| h.worker.clone())
            .or_else(|| record.and_then(|r| r.worker.clone()))
            .unwrap_or_default(),
        fencing_token: record
            .map(|r| r.token)
            .or(output.map(|o| o.token))
            .unwrap_or(0),
        lease_deadline_unix_ms: match record {
            Some(r) if state == TaskState::Leased => r.lease_deadline_ms,
            _ => 0,
        },
        backoff_until_unix_ms: match record {
            Some(r) if state == TaskState::Backoff => r.ready_at_ms,
            _ => 0,
        },
        last_error: record
            .and_then(|r| r.last_error.clone())
            .unwrap_or_default(),
        started_unix_ms: history.as_ref().map_or(0, |h| h.started_ms),
        finished_unix_ms: history.as_ref().and_then(|h| h.finished_ms).unwrap_or(0),
        output_prefix: output
            .and_then(|o| o.manifest)
            .map(|m| m.prefix.clone())
            .unwrap_or_default(),
        progress_fraction: match record {
            Some(r) if state == TaskState::Leased => f64::from(r.progress_permille) / 1000.0,
            _ => 0.0,
        },
        progress_message: String::new(),
    }
}
