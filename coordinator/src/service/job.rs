//! `JobService`: submit, plan, inspect, watch, cancel and retry jobs, and
//! explain their tasks.
//!
//! Every rpc but PlanJob needs the leader: changes are proposed through Raft
//! and answered only once applied, and reads are linearizable (ReadIndex)
//! reads on the leader. Reads run as closures on the Raft driver thread, so
//! each one converts only what its answer needs, and every scan is bounded.
//!
//! # Scheduled jobs
//!
//! The state machine keeps a spec with a `schedule` as a schedule record
//! (`s7`), and each fire time as a child job (`j42`) pointing back at it.
//! On the wire a schedule is a *scheduled job*: its `job_id` is `s7`, it runs
//! no tasks itself, `schedule` holds its cron status, and its runs carry
//! `parent_job_id = "s7"`. GetJob, ListJobs, WatchJob and CancelJob accept
//! `s7` ids; cancelling one stops future fires. Both id forms are opaque to
//! clients.
//!
//! # Pagination
//!
//! Page tokens are opaque strings naming where the next page starts:
//! `<job bound>.<schedule bound>` for ListJobs (the next page holds jobs and
//! schedules with smaller ids, newest first) and `<template>.<partition>`
//! for ListTasks (a template index and a partition index). Each call scans
//! a bounded number of records, so a filtered page may be short (even
//! empty) while still carrying a token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_jobspecs::limits::SPEC_BYTES_MAX;
use drover_jobspecs::{LoadOptions, Plan};
use drover_proto::DIAGNOSTICS_METADATA_KEY;
use drover_proto::trace::TraceParent;
use drover_proto::v1::job_service_server::JobService;
use drover_proto::v1::{
    CancelJobRequest, CancelJobResponse, ExplainTaskRequest, ExplainTaskResponse, GetJobRequest,
    GetJobResponse, GetTaskLogRequest, GetTaskLogResponse, GetTaskOutputRequest,
    GetTaskOutputResponse, Job as WireJob, JobEventsRequest, JobEventsResponse, JobListKind,
    JobState as WireJobState, ListJobsRequest, ListJobsResponse, ListTasksRequest,
    ListTasksResponse, PlanJobRequest, PlanJobResponse, RetryJobRequest, RetryJobResponse,
    SubmitJobRequest, SubmitJobResponse, WatchJobRequest, WatchJobResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use super::{node_status, rejection_status};
use crate::auth::Caller;
use crate::raft::node::{NodeError, NodeHandle};
use crate::state::ids::{IdLookupError, JobRef};
use crate::state::job::Job;
use crate::state::schedule::Schedule;
use crate::state::{
    Command, JobId, JobState, Outcome, Rejection, ScheduleId, StateMachine, SubmitJob, Submitted,
    TaskKey, TaskState,
};
use crate::task_logs::TaskLogStore;

/// How long a linearizable read may wait for the cluster before the caller
/// hears UNAVAILABLE.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Page size of ListJobs and ListTasks when the request says 0: a screenful
/// and a bit, cheap to build on the Raft thread.
const PAGE_SIZE_DEFAULT: usize = 100;

/// Largest page of ListJobs and ListTasks; larger requests are clamped. A
/// thousand rows keep one answer well under a megabyte.
const PAGE_SIZE_MAX: usize = 1000;

/// JobEvents page size when the request says 0.
const EVENTS_LIMIT_DEFAULT: usize = 100;

/// Largest JobEvents page; larger requests are clamped.
const EVENTS_LIMIT_MAX: usize = 1000;

/// Events one filtered JobEvents call or watch poll looks at. Filters can
/// match rarely; this bounds the time one call holds the Raft thread.
const EVENTS_SCAN_MAX: usize = 10_000;

/// Jobs and schedules one ListJobs call looks at, for the same reason.
const JOBS_SCAN_MAX: usize = 10_000;

/// A schedule's recent notes GetJob returns.
const SCHEDULE_NOTES_SHOWN: usize = 50;

/// Partitions and task records one ListTasks call looks at. A filter that
/// matches nothing in a 1,000,000-partition template costs at most this
/// much per call, and the client follows the token.
const TASKS_SCAN_MAX: usize = 100_000;

/// How often WatchJob looks at the job; "a few times per second".
const WATCH_POLL: Duration = Duration::from_millis(200);

/// WatchJob messages buffered per watcher; a slow reader stops the poller
/// rather than growing a queue.
const WATCH_CHANNEL: usize = 16;

/// Events carried by one WatchJob message; more wait for the next message,
/// which follows at once.
const WATCH_EVENTS_PER_MESSAGE: usize = 1000;

/// Fire times PlanJob lists when the request says 0.
const FIRE_TIMES_DEFAULT: usize = drover_jobspecs::plan::PLAN_FIRE_TIMES;

/// Most fire times PlanJob lists; larger requests are clamped.
const FIRE_TIMES_MAX: usize = 100;

/// Partition keys shown per template in a plan.
const SAMPLE_PARTITION_KEYS: u64 = 5;

/// Longest `source_name`: a path, stored with schedules and shown in every
/// diagnostic.
const SOURCE_NAME_BYTES_MAX: usize = 1024;

/// Characters of a cancel reason kept (the state machine keeps as many).
const REASON_CHARS_MAX: usize = 1024;

/// Bytes of the encoded `DiagnosticList` put in `drover-diagnostics-bin`.
/// Base64 makes it a third larger; together with the message this stays
/// under the 8 KiB of metadata that the strictest gRPC clients accept.
const DIAGNOSTICS_METADATA_BYTES_MAX: usize = 4096;

/// Bytes of the readable rendering put in the status message. The message
/// travels percent-encoded, which can triple it.
const STATUS_MESSAGE_BYTES_MAX: usize = 1024;

/// Serves `JobService` for one node.
#[derive(Debug, Clone)]
pub struct JobServer {
    /// The Raft node whose state machine holds the jobs.
    node: NodeHandle,
    /// Where workers store attempts' logs, when the cluster keeps them.
    task_logs: Option<Arc<dyn TaskLogStore>>,
}

impl JobServer {
    /// A server for `node`.
    pub fn new(node: NodeHandle) -> Self {
        Self {
            node,
            task_logs: None,
        }
    }

    /// Answers GetTaskLog from `store`.
    pub fn with_task_logs(mut self, store: Option<Arc<dyn TaskLogStore>>) -> Self {
        self.task_logs = store;
        self
    }

    /// A linearizable read on the leader; `f` runs on the Raft thread.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> Result<R, Status> + Send + 'static,
    ) -> Result<R, Status> {
        super::require_leader(&self.node)?;
        self.node.read(READ_TIMEOUT, f).await.map_err(node_status)?
    }

    /// Proposes one command and returns its result.
    async fn propose(&self, command: Command) -> Result<Result<Outcome, Rejection>, Status> {
        self.node
            .propose(vec![command])
            .await
            .map_err(node_status)?
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the state machine returned no outcome"))
    }

    /// The job or schedule a request's id names: a whole id or a prefix,
    /// resolved against this (leading) node's state.
    async fn resolve(&self, text: &str) -> Result<JobRef, Status> {
        let text = text.to_owned();
        self.node
            .read_local(move |sm| sm.resolve_id(&text))
            .await
            .map_err(node_status)?
            .map_err(lookup_status)
    }

    /// The task a request's id names, its job part resolved as in
    /// [`Self::resolve`].
    async fn resolve_task(&self, text: &str) -> Result<TaskKey, Status> {
        let text = text.to_owned();
        self.node
            .read_local(move |sm| sm.resolve_task(&text))
            .await
            .map_err(node_status)?
            .map_err(lookup_status)
    }

    /// `Ok` when `caller` may see and touch `job`: at once for callers not
    /// limited to namespaces, otherwise after reading the job's namespace.
    async fn check_access(&self, caller: &Caller, job: JobRef) -> Result<(), Status> {
        if caller.namespaces().is_none() {
            return Ok(());
        }
        let namespace = self
            .read(move |sm| {
                match job {
                    JobRef::Job(id) => sm.job(id).map(|j| j.namespace.clone()),
                    JobRef::Schedule(id) => {
                        sm.core().schedules.get(&id).map(|s| s.namespace.clone())
                    }
                }
                .ok_or_else(|| not_found(job))
            })
            .await?;
        caller.check_namespace(&namespace)
    }

    /// The trace id a job or schedule keeps, read on this (leading) node
    /// right after the submit applied; empty when it has none.
    async fn existing_trace_id(&self, id: Submitted) -> Result<String, Status> {
        let trace_parent = self
            .node
            .read_local(move |sm| match id {
                Submitted::Job(j) => sm.job(j).and_then(|j| j.trace_parent.clone()),
                Submitted::Schedule(s) => sm
                    .core()
                    .schedules
                    .get(&s)
                    .and_then(|s| s.trace_parent.clone()),
            })
            .await
            .map_err(node_status)?;
        Ok(trace_parent
            .as_deref()
            .and_then(drover_proto::trace::trace_id_of)
            .unwrap_or_default())
    }

    /// SubmitJob in the job's trace: validates, plans, proposes, and answers
    /// with the job's trace id.
    async fn submit(
        &self,
        caller: Caller,
        request: SubmitJobRequest,
        trace: TraceParent,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        if request.spec_yaml.len() > SPEC_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "the spec is {} bytes; the limit is {SPEC_BYTES_MAX}",
                request.spec_yaml.len()
            )));
        }
        if request.source_name.len() > SOURCE_NAME_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "the source name is longer than {SOURCE_NAME_BYTES_MAX} bytes"
            )));
        }
        super::require_leader(&self.node)?;
        let params: Vec<(String, String)> = request.params.into_iter().collect();
        // Planned here first: a fast INVALID_ARGUMENT without a Raft round
        // trip, and the plan summary of the answer. The state machine plans
        // again as of the committed entry's time, which is authoritative.
        let (spec_yaml, plan) = plan_blocking(
            request.source_name.clone(),
            request.spec_yaml,
            params.clone(),
            now_ms(),
        )
        .await?;
        let plan = match plan {
            Ok(plan) => plan,
            Err(diagnostics) => return Err(invalid_spec(&spec_yaml, &diagnostics)),
        };
        // The namespace is a plain name in the spec (never interpolated), so
        // the state machine's own plan lands in the same one.
        caller.check_namespace(&plan.spec.namespace)?;
        let fire_times = plan
            .next_fire_times
            .iter()
            .map(|t| t.timestamp_millis())
            .collect();
        let summary = convert::plan(&plan, fire_times);
        let warnings = plan.warnings.iter().map(convert::diagnostic).collect();
        // Kept to render diagnostics should the committed plan disagree.
        let source = spec_yaml.clone();
        let submit = SubmitJob {
            file: request.source_name,
            spec_yaml,
            params,
            idempotency_key: (!request.idempotency_key.is_empty())
                .then_some(request.idempotency_key),
            trace_parent: Some(trace.to_string()),
        };
        let command = if request.once {
            Command::SubmitOnce(submit)
        } else {
            Command::SubmitJob(submit)
        };
        match self.propose(command).await? {
            Ok(Outcome::Submitted { id, created }) => {
                let job_id = match id {
                    Submitted::Job(j) => j.to_string(),
                    Submitted::Schedule(s) => s.to_string(),
                };
                tracing::Span::current().record("job_id", job_id.as_str());
                let trace_id = if created {
                    trace.trace_id()
                } else {
                    // An idempotent replay: the job runs in the trace of
                    // the submit that created it.
                    self.existing_trace_id(id).await?
                };
                tracing::info!(job_id = %job_id, created, trace_id = %trace_id, "job submitted");
                Ok(Response::new(SubmitJobResponse {
                    job_id,
                    created,
                    plan: Some(summary),
                    warnings,
                    trace_id,
                }))
            }
            Ok(other) => Err(Status::internal(format!(
                "unexpected outcome of a submit: {other:?}"
            ))),
            Err(Rejection::InvalidSpec(diagnostics)) => Err(invalid_spec(&source, &diagnostics)),
            Err(rejection) => Err(rejection_status(rejection)),
        }
    }
}

