//! `WorkerService`: registration, batched leases (long poll), batched
//! heartbeats, and fenced completions, failures and releases.
//!
//! Each rpc is counted and timed in [`Metrics`] and runs in a `tracing`
//! span naming its worker (and, for reports, its job and task). A granted
//! task carries its job's `traceparent`, so the attempt joins the trace of
//! the submit that created the job.

use std::time::{Duration, Instant};

use drover_proto::v1::worker_service_server::WorkerService;
use drover_proto::v1::{
    CompleteBatchRequest, CompleteBatchResponse, CompleteRequest, CompleteResponse, FailRequest,
    FailResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest, LeaseResponse,
    RegisterRequest, RegisterResponse, RejectReason, ReleaseRequest, ReleaseResponse,
    ReleaseResult, ReleaseStatus,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;
use tracing::field::Empty;

use super::node_status;
use crate::metrics::{Metrics, RpcOutcome, WorkerRpc};
use crate::raft::node::NodeHandle;
use crate::state::{Applied, Command, Outcome, Rejection, TaskKey};

/// Longest a lease call waits for work.
pub const LEASE_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often a waiting lease call looks again when ready tasks exist but
/// none could be granted to it.
const LEASE_POLL: Duration = Duration::from_millis(100);

/// Serves `WorkerService` for one node.
#[derive(Debug, Clone)]
pub struct WorkerServer {
    /// The Raft node whose state machine holds the leases.
    node: NodeHandle,
    /// Where each rpc is counted and timed.
    metrics: Metrics,
    /// Where workers are told to store attempts' logs; empty for nowhere.
    task_log_url: String,
}

impl WorkerServer {
    /// A server for `node`, recording into `metrics`.
    pub fn new(node: NodeHandle, metrics: Metrics) -> Self {
        Self {
            node,
            metrics,
            task_log_url: String::new(),
        }
    }

    /// Tells registering workers to store attempts' logs below `url`.
    pub fn with_task_log_url(mut self, url: String) -> Self {
        self.task_log_url = url;
        self
    }

    /// Counts and times one answered rpc; `rejected` tells a fenced-off
    /// report from an accepted one.
    fn record<T>(
        &self,
        rpc: WorkerRpc,
        started: Instant,
        result: &Result<Response<T>, Status>,
        rejected: impl FnOnce(&T) -> bool,
    ) {
        let outcome = match result {
            Ok(response) if rejected(response.get_ref()) => RpcOutcome::Rejected,
            Ok(_) => RpcOutcome::Ok,
            Err(_) => RpcOutcome::Error,
        };
        self.metrics.observe_rpc(rpc, outcome, started.elapsed());
    }

    async fn one(&self, command: Command) -> Result<Applied, Status> {
        let mut out = self
            .node
            .propose(vec![command])
            .await
            .map_err(node_status)?;
        out.pop().ok_or_else(|| Status::internal("no outcome"))
    }
}

/// Wire <-> domain conversions.
pub mod convert {
    use drover_proto::v1::{
        CompleteResponse, CompleteResult, FailResponse, FailResult, HeartbeatStatus as WireStatus,
        LeasedTask, OutputManifest, TaskHeartbeatResult, UpstreamOutput,
    };
    use tonic::Status;

    use crate::state::types::OutputFile;
    use crate::state::{Grant, HeartbeatStatus, Manifest, TaskKey};

    pub use drover_proto::names::{task_kind_name as kind_name, task_kind_named as kind_of};

    /// A grant as sent to the worker, with its job's trace and the
    /// outputs of the tasks it reads.
    pub fn leased(g: Grant) -> LeasedTask {
        let (upstream_outputs, upstream_outputs_truncated) = match g.upstream {
            Some(up) => (up.into_iter().map(upstream).collect(), false),
            None => (Vec::new(), true),
        };
        LeasedTask {
            task_id: g.task.to_string(),
            job_id: g.task.job.to_string(),
            namespace: g.namespace.clone(),
            template: g.template.clone(),
            kind: kind_of(&g.kind) as i32,
            partition_index: g.task.partition,
            partition_key: g.partition_key.clone(),
            config_json: g.config_json.clone(),
            attempt: g.attempt,
            fencing_token: g.token,
            lease_deadline_unix_ms: g.lease_deadline_ms,
            timeout_ms: g.timeout_ms as i64,
            output_prefix: g.output_prefix,
            trace_parent: g.trace_parent.unwrap_or_default(),
            upstream_outputs,
            upstream_outputs_truncated,
            ..LeasedTask::default()
        }
    }

    /// An upstream output as sent to the worker.
    pub fn upstream(u: crate::state::job::UpstreamOutput) -> UpstreamOutput {
        UpstreamOutput {
            template: u.template,
            partition_index: u.partition_index,
            partition_key: u.partition_key,
            output_prefix: u.prefix,
        }
    }

    /// Parses a task id.
    pub fn task(id: &str) -> Result<TaskKey, Status> {
        id.parse::<TaskKey>()
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    /// A manifest from the wire.
    pub fn manifest(m: Option<OutputManifest>) -> Manifest {
        let Some(m) = m else {
            return Manifest::default();
        };
        Manifest {
            prefix: m.output_prefix,
            files: m
                .files
                .into_iter()
                .map(|f| OutputFile {
                    path: f.path,
                    rows: f.rows,
                    bytes: f.bytes,
                    sha256: f.sha256,
                })
                .collect(),
            schema_json: m.schema_json,
            code_version: m.code_version,
            input_fingerprint: m.input_fingerprint,
        }
    }

    /// A batch item answered as Complete would have.
    pub fn complete_result(r: CompleteResponse) -> CompleteResult {
        CompleteResult {
            accepted: r.accepted,
            reason: r.reason,
            duplicate: r.duplicate,
            ..CompleteResult::default()
        }
    }

    /// A batch item that Complete would have failed with `status`.
    pub fn complete_error(status: &Status) -> CompleteResult {
        CompleteResult {
            error_code: status.code() as i32,
            error_message: status.message().to_owned(),
            ..CompleteResult::default()
        }
    }

    /// A batch failure answered as Fail would have.
    pub fn fail_result(r: FailResponse) -> FailResult {
        FailResult {
            accepted: r.accepted,
            reason: r.reason,
            will_retry: r.will_retry,
            retry_at_unix_ms: r.retry_at_unix_ms,
            ..FailResult::default()
        }
    }

    /// A batch failure that Fail would have failed with `status`.
    pub fn fail_error(status: &Status) -> FailResult {
        FailResult {
            error_code: status.code() as i32,
            error_message: status.message().to_owned(),
            ..FailResult::default()
        }
    }

    /// One heartbeat result.
    pub fn heartbeat(task: TaskKey, token: u64, status: HeartbeatStatus) -> TaskHeartbeatResult {
        let (wire, deadline) = match status {
            HeartbeatStatus::Ok { lease_deadline_ms } => (WireStatus::Ok, lease_deadline_ms),
            HeartbeatStatus::LeaseLost => (WireStatus::LeaseLost, 0),
            HeartbeatStatus::JobCancelled => (WireStatus::JobCancelled, 0),
        };
        TaskHeartbeatResult {
            task_id: task.to_string(),
            fencing_token: token,
            status: wire as i32,
            lease_deadline_unix_ms: deadline,
        }
    }
}

/// The command for one completion. (The state machine checks that its
/// manifest lies under the attempt's own prefix.)
fn complete_command(r: CompleteRequest) -> Result<Command, Status> {
    let task = convert::task(&r.task_id)?;
    Ok(Command::Complete {
        worker: r.worker_id,
        task,
        token: r.fencing_token,
        manifest: convert::manifest(r.manifest),
        skipped: r.reused_prior_output,
    })
}

/// What Complete answers for a completion's applied outcome.
fn complete_answer(out: Applied) -> Result<CompleteResponse, Status> {
    match out {
        Ok(Outcome::Completed { duplicate }) => Ok(CompleteResponse {
            accepted: true,
            duplicate,
            ..CompleteResponse::default()
        }),
        Err(Rejection::LeaseLost { reason, .. }) => Ok(CompleteResponse {
            accepted: false,
            reason: lost_reason(&reason) as i32,
            duplicate: false,
        }),
        Ok(other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        Err(e) => Err(rejection(e)),
    }
}

/// The command for one failure report.
fn fail_command(r: FailRequest) -> Result<Command, Status> {
    Ok(Command::Fail {
        worker: r.worker_id,
        task: convert::task(&r.task_id)?,
        token: r.fencing_token,
        retryable: r.retryable,
        message: r.message,
    })
}

/// What Fail answers for a failure's applied outcome.
fn fail_answer(out: Applied) -> Result<FailResponse, Status> {
    match out {
        Ok(Outcome::FailRecorded { retry_at_ms }) => Ok(FailResponse {
            accepted: true,
            will_retry: retry_at_ms.is_some(),
            retry_at_unix_ms: retry_at_ms.unwrap_or(0),
            ..FailResponse::default()
        }),
        Err(Rejection::LeaseLost { reason, .. }) => Ok(FailResponse {
            accepted: false,
            reason: lost_reason(&reason) as i32,
            ..FailResponse::default()
        }),
        Ok(other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        Err(e) => Err(rejection(e)),
    }
}

/// The status a refused worker request gets (NOT_FOUND for an unknown
/// worker or an ended session, so the worker registers again).
fn rejection(r: Rejection) -> Status {
    super::rejection_status(r)
}

impl WorkerServer {
    async fn register_inner(
        &self,
        r: RegisterRequest,
    ) -> Result<Response<RegisterResponse>, Status> {
        let kinds = r
            .supported_kinds()
            .filter_map(convert::kind_name)
            .map(str::to_owned)
            .collect();
        match self
            .one(Command::RegisterWorker {
                worker: r.worker_id,
                slots: r.slots,
                labels: r.labels.into_iter().collect(),
                kinds,
            })
            .await?
        {
            Ok(Outcome::Registered {
                epoch,
                lease_ttl_ms,
                heartbeat_interval_ms,
            }) => Ok(Response::new(RegisterResponse {
                session_epoch: epoch,
                lease_ttl_ms: lease_ttl_ms as i64,
                heartbeat_interval_ms: heartbeat_interval_ms as i64,
                max_lease_batch: crate::state::LEASE_BATCH_MAX,
                max_lease_wait_ms: LEASE_WAIT_MAX.as_millis() as i64,
                task_log_url: self.task_log_url.clone(),
            })),
            Ok(other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
            Err(r) => Err(rejection(r)),
        }
    }

    async fn lease_inner(&self, r: LeaseRequest) -> Result<Response<LeaseResponse>, Status> {
        let wait = Duration::from_millis(r.wait_ms.max(0) as u64).min(LEASE_WAIT_MAX);
        let deadline = tokio::time::Instant::now() + wait;
        let mut leasable = self.node.watch_leasable();
        loop {
            // Propose only when something is leasable, so idle workers
            // waiting cost no log entries; they sleep until the state has
            // a ready task (or the wait ends).
            let has_work = *leasable.borrow_and_update();
            let at_deadline = tokio::time::Instant::now() >= deadline;
            if !has_work && !at_deadline {
                // A closed channel means the node stopped; the proposal
                // below then reports it.
                let _ = tokio::time::timeout_at(deadline, leasable.changed()).await;
                continue;
            }
            let out = self
                .one(Command::LeaseInSession {
                    worker: r.worker_id.clone(),
                    epoch: r.session_epoch,
                    max_tasks: r.max_tasks,
                })
                .await?;
            let mut grants = match out {
                Ok(Outcome::Leased(grants)) => grants,
                Ok(Outcome::Draining) => {
                    return Ok(Response::new(LeaseResponse {
                        tasks: Vec::new(),
                        drain_requested: true,
                    }));
                }
                Ok(other) => {
                    return Err(Status::internal(format!("unexpected outcome {other:?}")));
                }
                Err(e) => return Err(rejection(e)),
            };
            if !grants.is_empty() || tokio::time::Instant::now() >= deadline {
                tracing::Span::current().record("granted", grants.len());
                if drover_proto::spans::exporting() {
                    lease_spans(&mut grants, &r.worker_id);
                }
                for g in &grants {
                    tracing::debug!(
                        job_id = %g.task.job,
                        task_id = %g.task,
                        attempt = g.attempt,
                        trace_id = %g
                            .trace_parent
                            .as_deref()
                            .and_then(drover_proto::trace::trace_id_of)
                            .unwrap_or_default(),
                        "task leased"
                    );
                }
                // Everything the worker needs came from the apply that
                // granted the tasks: no second trip to the Raft thread.
                return Ok(Response::new(LeaseResponse {
                    tasks: grants.into_iter().map(convert::leased).collect(),
                    drain_requested: false,
                }));
            }
            // Nothing granted although tasks were ready: other workers
            // took them, or they are not for this one (another kind,
            // labels, a job at its parallelism limit). Look again when the
            // ready set changes, or shortly in the second case, where it
            // may not.
            let again = deadline.min(tokio::time::Instant::now() + LEASE_POLL);
            let _ = tokio::time::timeout_at(again, leasable.changed()).await;
        }
    }

    /// Answered by the leader without a log entry: the leases named run
    /// on its timers ([`crate::raft::lease_timers`]).
    async fn heartbeat_inner(
        &self,
        r: HeartbeatRequest,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let mut tasks = Vec::with_capacity(r.tasks.len());
        for t in &r.tasks {
            tasks.push(crate::state::TaskProgress {
                task: convert::task(&t.task_id)?,
                token: t.fencing_token,
                progress_permille: (t.progress_fraction.clamp(0.0, 1.0) * 1000.0) as u16,
            });
        }
        let reply = self
            .node
            .heartbeat(r.worker_id, r.session_epoch, tasks)
            .await
            .map_err(node_status)?
            .map_err(rejection)?;
        Ok(Response::new(HeartbeatResponse {
            tasks: reply
                .tasks
                .iter()
                .zip(&r.tasks)
                .map(|((key, status), t)| convert::heartbeat(*key, t.fencing_token, *status))
                .collect(),
            drain_requested: reply.drain,
            heartbeat_interval_ms: reply.heartbeat_interval_ms as i64,
        }))
    }

    async fn complete_inner(
        &self,
        r: CompleteRequest,
    ) -> Result<Response<CompleteResponse>, Status> {
        let command = complete_command(r)?;
        if let Command::Complete { task, .. } = &command {
            tracing::Span::current().record("job_id", tracing::field::display(task.job));
        }
        complete_answer(self.one(command).await?).map(Response::new)
    }

    /// Proposes every well-formed report of the batch together (one log
    /// entry, completions first), and answers each in order.
    async fn complete_batch_inner(
        &self,
        r: CompleteBatchRequest,
    ) -> Result<Response<CompleteBatchResponse>, Status> {
        let reports = r.completions.len() + r.failures.len();
        if reports > crate::state::LEASE_BATCH_MAX as usize {
            return Err(Status::resource_exhausted(format!(
                "{reports} reports in one call; at most {} (max_lease_batch)",
                crate::state::LEASE_BATCH_MAX
            )));
        }
        // Reports that fail before the state machine are answered in place;
        // the rest are proposed together and answered from their outcomes.
        let mut commands = Vec::with_capacity(reports);
        let completions: Vec<(String, Option<Status>, tracing::Span)> = r
            .completions
            .into_iter()
            .map(|c| {
                let id = c.task_id.clone();
                let span = report_span("complete_task", &id, c.fencing_token, &c.trace_parent);
                match complete_command(c) {
                    Ok(command) => {
                        commands.push(command);
                        (id, None, span)
                    }
                    Err(status) => (id, Some(status), span),
                }
            })
            .collect();
        let failures: Vec<(String, Option<Status>, tracing::Span)> = r
            .failures
            .into_iter()
            .map(|f| {
                let id = f.task_id.clone();
                let span = report_span("fail_task", &id, f.fencing_token, &f.trace_parent);
                match fail_command(f) {
                    Ok(command) => {
                        commands.push(command);
                        (id, None, span)
                    }
                    Err(status) => (id, Some(status), span),
                }
            })
            .collect();
        let mut applied = if commands.is_empty() {
            Vec::new()
        } else {
            self.node.propose(commands).await.map_err(node_status)?
        }
        .into_iter();
        let mut next = || applied.next().ok_or_else(|| Status::internal("no outcome"));
        let results = completions
            .into_iter()
            .map(|(task_id, refused, span)| {
                let answer = match refused {
                    Some(status) => Err(status),
                    None => next().and_then(complete_answer),
                };
                let mut result = match answer {
                    Ok(a) => convert::complete_result(a),
                    Err(status) => convert::complete_error(&status),
                };
                span.record("accepted", result.accepted);
                result.task_id = task_id;
                result
            })
            .collect();
        let failure_results = failures
            .into_iter()
            .map(|(task_id, refused, span)| {
                let answer = match refused {
                    Some(status) => Err(status),
                    None => next().and_then(fail_answer),
                };
                let mut result = match answer {
                    Ok(a) => convert::fail_result(a),
                    Err(status) => convert::fail_error(&status),
                };
                span.record("accepted", result.accepted);
                result.task_id = task_id;
                result
            })
            .collect();
        Ok(Response::new(CompleteBatchResponse {
            results,
            failure_results,
        }))
    }

    async fn fail_inner(&self, r: FailRequest) -> Result<Response<FailResponse>, Status> {
        let command = fail_command(r)?;
        if let Command::Fail { task, .. } = &command {
            tracing::Span::current().record("job_id", tracing::field::display(task.job));
        }
        fail_answer(self.one(command).await?).map(Response::new)
    }

    async fn release_inner(&self, r: ReleaseRequest) -> Result<Response<ReleaseResponse>, Status> {
        let mut tasks = Vec::with_capacity(r.tasks.len());
        for t in &r.tasks {
            tasks.push((convert::task(&t.task_id)?, t.fencing_token));
        }
        let keys: Vec<TaskKey> = tasks.iter().map(|(k, _)| *k).collect();
        let out = self
            .one(Command::Release {
                worker: r.worker_id.clone(),
                tasks,
            })
            .await?;
        let not_held = match out {
            Ok(Outcome::Released { not_held, .. }) => not_held,
            Ok(other) => return Err(Status::internal(format!("unexpected outcome {other:?}"))),
            Err(e) => return Err(rejection(e)),
        };
        if r.worker_exiting {
            // Leaving for good: forget the worker (any task it still held
            // is released too).
            let _ = self
                .one(Command::DeregisterWorker {
                    worker: r.worker_id,
                })
                .await?;
        }
        Ok(Response::new(ReleaseResponse {
            results: keys
                .into_iter()
                .map(|k| ReleaseResult {
                    task_id: k.to_string(),
                    status: if not_held.contains(&k) {
                        ReleaseStatus::NotHeld
                    } else {
                        ReleaseStatus::Released
                    } as i32,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerServer {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let span = tracing::info_span!("register", worker_id = %r.worker_id);
        let result = self.register_inner(r).instrument(span).await;
        self.record(WorkerRpc::Register, started, &result, |_| false);
        result
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let span = tracing::info_span!("lease", worker_id = %r.worker_id, granted = Empty);
        let result = self.lease_inner(r).instrument(span).await;
        self.record(WorkerRpc::Lease, started, &result, |_| false);
        if let Ok(response) = &result {
            self.metrics
                .observe_lease_grants(response.get_ref().tasks.len());
        }
        result
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let span =
            tracing::info_span!("heartbeat", worker_id = %r.worker_id, tasks = r.tasks.len());
        let result = self.heartbeat_inner(r).instrument(span).await;
        self.record(WorkerRpc::Heartbeat, started, &result, |_| false);
        result
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        let started = Instant::now();
        let trace_id = request_trace_id(request.metadata());
        let r = request.into_inner();
        let span = tracing::info_span!(
            "complete",
            worker_id = %r.worker_id,
            task_id = %r.task_id,
            job_id = Empty,
            token = r.fencing_token,
            trace_id = %trace_id,
        );
        if drover_proto::spans::exporting() {
            drover_proto::spans::set_parent(&span, &r.trace_parent);
        }
        let result = self.complete_inner(r).instrument(span).await;
        self.record(WorkerRpc::Complete, started, &result, |c| !c.accepted);
        result
    }

    async fn complete_batch(
        &self,
        request: Request<CompleteBatchRequest>,
    ) -> Result<Response<CompleteBatchResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let span = tracing::info_span!(
            "complete_batch",
            completions = r.completions.len(),
            failures = r.failures.len()
        );
        let result = self.complete_batch_inner(r).instrument(span).await;
        self.record(WorkerRpc::CompleteBatch, started, &result, |c| {
            c.results.iter().any(|r| !r.accepted) || c.failure_results.iter().any(|r| !r.accepted)
        });
        result
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<FailResponse>, Status> {
        let started = Instant::now();
        let trace_id = request_trace_id(request.metadata());
        let r = request.into_inner();
        let span = tracing::info_span!(
            "fail",
            worker_id = %r.worker_id,
            task_id = %r.task_id,
            job_id = Empty,
            token = r.fencing_token,
            trace_id = %trace_id,
        );
        if drover_proto::spans::exporting() {
            drover_proto::spans::set_parent(&span, &r.trace_parent);
        }
        let result = self.fail_inner(r).instrument(span).await;
        self.record(WorkerRpc::Fail, started, &result, |f| !f.accepted);
        result
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let span = tracing::info_span!("release", worker_id = %r.worker_id, tasks = r.tasks.len());
        let result = self.release_inner(r).instrument(span).await;
        self.record(WorkerRpc::Release, started, &result, |_| false);
        result
    }
}

/// One span per granted task in its job's trace, the parent of the
/// attempt: the worker gets the span's `traceparent` with the task.
fn lease_spans(grants: &mut [crate::state::Grant], worker_id: &str) {
    for g in grants {
        let Some(job_trace) = g.trace_parent.as_deref() else {
            continue;
        };
        let span = tracing::info_span!(
            "lease_task",
            task_id = %g.task,
            worker_id = %worker_id,
            attempt = g.attempt,
            token = g.token,
        );
        drover_proto::spans::set_parent(&span, job_trace);
        if let Some(own) = drover_proto::spans::traceparent_of(&span) {
            g.trace_parent = Some(own);
        }
    }
}

/// A span for one report in a job's trace, under the attempt's span the
/// worker named (`trace_parent`), when spans are exported.
fn report_span(kind: &'static str, task_id: &str, token: u64, trace_parent: &str) -> tracing::Span {
    if !drover_proto::spans::exporting() || trace_parent.is_empty() {
        return tracing::Span::none();
    }
    let span = match kind {
        "fail_task" => {
            tracing::info_span!("fail_task", task_id = %task_id, token = token, accepted = Empty)
        }
        _ => {
            tracing::info_span!("complete_task", task_id = %task_id, token = token, accepted = Empty)
        }
    };
    drover_proto::spans::set_parent(&span, trace_parent);
    span
}

/// The trace id of a report's `traceparent` metadata (the job's trace,
/// which workers send back), or empty.
fn request_trace_id(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(drover_proto::TRACEPARENT_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(drover_proto::trace::trace_id_of)
        .unwrap_or_default()
}

fn lost_reason(reason: &str) -> RejectReason {
    if reason.contains("cancelled") {
        RejectReason::JobCancelled
    } else {
        RejectReason::LeaseLost
    }
}
