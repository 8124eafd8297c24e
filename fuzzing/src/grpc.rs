//! The gRPC requests target: any bytes as a run of requests to the
//! coordinator's `JobService`, `WorkerService` and `AdminService`, handed to
//! the real service implementations of a real single-node coordinator
//! (raft-engine log, sled state, driver thread), which must answer each
//! one, keep its state sound, and keep serving.
//!
//! # Input
//!
//! A run of requests, each a selector byte, a little-endian `u16` length
//! and that many bytes of body. The selector's low seven bits pick the rpc
//! (modulo [`Rpc::ALL`]); with its high bit set the body starts with one
//! length byte and that many bytes of `traceparent` metadata. The rest of
//! the body is decoded with prost as the rpc's request message. A body that
//! does not decode is skipped: tonic answers it with its own INTERNAL
//! before any Drover code runs. At most [`REQUESTS_MAX`] requests are sent.
//!
//! # Why a fresh node per input
//!
//! Each input gets a new coordinator in a new data directory, so it is a
//! whole coordinator life: the same bytes give the same job ids, fencing
//! tokens and answers on every run (only clock readings and API token
//! secrets, drawn from the OS, differ), what an
//! input covers does not depend on what ran before it, a crash reproduces
//! from its input alone, and the seeds' ids (`j1`, token 1) mean something
//! (see the id rewrite below). It also lets
//! the check restart the node from its directory and compare the state. The
//! directory lives in `/dev/shm` when there is one, so the log's fsyncs
//! cost what a memory write costs: the code path is the real one.
//!
//! # What the harness changes
//!
//! - `Lease.wait_ms` is cut to at most 0, so an idle lease never long-polls
//!   (a timer, not input handling).
//! - `WatchJob` streams are read for their first message only, then
//!   dropped; the server's poller ends when it sees the client gone.
//! - The node proposes no state machine `Tick` of its own (they are due
//!   every second of wall time, so they would land in some runs and not
//!   others); expiry and schedules are left to the state machine targets.
//! - Raft ticks every [`TICK_MS`], so its timers fire within an input.
//! - Job ids are UUIDs drawn from the time, so no input can name one
//!   ahead: an id written `j<N>` (`s<N>` for a schedule) in a request,
//!   alone, at the start of a task id or after `jobs/` in an output
//!   prefix, is rewritten to the id of the N-th job (schedule) this node
//!   created in the input ([`SeedIds`]).

use std::path::Path;
use std::time::{Duration, Instant};

use drover_coordinator::backup::Backup;
use drover_coordinator::metrics::Metrics;
use drover_coordinator::raft::node::{self, NodeConfig, NodeError, NodeHandle, Transport};
use drover_coordinator::service::admin::AdminServer;
use drover_coordinator::service::job::JobServer;
use drover_coordinator::service::worker::WorkerServer;
use drover_coordinator::state::StateMachine;
use drover_proto::TRACEPARENT_METADATA_KEY;
use drover_proto::v1::admin_service_server::AdminService;
use drover_proto::v1::job_service_server::JobService;
use drover_proto::v1::worker_service_server::WorkerService;
use drover_proto::v1::{
    AddNodeRequest, BackupRequest, CancelJobRequest, ClusterStatusRequest, CompleteBatchRequest,
    CompleteRequest, DrainWorkerRequest, ExplainTaskRequest, FailRequest, GetJobRequest,
    GetTaskLogRequest, GetTaskOutputRequest, HeartbeatRequest, JobEventsRequest, LeaseRequest,
    ListJobsRequest, ListTasksRequest, ListWorkersRequest, PlanJobRequest, RegisterRequest,
    ReleaseRequest, RemoveNodeRequest, RetryJobRequest, StateDigestRequest, SubmitJobRequest,
    TransferLeaderRequest, UpdateSettingsRequest, WatchJobRequest,
};
use drover_proto::v1::{BindCertificateRequest, ListCertificateBindingsRequest};
use drover_proto::v1::{
    BootstrapTokenRequest, CreateTokenRequest, ListNamespacePoliciesRequest, ListTokensRequest,
    RevokeTokenRequest, SetNamespacePolicyRequest, WhoAmIRequest,
};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Requests one input sends at most, so one input stays quick.
pub const REQUESTS_MAX: usize = 32;