/// How a request's id that names nothing (or several things) is refused.
fn lookup_status(err: IdLookupError) -> Status {
    match err {
        IdLookupError::Unknown(_) => Status::not_found(err.to_string()),
        IdLookupError::Malformed(_) | IdLookupError::Ambiguous { .. } => {
            Status::invalid_argument(err.to_string())
        }
    }
}

fn not_found(job: JobRef) -> Status {
    Status::not_found(format!("unknown job {job}"))
}

/// The current wall-clock time; only the service reads clocks.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The `output` of a data kind's config: where its result is published.
fn data_output(kind: &str, config_json: &str) -> String {
    if !matches!(
        kind,
        "annotation_export" | "dedup" | "sensor_feature_backfill"
    ) {
        return String::new();
    }
    serde_json::from_str::<serde_json::Value>(config_json)
        .ok()
        .and_then(|c| c.get("output")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Plans a spec off the async threads: a 1 MiB spec takes a while to parse.
async fn plan_blocking(
    file: String,
    yaml: String,
    params: Vec<(String, String)>,
    at_ms: i64,
) -> Result<(String, Result<Plan, Vec<drover_jobspecs::Diagnostic>>), Status> {
    tokio::task::spawn_blocking(move || {
        let opts = LoadOptions {
            params,
            logical_time: utc(at_ms),
        };
        let plan = drover_jobspecs::plan(&file, &yaml, &opts);
        (yaml, plan)
    })
    .await
    .map_err(|e| Status::internal(format!("planning failed: {e}")))
}

/// INVALID_ARGUMENT for a spec, with its diagnostics in the binary metadata
/// and a readable rendering in the message, both bounded.
fn invalid_spec(source: &str, diagnostics: &[drover_jobspecs::Diagnostic]) -> Status {
    let wire: Vec<_> = diagnostics.iter().map(convert::diagnostic).collect();
    let encoded = convert::encode_diagnostic_list(&wire, DIAGNOSTICS_METADATA_BYTES_MAX);
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(
        DIAGNOSTICS_METADATA_KEY,
        MetadataValue::from_bytes(&encoded),
    );
    let message = convert::render_diagnostics(source, diagnostics, STATUS_MESSAGE_BYTES_MAX);
    Status::with_metadata(Code::InvalidArgument, message, metadata)
}

/// A page size from a request: 0 means the default, larger is clamped.
fn page_size(requested: u32, default: usize, max: usize) -> usize {
    match requested {
        0 => default,
        n => (n as usize).min(max),
    }
}

/// The lifecycle state shown for a schedule: cancelled once stopped,
/// succeeded when its cron never fires again and no run is left, running
/// once it started a run, pending before.
fn schedule_state(schedule: &Schedule) -> JobState {
    if !schedule.active {
        JobState::Cancelled
    } else if schedule.next_fire_ms.is_none() && schedule.running.is_empty() {
        JobState::Succeeded
    } else if schedule.runs_started > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// Stage of each template: 0 without dependencies, else one more than the
/// highest stage upstream. Templates are in topological order, so one pass
/// suffices.
fn stages(job: &Job) -> Vec<u32> {
    let mut stages: Vec<u32> = Vec::with_capacity(job.templates.len());
    for template in &job.templates {
        let stage = template
            .def
            .depends_on
            .iter()
            .filter_map(|d| stages.get(*d as usize))
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        stages.push(stage);
    }
    stages
}

/// Template indexes in stage order, ties in graph order.
fn stage_order(stages: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..stages.len() as u32).collect();
    order.sort_by_key(|t| (stages[*t as usize], *t));
    order
}

/// Which jobs ListJobs returns.
#[derive(Debug, Default)]
struct JobFilter {
    /// Only this namespace.
    namespace: Option<String>,
    /// Only these namespaces: the caller's, when its token is limited to
    /// some.
    allowed: Option<Vec<String>>,
    /// Only these states.
    states: Option<BTreeSet<JobState>>,
    /// Only names with this prefix.
    name_prefix: String,
    /// Only jobs carrying all of these labels.
    labels: BTreeMap<String, String>,
    /// Only runs of this scheduled job.
    parent: Option<JobRef>,
    /// Leave out jobs that run tasks (only scheduled jobs are wanted).
    skip_jobs: bool,
    /// Leave out scheduled jobs.
    skip_schedules: bool,
}

impl JobFilter {
    fn matches(
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
enum Listed {
    /// A job.
    Job(JobId),
    /// A scheduled job.
    Schedule(ScheduleId),
}

/// Where a ListJobs page starts: jobs and schedules with ids below these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JobsCursor {
    /// Exclusive upper bound on job ids.
    job_before: u128,
    /// Exclusive upper bound on schedule ids.
    schedule_before: u128,
}

impl JobsCursor {
    const START: JobsCursor = JobsCursor {
        job_before: u128::MAX,
        schedule_before: u128::MAX,
    };
}

/// The labels of a schedule's spec, as its runs get them; none when the
/// spec no longer plans.
fn schedule_labels(schedule: &Schedule, now_ms: i64) -> BTreeMap<String, String> {
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
fn scan_jobs(
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
struct TaskPage {
    /// The rows, in stage, template and partition order.
    rows: Vec<(u32, u64, TaskState)>,
    /// Template index and partition of the next page's first candidate.
    next: Option<(u32, u64)>,
}

/// Lists tasks without materialising a template: partitions below a
/// template's cursor have a record or have succeeded, and partitions at or
/// above it share one derived state, so a page is built from the records
/// and from ranges. When neither succeeded nor skipped tasks are wanted,
/// only records are visited below the cursor.
fn scan_tasks(
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
struct EventsPage {
    /// Matching events in sequence order.
    events: Vec<drover_proto::v1::JobEvent>,
    /// The last sequence number looked at.
    next_after_seq: u64,
    /// Whether events after `next_after_seq` exist.
    more: bool,
    /// Oldest retained sequence number (0 when none is retained).
    oldest_seq: u64,
}

/// Events of `job` after `after`, filtered by task and wire kind, at most
/// `limit` returned and [`EVENTS_SCAN_MAX`] looked at.
fn events_page(
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

/// What one WatchJob poll saw.
#[derive(Debug)]
struct WatchPoll {
    /// The job now.
    job: WireJob,
    /// New events since the cursor.
    events: Vec<drover_proto::v1::JobEvent>,
    /// The cursor for the next poll.
    cursor: u64,
    /// Events between the old cursor and the oldest retained were pruned.
    dropped: bool,
    /// The job is terminal.
    terminal: bool,
    /// More events wait beyond this poll's bound.
    more: bool,
}

fn watch_poll(
    sm: &StateMachine,
    job_ref: JobRef,
    cursor: u64,
    kinds: &BTreeSet<i32>,
) -> Result<WatchPoll, Status> {
    match job_ref {
        JobRef::Job(id) => {
            let job = sm.job(id).ok_or_else(|| not_found(job_ref))?;
            let page = events_page(job, cursor, WATCH_EVENTS_PER_MESSAGE, None, kinds);
            Ok(WatchPoll {
                job: convert::job(sm, job, true, false),
                dropped: cursor > 0 && page.oldest_seq > cursor + 1,
                events: page.events,
                cursor: page.next_after_seq,
                terminal: job.state.is_terminal(),
                more: page.more,
            })
        }
        JobRef::Schedule(id) => {
            let schedule = sm
                .core()
                .schedules
                .get(&id)
                .ok_or_else(|| not_found(job_ref))?;
            Ok(WatchPoll {
                job: convert::schedule_job(sm, schedule, false, false),
                events: Vec::new(),
                cursor,
                dropped: false,
                terminal: schedule_state(schedule).is_terminal(),
                more: false,
            })
        }
    }
}

/// What a schedule's spec says about its job header (labels, priority,
/// parallelism), which the schedule record does not keep.
#[derive(Debug, Clone, Default)]
struct ScheduleHeader {
    /// Labels from the spec.
    labels: BTreeMap<String, String>,
    /// Priority from the spec.
    priority: u32,
    /// `maxParallel` from the spec.
    max_parallel: u32,
}

impl ScheduleHeader {
    fn apply(&self, job: &mut WireJob) {
        job.labels = self.labels.clone();
        job.priority = self.priority;
        job.max_parallel = self.max_parallel;
    }
}

/// Re-plans a schedule's spec (as of its creation) for its header; off the
/// Raft thread and off the async threads.
async fn schedule_header(node: &NodeHandle, id: ScheduleId) -> Result<ScheduleHeader, Status> {
    let source = node
        .read_local(move |sm| {
            sm.core().schedules.get(&id).map(|s| {
                (
                    s.file.clone(),
                    s.spec_yaml.clone(),
                    s.params.clone(),
                    s.created_ms,
                )
            })
        })
        .await
        .map_err(node_status)?;
    let Some((file, yaml, params, created_ms)) = source else {
        return Ok(ScheduleHeader::default());
    };
    let (_, plan) = plan_blocking(file, yaml, params, created_ms).await?;
    Ok(plan
        .map(|p| ScheduleHeader {
            labels: p.spec.labels.clone(),
            priority: u32::from(p.spec.priority),
            max_parallel: p.spec.max_parallel,
        })
        .unwrap_or_default())
}

/// Sends WatchJob messages until the job is terminal, the client leaves,
/// the node loses leadership or the job disappears.
async fn watch_loop(
    node: NodeHandle,
    job_ref: JobRef,
    kinds: BTreeSet<i32>,
    header: Option<ScheduleHeader>,
    first: WatchPoll,
    tx: mpsc::Sender<Result<WatchJobResponse, Status>>,
) {
    let mut last: Option<WireJob> = None;
    let mut poll = first;
    loop {
        if let Some(header) = &header {
            header.apply(&mut poll.job);
        }
        let changed = last.as_ref() != Some(&poll.job) || !poll.events.is_empty() || poll.dropped;
        if changed {
            let message = WatchJobResponse {
                job: Some(poll.job.clone()),
                events: std::mem::take(&mut poll.events),
                events_dropped: poll.dropped,
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
        if poll.terminal && !poll.more {
            return;
        }
        let cursor = poll.cursor;
        last = Some(poll.job);
        if !poll.more {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
        }
        if !node.status().is_leader {
            let _ = tx
                .send(Err(node_status(NodeError::NotLeader {
                    leader: node.leader(),
                })))
                .await;
            return;
        }
        let kinds = kinds.clone();
        poll = match node
            .read_local(move |sm| watch_poll(sm, job_ref, cursor, &kinds))
            .await
        {
            Ok(Ok(poll)) => poll,
            Ok(Err(status)) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(node_status(e))).await;
                return;
            }
        };
    }
}

/// Wire <-> domain conversions. Nothing outside this module builds or reads
/// a prost message field by field, apart from assembling responses.
mod convert {
    use std::collections::{BTreeMap, BTreeSet};

    use drover_jobspecs::Plan;
    use drover_jobspecs::schedule::{Catchup, Overlap};
    use drover_proto::v1::{
        BackoffWait, CatchupPolicy, DependencyWait, Diagnostic, ExplainTaskResponse, FairShareWait,
        Job as WireJob, JobEvent, JobEventKind, JobPlan, JobState as WireJobState, MaxParallelWait,
        NoMatchingWorker, NotPending, OutputFile as WireOutputFile, OutputManifest, OverlapPolicy,
        ScheduleNote, SchedulePlan, ScheduleStatus, Severity, Task, TaskCounts, TaskKind,
        TaskState as WireTaskState, TemplatePlan, TemplateProgress, UpstreamProgress,
        explain_task_response::Reason,
    };
    use tonic::Status;

    use super::{JobFilter, JobRef, JobsCursor, stage_order, stages, utc};
    use crate::state::events::{Event, EventKind, ExpiryReason};
    use crate::state::explain::Why;
    use crate::state::job::{Counts, Job};
    use crate::state::schedule::Schedule;
    use crate::state::types::{DEFAULT_NAMESPACE_WEIGHT, Manifest};
    use crate::state::{JobState, StateMachine, TaskKey, TaskState, WorkerState};

    // ---- ids and tokens ----

    /// A job id from a request.
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
        match kind {
            "annotation_export" => TaskKind::AnnotationExport,
            "dedup" => TaskKind::Dedup,
            "sensor_feature_backfill" => TaskKind::SensorFeatureBackfill,
            "noop" => TaskKind::Noop,
            "sleep" => TaskKind::Sleep,
            "command" => TaskKind::Command,
            "probe" => TaskKind::Probe,
            _ => TaskKind::Unspecified,
        }
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

    // ---- diagnostics ----

    /// The wire twin of a spec diagnostic.
    pub fn diagnostic(d: &drover_jobspecs::Diagnostic) -> Diagnostic {
        Diagnostic {
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            severity: match d.severity {
                drover_jobspecs::Severity::Error => Severity::Error,
                drover_jobspecs::Severity::Warning => Severity::Warning,
            } as i32,
            message: d.message.clone(),
            hint: d.hint.clone().unwrap_or_default(),
            path: d.path.clone(),
        }
    }

    fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
        put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
    }

    fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        put_key(buf, field, 2);
        put_varint(buf, bytes.len() as u64);
        buf.extend_from_slice(bytes);
    }

    fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
        if v == 0 {
            return;
        }
        put_key(buf, field, 0);
        put_varint(buf, v);
    }

    /// Encodes a `DiagnosticList` of at most about `max_bytes`, dropping
    /// trailing diagnostics (and setting `truncated`) to fit.
    ///
    /// Encoded by hand, field by field in tag order as prost does, because
    /// this crate does not depend on `prost`; the layout follows
    /// `common.proto` (`DiagnosticList`: 1 diagnostics, 2 truncated;
    /// `Diagnostic`: 1 file, 2 line, 3 column, 4 severity, 5 message,
    /// 6 hint, 7 path).
    pub fn encode_diagnostic_list(diagnostics: &[Diagnostic], max_bytes: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut truncated = false;
        for d in diagnostics {
            let mut body = Vec::new();
            put_bytes(&mut body, 1, d.file.as_bytes());
            put_uint(&mut body, 2, u64::from(d.line));
            put_uint(&mut body, 3, u64::from(d.column));
            put_uint(&mut body, 4, u64::try_from(d.severity).unwrap_or(0));
            put_bytes(&mut body, 5, d.message.as_bytes());
            put_bytes(&mut body, 6, d.hint.as_bytes());
            put_bytes(&mut body, 7, d.path.as_bytes());
            let mut entry = Vec::with_capacity(body.len() + 4);
            put_key(&mut entry, 1, 2);
            put_varint(&mut entry, body.len() as u64);
            entry.extend_from_slice(&body);
            // Two bytes stay free for the `truncated` flag.
            if buf.len() + entry.len() + 2 > max_bytes {
                truncated = true;
                break;
            }
            buf.extend_from_slice(&entry);
        }
        if truncated {
            put_uint(&mut buf, 2, 1);
        }
        buf
    }

    /// A readable rendering of the diagnostics for a status message, at most
    /// `max_bytes` long.
    pub fn render_diagnostics(
        source: &str,
        diagnostics: &[drover_jobspecs::Diagnostic],
        max_bytes: usize,
    ) -> String {
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == drover_jobspecs::Severity::Error)
            .count();
        let mut out = format!(
            "invalid job spec: {errors} error{}\n",
            if errors == 1 { "" } else { "s" }
        );
        for (i, d) in diagnostics.iter().enumerate() {
            let rendered = d.render(source);
            if out.len() + rendered.len() > max_bytes {
                let rest = format!(
                    "... and {} more in the {} metadata",
                    diagnostics.len() - i,
                    drover_proto::DIAGNOSTICS_METADATA_KEY
                );
                if out.len() + rest.len() <= max_bytes {
                    out.push_str(&rest);
                }
                break;
            }
            out.push_str(&rendered);
        }
        if out.len() > max_bytes {
            let mut end = max_bytes;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
        }
        out
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
            let stages = stages(job);
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
        let next_fire_unix_ms = if s.active {
            let spec = drover_jobspecs::schedule::Schedule {
                cron: s.cron.clone(),
                timezone: s.timezone.parse().unwrap_or(chrono_tz::Tz::UTC),
                catchup: s.catchup,
                max_catchup: s.max_catchup,
                overlap: s.overlap,
            };
            spec.next_fire_times(utc(sm.now_ms()), super::FIRE_TIMES_DEFAULT)
                .into_iter()
                .map(|t| t.timestamp_millis())
                .collect()
        } else {
            Vec::new()
        };
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
    pub fn schedule_job(
        sm: &StateMachine,
        s: &Schedule,
        detail: bool,
        include_spec: bool,
    ) -> WireJob {
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
                super::schedule_labels(s, sm.now_ms())
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

    // ---- events ----

    /// The task an event concerns, if any.
    fn event_task(kind: &EventKind) -> Option<TaskKey> {
        match kind {
            EventKind::Leased { task, .. }
            | EventKind::Completed { task, .. }
            | EventKind::Failed { task, .. }
            | EventKind::Expired { task, .. }
            | EventKind::StaleRejected { task, .. }
            | EventKind::Released { task, .. } => Some(*task),
            _ => None,
        }
    }

    /// Whether an event is about task `key` (its own events, and the
    /// upstream failure of its template).
    pub fn event_concerns(kind: &EventKind, key: TaskKey) -> bool {
        match kind {
            EventKind::UpstreamFailed { template } => *template == key.template,
            other => event_task(other) == Some(key),
        }
    }

    /// The wire kind of an event.
    pub fn event_kind(job: &Job, kind: &EventKind) -> JobEventKind {
        match kind {
            EventKind::Submitted => JobEventKind::JobSubmitted,
            EventKind::Leased { .. } => JobEventKind::TaskLeased,
            EventKind::Completed { task, .. } => {
                let skipped = job
                    .templates
                    .get(task.template as usize)
                    .and_then(|t| t.outputs.get(task.partition))
                    .is_some_and(|o| o.skipped);
                if skipped {
                    JobEventKind::TaskSkipped
                } else {
                    JobEventKind::TaskSucceeded
                }
            }
            EventKind::Failed { .. } => JobEventKind::TaskFailed,
            EventKind::Expired {
                reason: ExpiryReason::Lease,
                ..
            } => JobEventKind::TaskLeaseExpired,
            EventKind::Expired {
                reason: ExpiryReason::Timeout,
                ..
            } => JobEventKind::TaskTimedOut,
            EventKind::StaleRejected { .. } => JobEventKind::TaskStaleTokenRejected,
            EventKind::Released { .. } => JobEventKind::TaskReleased,
            EventKind::UpstreamFailed { .. } => JobEventKind::TaskCancelled,
            EventKind::Retried { .. } => JobEventKind::JobRetried,
            EventKind::CancelRequested { .. } => JobEventKind::JobCancelled,
            EventKind::Finished { state } => match state {
                JobState::Succeeded => JobEventKind::JobSucceeded,
                JobState::Failed => JobEventKind::JobFailed,
                JobState::Cancelled => JobEventKind::JobCancelled,
                JobState::Pending | JobState::Running => JobEventKind::Unspecified,
            },
        }
    }

    fn retry_note(retry_at_ms: Option<i64>) -> String {
        match retry_at_ms {
            Some(at) => format!(
                "retry at {}",
                utc(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            None => "no retries left".to_owned(),
        }
    }

    /// The wire form of an event of `job`.
    pub fn event(job: &Job, event: &Event, kind: JobEventKind) -> JobEvent {
        let mut out = JobEvent {
            seq: event.seq,
            at_unix_ms: event.at_ms,
            kind: kind as i32,
            ..JobEvent::default()
        };
        let template_name = |t: u32| {
            job.templates
                .get(t as usize)
                .map(|t| t.def.id.clone())
                .unwrap_or_default()
        };
        if let Some(task) = event_task(&event.kind) {
            out.task_id = task.to_string();
            out.template = template_name(task.template);
            out.partition_index = task.partition;
            // Only grants record their attempt; the record's current attempt
            // may be a later one than the event's, so others leave it 0.
        }
        match &event.kind {
            EventKind::Submitted => {}
            EventKind::Leased {
                worker,
                token,
                attempt,
                ..
            } => {
                out.worker_id = worker.clone();
                out.fencing_token = *token;
                out.attempt = *attempt;
            }
            EventKind::Completed {
                token,
                worker,
                attempt,
                ..
            } => {
                out.worker_id = worker.clone();
                out.fencing_token = *token;
                out.attempt = *attempt;
            }
            EventKind::Released { token, .. } => {
                out.fencing_token = *token;
            }
            EventKind::Failed {
                token,
                message,
                retry_at_ms,
                ..
            } => {
                out.fencing_token = *token;
                out.message = format!("{message} ({})", retry_note(*retry_at_ms));
            }
            EventKind::Expired {
                token, retry_at_ms, ..
            } => {
                out.fencing_token = *token;
                out.message = retry_note(*retry_at_ms);
            }
            EventKind::StaleRejected {
                token,
                action,
                worker,
                ..
            } => {
                out.fencing_token = *token;
                out.worker_id = worker.clone();
                out.message = format!("stale token on {action}");
            }
            EventKind::UpstreamFailed { template } => {
                out.template = template_name(*template);
                out.message = "an upstream task failed; this template will not run".to_owned();
            }
            EventKind::Retried { tasks } => out.message = format!("{tasks} tasks requeued"),
            EventKind::CancelRequested { reason } => out.message = reason.clone(),
            EventKind::Finished { state } => out.message = format!("job {}", state.as_str()),
        }
        out
    }

    // ---- explain ----

    /// Ready tasks that lease before `key`: those of jobs ahead in the lease
    /// order, then those of the same job in earlier templates or partitions.
    fn tasks_ahead(sm: &StateMachine, job: &Job, key: TaskKey) -> u64 {
        let mut ahead = 0u64;
        for id in sm.indexes().ready.in_order() {
            if id == job.id {
                break;
            }
            ahead += sm.job(id).map_or(0, |j| j.counts.ready);
        }
        for (t, template) in job.templates.iter().enumerate() {
            if (t as u32) < key.template {
                ahead += template.counts.ready;
            } else if t as u32 == key.template {
                let requeued_before = template.requeued.range(..key.partition).count() as u64;
                ahead += requeued_before;
                if !template.tasks.contains_key(&key.partition) {
                    ahead += template.requeued.len() as u64 - requeued_before
                        + key.partition.saturating_sub(template.cursor);
                }
            }
        }
        ahead
    }

    /// The wire answer to "why is this task not running".
    pub fn explain(sm: &StateMachine, job: &Job, key: TaskKey, why: Why) -> ExplainTaskResponse {
        let template = job.templates.get(key.template as usize);
        let state = template
            .and_then(|t| t.task_state(key.partition))
            .unwrap_or(TaskState::Ready);
        let alive: Vec<_> = sm
            .core()
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
            .collect();
        let (summary, reason) = match why {
            Why::NotPending(s) => (
                format!("task {key} is {}, not waiting to run", s.as_str()),
                Reason::NotPending(NotPending {
                    state: task_state(s) as i32,
                }),
            ),
            Why::Dependency { waiting_on } => {
                let stages = stages(job);
                let mut blocking: Vec<(u32, u32, UpstreamProgress)> = job
                    .templates
                    .iter()
                    .enumerate()
                    .filter(|(_, up)| waiting_on.contains(&up.def.id))
                    .map(|(i, up)| {
                        let done = up.counts.succeeded + up.counts.skipped;
                        (
                            stages[i],
                            i as u32,
                            UpstreamProgress {
                                template: up.def.id.clone(),
                                remaining: up.def.count.saturating_sub(done),
                                total: up.def.count,
                                failed: up.counts.failed,
                            },
                        )
                    })
                    .collect();
                blocking.sort_by_key(|(stage, index, _)| (*stage, *index));
                let blocking: Vec<UpstreamProgress> =
                    blocking.into_iter().map(|(_, _, u)| u).collect();
                let list: Vec<String> = blocking
                    .iter()
                    .map(|u| {
                        let failed = if u.failed > 0 {
                            format!(", {} failed: retry the job to go on", u.failed)
                        } else {
                            String::new()
                        };
                        format!(
                            "{} ({} of {} tasks left{failed})",
                            u.template, u.remaining, u.total
                        )
                    })
                    .collect();
                (
                    format!(
                        "task {key} waits for upstream templates: {}",
                        list.join(", ")
                    ),
                    Reason::Dependency(DependencyWait { blocking }),
                )
            }
            Why::Backoff {
                until_ms,
                next_attempt,
            } => {
                let last_error = template
                    .and_then(|t| t.tasks.get(&key.partition))
                    .and_then(|r| r.last_error.clone())
                    .unwrap_or_default();
                (
                    format!(
                        "task {key} failed attempt {next_attempt} and waits for its retry at {}",
                        utc(until_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    ),
                    Reason::BackoffUntil(BackoffWait {
                        backoff_until_unix_ms: until_ms,
                        attempt: next_attempt,
                        last_error,
                    }),
                )
            }
            Why::JobMaxParallel { limit } => (
                format!(
                    "job {} already runs {} tasks, its maxParallel of {limit}",
                    job.id, job.counts.leased
                ),
                Reason::MaxParallel(MaxParallelWait {
                    max_parallel: limit,
                    leased: u32::try_from(job.counts.leased).unwrap_or(u32::MAX),
                }),
            ),
            Why::TemplateMaxParallel { limit } => {
                let leased = template.map_or(0, |t| t.counts.leased);
                (
                    format!(
                        "template {} already runs {leased} tasks, its maxParallel of {limit}",
                        template.map_or("", |t| t.def.id.as_str())
                    ),
                    Reason::MaxParallel(MaxParallelWait {
                        max_parallel: limit,
                        leased: u32::try_from(leased).unwrap_or(u32::MAX),
                    }),
                )
            }
            Why::NoMatchingWorker { constraints, kind } => {
                let labels: Vec<String> = constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let with = if labels.is_empty() {
                    String::new()
                } else {
                    format!(" with labels {}", labels.join(","))
                };
                (
                    format!(
                        "no alive worker runs `{kind}` tasks{with} ({} alive workers)",
                        alive.len()
                    ),
                    Reason::NoMatchingWorker(NoMatchingWorker {
                        required_labels: constraints.into_iter().collect(),
                        kind: task_kind(&kind) as i32,
                        alive_workers: alive.len() as u32,
                    }),
                )
            }
            Why::WaitingForSlot {
                namespace_running, ..
            } => {
                let weight_of = |ns: &str| {
                    sm.core()
                        .config
                        .namespace_weights
                        .get(ns)
                        .copied()
                        .unwrap_or(DEFAULT_NAMESPACE_WEIGHT)
                        .max(1)
                };
                let mut namespaces: BTreeSet<&str> = sm
                    .indexes()
                    .ready
                    .in_order()
                    .filter_map(|id| sm.job(id))
                    .map(|j| j.namespace.as_str())
                    .collect();
                namespaces.insert(job.namespace.as_str());
                let weight = weight_of(&job.namespace);
                let total_weight: u64 = namespaces.iter().map(|ns| u64::from(weight_of(ns))).sum();
                let slots: u64 = alive.iter().map(|w| u64::from(w.slots)).sum();
                let fair_share_slots =
                    slots as f64 * f64::from(weight) / (total_weight.max(1) as f64);
                let ahead = tasks_ahead(sm, job, key);
                (
                    format!(
                        "task {key} is ready and waits for a free slot: {ahead} ready tasks lease first; namespace {} uses {namespace_running} of its {fair_share_slots:.1} fair-share slots",
                        job.namespace
                    ),
                    Reason::FairShare(FairShareWait {
                        namespace: job.namespace.clone(),
                        weight,
                        used_slots: namespace_running,
                        fair_share_slots,
                        tasks_ahead: ahead,
                    }),
                )
            }
        };
        ExplainTaskResponse {
            task: Some(task(sm, job, key.template, key.partition, state)),
            summary,
            evaluated_unix_ms: sm.now_ms(),
            reason: Some(reason),
        }
    }
}

#[tonic::async_trait]
impl JobService for JobServer {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let trace = super::trace::continue_or_start(request.metadata());
        let span = tracing::info_span!(
            "submit_job",
            trace_id = tracing::field::Empty,
            source = %request.get_ref().source_name,
            job_id = tracing::field::Empty,
        );
        // With spans exported, the job's trace continues from this span:
        // its leases, attempts and reports become its descendants.
        let trace = if drover_proto::spans::exporting() {
            if let Some(supplied) = request
                .metadata()
                .get(drover_proto::TRACEPARENT_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
            {
                drover_proto::spans::set_parent(&span, supplied);
            }
            drover_proto::spans::traceparent_of(&span)
                .and_then(|own| TraceParent::parse(&own).ok())
                .unwrap_or(trace)
        } else {
            trace
        };
        span.record("trace_id", trace.trace_id());
        let caller = Caller::of(&request);
        self.submit(caller, request.into_inner(), trace)
            .instrument(span)
            .await
    }

    async fn plan_job(
        &self,
        request: Request<PlanJobRequest>,
    ) -> Result<Response<PlanJobResponse>, Status> {
        let request = request.into_inner();
        if request.spec_yaml.len() > SPEC_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "the spec is {} bytes; the limit is {SPEC_BYTES_MAX}",
                request.spec_yaml.len()
            )));
        }
        if request.source_name.len() > SOURCE_NAME_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "the source name is longer than {SOURCE_NAME_BYTES_MAX} bytes"
            )));
        }
        let as_of = match request.as_of_unix_ms {
            0 => now_ms(),
            at => at,
        };
        let fire_times = page_size(request.fire_time_count, FIRE_TIMES_DEFAULT, FIRE_TIMES_MAX);
        let (_, plan) = plan_blocking(
            request.source_name,
            request.spec_yaml,
            request.params.into_iter().collect(),
            as_of,
        )
        .await?;
        Ok(Response::new(match plan {
            Ok(plan) => {
                let times = plan
                    .spec
                    .schedule
                    .as_ref()
                    .map(|s| {
                        s.next_fire_times(utc(as_of), fire_times)
                            .into_iter()
                            .map(|t| t.timestamp_millis())
                            .collect()
                    })
                    .unwrap_or_default();
                PlanJobResponse {
                    valid: true,
                    diagnostics: plan.warnings.iter().map(convert::diagnostic).collect(),
                    plan: Some(convert::plan(&plan, times)),
                }
            }
            Err(diagnostics) => PlanJobResponse {
                valid: false,
                diagnostics: diagnostics.iter().map(convert::diagnostic).collect(),
                plan: None,
            },
        }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let include_spec = request.include_spec;
        let mut job = self
            .read(move |sm| match job_ref {
                JobRef::Job(id) => sm
                    .job(id)
                    .map(|job| convert::job(sm, job, true, include_spec))
                    .ok_or_else(|| not_found(job_ref)),
                JobRef::Schedule(id) => sm
                    .core()
                    .schedules
                    .get(&id)
                    .map(|s| convert::schedule_job(sm, s, true, include_spec))
                    .ok_or_else(|| not_found(job_ref)),
            })
            .await?;
        if let JobRef::Schedule(id) = job_ref {
            schedule_header(&self.node, id).await?.apply(&mut job);
        }
        Ok(Response::new(GetJobResponse { job: Some(job) }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if !request.namespace.is_empty() {
            caller.check_namespace(&request.namespace)?;
        }
        let parent = match request.parent_job_id.as_str() {
            "" => None,
            id => Some(self.resolve(id).await?),
        };
        let mut filter = convert::job_filter(
            request.namespace,
            &request.states,
            request.name_prefix,
            parent,
        )?;
        filter.allowed = caller.namespaces().map(<[String]>::to_vec);
        filter.labels = request.labels.into_iter().collect();
        match JobListKind::try_from(request.kind) {
            Ok(JobListKind::Schedules) => filter.skip_jobs = true,
            Ok(JobListKind::Jobs) => filter.skip_schedules = true,
            Ok(JobListKind::Unspecified) | Err(_) => {}
        }
        let from = convert::parse_jobs_token(&request.page_token)?;
        let page = page_size(request.page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX);
        let (jobs, next) = self
            .read(move |sm| {
                let (listed, next) = scan_jobs(sm, &filter, from, page);
                let jobs: Vec<WireJob> = listed
                    .into_iter()
                    .filter_map(|item| match item {
                        Listed::Job(id) => sm.job(id).map(|j| convert::job(sm, j, false, false)),
                        Listed::Schedule(id) => sm
                            .core()
                            .schedules
                            .get(&id)
                            .map(|s| convert::schedule_job(sm, s, false, false)),
                    })
                    .collect();
                Ok((jobs, next))
            })
            .await?;
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token: next.map(convert::jobs_token).unwrap_or_default(),
        }))
    }

    type WatchJobStream = ReceiverStream<Result<WatchJobResponse, Status>>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let kinds: BTreeSet<i32> = request.event_kinds.into_iter().collect();
        let after = request.after_seq;
        let first_kinds = kinds.clone();
        // The first look is linearizable, so the watcher sees at least
        // every change committed before it asked.
        let first = self
            .read(move |sm| watch_poll(sm, job_ref, after, &first_kinds))
            .await?;
        let header = match job_ref {
            JobRef::Schedule(id) => Some(schedule_header(&self.node, id).await?),
            JobRef::Job(_) => None,
        };
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        tokio::spawn(watch_loop(
            self.node.clone(),
            job_ref,
            kinds,
            header,
            first,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let reason: String = request.reason.chars().take(REASON_CHARS_MAX).collect();
        super::require_leader(&self.node)?;
        let command = match job_ref {
            JobRef::Job(job) => Command::CancelJob { job, reason },
            JobRef::Schedule(schedule) => {
                // Cancelling a schedule twice would succeed twice; answer
                // "unchanged" for one already stopped, as for jobs.
                let state = self
                    .read(move |sm| {
                        sm.core()
                            .schedules
                            .get(&schedule)
                            .map(schedule_state)
                            .ok_or_else(|| not_found(job_ref))
                    })
                    .await?;
                if state.is_terminal() {
                    return Ok(Response::new(CancelJobResponse {
                        state: convert::job_state(state) as i32,
                        changed: false,
                    }));
                }
                Command::CancelSchedule { schedule, reason }
            }
        };
        match self.propose(command).await? {
            Ok(_) => Ok(Response::new(CancelJobResponse {
                state: WireJobState::Cancelled as i32,
                changed: true,
            })),
            // Cancelling a finished job is a no-op that succeeds, so that
            // retries are safe (job.proto).
            Err(Rejection::JobFinished { job, .. }) => {
                let state = self
                    .read(move |sm| {
                        sm.job(job)
                            .map(|j| j.state)
                            .ok_or_else(|| not_found(JobRef::Job(job)))
                    })
                    .await?;
                Ok(Response::new(CancelJobResponse {
                    state: convert::job_state(state) as i32,
                    changed: false,
                }))
            }
            Err(rejection) => Err(rejection_status(rejection)),
        }
    }

    async fn retry_job(
        &self,
        request: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let job = match job_ref {
            JobRef::Job(job) => job,
            JobRef::Schedule(s) => {
                return Err(Status::failed_precondition(format!(
                    "{s} is a scheduled job and runs no tasks itself; retry one of its runs"
                )));
            }
        };
        if !request.templates.is_empty() {
            let names = request.templates;
            self.read(move |sm| {
                let job = sm.job(job).ok_or_else(|| not_found(JobRef::Job(job)))?;
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !job.templates.iter().any(|t| t.def.id == **n))
                {
                    return Err(Status::invalid_argument(format!(
                        "job {} has no template `{}`",
                        job.id,
                        crate::state::types::shown(unknown)
                    )));
                }
                let left_out: Vec<&str> = job
                    .templates
                    .iter()
                    .filter(|t| t.counts.failed > 0 && !names.contains(&t.def.id))
                    .map(|t| t.def.id.as_str())
                    .collect();
                if left_out.is_empty() {
                    Ok(())
                } else {
                    Err(Status::unimplemented(format!(
                        "retrying only some templates is not supported; templates {} also have failed tasks (retry all templates instead)",
                        left_out.join(", ")
                    )))
                }
            })
            .await?;
        }
        match self.propose(Command::RetryJob { job }).await? {
            Ok(Outcome::Retried { tasks }) => {
                let state = self
                    .read(move |sm| {
                        sm.job(job)
                            .map(|j| j.state)
                            .ok_or_else(|| not_found(JobRef::Job(job)))
                    })
                    .await?;
                Ok(Response::new(RetryJobResponse {
                    requeued_task_count: tasks,
                    state: convert::job_state(state) as i32,
                }))
            }
            Ok(other) => Err(Status::internal(format!(
                "unexpected outcome of a retry: {other:?}"
            ))),
            Err(rejection) => Err(rejection_status(rejection)),
        }
    }

    async fn job_events(
        &self,
        request: Request<JobEventsRequest>,
    ) -> Result<Response<JobEventsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let task = match request.task_id.as_str() {
            "" => None,
            id => Some(self.resolve_task(id).await?),
        };
        if let Some(key) = task
            && JobRef::Job(key.job) != job_ref
        {
            return Err(Status::invalid_argument(format!(
                "task {key} is not a task of job {job_ref}"
            )));
        }
        let limit = page_size(request.limit, EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX);
        let kinds: BTreeSet<i32> = request.kinds.into_iter().collect();
        let after = request.after_seq;
        let page = self
            .read(move |sm| match job_ref {
                JobRef::Job(id) => sm
                    .job(id)
                    .map(|job| events_page(job, after, limit, task, &kinds))
                    .ok_or_else(|| not_found(job_ref)),
                // Schedules keep notes, not an event trail.
                JobRef::Schedule(id) => sm
                    .core()
                    .schedules
                    .get(&id)
                    .map(|_| EventsPage {
                        next_after_seq: after,
                        ..EventsPage::default()
                    })
                    .ok_or_else(|| not_found(job_ref)),
            })
            .await?;
        Ok(Response::new(JobEventsResponse {
            events: page.events,
            next_after_seq: page.next_after_seq,
            more: page.more,
            oldest_seq: page.oldest_seq,
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let states = convert::task_states(&request.states);
        let start = convert::parse_tasks_token(&request.page_token)?;
        let page = page_size(request.page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX);
        let template_filter = request.template;
        let (tasks, next) = self
            .read(move |sm| {
                let id = match job_ref {
                    JobRef::Job(id) => id,
                    // A scheduled job runs no tasks itself.
                    JobRef::Schedule(id) => {
                        return sm
                            .core()
                            .schedules
                            .get(&id)
                            .map(|_| (Vec::new(), None))
                            .ok_or_else(|| not_found(job_ref));
                    }
                };
                let job = sm.job(id).ok_or_else(|| not_found(job_ref))?;
                let mut order = stage_order(&stages(job));
                if !template_filter.is_empty() {
                    order.retain(|t| job.templates[*t as usize].def.id == template_filter);
                    if order.is_empty() {
                        return Err(Status::invalid_argument(format!(
                            "job {id} has no template `{}`",
                            crate::state::types::shown(&template_filter)
                        )));
                    }
                }
                let start = match start {
                    None => (0, 0),
                    Some((t, p)) => {
                        let position = order.iter().position(|o| *o == t).ok_or_else(|| {
                            Status::invalid_argument("the page token does not match the request")
                        })?;
                        (position, p)
                    }
                };
                let found = scan_tasks(job, &order, start, states.as_ref(), page);
                let tasks = found
                    .rows
                    .into_iter()
                    .map(|(t, p, state)| convert::task(sm, job, t, p, state))
                    .collect::<Vec<_>>();
                Ok((tasks, found.next))
            })
            .await?;
        Ok(Response::new(ListTasksResponse {
            tasks,
            next_page_token: next
                .map(|(t, p)| convert::tasks_token(t, p))
                .unwrap_or_default(),
        }))
    }

    async fn explain_task(
        &self,
        request: Request<ExplainTaskRequest>,
    ) -> Result<Response<ExplainTaskResponse>, Status> {
        let caller = Caller::of(&request);
        let key = self.resolve_task(&request.into_inner().task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let answer = self
            .read(move |sm| {
                let why = sm.why_pending(key).map_err(rejection_status)?;
                let job = sm
                    .job(key.job)
                    .ok_or_else(|| not_found(JobRef::Job(key.job)))?;
                Ok(convert::explain(sm, job, key, why))
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_task_output(
        &self,
        request: Request<GetTaskOutputRequest>,
    ) -> Result<Response<GetTaskOutputResponse>, Status> {
        let caller = Caller::of(&request);
        let key = self.resolve_task(&request.into_inner().task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let answer = self
            .read(move |sm| {
                let job = sm
                    .job(key.job)
                    .ok_or_else(|| not_found(JobRef::Job(key.job)))?;
                let template = job
                    .templates
                    .get(key.template as usize)
                    .filter(|t| key.partition < t.def.count)
                    .ok_or_else(|| Status::not_found(format!("task {key} does not exist")))?;
                let state = template
                    .task_state(key.partition)
                    .unwrap_or(TaskState::Ready);
                let output = template.outputs.get(key.partition).ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "task {key} has no output: it is {}",
                        state.as_str()
                    ))
                })?;
                Ok(GetTaskOutputResponse {
                    task: Some(convert::task(sm, job, key.template, key.partition, state)),
                    manifest: output.manifest.map(convert::output_manifest),
                    fencing_token: output.token,
                    reused: output.skipped,
                })
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_task_log(
        &self,
        request: Request<GetTaskLogRequest>,
    ) -> Result<Response<GetTaskLogResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let key = self.resolve_task(&request.task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let token = request.fencing_token;
        let found = self
            .read(move |sm| super::task_log::find_attempt(sm, key, token))
            .await?;
        let answer = super::task_log::answer(found, &request, self.task_logs.as_ref()).await;
        Ok(Response::new(answer))
    }
}
