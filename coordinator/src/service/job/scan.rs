//! Bounded scans behind the paged reads: jobs (with filters and a
//! cursor), a job's tasks, and its events.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::state::ids::JobRef;
use crate::state::job::Job;
use crate::state::schedule::Schedule;
use crate::state::{JobId, JobState, ScheduleId, StateMachine, TaskKey, TaskState};

/// Which jobs ListJobs returns.
#[derive(Debug, Default)]
pub(super) struct JobFilter {
    /// Only this namespace.
    pub(super) namespace: Option<String>,
    /// Only these namespaces: the caller's, when its token is limited to
    /// some.
    pub(super) allowed: Option<Vec<String>>,
    /// Only these states.
    pub(super) states: Option<BTreeSet<JobState>>,
    /// Only names with this prefix.
    pub(super) name_prefix: String,
    /// Only jobs carrying all of these labels.
    pub(super) labels: BTreeMap<String, String>,
    /// Only runs of this scheduled job.
    pub(super) parent: Option<JobRef>,
    /// Leave out jobs that run tasks (only scheduled jobs are wanted).
    pub(super) skip_jobs: bool,
    /// Leave out scheduled jobs.
    pub(super) skip_schedules: bool,
}

impl JobFilter {
    pub(super) fn matches(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        state: JobState,
    ) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self
                .allowed
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|n| n == namespace))
            && self.states.as_ref().is_none_or(|s| s.contains(&state))
            && name.starts_with(&self.name_prefix)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// One entry of a ListJobs page.
#[derive(Debug, Clone, Copy)]
pub(super) enum Listed {
    /// A job.
    Job(JobId),
    /// A scheduled job.
    Schedule(ScheduleId),
}

/// Where a ListJobs page starts: jobs and schedules with ids below these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JobsCursor {
    /// Exclusive upper bound on job ids.
    pub(super) job_before: u128,
    /// Exclusive upper bound on schedule ids.
    pub(super) schedule_before: u128,
}

impl JobsCursor {
    pub(super) const START: JobsCursor = JobsCursor {
        job_before: u128::MAX,
        schedule_before: u128::MAX,
    };
}

/// The labels of a schedule's spec, as its runs get them; none when the
/// spec no longer plans.
pub(super) fn schedule_labels(schedule: &Schedule, now_ms: i64) -> BTreeMap<String, String> {
    let opts = drover_jobspecs::LoadOptions {
        params: schedule.params.clone(),
        logical_time: chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default(),
    };
    drover_jobspecs::plan(&schedule.file, &schedule.spec_yaml, &opts)
        .map(|plan| plan.spec.labels)
        .unwrap_or_default()
}

/// One page of jobs and schedules, newest first: the two id spaces are each
/// ordered by creation time, so the page merges them by creation time.
pub(super) fn scan_jobs(
    sm: &StateMachine,
    filter: &JobFilter,
    from: JobsCursor,
    page: usize,
) -> (Vec<Listed>, Option<JobsCursor>) {
    let core = sm.core();
    let mut out = Vec::new();
    let mut cursor = from;
    let parent_schedule = match filter.parent {
        // Jobs are never parents.
        Some(JobRef::Job(_)) => return (out, None),
        Some(JobRef::Schedule(s)) => Some(s),
        None => None,
    };
    let mut jobs = core
        .jobs
        .range(..JobId(from.job_before))
        .rev()
        .filter(|_| !filter.skip_jobs)
        .peekable();
    let mut schedules = core
        .schedules
        .range(..ScheduleId(from.schedule_before))
        .rev()
        .filter(|_| parent_schedule.is_none() && !filter.skip_schedules)
        .peekable();
    let mut scanned = 0;
    loop {
        let next_job = jobs.peek().map(|(_, j)| j.created_ms);
        let next_schedule = schedules.peek().map(|(_, s)| s.created_ms);
        if next_job.is_none() && next_schedule.is_none() {
            return (out, None);
        }
        if out.len() >= page || scanned >= JOBS_SCAN_MAX {
            return (out, Some(cursor));
        }
        scanned += 1;
        let take_job = match (next_job, next_schedule) {
            (Some(j), Some(s)) => j >= s,
            (Some(_), None) => true,
            _ => false,
        };
        if take_job {
            if let Some((id, job)) = jobs.next() {
                cursor.job_before = id.0;
                let parent_ok = parent_schedule.is_none_or(|s| job.schedule == Some(s));
                if parent_ok && filter.matches(&job.namespace, &job.name, &job.labels, job.state) {
                    out.push(Listed::Job(*id));
                }
            }
        } else if let Some((id, schedule)) = schedules.next() {
            cursor.schedule_before = id.0;
            // A schedule's labels are its spec's; planned only when a
            // label filter asks (schedules are few, and a plan is cheap).
            let labels = if filter.labels.is_empty() {
                BTreeMap::new()
            } else {
                schedule_labels(schedule, sm.now_ms())
            };
            if filter.matches(
                &schedule.namespace,
                &schedule.name,
                &labels,
                schedule_state(schedule),
            ) {
                out.push(Listed::Schedule(*id));
            }
        }
    }
}

