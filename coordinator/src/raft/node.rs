//! The Raft driver: one thread owns the `RawNode`, the state machine and
//! both stores, and loops over a closed set of events.
//!
//! Running on its own OS thread (not the async runtime) lets it fsync
//! without stalling network tasks; callers talk to it over a bounded channel
//! and get answers on oneshot channels.
//!
//! **Architecture invariant:** a proposer hears "ok" only after its command
//! was committed, applied and written to the state store. Proposals are
//! tracked by (term, index); an entry applied at that index with another term,
//! or a loss of leadership, fails the proposal with a retryable error, never
//! a false success.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot,
};
use raft::{RawNode, StateRole, Storage};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::log_store::{LogStore, LogStoreError};
use crate::state::{Applied, Command, Config as StateConfig, LogEntry, StateMachine};
use crate::storage::{StateStore, StorageError};

/// Encoding version of a log entry's payload; a node refuses entries of a
/// version it does not know rather than misreading them. Version 2:
/// `SubmitJob` carries a `traceparent`.
const ENTRY_FORMAT: u8 = 2;

/// Bound on the driver's inbox; callers get `Overloaded` beyond it.
pub const INBOX_MAX: usize = 8192;

/// Most commands packed into one Raft entry.
pub const ENTRY_COMMANDS_MAX: usize = 4096;

/// Longest a caller waits for a proposal or membership change. Beyond it the
/// outcome is unknown (it may still commit), so it is reported as
/// `Indeterminate`; no caller waits forever.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// Where the Raft log, the state store and checkpoints live.
    pub data_dir: PathBuf,
    /// Known members and their addresses (this node included). With
    /// `bootstrap`, they become the voters of a new cluster when the log is
    /// blank; without it (a node joining an existing cluster) they are only
    /// where to reach the others until the log says otherwise.
    pub peers: BTreeMap<u64, String>,
    /// Create a new cluster from `peers` if the log is blank.
    pub bootstrap: bool,
    /// Raft tick length.
    pub tick_ms: u64,
    /// Ticks without a leader before an election (randomised up to 2x).
    pub election_ticks: usize,
    /// Leader heartbeat period in ticks.
    pub heartbeat_ticks: usize,
    /// How often the leader proposes a state machine `Tick`.
    pub state_tick_ms: u64,
    /// Applied entries between checkpoints (and log compaction).
    pub checkpoint_entries: u64,
    /// State machine settings for a new cluster.
    pub state_config: StateConfig,
    /// Where the driver records how long each synced log write took (the
    /// fsync latency metric); `None` records nothing.
    pub log_fsync_seconds: Option<Histogram>,
    /// Bugs planted for the chaos suite's proofs.
    #[cfg(feature = "planted-bugs")]
    pub planted: crate::planted::PlantedBugs,
}

impl NodeConfig {
    /// Defaults for a node with `id` storing under `data_dir`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            data_dir: data_dir.into(),
            peers: BTreeMap::new(),
            bootstrap: true,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            state_tick_ms: 1000,
            checkpoint_entries: 10_000,
            state_config: StateConfig::default(),
            log_fsync_seconds: None,
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::default(),
        }
    }
}

/// Why a request to the node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader; the leader, if known, is given.
    #[error("not the leader (leader: {})", leader.as_ref().map_or("unknown".to_owned(), |(id, addr)| format!("{id} at {addr}")))]
    NotLeader {
        /// Leader id and address, when known.
        leader: Option<(u64, String)>,
    },
    /// Leadership changed while the command was in flight: it may or may not
    /// have been applied. Retry (with an idempotency key for submits).
    #[error(
        "leadership changed while the request was in flight; it may or may not have been applied"
    )]
    Indeterminate,
    /// The node's inbox is full.
    #[error("the node is overloaded; retry")]
    Overloaded,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A read or change did not complete in time (no leader, partition).
    #[error("timed out waiting for the cluster")]
    Timeout,
    /// The request is invalid (bad membership change, too large).
    #[error("{0}")]
    Invalid(String),
    /// Storage failed; the node stops.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<LogStoreError> for NodeError {
    fn from(e: LogStoreError) -> Self {
        NodeError::Storage(e.to_string())
    }
}