/// Longest any one rpc may take. The services bound their own waits to
/// 10 s (reads, membership changes) or 60 s (proposals); a single healthy
/// node answers in milliseconds, so reaching this is a hang.
const RPC_WAIT: Duration = Duration::from_secs(30);

/// Longest the node may take to start, elect itself or catch up.
const NODE_WAIT: Duration = Duration::from_secs(10);

/// The node's Raft tick, 20 times shorter than a real node's, so that what
/// Raft's timers do (a learner's promotion, the leader's quorum check)
/// happens within an input.
const TICK_MS: u64 = 5;

/// The node's Raft id and address (no one dials it).
const NODE_ID: u64 = 1;
const NODE_ADDRESS: &str = "fuzz.invalid:7070";

/// The rpcs a selector byte picks from, in the order of the `.proto` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `JobService.SubmitJob`.
    SubmitJob,
    /// `JobService.PlanJob`.
    PlanJob,
    /// `JobService.GetJob`.
    GetJob,
    /// `JobService.ListJobs`.
    ListJobs,
    /// `JobService.WatchJob` (first message only).
    WatchJob,
    /// `JobService.CancelJob`.
    CancelJob,
    /// `JobService.RetryJob`.
    RetryJob,
    /// `JobService.JobEvents`.
    JobEvents,
    /// `JobService.ListTasks`.
    ListTasks,
    /// `JobService.ExplainTask`.
    ExplainTask,
    /// `JobService.GetTaskOutput`.
    GetTaskOutput,
    /// `JobService.GetTaskLog` (the node keeps no task logs).
    GetTaskLog,
    /// `WorkerService.Register`.
    Register,
    /// `WorkerService.Lease` (never long-polls).
    Lease,
    /// `WorkerService.Heartbeat`.
    Heartbeat,
    /// `WorkerService.Complete`.
    Complete,
    /// `WorkerService.CompleteBatch`.
    CompleteBatch,
    /// `WorkerService.Fail`.
    Fail,
    /// `WorkerService.Release`.
    Release,
    /// `AdminService.ClusterStatus`.
    ClusterStatus,
    /// `AdminService.AddNode` (the new member is never reachable).
    AddNode,
    /// `AdminService.RemoveNode`.
    RemoveNode,
    /// `AdminService.TransferLeader`.
    TransferLeader,
    /// `AdminService.DrainWorker`.
    DrainWorker,
    /// `AdminService.ListWorkers`.
    ListWorkers,
    /// `AdminService.UpdateSettings`.
    UpdateSettings,
    /// `AdminService.StateDigest`.
    StateDigest,
    /// `AdminService.Backup` (the whole stream is read and verified).
    Backup,
    /// `AdminService.CreateToken`.
    CreateToken,
    /// `AdminService.ListTokens`.
    ListTokens,
    /// `AdminService.RevokeToken`.
    RevokeToken,
    /// `AdminService.BootstrapToken`.
    BootstrapToken,
    /// `AdminService.WhoAmI`.
    WhoAmI,
    /// `AdminService.SetNamespacePolicy`.
    SetNamespacePolicy,
    /// `AdminService.ListNamespacePolicies`.
    ListNamespacePolicies,
    /// `AdminService.BindCertificate`.
    BindCertificate,
    /// `AdminService.ListCertificateBindings`.
    ListCertificateBindings,
}

