//! The Raft driver's thread shell: one OS thread owns a
//! [`DriverCore`] over the disk stores (raft-engine
//! and sled) and runs it in real time, over a closed set of events.
//!
//! Running on its own OS thread (not the async runtime) lets it fsync
//! without stalling network tasks; callers talk to it over a bounded channel
//! and get answers on oneshot channels. Everything the driver does about an
//! event lives in the core; this module only reads the clocks, waits for
//! events and publishes the status.
//!
//! **Architecture invariant:** a proposer hears "ok" only after its command
//! was committed and applied (see the core).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft::prelude::{ConfChangeType, ConfChangeV2, Message, Snapshot};
use tokio::sync::{oneshot, watch};

use super::backend::DiskState;
use super::driver::{ChangeReply, DriverCore, ProposeReply, ReadFn, conf_change};
use super::log_store::LogStore;
use crate::clock::Clock;

pub use super::config::{NodeConfig, Transport};
pub use super::error::NodeError;
pub use super::status::{MemberStatus, NodeStatus, Replication, is_no_space, storage_failure};
pub use crate::clock::wall_now_ms;
use crate::state::{
    Applied, Command, HeartbeatReply, Rejection, StateMachine, TaskProgress, WorkerId,
};

pub use super::driver::ENTRY_COMMANDS_MAX;

/// Bound on the driver's inbox; callers get `Overloaded` beyond it.
pub const INBOX_MAX: usize = 8192;

/// Longest a caller waits for a proposal or membership change. Beyond it the
/// outcome is unknown (it may still commit), so it is reported as
/// `Indeterminate`; no caller waits forever.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a heartbeat waits for the driver (it writes nothing, so only a
/// stalled node takes long).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// A heartbeat on its way to the driver.
struct HeartbeatCall {
    worker: WorkerId,
    epoch: u64,
    tasks: Vec<TaskProgress>,
    reply: oneshot::Sender<Result<Result<HeartbeatReply, Rejection>, NodeError>>,
}

/// What the driver reacts to.
enum Event {
    Propose(Vec<Command>, ProposeReply),
    Read(ReadFn, bool),
    Raft(Box<Message>),
    /// A peer's wall clock, as a batch of its messages carried it.
    PeerClock(u64, i64),
    /// A worker's heartbeat, answered by the leader without a log entry.
    Heartbeat(Box<HeartbeatCall>),
    ChangeMembers(ConfChangeV2, Option<(u64, String)>, ChangeReply),
    TransferLeader(u64),
    Unreachable(u64),
    SnapshotStatus(u64, bool),
    Shutdown,
}