impl From<StorageError> for NodeError {
    fn from(e: StorageError) -> Self {
        NodeError::Storage(e.to_string())
    }
}

/// Sends Raft messages to peers; implemented by the gRPC transport (and by
/// in-memory networks in tests). Must not block.
pub trait Transport: Send + 'static {
    /// Queues messages for delivery; delivery is best effort (Raft retries).
    fn send(&self, messages: Vec<Message>);
    /// Learns a peer's address (membership changed).
    fn set_peer(&self, id: u64, address: Option<String>);
}

/// A member as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Address for Raft and clients.
    pub address: String,
    /// Voter or learner.
    pub voter: bool,
    /// Highest index known replicated there (leader's view).
    pub match_index: u64,
}

/// A snapshot of the node's Raft state, published after every loop turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: u64,
    /// Current leader (0 when none known).
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed index known.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Members and, on the leader, their progress.
    pub members: Vec<MemberStatus>,
    /// Index of the latest checkpoint (log compacted up to it).
    pub snapshot_index: u64,
    /// Time of the last fsync'd write, in microseconds (for metrics).
    pub last_fsync_us: u64,
}

type ReadFn = Box<dyn FnOnce(&StateMachine) + Send>;

/// Where a proposer waits for its commands' results.
type ProposeReply = oneshot::Sender<Result<Vec<Applied>, NodeError>>;

/// What the driver reacts to.
enum Event {
    Propose(
        Vec<Command>,
        oneshot::Sender<Result<Vec<Applied>, NodeError>>,
    ),
    Read(ReadFn, bool),
    Raft(Box<Message>),
    ChangeMembers(
        ConfChangeV2,
        Option<(u64, String)>,
        oneshot::Sender<Result<(), NodeError>>,
    ),
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
            flume::TrySendError::Disconnected(_) => NodeError::Stopped,
        })
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes whenever the status does.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
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
            Ok(reply) => reply.map_err(|_| NodeError::Stopped)?,
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
        self.read_inner(timeout, f, true).await
    }

    /// Runs `f` on this node's current state without a quorum round trip
    /// (may be stale on a follower).
    pub async fn read_local<R: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_inner(Duration::from_secs(5), f, false).await
    }

    async fn read_inner<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&StateMachine) -> R + Send + 'static,
        linearizable: bool,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        let read: ReadFn = Box::new(move |sm| {
            let _ = tx.send(f(sm));
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
            Ok(reply) => reply.map_err(|_| NodeError::Stopped)?,
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

fn conf_change(kind: ConfChangeType, id: u64) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc
}

/// What a snapshot carries besides the state: the members' addresses.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    members: BTreeMap<u64, String>,
    state: Vec<u8>,
}

/// Context attached to a conf change: the member's address.
#[derive(Serialize, Deserialize)]
struct ChangeContext {
    address: Option<String>,
}

/// A proposal waiting for its entry to apply.
struct Pending {
    term: u64,
    /// Command ranges of the entry and who waits for each.
    waiters: Vec<(std::ops::Range<usize>, ProposeReply)>,
}

/// Starts a node: opens (or creates) its stores and spawns its driver
/// thread.
pub fn start(
    config: NodeConfig,
    transport: Box<dyn Transport>,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), NodeError> {
    let (tx, rx) = flume::bounded(INBOX_MAX);
    let driver = Driver::open(config, transport, rx)?;
    let (status_tx, status_rx) = watch::channel(driver.status());
    let members = driver.members_shared.clone();
    let handle = NodeHandle {
        inbox: tx,
        status: status_rx,
        members,
    };
    let join = std::thread::Builder::new()
        .name(format!("raft-{}", driver.id))
        .spawn(move || driver.run(status_tx))
        .map_err(|e| NodeError::Storage(e.to_string()))?;
    Ok((handle, join))
}