impl Rpc {
    /// Every rpc, indexed by the selector byte's low bits. New rpcs go at
    /// the end, so the corpus's selectors keep their meaning.
    pub const ALL: [Rpc; 37] = [
        Rpc::SubmitJob,
        Rpc::PlanJob,
        Rpc::GetJob,
        Rpc::ListJobs,
        Rpc::WatchJob,
        Rpc::CancelJob,
        Rpc::RetryJob,
        Rpc::JobEvents,
        Rpc::ListTasks,
        Rpc::ExplainTask,
        Rpc::GetTaskOutput,
        Rpc::GetTaskLog,
        Rpc::Register,
        Rpc::Lease,
        Rpc::Heartbeat,
        Rpc::Complete,
        Rpc::CompleteBatch,
        Rpc::Fail,
        Rpc::Release,
        Rpc::ClusterStatus,
        Rpc::AddNode,
        Rpc::RemoveNode,
        Rpc::TransferLeader,
        Rpc::DrainWorker,
        Rpc::ListWorkers,
        Rpc::UpdateSettings,
        Rpc::StateDigest,
        Rpc::Backup,
        Rpc::CreateToken,
        Rpc::ListTokens,
        Rpc::RevokeToken,
        Rpc::BootstrapToken,
        Rpc::WhoAmI,
        Rpc::SetNamespacePolicy,
        Rpc::ListNamespacePolicies,
        Rpc::BindCertificate,
        Rpc::ListCertificateBindings,
    ];

    fn from_selector(selector: u8) -> Rpc {
        Rpc::ALL[usize::from(selector & 0x7f) % Rpc::ALL.len()]
    }

    fn selector(self) -> u8 {
        Rpc::ALL.iter().position(|r| *r == self).unwrap_or(0) as u8
    }
}

/// One request of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The rpc.
    pub rpc: Rpc,
    /// The `traceparent` metadata value, if sent.
    pub traceparent: Option<Vec<u8>>,
    /// The encoded request message.
    pub body: Vec<u8>,
}

impl Call {
    /// A call of `rpc` with `message`, without metadata.
    pub fn new(rpc: Rpc, message: &impl Message) -> Self {
        Self {
            rpc,
            traceparent: None,
            body: message.encode_to_vec(),
        }
    }

    /// The same call with a `traceparent`.
    pub fn traced(mut self, traceparent: &str) -> Self {
        self.traceparent = Some(traceparent.as_bytes().to_vec());
        self
    }
}

/// Encodes calls the way [`grpc_requests`] reads them, for seeds. Bodies
/// longer than a `u16` are cut, as the reader would.
pub fn encode_calls(calls: &[Call]) -> Vec<u8> {
    let mut out = Vec::new();
    for call in calls {
        let mut body = Vec::new();
        let mut selector = call.rpc.selector();
        if let Some(trace) = &call.traceparent {
            selector |= 0x80;
            let len = trace.len().min(usize::from(u8::MAX));
            body.push(len as u8);
            body.extend_from_slice(&trace[..len]);
        }
        body.extend_from_slice(&call.body);
        body.truncate(usize::from(u16::MAX));
        out.push(selector);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// Splits an input into calls, at most [`REQUESTS_MAX`].
pub fn decode_calls(data: &[u8]) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut rest = data;
    while calls.len() < REQUESTS_MAX {
        let Some((&selector, tail)) = rest.split_first() else {
            break;
        };
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (mut body, tail) = tail.split_at(len);
        rest = tail;
        let traceparent = if selector & 0x80 != 0 {
            let Some((&n, after)) = body.split_first() else {
                continue;
            };
            let (trace, after) = after.split_at(usize::from(n).min(after.len()));
            body = after;
            Some(trace.to_vec())
        } else {
            None
        };
        calls.push(Call {
            rpc: Rpc::from_selector(selector),
            traceparent,
            body: body.to_vec(),
        });
    }
    calls
}

/// What one call came to: the rpc and its status code (`Ok` for an
/// answer), or `None` when its body did not decode.
pub type Answer = (Rpc, Option<Code>);

/// The gRPC requests target: every call that decodes goes to the service
/// of a fresh single-node coordinator. No rpc may panic, hang, or answer
/// INTERNAL or UNKNOWN (common.proto: "a bug in Drover; never expected"),
/// nor UNAVAILABLE or DEADLINE_EXCEEDED (nothing can take a lone node's
/// leadership or keep it from committing). Each answer keeps the promises
/// its `.proto` makes about its shape. Afterwards the node still serves,
/// its state keeps every invariant and survives a snapshot round trip,
/// and a restart from its data directory brings back the same state.
pub fn grpc_requests(data: &[u8]) {
    run(data);
}

/// [`grpc_requests`], returning what each call came to (for tests that
/// check the seeds reach as far as they mean to).
pub fn run(data: &[u8]) -> Vec<Answer> {
    let calls = decode_calls(data);
    if calls.is_empty() {
        return Vec::new();
    }
    let dir = scratch_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let node = Node::start(dir.path());
    let (answers, state) = runtime.block_on(async {
        node.await_leader().await;
        let mut answers = Vec::with_capacity(calls.len());
        for call in &calls {
            let code = tokio::time::timeout(RPC_WAIT, node.call(call))
                .await
                .unwrap_or_else(|_| panic!("{:?} took longer than {RPC_WAIT:?}", call.rpc));
            answers.push((call.rpc, code));
        }
        node.probe().await;
        let state = node.check_state().await;
        (answers, state)
    });
    node.stop();

    // The restarted node must come back to the same state: sled's copy plus
    // the log replayed after it.
    let node = Node::start(dir.path());
    runtime.block_on(async {
        node.await_applied(state.applied_index).await;
        let again = node.check_state().await;
        assert!(
            again.snapshot == state.snapshot,
            "the state differs after a restart (index {} before, {} after)",
            state.applied_index,
            again.applied_index
        );
    });
    node.stop();
    answers
}

/// A data directory for one input, in memory when the system has a tmpfs.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let in_memory = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("drover-fuzz-")
            .tempdir_in(shm)
            .ok()
    } else {
        None
    };
    in_memory.unwrap_or_else(|| {
        tempfile::Builder::new()
            .prefix("drover-fuzz-")
            .tempdir()
            .expect("a temporary directory")
    })
}