/// Cheap handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    inbox: flume::Sender<Event>,
    status: watch::Receiver<NodeStatus>,
    /// Whether this replica's state has a task ready to lease.
    leasable: watch::Receiver<bool>,
    members: Arc<std::sync::RwLock<BTreeMap<u64, String>>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl NodeHandle {
    fn send(&self, event: Event) -> Result<(), NodeError> {
        self.inbox.try_send(event).map_err(|e| match e {
            flume::TrySendError::Full(_) => NodeError::Overloaded,
            flume::TrySendError::Disconnected(_) => self.stopped(),
        })
    }

    /// Why a request to the stopped node fails: its storage failure, when
    /// that is what stopped it.
    fn stopped(&self) -> NodeError {
        match &self.status.borrow().failure {
            Some(reason) => NodeError::Storage(reason.clone()),
            None => NodeError::Stopped,
        }
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes whenever the status does.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// A receiver of whether this replica's state has a task ready to
    /// lease, updated after every applied batch: waiting lease calls sleep
    /// on it instead of polling.
    pub fn watch_leasable(&self) -> watch::Receiver<bool> {
        self.leasable.clone()
    }

    /// The address of a member, if known.
    pub fn address_of(&self, id: u64) -> Option<String> {
        self.members.read().ok()?.get(&id).cloned()
    }

    /// The leader's id and address, when known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let leader = self.status.borrow().leader_id;
        (leader != 0).then(|| (leader, self.address_of(leader).unwrap_or_default()))
    }

    /// Proposes commands and waits until they are applied; one result per
    /// command. Fails with `NotLeader` on a follower.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Applied>, NodeError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if commands.len() > ENTRY_COMMANDS_MAX {
            return Err(NodeError::Invalid(format!(
                "at most {ENTRY_COMMANDS_MAX} commands per proposal"
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Event::Propose(commands, tx))?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(reply) => reply.map_err(|_| self.stopped())?,
            Err(_) => Err(NodeError::Indeterminate),
        }
    }

    /// Runs `f` on the state once it reflects every write committed before
    /// this call (ReadIndex), on any node.
    pub async fn read<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&StateMachine) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_inner(timeout, move |sm, _| f(sm), true).await
    }

    /// Like [`read`](Self::read), and `f` also gets the log index the state
    /// reflects: a consistent point, for backups.
    pub async fn read_at_index<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&StateMachine, u64) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_inner(timeout, f, true).await
    }

    /// Runs `f` on this node's current state without a quorum round trip
    /// (may be stale on a follower).
    pub async fn read_local<R: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_local_at_index(move |sm, _| f(sm)).await
    }

    /// Like [`read_local`](Self::read_local), and `f` also gets the log
    /// index this node's state reflects.
    pub async fn read_local_at_index<R: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine, u64) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_inner(Duration::from_secs(5), f, false).await
    }

    async fn read_inner<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&StateMachine, u64) -> R + Send + 'static,
        linearizable: bool,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        let read: ReadFn = Box::new(move |sm, index| {
            let _ = tx.send(f(sm, index));
        });
        self.send(Event::Read(read, linearizable))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(NodeError::Timeout),
            Err(_) => Err(NodeError::Timeout),
        }
    }

    /// Delivers a message from a peer.
    pub fn step(&self, message: Message) -> Result<(), NodeError> {
        self.send(Event::Raft(Box::new(message)))
    }

    /// Answers a worker's heartbeat on the leader, without a log entry:
    /// the session and tokens are checked against the state, and live
    /// leases run on for another TTL on the leader's timers.
    pub async fn heartbeat(
        &self,
        worker: WorkerId,
        epoch: u64,
        tasks: Vec<TaskProgress>,
    ) -> Result<Result<HeartbeatReply, Rejection>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Heartbeat(Box::new(HeartbeatCall {
            worker,
            epoch,
            tasks,
            reply,
        })))?;
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => Err(NodeError::Timeout),
        }
    }

    /// Records a peer's wall clock reading (`sent_unix_ms` of its batch).
    pub fn observe_clock(&self, peer: u64, wall_ms: i64) -> Result<(), NodeError> {
        self.send(Event::PeerClock(peer, wall_ms))
    }

    /// Adds a node as a learner; the leader promotes it to voter once it has
    /// caught up.
    pub async fn add_node(&self, id: u64, address: String) -> Result<(), NodeError> {
        let cc = conf_change(ConfChangeType::AddLearnerNode, id);
        self.change_members(cc, Some((id, address))).await
    }

    /// Removes a node.
    pub async fn remove_node(&self, id: u64) -> Result<(), NodeError> {
        let cc = conf_change(ConfChangeType::RemoveNode, id);
        self.change_members(cc, None).await
    }

    async fn change_members(
        &self,
        cc: ConfChangeV2,
        member: Option<(u64, String)>,
    ) -> Result<(), NodeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::ChangeMembers(cc, member, tx))?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(reply) => reply.map_err(|_| self.stopped())?,
            Err(_) => Err(NodeError::Indeterminate),
        }
    }

    /// Asks the leader to hand leadership to `id`.
    pub fn transfer_leader(&self, id: u64) -> Result<(), NodeError> {
        self.send(Event::TransferLeader(id))
    }

    /// Tells Raft a peer could not be reached.
    pub fn report_unreachable(&self, id: u64) {
        let _ = self.send(Event::Unreachable(id));
    }

    /// Tells Raft how sending a snapshot to `id` ended.
    pub fn report_snapshot(&self, id: u64, ok: bool) {
        let _ = self.send(Event::SnapshotStatus(id, ok));
    }

    /// Stops the node.
    pub fn shutdown(&self) {
        let _ = self.inbox.send(Event::Shutdown);
    }
}

/// Starts a node: opens (or creates) its stores and spawns its driver
/// thread.
pub fn start(
    config: NodeConfig,
    transport: Box<dyn Transport>,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), NodeError> {
    let (tx, rx) = flume::bounded(INBOX_MAX);
    let clock = Clock::new();
    crate::data_dir::open(&config.data_dir)?;
    let state = DiskState::open(&config.data_dir)?;
    let log = LogStore::open(&config.data_dir.join("raft"))?
        .with_fsync_histogram(config.log_fsync_seconds.clone());
    let id = config.id;
    let data_dir = config.data_dir.clone();
    let mut core = DriverCore::open(config, log, state, transport, clock.now())?;
    let (status_tx, status_rx) = watch::channel(core.status());
    let (leasable_tx, leasable_rx) = watch::channel(leasable(&core));
    core.campaign_if_alone();
    let handle = NodeHandle {
        inbox: tx,
        status: status_rx,
        leasable: leasable_rx,
        members: core.members_shared(),
    };
    let join = std::thread::Builder::new()
        .name(format!("raft-{id}"))
        .spawn(move || run(core, clock, data_dir, rx, status_tx, leasable_tx))
        .map_err(|e| NodeError::Storage(e.to_string()))?;
    Ok((handle, join))
}

type DiskCore = DriverCore<LogStore, DiskState>;