/// One page of tasks: (template, partition, state) rows and where the next
/// page starts.
#[derive(Debug, Default)]
pub(super) struct TaskPage {
    /// The rows, in stage, template and partition order.
    pub(super) rows: Vec<(u32, u64, TaskState)>,
    /// Template index and partition of the next page's first candidate.
    pub(super) next: Option<(u32, u64)>,
}

/// Lists tasks without materialising a template: partitions below a
/// template's cursor have a record or have succeeded, and partitions at or
/// above it share one derived state, so a page is built from the records
/// and from ranges. When neither succeeded nor skipped tasks are wanted,
/// only records are visited below the cursor.
pub(super) fn scan_tasks(
    job: &Job,
    order: &[u32],
    start: (usize, u64),
    states: Option<&BTreeSet<TaskState>>,
    page: usize,
) -> TaskPage {
    let wants = |s: TaskState| states.is_none_or(|set| set.contains(&s));
    let dense_below = wants(TaskState::Succeeded) || wants(TaskState::Skipped);
    let mut out = TaskPage::default();
    let mut budget = TASKS_SCAN_MAX;
    for (position, &t) in order.iter().enumerate().skip(start.0) {
        let Some(template) = job.templates.get(t as usize) else {
            continue;
        };
        let count = template.def.count;
        let cursor = template.cursor.min(count);
        let mut p = if position == start.0 { start.1 } else { 0 };
        while p < cursor {
            if out.rows.len() >= page || budget == 0 {
                out.next = Some((t, p));
                return out;
            }
            budget -= 1;
            if dense_below {
                if let Some(state) = template.task_state(p).filter(|s| wants(*s)) {
                    out.rows.push((t, p, state));
                }
                p += 1;
            } else {
                match template.tasks.range(p..cursor).next() {
                    Some((&q, record)) => {
                        if wants(record.state) {
                            out.rows.push((t, q, record.state));
                        }
                        p = q + 1;
                    }
                    None => p = cursor,
                }
            }
        }
        // Never-run partitions all share the state derived from the cursor.
        let Some(state) = template.task_state(p).filter(|s| wants(*s)) else {
            continue;
        };
        while p < count {
            if out.rows.len() >= page || budget == 0 {
                out.next = Some((t, p));
                return out;
            }
            budget -= 1;
            out.rows.push((t, p, state));
            p += 1;
        }
    }
    out
}

/// A page of a job's events, converted.
#[derive(Debug, Default)]
pub(super) struct EventsPage {
    /// Matching events in sequence order.
    pub(super) events: Vec<drover_proto::v1::JobEvent>,
    /// The last sequence number looked at.
    pub(super) next_after_seq: u64,
    /// Whether events after `next_after_seq` exist.
    pub(super) more: bool,
    /// Oldest retained sequence number (0 when none is retained).
    pub(super) oldest_seq: u64,
}

/// Events of `job` after `after`, filtered by task and wire kind, at most
/// `limit` returned and [`EVENTS_SCAN_MAX`] looked at.
pub(super) fn events_page(
    job: &Job,
    after: u64,
    limit: usize,
    task: Option<TaskKey>,
    kinds: &BTreeSet<i32>,
) -> EventsPage {
    let mut page = EventsPage {
        next_after_seq: after,
        oldest_seq: job.events.iter().next().map_or(0, |e| e.seq),
        ..EventsPage::default()
    };
    for event in job
        .events
        .iter()
        .skip_while(|e| e.seq <= after)
        .take(EVENTS_SCAN_MAX)
    {
        if page.events.len() >= limit {
            break;
        }
        page.next_after_seq = event.seq;
        if task.is_some_and(|k| !convert::event_concerns(&event.kind, k)) {
            continue;
        }
        let kind = convert::event_kind(job, &event.kind);
        if !kinds.is_empty() && !kinds.contains(&(kind as i32)) {
            continue;
        }
        page.events.push(convert::event(job, event, kind));
    }
    page.more = page.next_after_seq < job.events.last_seq();
    page
}