struct Driver {
    id: u64,
    config: NodeConfig,
    raw: RawNode<LogStore>,
    sm: StateMachine,
    store: StateStore,
    transport: Box<dyn Transport>,
    inbox: flume::Receiver<Event>,
    applied: u64,
    members: BTreeMap<u64, String>,
    members_shared: Arc<std::sync::RwLock<BTreeMap<u64, String>>>,
    proposals: VecDeque<(Vec<Command>, ProposeReply)>,
    pending: BTreeMap<u64, Pending>,
    change_waiters: BTreeMap<u64, (u64, oneshot::Sender<Result<(), NodeError>>)>,
    reads: BTreeMap<u64, (Instant, ReadFn)>,
    ready_reads: Vec<(u64, ReadFn)>,
    next_read: u64,
    last_state_tick: Instant,
    entries_since_checkpoint: u64,
    last_fsync_us: u64,
    was_leader: bool,
    stopping: bool,
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.snap")
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Driver {
    fn open(
        config: NodeConfig,
        transport: Box<dyn Transport>,
        inbox: flume::Receiver<Event>,
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Storage(e.to_string()))?;
        let mut log = LogStore::open(&config.data_dir.join("raft"))?;
        let store = StateStore::open(&config.data_dir.join("state"))?;
        let (mut sm, mut applied) = match store.load()? {
            Some((sm, index)) => (sm, index),
            None => (StateMachine::new(config.state_config.clone()), 0),
        };
        let mut members = BTreeMap::new();
        // A checkpoint newer than the state store (sled is not fsynced)
        // wins; the log replays from there.
        if let Ok(bytes) = std::fs::read(checkpoint_path(&config.data_dir)) {
            let mut snapshot = Snapshot::default();
            if snapshot.merge_from_bytes(&bytes).is_ok() {
                let payload: SnapshotPayload = postcard::from_bytes(snapshot.get_data())
                    .map_err(|e| NodeError::Storage(format!("checkpoint: {e}")))?;
                members = payload.members;
                let index = snapshot.get_metadata().index;
                if index > applied {
                    sm = StateMachine::restore(&payload.state)
                        .map_err(|e| NodeError::Storage(e.to_string()))?;
                    applied = index;
                    store.replace(&sm, applied)?;
                }
                log.cache_snapshot(snapshot);
            }
        }
        if let Some(stored) = load_members(&config.data_dir) {
            members.extend(stored);
        }
        if log.is_blank() {
            if config.bootstrap && !config.peers.is_empty() {
                let cs = ConfState {
                    voters: config.peers.keys().copied().collect(),
                    ..ConfState::default()
                };
                log.set_conf_state(cs)?;
            }
            // Where to reach the others until the log says otherwise.
            for (id, address) in &config.peers {
                members.entry(*id).or_insert_with(|| address.clone());
            }
            save_members(&config.data_dir, &members)?;
        }
        // Entries are applied only once committed, so a stored applied index
        // above the stored commit means the commit was not yet written.
        log.set_commit(applied);
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 * 1024 * 1024,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        #[cfg(feature = "planted-bugs")]
        sm.plant(config.planted);
        let raw = RawNode::new(&raft_config, log, &raft_logger())
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        for (id, address) in &members {
            if *id != config.id {
                transport.set_peer(*id, Some(address.clone()));
            }
        }
        let members_shared = Arc::new(std::sync::RwLock::new(members.clone()));
        Ok(Self {
            id: config.id,
            raw,
            sm,
            store,
            transport,
            inbox,
            applied,
            members,
            members_shared,
            proposals: VecDeque::new(),
            pending: BTreeMap::new(),
            change_waiters: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            next_read: 1,
            last_state_tick: Instant::now(),
            entries_since_checkpoint: 0,
            last_fsync_us: 0,
            was_leader: false,
            stopping: false,
            config,
        })
    }