/// The driver thread: waits for events until the next tick is due, hands
/// them to the core, turns the core, publishes the status.
fn run(
    mut core: DiskCore,
    clock: Clock,
    data_dir: std::path::PathBuf,
    inbox: flume::Receiver<Event>,
    status: watch::Sender<NodeStatus>,
    leasable_tx: watch::Sender<bool>,
) {
    let mut stopping = false;
    let mut failure: Option<String> = None;
    // At most one checkpoint is written off this thread at a time; its
    // result is handed back on the first turn after it finishes (within a
    // tick).
    let mut checkpoint: Option<std::thread::JoinHandle<Result<Snapshot, NodeError>>> = None;
    while !stopping {
        if checkpoint.as_ref().is_some_and(|t| t.is_finished()) {
            core.checkpoint_staged(join_checkpoint(checkpoint.take()));
        }
        let wait_ms = core.next_tick_ms().saturating_sub(clock.now().mono_ms);
        match inbox.recv_timeout(Duration::from_millis(wait_ms)) {
            Ok(event) => stopping |= handle(&mut core, event, &clock),
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => break,
        }
        // Take what else is queued, bounded, so proposals that arrived
        // while the last Ready was persisted share the next entry.
        for _ in 0..INBOX_MAX {
            match inbox.try_recv() {
                Ok(event) => stopping |= handle(&mut core, event, &clock),
                Err(_) => break,
            }
        }
        if let Err(e) = core.turn(clock.now()) {
            // Fail-stop: a node that cannot persist must not vote, lead or
            // acknowledge anything more. Whatever it acknowledged is on
            // disk (acknowledgements follow the fsync), and a restart
            // replays the log.
            let reason = storage_failure(core.id(), &data_dir, &e.to_string());
            tracing::error!(node = core.id(), error = %e, data = %data_dir.display(), "raft storage failed; stopping");
            // The status first: a client told of the failure must find
            // `/readyz` already saying why.
            status.send_modify(|s| s.failure = Some(reason.clone()));
            core.fail_everything(NodeError::Storage(reason.clone()));
            failure = Some(reason);
            break;
        }
        if let Some(job) = core.take_checkpoint_job() {
            let spawned = std::thread::Builder::new()
                .name(format!("checkpoint-{}", core.id()))
                .spawn(move || job.run());
            match spawned {
                Ok(thread) => checkpoint = Some(thread),
                Err(e) => core.checkpoint_staged(Err(NodeError::Storage(e.to_string()))),
            }
        }
        let _ = status.send_if_modified(|s| {
            let new = core.status();
            if *s != new {
                *s = new;
                true
            } else {
                false
            }
        });
        let now_leasable = leasable(&core);
        leasable_tx.send_if_modified(|was| std::mem::replace(was, now_leasable) != now_leasable);
    }
    // A checkpoint being written is finished (it is durable or not at
    // all) and adopted, so a clean stop leaves the log compacted. After a
    // storage failure nothing more is written: a flush on a full disk can
    // block or fail again, and the log already holds every acknowledged
    // entry.
    if failure.is_none() {
        if checkpoint.is_some() {
            core.checkpoint_staged(join_checkpoint(checkpoint.take()));
        }
        core.close();
    }
    let refused = || match &failure {
        Some(reason) => NodeError::Storage(reason.clone()),
        None => NodeError::Stopped,
    };
    // Requests still queued would otherwise sit in the channel for as
    // long as any handle lives: answer them, then drop the receiver at
    // once so later sends fail fast with `Stopped`.
    drop(core);
    while let Ok(event) = inbox.try_recv() {
        match event {
            Event::Propose(_, reply) => {
                let _ = reply.send(Err(refused()));
            }
            Event::ChangeMembers(_, _, reply) => {
                let _ = reply.send(Err(refused()));
            }
            _ => {}
        }
    }
}

/// The result of a checkpoint thread that has finished (or is joined).
fn join_checkpoint(
    thread: Option<std::thread::JoinHandle<Result<Snapshot, NodeError>>>,
) -> Result<Snapshot, NodeError> {
    thread
        .ok_or_else(|| NodeError::Storage("no checkpoint was being written".into()))?
        .join()
        .unwrap_or_else(|_| Err(NodeError::Storage("the checkpoint thread panicked".into())))
}

/// Whether the node's state has a task ready to lease.
fn leasable(core: &DiskCore) -> bool {
    !core.state_machine().indexes().ready.is_empty()
}

/// Hands one event to the core; true when it asks the node to stop.
fn handle(core: &mut DiskCore, event: Event, clock: &Clock) -> bool {
    match event {
        Event::Propose(commands, reply) => core.propose(commands, reply),
        Event::Read(f, linearizable) => core.read(f, linearizable, clock.now()),
        Event::Raft(message) => core.step(*message),
        Event::PeerClock(peer, wall_ms) => core.observe_clock(peer, wall_ms, clock.now()),
        Event::Heartbeat(call) => {
            let HeartbeatCall {
                worker,
                epoch,
                tasks,
                reply,
            } = *call;
            let _ = reply.send(core.heartbeat(worker, epoch, tasks, clock.now()));
        }
        Event::ChangeMembers(cc, member, reply) => core.change_members(cc, member, reply),
        Event::TransferLeader(id) => core.transfer_leader(id),
        Event::Unreachable(id) => core.report_unreachable(id),
        Event::SnapshotStatus(id, ok) => core.report_snapshot(id, ok),
        Event::Shutdown => return true,
    }
    false
}