/// The transport of a node with no reachable peers: a member added by
/// AddNode is never heard from, as when its address is wrong.
struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, _messages: Vec<raft::prelude::Message>) {}
    fn set_peer(&self, _id: u64, _address: Option<String>) {}
}

/// The state as the node holds it, at the index it reflects.
struct State {
    /// The state machine's snapshot encoding.
    snapshot: Vec<u8>,
    /// The log index it reflects.
    applied_index: u64,
}

/// One running node and the three services over it.
struct Node {
    /// The node's handle, for waits and reads.
    node: NodeHandle,
    /// The driver thread, joined on stop.
    thread: std::thread::JoinHandle<()>,
    /// `JobService`.
    jobs: JobServer,
    /// `WorkerService`.
    workers: WorkerServer,
    /// `AdminService`.
    admin: AdminServer,
    /// Ids this node created, in order, for the seeds' `j<N>` names.
    ids: std::sync::Mutex<Ids>,
}

/// The jobs and schedules created so far, in order.
#[derive(Debug, Default)]
struct Ids {
    jobs: Vec<String>,
    schedules: Vec<String>,
}

impl Ids {
    /// `text` with a leading `j<N>` or `s<N>` (alone or before `/`)
    /// replaced by the N-th id of its kind, when there is one.
    fn rewrite(&self, text: &str) -> String {
        let (head, rest) = match text.split_once('/') {
            Some((head, rest)) => (head, Some(rest)),
            None => (text, None),
        };
        let named = |letter: char, list: &[String]| {
            let n: usize = head.strip_prefix(letter)?.parse().ok()?;
            list.get(n.checked_sub(1)?).cloned()
        };
        match named('j', &self.jobs).or_else(|| named('s', &self.schedules)) {
            Some(id) => match rest {
                Some(rest) => format!("{id}/{rest}"),
                None => id,
            },
            None => text.to_owned(),
        }
    }

    /// An output prefix `jobs/j<N>/...` with its job rewritten.
    fn rewrite_prefix(&self, prefix: &str) -> String {
        match prefix.strip_prefix("jobs/") {
            Some(rest) => format!("jobs/{}", self.rewrite(rest)),
            None => prefix.to_owned(),
        }
    }
}

/// Requests whose ids the harness rewrites ([`Ids::rewrite`]); the rest
/// carry none.
trait SeedIds {
    fn seed_ids(&mut self, _ids: &Ids) {}
}

macro_rules! no_ids {
    ($($message:ty),* $(,)?) => {
        $(impl SeedIds for $message {})*
    };
}

