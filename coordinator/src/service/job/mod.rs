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

mod convert;
mod handlers;
mod scan;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_jobspecs::limits::SPEC_BYTES_MAX;
use drover_jobspecs::{LoadOptions, Plan};
use drover_proto::DIAGNOSTICS_METADATA_KEY;
use drover_proto::trace::TraceParent;
use drover_proto::v1::{SubmitJobRequest, SubmitJobResponse};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Response, Status};

use super::{node_status, rejection_status};
use crate::auth::Caller;
use crate::raft::node::NodeHandle;
use crate::state::ids::{IdLookupError, JobRef};
use crate::state::schedule::Schedule;
use crate::state::{
    Command, JobState, Outcome, Rejection, StateMachine, SubmitJob, Submitted, TaskKey,
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
        check_spec_size(&request.spec_yaml, &request.source_name)?;
        super::require_leader(&self.node)?;
        let params: Vec<(String, String)> = request.params.into_iter().collect();
        // Planned here first: a fast INVALID_ARGUMENT without a Raft round
        // trip, and the plan summary of the answer. The state machine plans
        // again as of the committed entry's time, which is authoritative.
        let (spec_yaml, plan) = plan_blocking(
            request.source_name.clone(),
            request.spec_yaml,
            params.clone(),
            crate::clock::wall_now_ms(),
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

/// Refuses a spec or source name over its limit, before any parsing.
fn check_spec_size(spec_yaml: &str, source_name: &str) -> Result<(), Status> {
    if spec_yaml.len() > SPEC_BYTES_MAX {
        return Err(Status::resource_exhausted(format!(
            "the spec is {} bytes; the limit is {SPEC_BYTES_MAX}",
            spec_yaml.len()
        )));
    }
    if source_name.len() > SOURCE_NAME_BYTES_MAX {
        return Err(Status::resource_exhausted(format!(
            "the source name is longer than {SOURCE_NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
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