    fn run(mut self, status: watch::Sender<NodeStatus>) {
        let tick = Duration::from_millis(self.config.tick_ms);
        let mut next_tick = Instant::now() + tick;
        // A single-voter cluster elects itself at once instead of waiting
        // for an election timeout.
        if self.raw.raft.prs().conf().voters().ids().len() == 1
            && self.raw.raft.prs().conf().voters().contains(self.id)
        {
            let _ = self.raw.campaign();
        }
        while !self.stopping {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => break,
            }
            // Take what else is queued, bounded, so proposals that arrived
            // while the last Ready was persisted share the next entry.
            for _ in 0..INBOX_MAX {
                match self.inbox.try_recv() {
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + tick;
                }
                self.on_tick();
            }
            self.flush_proposals();
            if let Err(e) = self.on_ready() {
                tracing::error!(node = self.id, error = %e, "raft storage failed; stopping");
                self.fail_everything(NodeError::Storage(e.to_string()));
                break;
            }
            self.maybe_checkpoint();
            let _ = status.send_if_modified(|s| {
                let new = self.status();
                if *s != new {
                    *s = new;
                    true
                } else {
                    false
                }
            });
        }
        self.fail_everything(NodeError::Stopped);
        let _ = self.store.flush();
        // Requests still queued would otherwise sit in the channel for as
        // long as any handle lives: answer them, then drop the receiver at
        // once so later sends fail fast with `Stopped`.
        let inbox = self.inbox.clone();
        drop(self);
        while let Ok(event) = inbox.try_recv() {
            match event {
                Event::Propose(_, reply) => {
                    let _ = reply.send(Err(NodeError::Stopped));
                }
                Event::ChangeMembers(_, _, reply) => {
                    let _ = reply.send(Err(NodeError::Stopped));
                }
                _ => {}
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Propose(commands, reply) => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                } else {
                    self.proposals.push_back((commands, reply));
                }
            }
            Event::Read(f, linearizable) => {
                if !linearizable {
                    f(&self.sm);
                    return;
                }
                let id = self.next_read;
                self.next_read += 1;
                self.raw.read_index(id.to_be_bytes().to_vec());
                self.reads.insert(id, (Instant::now(), f));
            }
            Event::Raft(message) => {
                let _ = self.raw.step(*message);
            }
            Event::ChangeMembers(cc, member, reply) => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let context = postcard::to_stdvec(&ChangeContext {
                    address: member.map(|(_, a)| a),
                })
                .unwrap_or_default();
                match self.raw.propose_conf_change(context, cc) {
                    Ok(()) => {
                        let index = self.raw.raft.raft_log.last_index();
                        self.change_waiters
                            .insert(index, (self.raw.raft.term, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Invalid(e.to_string())));
                    }
                }
            }
            Event::TransferLeader(id) => self.raw.transfer_leader(id),
            Event::Unreachable(id) => self.raw.report_unreachable(id),
            Event::SnapshotStatus(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                },
            ),
            Event::Shutdown => self.stopping = true,
        }
    }

    fn not_leader(&self) -> NodeError {
        let leader = self.raw.raft.leader_id;
        NodeError::NotLeader {
            leader: (leader != 0).then(|| {
                (
                    leader,
                    self.members.get(&leader).cloned().unwrap_or_default(),
                )
            }),
        }
    }

    /// Leader duties on each tick: the state machine's clock, and promoting
    /// learners that caught up.
    fn on_tick(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        if self.last_state_tick.elapsed() >= Duration::from_millis(self.config.state_tick_ms) {
            self.last_state_tick = Instant::now();
            let (tx, _rx) = oneshot::channel();
            self.proposals.push_back((vec![Command::Tick], tx));
        }
        // Promote a learner once it is within a few entries of the leader,
        // one change at a time.
        if self.raw.raft.has_pending_conf() {
            return;
        }
        let last = self.raw.raft.raft_log.last_index();
        let learners: Vec<u64> = self
            .raw
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .copied()
            .collect();
        for learner in learners {
            let caught_up = self
                .raw
                .raft
                .prs()
                .get(learner)
                .is_some_and(|p| p.matched + 16 >= last);
            if caught_up {
                let cc = conf_change(ConfChangeType::AddNode, learner);
                if self.raw.propose_conf_change(Vec::new(), cc).is_ok() {
                    break;
                }
            }
        }
    }

    /// Packs queued proposals into as few entries as possible.
    fn flush_proposals(&mut self) {
        while !self.proposals.is_empty() {
            if self.raw.raft.state != StateRole::Leader {
                let err = self.not_leader();
                for (_, reply) in self.proposals.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
                return;
            }
            let mut commands = Vec::new();
            let mut waiters = Vec::new();
            while let Some((cmds, _)) = self.proposals.front() {
                if !commands.is_empty() && commands.len() + cmds.len() > ENTRY_COMMANDS_MAX {
                    break;
                }
                let (cmds, reply) = self.proposals.pop_front().expect("checked");
                let start = commands.len();
                commands.extend(cmds);
                waiters.push((start..commands.len(), reply));
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let entry = LogEntry { now_ms, commands };
            let mut data = vec![ENTRY_FORMAT];
            data.extend(postcard::to_stdvec(&entry).unwrap_or_default());
            match self.raw.propose(Vec::new(), data) {
                Ok(()) => {
                    let index = self.raw.raft.raft_log.last_index();
                    self.pending.insert(
                        index,
                        Pending {
                            term: self.raw.raft.term,
                            waiters,
                        },
                    );
                }
                Err(e) => {
                    let err = match e {
                        raft::Error::ProposalDropped => self.not_leader(),
                        other => NodeError::Invalid(other.to_string()),
                    };
                    for (_, reply) in waiters {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    /// One turn of the Ready loop, in the order raft-rs documents.
    fn on_ready(&mut self) -> Result<(), NodeError> {
        if !self.raw.has_ready() {
            self.after_ready();
            return Ok(());
        }
        let mut ready = self.raw.ready();

        // 1. Messages a leader may send before persisting (appends to
        //    followers run in parallel with its own fsync).
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        // 2. A snapshot from the leader replaces the state before any entry
        //    after it can apply.
        if *ready.snapshot() != Snapshot::default() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(&snapshot)?;
        }
        // 3. Entries and hard state, one write, fsynced when Raft requires:
        //    votes and appends must be durable before anyone is told.
        let started = Instant::now();
        let must_sync = ready.must_sync();
        // Planted bug: tell the others before the write, and never fsync.
        #[cfg(feature = "planted-bugs")]
        let must_sync = if self.config.planted.ack_before_fsync {
            if !ready.persisted_messages().is_empty() {
                self.transport.send(ready.take_persisted_messages());
            }
            false
        } else {
            must_sync
        };
        self.raw
            .mut_store()
            .persist(ready.entries(), ready.hs(), must_sync)?;
        if must_sync {
            let elapsed = started.elapsed();
            self.last_fsync_us = elapsed.as_micros() as u64;
            if let Some(histogram) = &self.config.log_fsync_seconds {
                histogram.observe(elapsed.as_secs_f64());
            }
        }
        // 4. Messages that may only leave after the persist (votes, append
        //    responses).
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        // 5. Apply what is committed; reads wait for the index they need.
        let reads = ready.take_read_states();
        self.collect_reads(reads);
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;

        // 6. Advance, then handle what the light ready adds.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.raw.advance_apply();
        self.after_ready();
        Ok(())
    }

    /// Bookkeeping after each turn: leadership changes, due reads, read
    /// timeouts.
    fn after_ready(&mut self) {
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if self.was_leader && !is_leader {
            // Entries proposed in our term may still commit under the new
            // leader, or may not: the caller cannot know, so say so.
            for (_, pending) in std::mem::take(&mut self.pending) {
                for (_, reply) in pending.waiters {
                    let _ = reply.send(Err(NodeError::Indeterminate));
                }
            }
            for (_, (_, reply)) in std::mem::take(&mut self.change_waiters) {
                let _ = reply.send(Err(NodeError::Indeterminate));
            }
        }
        if !self.was_leader && is_leader {
            self.last_state_tick = Instant::now();
        }
        self.was_leader = is_leader;
        let applied = self.applied;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.ready_reads = waiting;
        for (_, f) in due {
            f(&self.sm);
        }
        // Reads that never got a read state (no leader) are dropped after a
        // while; their callers time out on their own.
        self.reads
            .retain(|_, (at, _)| at.elapsed() < Duration::from_secs(30));
    }

    fn collect_reads(&mut self, states: Vec<raft::ReadState>) {
        for state in states {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            if let Some((_, f)) = self.reads.remove(&u64::from_be_bytes(bytes)) {
                self.ready_reads.push((state.index, f));
            }
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut results: Vec<(u64, u64, Vec<Applied>)> = Vec::new();
        let mut last_index = self.applied;
        for entry in entries {
            last_index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.data.is_empty() {
                        // A new leader's empty entry.
                        results.push((entry.index, entry.term, Vec::new()));
                        continue;
                    }
                    // A committed entry this build cannot read must stop the
                    // node: skipping it would make this replica's state differ
                    // from the others' (a mixed-version cluster mid-upgrade).
                    let Some(log_entry) = decode_entry(&entry.data) else {
                        return Err(NodeError::Storage(format!(
                            "committed log entry {} is not in entry format {ENTRY_FORMAT} (its first byte is {}); this coordinator is older than the one that wrote it, so upgrade it",
                            entry.index,
                            entry.data.first().copied().unwrap_or(0)
                        )));
                    };
                    let outcomes = self.sm.apply(&log_entry);
                    results.push((entry.index, entry.term, outcomes));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?;
                }
            }
            self.entries_since_checkpoint += 1;
        }
        // One transaction for the whole batch, with the applied index.
        let changes = self.sm.take_changes();
        self.store.persist(&self.sm, &changes, last_index)?;
        self.applied = last_index;
        for (index, term, outcomes) in results {
            let Some(pending) = self.pending.remove(&index) else {
                continue;
            };
            if pending.term != term {
                for (_, reply) in pending.waiters {
                    let _ = reply.send(Err(NodeError::Indeterminate));
                }
                continue;
            }
            for (range, reply) in pending.waiters {
                let slice = outcomes
                    .get(range)
                    .map(<[Applied]>::to_vec)
                    .unwrap_or_default();
                let _ = reply.send(Ok(slice));
            }
        }
        // Anything pending at or below the applied index was overwritten.
        let stale: Vec<u64> = self
            .pending
            .range(..=self.applied)
            .map(|(i, _)| *i)
            .collect();
        for index in stale {
            if let Some(pending) = self.pending.remove(&index) {
                for (_, reply) in pending.waiters {
                    let _ = reply.send(Err(NodeError::Indeterminate));
                }
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), NodeError> {
        let mut cc = ConfChangeV2::default();
        if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            cc.merge_from_bytes(&entry.data)
                .map_err(|e| NodeError::Storage(e.to_string()))?;
        } else {
            // Drover proposes only V2 changes; a legacy one is converted.
            let mut v1 = raft::prelude::ConfChange::default();
            v1.merge_from_bytes(&entry.data)
                .map_err(|e| NodeError::Storage(e.to_string()))?;
            cc = conf_change(v1.get_change_type(), v1.node_id);
        }
        let result = self.raw.apply_conf_change(&cc);
        let reply = self.change_waiters.remove(&entry.index);
        match result {
            Ok(cs) => {
                self.raw.mut_store().set_conf_state(cs)?;
                let context: Option<ChangeContext> = postcard::from_bytes(&entry.context).ok();
                for change in cc.get_changes() {
                    match change.get_change_type() {
                        ConfChangeType::RemoveNode => {
                            self.members.remove(&change.node_id);
                            self.transport.set_peer(change.node_id, None);
                            if change.node_id == self.id {
                                tracing::info!(node = self.id, "removed from the cluster");
                            }
                        }
                        _ => {
                            if let Some(address) = context.as_ref().and_then(|c| c.address.clone())
                            {
                                self.members.insert(change.node_id, address.clone());
                                if change.node_id != self.id {
                                    self.transport.set_peer(change.node_id, Some(address));
                                }
                            }
                        }
                    }
                }
                save_members(&self.config.data_dir, &self.members)?;
                if let Ok(mut shared) = self.members_shared.write() {
                    *shared = self.members.clone();
                }
                if let Some((term, reply)) = reply {
                    let _ = reply.send(if term == entry.term {
                        Ok(())
                    } else {
                        Err(NodeError::Indeterminate)
                    });
                }
            }
            Err(e) => {
                if let Some((_, reply)) = reply {
                    let _ = reply.send(Err(NodeError::Invalid(e.to_string())));
                }
            }
        }
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeError> {
        let payload: SnapshotPayload = postcard::from_bytes(snapshot.get_data())
            .map_err(|e| NodeError::Storage(format!("snapshot: {e}")))?;
        let sm =
            StateMachine::restore(&payload.state).map_err(|e| NodeError::Storage(e.to_string()))?;
        let index = snapshot.get_metadata().index;
        write_durably(
            &checkpoint_path(&self.config.data_dir),
            &snapshot
                .write_to_bytes()
                .map_err(|e| NodeError::Storage(e.to_string()))?,
        )?;
        self.store.replace(&sm, index)?;
        self.raw.mut_store().install_snapshot(snapshot)?;
        #[cfg(feature = "planted-bugs")]
        let sm = {
            let mut sm = sm;
            sm.plant(self.config.planted);
            sm
        };
        self.sm = sm;
        self.applied = index;
        self.members = payload.members;
        for (id, address) in &self.members {
            if *id != self.id {
                self.transport.set_peer(*id, Some(address.clone()));
            }
        }
        save_members(&self.config.data_dir, &self.members)?;
        if let Ok(mut shared) = self.members_shared.write() {
            *shared = self.members.clone();
        }
        self.entries_since_checkpoint = 0;
        Ok(())
    }

    /// Takes a checkpoint when enough entries were applied, or when raft-rs
    /// needs a snapshot for a lagging follower: the state is written to a
    /// file with a real fsync first, and only then is the log compacted.
    fn maybe_checkpoint(&mut self) {
        let wanted = self.raw.store().snapshot_wanted();
        if self.entries_since_checkpoint < self.config.checkpoint_entries && wanted.is_none() {
            return;
        }
        if self.applied == 0 {
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(node = self.id, error = %e, "checkpoint failed; the log is not compacted");
        }
    }

    fn checkpoint(&mut self) -> Result<(), NodeError> {
        let index = self.applied;
        let term = self
            .raw
            .store()
            .term(index)
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        let payload = SnapshotPayload {
            members: self.members.clone(),
            state: self.sm.snapshot(),
        };
        let mut snapshot = Snapshot::default();
        snapshot.set_data(postcard::to_stdvec(&payload).unwrap_or_default().into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.raw.store().conf_state().clone());
        let bytes = snapshot
            .write_to_bytes()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        write_durably(&checkpoint_path(&self.config.data_dir), &bytes)?;
        self.raw.mut_store().compact_to_snapshot(snapshot)?;
        self.entries_since_checkpoint = 0;
        Ok(())
    }

    fn fail_everything(&mut self, err: NodeError) {
        for (_, reply) in self.proposals.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, pending) in std::mem::take(&mut self.pending) {
            for (_, reply) in pending.waiters {
                let _ = reply.send(Err(err.clone()));
            }
        }
        for (_, (_, reply)) in std::mem::take(&mut self.change_waiters) {
            let _ = reply.send(Err(err.clone()));
        }
    }

    fn status(&self) -> NodeStatus {
        let raft = &self.raw.raft;
        let conf = raft.prs().conf();
        let mut members: Vec<MemberStatus> = self
            .members
            .iter()
            .map(|(id, address)| MemberStatus {
                id: *id,
                address: address.clone(),
                voter: conf.voters().contains(*id),
                match_index: raft.prs().get(*id).map_or(0, |p| p.matched),
            })
            .collect();
        for id in conf
            .voters()
            .ids()
            .iter()
            .chain(conf.learners().iter().copied())
        {
            if !self.members.contains_key(&id) {
                members.push(MemberStatus {
                    id,
                    address: String::new(),
                    voter: conf.voters().contains(id),
                    match_index: raft.prs().get(id).map_or(0, |p| p.matched),
                });
            }
        }
        members.sort_by_key(|m| m.id);
        members.retain(|m| conf.voters().contains(m.id) || conf.learners().contains(&m.id));
        NodeStatus {
            id: self.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied,
            is_leader: raft.state == StateRole::Leader,
            members,
            snapshot_index: self.raw.store().snapshot_meta().index,
            last_fsync_us: self.last_fsync_us,
        }
    }
}

fn decode_entry(data: &[u8]) -> Option<LogEntry> {
    let (version, body) = data.split_first()?;
    if *version != ENTRY_FORMAT {
        return None;
    }
    postcard::from_bytes(body).ok()
}

/// Writes a file so that it survives a crash: temp file, fsync, rename,
/// fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| NodeError::Storage(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

fn members_path(dir: &Path) -> PathBuf {
    dir.join("members.json")
}

fn save_members(dir: &Path, members: &BTreeMap<u64, String>) -> Result<(), NodeError> {
    let bytes = serde_json::to_vec_pretty(members).unwrap_or_default();
    write_durably(&members_path(dir), &bytes)
}

fn load_members(dir: &Path) -> Option<BTreeMap<u64, String>> {
    serde_json::from_slice(&std::fs::read(members_path(dir)).ok()?).ok()
}