no_ids!(
    SubmitJobRequest,
    PlanJobRequest,
    RegisterRequest,
    LeaseRequest,
    ClusterStatusRequest,
    AddNodeRequest,
    RemoveNodeRequest,
    TransferLeaderRequest,
    DrainWorkerRequest,
    ListWorkersRequest,
    UpdateSettingsRequest,
    StateDigestRequest,
    BackupRequest,
    BindCertificateRequest,
    BootstrapTokenRequest,
    CreateTokenRequest,
    ListCertificateBindingsRequest,
    ListNamespacePoliciesRequest,
    ListTokensRequest,
    RevokeTokenRequest,
    SetNamespacePolicyRequest,
    WhoAmIRequest,
);

macro_rules! job_id_field {
    ($($message:ty => $field:ident),* $(,)?) => {
        $(impl SeedIds for $message {
            fn seed_ids(&mut self, ids: &Ids) {
                self.$field = ids.rewrite(&self.$field);
            }
        })*
    };
}

job_id_field!(
    GetJobRequest => job_id,
    WatchJobRequest => job_id,
    CancelJobRequest => job_id,
    RetryJobRequest => job_id,
    ListJobsRequest => parent_job_id,
    ExplainTaskRequest => task_id,
    GetTaskOutputRequest => task_id,
    GetTaskLogRequest => task_id,
);

impl SeedIds for JobEventsRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        self.job_id = ids.rewrite(&self.job_id);
        self.task_id = ids.rewrite(&self.task_id);
    }
}

impl SeedIds for ListTasksRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        self.job_id = ids.rewrite(&self.job_id);
    }
}

impl SeedIds for CompleteRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        self.task_id = ids.rewrite(&self.task_id);
        if let Some(m) = &mut self.manifest {
            m.output_prefix = ids.rewrite_prefix(&m.output_prefix);
        }
    }
}

impl SeedIds for FailRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        self.task_id = ids.rewrite(&self.task_id);
    }
}

impl SeedIds for CompleteBatchRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        for c in &mut self.completions {
            c.seed_ids(ids);
        }
        for f in &mut self.failures {
            f.seed_ids(ids);
        }
    }
}

impl SeedIds for HeartbeatRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        for t in &mut self.tasks {
            t.task_id = ids.rewrite(&t.task_id);
        }
    }
}

impl SeedIds for ReleaseRequest {
    fn seed_ids(&mut self, ids: &Ids) {
        for t in &mut self.tasks {
            t.task_id = ids.rewrite(&t.task_id);
        }
    }
}

impl Node {
    fn start(dir: &Path) -> Self {
        let mut config = NodeConfig::new(NODE_ID, dir);
        config.peers.insert(NODE_ID, NODE_ADDRESS.to_owned());
        // No Tick of the node's own; see the module doc.
        config.state_tick_ms = u64::MAX;
        config.tick_ms = TICK_MS;
        // sled's background IO threads can hold the store's file lock for
        // a moment after the driver thread that closed it has ended, so a
        // restart in the same process may have to wait for them.
        let since = Instant::now();
        let (node, thread) = loop {
            match node::start(config.clone(), Box::new(NoPeers)) {
                Ok(running) => break running,
                Err(NodeError::Storage(e))
                    if e.contains("could not acquire lock") && since.elapsed() < NODE_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("a node starts in its own directory: {e}"),
            }
        };
        Self {
            jobs: JobServer::new(node.clone()),
            workers: WorkerServer::new(node.clone(), Metrics::new()),
            admin: AdminServer::new(node.clone()),
            node,
            thread,
            ids: std::sync::Mutex::new(Ids::default()),
        }
    }

    fn stop(self) {
        self.node.shutdown();
        self.thread.join().expect("the driver thread ends cleanly");
    }

    /// Waits until the node leads. Its driver turns (and so campaigns)
    /// when an event arrives or a tick is due; a read is an event.
    async fn await_leader(&self) {
        let _ = self.node.read_local(|_| ()).await;
        let mut status = self.node.watch_status();
        tokio::time::timeout(NODE_WAIT, status.wait_for(|s| s.is_leader))
            .await
            .expect("a lone node elects itself")
            .expect("the node runs");
    }

    /// Waits until the node has applied `index` (a restarted node replays
    /// its log once it turns).
    async fn await_applied(&self, index: u64) {
        let _ = self.node.read_local(|_| ()).await;
        let mut status = self.node.watch_status();
        tokio::time::timeout(NODE_WAIT, status.wait_for(|s| s.applied_index >= index))
            .await
            .unwrap_or_else(|_| panic!("a restarted node did not reach index {index}"))
            .expect("the node runs");
    }

    /// Builds the tonic request of `call` as an `M`, with the ids of the
    /// seeds' `j<N>` filled in and its `traceparent`; `None` when the body
    /// does not decode.
    fn request<M: prost::Message + Default + SeedIds>(
        &self,
        call: &Call,
    ) -> Option<tonic::Request<M>> {
        let mut message = M::decode(call.body.as_slice()).ok()?;
        if let Ok(ids) = self.ids.lock() {
            message.seed_ids(&ids);
        }
        let mut request = tonic::Request::new(message);
        if let Some(value) = call
            .traceparent
            .as_deref()
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| MetadataValue::try_from(t).ok())
        {
            request
                .metadata_mut()
                .insert(TRACEPARENT_METADATA_KEY, value);
        }
        Some(request)
    }

    /// Sends one call; `None` when its body does not decode.
    async fn call(&self, call: &Call) -> Option<Code> {
        // The variants follow the `.proto` files, service by service.
        let rpc = call.rpc as u8;
        let result = if rpc < Rpc::Register as u8 {
            self.call_jobs(call).await?
        } else if rpc < Rpc::ClusterStatus as u8 {
            self.call_workers(call).await?
        } else {
            self.call_admin(call).await?
        };
        let (code, message) = match &result {
            Ok(()) => (Code::Ok, ""),
            Err(status) => (status.code(), status.message()),
        };
        check_code(&format!("{:?}", call.rpc), code, message);
        Some(code)
    }

    /// Sends a JobService call; `None` when its body does not decode.
    async fn call_jobs(&self, call: &Call) -> Option<Result<(), Status>> {
        Some(match call.rpc {
            Rpc::SubmitJob => self
                .jobs
                .submit_job(self.request::<SubmitJobRequest>(call)?)
                .await
                .map(|answer| {
                    let answer = answer.into_inner();
                    let schedule = answer.plan.as_ref().is_some_and(|p| p.schedule.is_some());
                    if let Ok(mut ids) = self.ids.lock()
                        && answer.created
                    {
                        if schedule {
                            ids.schedules.push(answer.job_id);
                        } else {
                            ids.jobs.push(answer.job_id);
                        }
                    }
                }),
            Rpc::PlanJob => self
                .jobs
                .plan_job(self.request::<PlanJobRequest>(call)?)
                .await
                .map(drop),
            Rpc::GetJob => self
                .jobs
                .get_job(self.request::<GetJobRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListJobs => self
                .jobs
                .list_jobs(self.request::<ListJobsRequest>(call)?)
                .await
                .map(drop),
            Rpc::WatchJob => match self
                .jobs
                .watch_job(self.request::<WatchJobRequest>(call)?)
                .await
            {
                Ok(stream) => {
                    let first = stream.into_inner().next().await;
                    let Some(first) = first else {
                        panic!("WatchJob ended without a message");
                    };
                    first.map(|message| {
                        assert!(message.job.is_some(), "a WatchJob message names its job");
                    })
                }
                Err(status) => Err(status),
            },
            Rpc::CancelJob => self
                .jobs
                .cancel_job(self.request::<CancelJobRequest>(call)?)
                .await
                .map(drop),
            Rpc::RetryJob => self
                .jobs
                .retry_job(self.request::<RetryJobRequest>(call)?)
                .await
                .map(drop),
            Rpc::JobEvents => self
                .jobs
                .job_events(self.request::<JobEventsRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListTasks => self
                .jobs
                .list_tasks(self.request::<ListTasksRequest>(call)?)
                .await
                .map(drop),
            Rpc::ExplainTask => self
                .jobs
                .explain_task(self.request::<ExplainTaskRequest>(call)?)
                .await
                .map(drop),
            Rpc::GetTaskOutput => self
                .jobs
                .get_task_output(self.request::<GetTaskOutputRequest>(call)?)
                .await
                .map(drop),
            Rpc::GetTaskLog => self
                .jobs
                .get_task_log(self.request::<GetTaskLogRequest>(call)?)
                .await
                .map(drop),
            other => unreachable!("{other:?} is not a JobService rpc"),
        })
    }

    /// Sends a WorkerService call; `None` when its body does not decode.
    async fn call_workers(&self, call: &Call) -> Option<Result<(), Status>> {
        Some(match call.rpc {
            Rpc::Register => self
                .workers
                .register(self.request::<RegisterRequest>(call)?)
                .await
                .map(drop),
            Rpc::Lease => {
                let mut request = self.request::<LeaseRequest>(call)?;
                let wait_ms = &mut request.get_mut().wait_ms;
                *wait_ms = (*wait_ms).min(0);
                self.workers.lease(request).await.map(drop)
            }
            Rpc::Heartbeat => {
                let request = self.request::<HeartbeatRequest>(call)?;
                let sent = request.get_ref().tasks.len();
                self.workers.heartbeat(request).await.map(|answer| {
                    let got = answer.get_ref().tasks.len();
                    assert_eq!(got, sent, "Heartbeat answers one result per task sent");
                })
            }
            Rpc::Complete => self
                .workers
                .complete(self.request::<CompleteRequest>(call)?)
                .await
                .map(drop),
            Rpc::CompleteBatch => {
                let request = self.request::<CompleteBatchRequest>(call)?;
                let sent = request.get_ref().completions.len();
                self.workers.complete_batch(request).await.map(|answer| {
                    let results = &answer.get_ref().results;
                    assert_eq!(
                        results.len(),
                        sent,
                        "CompleteBatch answers every completion"
                    );
                    for r in results {
                        let code = Code::from_i32(r.error_code);
                        check_code("CompleteBatch item", code, &r.error_message);
                    }
                })
            }
            Rpc::Fail => self
                .workers
                .fail(self.request::<FailRequest>(call)?)
                .await
                .map(drop),
            Rpc::Release => {
                let request = self.request::<ReleaseRequest>(call)?;
                let sent = request.get_ref().tasks.len();
                self.workers.release(request).await.map(|answer| {
                    let got = answer.get_ref().results.len();
                    assert_eq!(got, sent, "Release answers one result per task sent");
                })
            }
            other => unreachable!("{other:?} is not a WorkerService rpc"),
        })
    }

    /// Sends a AdminService call; `None` when its body does not decode.
    async fn call_admin(&self, call: &Call) -> Option<Result<(), Status>> {
        Some(match call.rpc {
            Rpc::ClusterStatus => self
                .admin
                .cluster_status(self.request::<ClusterStatusRequest>(call)?)
                .await
                .map(drop),
            Rpc::AddNode => self
                .admin
                .add_node(self.request::<AddNodeRequest>(call)?)
                .await
                .map(drop),
            Rpc::RemoveNode => self
                .admin
                .remove_node(self.request::<RemoveNodeRequest>(call)?)
                .await
                .map(drop),
            Rpc::TransferLeader => self
                .admin
                .transfer_leader(self.request::<TransferLeaderRequest>(call)?)
                .await
                .map(drop),
            Rpc::DrainWorker => self
                .admin
                .drain_worker(self.request::<DrainWorkerRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListWorkers => self
                .admin
                .list_workers(self.request::<ListWorkersRequest>(call)?)
                .await
                .map(drop),
            Rpc::UpdateSettings => self
                .admin
                .update_settings(self.request::<UpdateSettingsRequest>(call)?)
                .await
                .map(drop),
            Rpc::StateDigest => self
                .admin
                .state_digest(self.request::<StateDigestRequest>(call)?)
                .await
                .map(drop),
            Rpc::Backup => match self
                .admin
                .backup(self.request::<BackupRequest>(call)?)
                .await
            {
                Ok(stream) => {
                    check_backup(stream.into_inner()).await;
                    Ok(())
                }
                Err(status) => Err(status),
            },
            Rpc::CreateToken => self
                .admin
                .create_token(self.request::<CreateTokenRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListTokens => self
                .admin
                .list_tokens(self.request::<ListTokensRequest>(call)?)
                .await
                .map(drop),
            Rpc::RevokeToken => self
                .admin
                .revoke_token(self.request::<RevokeTokenRequest>(call)?)
                .await
                .map(drop),
            Rpc::BootstrapToken => self
                .admin
                .bootstrap_token(self.request::<BootstrapTokenRequest>(call)?)
                .await
                .map(drop),
            Rpc::WhoAmI => self
                .admin
                .who_am_i(self.request::<WhoAmIRequest>(call)?)
                .await
                .map(drop),
            Rpc::SetNamespacePolicy => self
                .admin
                .set_namespace_policy(self.request::<SetNamespacePolicyRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListNamespacePolicies => self
                .admin
                .list_namespace_policies(self.request::<ListNamespacePoliciesRequest>(call)?)
                .await
                .map(drop),
            Rpc::BindCertificate => self
                .admin
                .bind_certificate(self.request::<BindCertificateRequest>(call)?)
                .await
                .map(drop),
            Rpc::ListCertificateBindings => self
                .admin
                .list_certificate_bindings(self.request::<ListCertificateBindingsRequest>(call)?)
                .await
                .map(drop),
            other => unreachable!("{other:?} is not a AdminService rpc"),
        })
    }

    /// The well-formed probes a serving coordinator answers.
    async fn probe(&self) {
        let listed = self
            .jobs
            .list_jobs(tonic::Request::new(ListJobsRequest::default()))
            .await;
        assert!(listed.is_ok(), "ListJobs after the input: {listed:?}");
        let status = self
            .admin
            .cluster_status(tonic::Request::new(ClusterStatusRequest::default()))
            .await
            .expect("ClusterStatus after the input")
            .into_inner();
        assert_eq!(status.leader_id, NODE_ID, "the node still leads");
        let digest = self
            .admin
            .state_digest(tonic::Request::new(StateDigestRequest::default()))
            .await;
        assert!(digest.is_ok(), "StateDigest after the input: {digest:?}");
    }

    /// Checks the state's invariants and its snapshot round trip, and
    /// returns it.
    async fn check_state(&self) -> State {
        let (invariants, snapshot, applied_index) = self
            .node
            .read_local_at_index(|sm, index| (sm.check_invariants(), sm.snapshot(), index))
            .await
            .expect("a local read");
        if let Err(violation) = invariants {
            panic!("invariant broken: {violation}");
        }
        check_snapshot(&snapshot);
        State {
            snapshot,
            applied_index,
        }
    }
}

/// A snapshot restores to a state with every invariant that snapshots to
/// the same bytes.
fn check_snapshot(snapshot: &[u8]) {
    let restored = StateMachine::restore(snapshot).expect("a snapshot restores");
    if let Err(violation) = restored.check_invariants() {
        panic!("invariant broken after restore: {violation}");
    }
    assert!(
        restored.snapshot() == snapshot,
        "a restored snapshot differs"
    );
}

/// Reads a whole backup stream: every chunk arrives, they add up to the
/// file they announce, and the file verifies and restores.
async fn check_backup(
    mut stream: impl tokio_stream::Stream<Item = Result<drover_proto::v1::BackupChunk, Status>> + Unpin,
) {
    let mut file = Vec::new();
    let mut total_bytes = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("a backup chunk");
        assert!(
            *total_bytes.get_or_insert(chunk.total_bytes) == chunk.total_bytes,
            "every chunk announces the same length"
        );
        file.extend_from_slice(&chunk.data);
    }
    assert_eq!(Some(file.len() as u64), total_bytes, "the chunks add up");
    let backup = Backup::decode(&file).expect("a backup verifies");
    check_snapshot(&backup.state);
}

/// Fails for a code no rpc of a lone healthy node may answer: INTERNAL
/// and UNKNOWN are bugs (common.proto), and nothing can take the node's
/// leadership or keep it from committing in time.
fn check_code(what: &str, code: Code, message: &str) {
    assert!(
        !matches!(
            code,
            Code::Internal | Code::Unknown | Code::Unavailable | Code::DeadlineExceeded
        ),
        "{what} answered {code:?}: {message}"
    );
}
