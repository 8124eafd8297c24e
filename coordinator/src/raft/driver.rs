//! The driver core: the `RawNode`, the state machine and the stores, and
//! every reaction to an event — proposals, reads, peer messages, ticks, the
//! Ready loop, applying, conf changes and checkpoints — with no thread and
//! no clock of its own.
//!
//! The caller owns time and scheduling. The thread shell in
//! [`node`](super::node) calls it from a real-time loop with disk stores;
//! the deterministic simulation calls it from a virtual-time loop with
//! in-memory stores. Both run this same code, so what the simulation finds
//! is about the real driver.
//!
//! **Architecture invariant:** a proposer hears "ok" only after its command
//! was committed (fsynced in a quorum's logs) and applied. The state store
//! is written afterwards, in batches (`write_state`); after a
//! crash the fsynced log replays whatever it lacks. Proposals are
//! tracked by (term, index); an entry applied at that index with another term,
//! or a loss of leadership, fails the proposal with a retryable error, never
//! a false success.
//!
//! **Architecture invariant:** nothing here reads a clock or draws a random
//! number: time arrives as [`Now`], and with
//! [`NodeConfig::election_seed`] set, even raft-rs's randomised election
//! timeouts come from the seed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot,
};
use raft::{ProgressState, RawNode, StateRole};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::backend::{BOOTSTRAP_INDEX, LogBackend, SnapshotPayload, StateBackend};
use super::checkpoint::{CheckpointJob, snapshot_of};
use super::cluster_clock::ClusterClock;
use super::config::{NodeConfig, Transport};
use super::entry::ENTRY_FORMAT;
use super::error::NodeError;
use super::lease_timers::LeaseTimers;
use super::status::{MemberStatus, NodeStatus, Replication};
use crate::clock::Now;
use crate::state::changes::Changes;
use crate::state::{
    Applied, Command, HeartbeatReply, HeartbeatStatus, LogEntry, Rejection, StateMachine,
    TaskProgress, WorkerId,
};

/// The reply channels' type, re-exported so that a caller driving a core
/// directly (the simulation) needs no tokio of its own.
pub use tokio::sync::oneshot as reply;

/// Most commands packed into one Raft entry.
pub const ENTRY_COMMANDS_MAX: usize = 4096;

/// Longest a queued proposal waits for the leader's previous entry to
/// commit before it is proposed anyway. While an entry is in flight, what
/// arrives joins the next one: one fsync and one append per replica then
/// cover many workers' calls instead of a few, which is most of a
/// coordinator's CPU per task under load.
pub const PROPOSAL_HOLD_MS: u64 = 4;

/// Under sustained load (the leader's last entry packed at least
/// [`BUSY_ENTRY_COMMANDS`] commands), queued proposals wait this long
/// whether or not an entry is in flight. Each entry costs every replica
/// about half a millisecond of CPU whatever it carries (the append and its
/// answer over gRPC, the fsync, the wake-ups), so at saturation fewer,
/// larger entries leave more of the machine to the work; the cost is a few
/// milliseconds more per acknowledgement, only while the cluster is busy.
pub const BUSY_HOLD_MS: u64 = 10;

/// Commands in the leader's last entry from which it counts as busy.
pub const BUSY_ENTRY_COMMANDS: usize = 64;

/// How long a linearizable read waits for a read state before it is
/// dropped (its caller times out on its own first).
const READ_STATE_WAIT_MS: u64 = 30_000;

/// Changed records after which the state store is written at once rather
/// than at `state_write_ms`, which bounds one write's size.
const UNWRITTEN_RECORDS_MAX: usize = 100_000;

/// A read of the state, run once the state is recent enough, given the
/// log index it reflects (the applied index).
pub type ReadFn = Box<dyn FnOnce(&StateMachine, u64) + Send>;

/// Where a proposer waits for its commands' results.
pub type ProposeReply = oneshot::Sender<Result<Vec<Applied>, NodeError>>;

/// Where a membership change's proposer waits.
pub type ChangeReply = oneshot::Sender<Result<(), NodeError>>;

/// What a node applied, recorded for a checker when asked
/// ([`DriverCore::record_applies`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyRecord {
    /// A normal entry with commands, and what each returned.
    Entry {
        /// Log index.
        index: u64,
        /// Term of the entry.
        term: u64,
        /// The decoded entry.
        entry: LogEntry,
        /// One result per command.
        outcomes: Vec<Applied>,
    },
    /// An entry with no commands: a new leader's empty entry or a conf
    /// change.
    Empty {
        /// Log index.
        index: u64,
        /// Term of the entry.
        term: u64,
    },
    /// A snapshot from the leader replaced the state at this index.
    Snapshot {
        /// The snapshot's index.
        index: u64,
    },
}

/// A `ConfChangeV2` with one change.
pub fn conf_change(kind: ConfChangeType, id: u64) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc
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

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// The driver core of one node.
pub struct DriverCore<L: LogBackend, S: StateBackend> {
    /// This node's id.
    id: u64,
    /// Its settings.
    config: NodeConfig,
    /// raft-rs's node over the log store.
    raw: RawNode<L>,
    /// The replicated state machine.
    sm: StateMachine,
    /// The state store, checkpoint and members file.
    state: S,
    /// Messages to peers.
    transport: Box<dyn Transport>,
    /// Highest index applied to `sm` and written to `state`.
    applied: u64,
    /// Members' addresses, as the log says.
    members: BTreeMap<u64, String>,
    /// The same, shared with handles that answer "where is the leader".
    members_shared: Arc<RwLock<BTreeMap<u64, String>>>,
    /// Proposals waiting to be packed into an entry.
    proposals: VecDeque<(Vec<Command>, ProposeReply)>,
    /// When the oldest of them was queued (monotonic, to a turn).
    proposals_since_ms: Option<u64>,
    /// Proposed entries by index, waiting to apply.
    pending: BTreeMap<u64, Pending>,
    /// Proposed membership changes by index: term and who waits.
    change_waiters: BTreeMap<u64, (u64, ChangeReply)>,
    /// Linearizable reads waiting for a read state: when asked, and the read.
    reads: BTreeMap<u64, (u64, ReadFn)>,
    /// Reads with a read state, waiting for that index to apply.
    ready_reads: Vec<(u64, ReadFn)>,
    /// Id of the next read (its ReadIndex context).
    next_read: u64,
    /// When the leader last proposed a state machine `Tick` (monotonic ms).
    last_state_tick_ms: u64,
    /// Monotonic time of the latest turn.
    turn_ms: u64,
    /// When a message from each peer last arrived (monotonic, to a turn),
    /// for the leader's view of its followers.
    heard_at_ms: BTreeMap<u64, u64>,
    /// When the next Raft tick is due (monotonic ms).
    next_tick_ms: u64,
    /// Applied entries since the last checkpoint.
    entries_since_checkpoint: u64,
    /// Commands in the last entry this node proposed: how busy it is.
    last_entry_commands: usize,
    /// A checkpoint copied and waiting for the shell to take it off the
    /// thread ([`DriverCore::take_checkpoint_job`]).
    checkpoint_job: Option<CheckpointJob>,
    /// The index of the checkpoint being taken off the thread, until the
    /// shell hands back its result ([`DriverCore::checkpoint_staged`]).
    checkpoint_in_flight: Option<u64>,
    /// Records changed by entries applied since the state store was last
    /// written.
    unwritten: Changes,
    /// The applied index the state store holds.
    written_index: u64,
    /// When the oldest unwritten change was applied (monotonic ms).
    unwritten_since_ms: Option<u64>,
    /// Whether this node led at the end of the last turn.
    was_leader: bool,
    /// What was applied since the last [`DriverCore::take_applies`], when
    /// recording; `None` (the real node) records nothing.
    applies: Option<Vec<ApplyRecord>>,
    /// The time this node stamps into entries when it leads: what a
    /// majority of the voters' wall clocks agree on.
    clock: ClusterClock,
    /// Lease and session timers, kept while this node leads.
    timers: LeaseTimers,
}

impl<L: LogBackend, S: StateBackend> std::fmt::Debug for DriverCore<L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverCore")
            .field("status", &self.status())
            .finish()
    }
}

impl<L: LogBackend, S: StateBackend> DriverCore<L, S> {
    /// Opens a node over these stores: loads the state (the newer of the
    /// state store and the checkpoint), bootstraps a blank log from
    /// `config.peers`, and builds the `RawNode`.
    pub fn open(
        config: NodeConfig,
        mut log: L,
        mut state: S,
        transport: Box<dyn Transport>,
        now: Now,
    ) -> Result<Self, NodeError> {
        let (mut sm, mut applied) = match state.load()? {
            Some((sm, index)) => (sm, index),
            None => (StateMachine::new(config.state_config.clone()), 0),
        };
        let mut members = BTreeMap::new();
        // A checkpoint newer than the state store (sled is not fsynced)
        // wins; the log replays from there.
        if let Some(bytes) = state.read_checkpoint() {
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
                    state.replace(&sm, applied)?;
                }
                // A snapshot from the leader is written here before the log
                // adopts it. A crash between the two leaves a log that ends
                // before it, or holds another term's entry at its index:
                // finish the install (the snapshot is committed data).
                let meta = snapshot.get_metadata();
                let log_has_it = log.term(meta.index).is_ok_and(|term| term == meta.term);
                if meta.index > log.snapshot_meta().index && !log_has_it {
                    tracing::warn!(
                        node = config.id,
                        index = meta.index,
                        "finishing a snapshot install a crash interrupted"
                    );
                    log.install_snapshot(&snapshot)?;
                } else {
                    log.cache_snapshot(snapshot);
                }
            }
        }
        if let Some(stored) = state.load_members() {
            members.extend(stored);
        }
        if log.is_blank() {
            if config.bootstrap && !config.peers.is_empty() {
                let cs = ConfState {
                    voters: config.peers.keys().copied().collect(),
                    ..ConfState::default()
                };
                log.bootstrap(cs)?;
            }
            // Where to reach the others until the log says otherwise.
            for (id, address) in &config.peers {
                members.entry(*id).or_insert_with(|| address.clone());
            }
            state.save_members(&members)?;
        }
        // The bootstrap snapshot is the empty state: nothing to load for it,
        // whether or not anything was applied since.
        if applied == 0 && log.snapshot_meta().index == BOOTSTRAP_INDEX {
            applied = BOOTSTRAP_INDEX;
        }
        // The state cannot be ahead of the log it was applied from: raft-rs
        // would panic on it. It happens when log writes acknowledged as
        // durable were lost.
        let last = log.last_index().unwrap_or(0);
        if applied > last {
            return Err(NodeError::Storage(format!(
                "the state store is at index {applied} but the raft log ends at {last}: log writes were lost"
            )));
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
        let members_shared = Arc::new(RwLock::new(members.clone()));
        let mut core = Self {
            id: config.id,
            raw,
            sm,
            state,
            transport,
            applied,
            members,
            members_shared,
            proposals: VecDeque::new(),
            proposals_since_ms: None,
            pending: BTreeMap::new(),
            change_waiters: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            next_read: 1,
            last_state_tick_ms: now.mono_ms,
            turn_ms: now.mono_ms,
            heard_at_ms: BTreeMap::new(),
            next_tick_ms: now.mono_ms + config.tick_ms,
            entries_since_checkpoint: 0,
            last_entry_commands: 0,
            checkpoint_job: None,
            checkpoint_in_flight: None,
            unwritten: Changes::default(),
            written_index: applied,
            unwritten_since_ms: None,
            was_leader: false,
            applies: None,
            clock: ClusterClock::default(),
            timers: LeaseTimers::default(),
            config,
        };
        core.pin_election_timeout();
        Ok(core)
    }

    /// A single-voter cluster elects itself at once instead of waiting for
    /// an election timeout. Call once after [`DriverCore::open`] (and after
    /// the first status is published, which should not show a leader that
    /// has not committed anything yet).
    pub fn campaign_if_alone(&mut self) {
        let voters = self.raw.raft.prs().conf().voters().ids();
        if voters.len() == 1 && voters.contains(self.id) {
            let _ = self.raw.campaign();
        }
        self.pin_election_timeout();
    }

    /// Starts recording what is applied, for a checker to take with
    /// [`DriverCore::take_applies`].
    pub fn record_applies(&mut self) {
        self.applies.get_or_insert_with(Vec::new);
    }

    /// What was applied since the last call (empty unless recording).
    pub fn take_applies(&mut self) -> Vec<ApplyRecord> {
        self.applies
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The members' addresses, shared with handles.
    pub fn members_shared(&self) -> Arc<RwLock<BTreeMap<u64, String>>> {
        self.members_shared.clone()
    }

    /// The state machine as applied so far (a local, possibly stale read).
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// The log store (the simulation takes crash images of it).
    pub fn log(&self) -> &L {
        self.raw.store()
    }

    /// The state backend (the simulation takes crash images of it).
    pub fn state_backend(&self) -> &S {
        &self.state
    }

    /// The state backend, mutably (the simulation's background flushes).
    pub fn state_backend_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// When the next Raft tick is due; the caller should call
    /// [`DriverCore::turn`] by then.
    pub fn next_tick_ms(&self) -> u64 {
        match self.proposals_since_ms {
            Some(since) if !self.proposals.is_empty() => {
                self.next_tick_ms.min(since + self.hold_ms())
            }
            _ => self.next_tick_ms,
        }
    }

    /// Whether queued proposals wait to be packed with more: the queue is
    /// not yet a full entry, and either the leader is busy and the oldest
    /// has waited less than [`BUSY_HOLD_MS`], or the leader has an
    /// uncommitted entry of its own and the oldest has waited less than
    /// [`PROPOSAL_HOLD_MS`].
    fn holding_proposals(&self, now: Now) -> bool {
        let committed = self.raw.raft.raft_log.committed;
        let in_flight = self
            .pending
            .keys()
            .next_back()
            .is_some_and(|&index| index > committed);
        let queued: usize = self.proposals.iter().map(|(c, _)| c.len()).sum();
        let waited = now
            .mono_ms
            .saturating_sub(self.proposals_since_ms.unwrap_or(now.mono_ms));
        queued < ENTRY_COMMANDS_MAX
            && if self.busy() {
                waited < BUSY_HOLD_MS
            } else {
                in_flight && waited < PROPOSAL_HOLD_MS
            }
    }

    /// Whether the leader's last entry shows sustained load.
    fn busy(&self) -> bool {
        self.last_entry_commands >= BUSY_ENTRY_COMMANDS
    }

    /// How long the oldest queued proposal may be held.
    fn hold_ms(&self) -> u64 {
        if self.busy() {
            BUSY_HOLD_MS
        } else {
            PROPOSAL_HOLD_MS
        }
    }

    /// Queues commands for the next entry; `reply` hears their results once
    /// applied. Fails at once with `NotLeader` on a follower.
    pub fn propose(&mut self, commands: Vec<Command>, reply: ProposeReply) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
        } else {
            self.queue(commands, reply);
        }
    }

    /// Queues commands for the next entry, noting when the queue started.
    fn queue(&mut self, commands: Vec<Command>, reply: ProposeReply) {
        self.proposals_since_ms.get_or_insert(self.turn_ms);
        self.proposals.push_back((commands, reply));
    }

    /// Runs `f` on the state: at once when not `linearizable`, else once the
    /// state reflects everything committed before now (ReadIndex).
    pub fn read(&mut self, f: ReadFn, linearizable: bool, now: Now) {
        if !linearizable {
            f(&self.sm, self.applied);
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        self.raw.read_index(id.to_be_bytes().to_vec());
        self.reads.insert(id, (now.mono_ms, f));
        self.pin_election_timeout();
    }

    /// Answers a heartbeat on the leader without a log entry: the state
    /// machine checks the session and the tokens, and the leases found live
    /// run on for another TTL on this leader's timers. Stale tokens are
    /// recorded as audit events by a proposal of their own.
    pub fn heartbeat(
        &mut self,
        worker: WorkerId,
        epoch: u64,
        tasks: Vec<TaskProgress>,
        now: Now,
    ) -> Result<Result<HeartbeatReply, Rejection>, NodeError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        // A new leader answers only once its state holds everything
        // committed: a lease granted in an entry it has not applied yet
        // would otherwise read as lost and stop a healthy attempt.
        if !self.raw.raft.commit_to_current_term()
            || self.applied < self.raw.raft.raft_log.committed
        {
            return Err(NodeError::CatchingUp);
        }
        let (reply, stale) = match self.sm.check_heartbeat(&worker, epoch, &tasks) {
            Ok(checked) => checked,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let live = reply
            .tasks
            .iter()
            .zip(&tasks)
            .filter(|((_, status), _)| matches!(status, HeartbeatStatus::Ok { .. }))
            .map(|(_, progress)| *progress);
        self.timers
            .heartbeat(&self.sm, &worker, epoch, live, now.mono_ms);
        if !stale.is_empty() {
            let (tx, _rx) = oneshot::channel();
            self.queue(
                vec![Command::StaleHeartbeats {
                    worker,
                    tasks: stale,
                }],
                tx,
            );
        }
        Ok(Ok(reply))
    }

    /// Leases this node times (while it leads).
    pub fn timed_leases(&self) -> usize {
        self.timers.leases()
    }

    /// Records a peer's wall clock, as a batch of its messages carried it
    /// (the cluster's time is what a majority of the voters' clocks agree
    /// on; see [`ClusterClock`]).
    pub fn observe_clock(&mut self, peer: u64, wall_ms: i64, now: Now) {
        self.clock.observe(peer, wall_ms, now);
    }

    /// Steps a message from a peer.
    pub fn step(&mut self, message: Message) {
        self.heard_at_ms.insert(message.from, self.turn_ms);
        let _ = self.raw.step(message);
        self.pin_election_timeout();
    }

    /// Proposes a membership change; `member` is the added node's address.
    pub fn change_members(
        &mut self,
        cc: ConfChangeV2,
        member: Option<(u64, String)>,
        reply: ChangeReply,
    ) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        // raft-rs would turn a second change into an empty entry while the
        // first is uncommitted or unapplied, and its caller would wait for
        // an outcome that never comes: refuse it now.
        if self.raw.raft.has_pending_conf() {
            let _ = reply.send(Err(NodeError::ChangeInProgress));
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

    /// Asks this node (if it leads) to hand leadership to `id`.
    pub fn transfer_leader(&mut self, id: u64) {
        self.raw.transfer_leader(id);
        self.pin_election_timeout();
    }

    /// Tells Raft a peer could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Tells Raft how sending a snapshot to `id` ended.
    pub fn report_snapshot(&mut self, id: u64, ok: bool) {
        self.raw.report_snapshot(
            id,
            if ok {
                raft::SnapshotStatus::Finish
            } else {
                raft::SnapshotStatus::Failure
            },
        );
    }

    /// One turn after events were handled: the Raft tick when due, queued
    /// proposals packed into entries, the Ready handled, a checkpoint when
    /// one is due. An error means storage failed and the node must stop.
    pub fn turn(&mut self, now: Now) -> Result<(), NodeError> {
        self.turn_ms = now.mono_ms;
        if now.mono_ms >= self.next_tick_ms {
            self.raw.tick();
            self.next_tick_ms += self.config.tick_ms;
            if self.next_tick_ms < now.mono_ms {
                self.next_tick_ms = now.mono_ms + self.config.tick_ms;
            }
            self.on_tick(now);
        }
        self.flush_proposals(now);
        let mut result = self.on_ready(now);
        if result.is_ok() {
            result = self.maybe_write_state(now);
        }
        if result.is_ok() {
            self.maybe_checkpoint();
        }
        self.pin_election_timeout();
        result
    }

    /// Writes applied changes to the state store once the oldest has
    /// waited `state_write_ms`, or once there are many of them.
    fn maybe_write_state(&mut self, now: Now) -> Result<(), NodeError> {
        if self.applied == self.written_index {
            return Ok(());
        }
        let since = *self.unwritten_since_ms.get_or_insert(now.mono_ms);
        let due = now.mono_ms.saturating_sub(since) >= self.config.state_write_ms
            || self.unwritten.len() >= UNWRITTEN_RECORDS_MAX;
        if due { self.write_state() } else { Ok(()) }
    }

    /// Writes every applied change, and the applied index, in one
    /// transaction.
    fn write_state(&mut self) -> Result<(), NodeError> {
        if self.applied == self.written_index {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.unwritten);
        self.state.persist(&self.sm, &changes, self.applied)?;
        self.written_index = self.applied;
        self.unwritten_since_ms = None;
        Ok(())
    }

    /// Fails everything waiting (proposals, membership changes) with `err`.
    pub fn fail_everything(&mut self, err: NodeError) {
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

    /// Stops: everything waiting fails with `Stopped`, and buffered state
    /// writes are flushed.
    pub fn close(&mut self) {
        self.fail_everything(NodeError::Stopped);
        if let Err(e) = self.write_state() {
            tracing::warn!(node = self.id, error = %e, "writing the state on shutdown failed; the log replays it on restart");
        }
        let _ = self.state.flush();
    }

    /// With [`NodeConfig::election_seed`], replaces the election timeout
    /// raft-rs drew from its thread-local RNG by one drawn from the seed.
    ///
    /// raft-rs redraws the timeout only when it resets for a new term or
    /// role (`Raft::reset`), always together with `election_elapsed = 0`,
    /// and reads it only on a tick. So deriving the timeout from (seed,
    /// term, role) and setting it after every call that can reset, before
    /// the next tick, makes every timeout raft-rs acts on a function of the
    /// seed, whatever its RNG drew.
    fn pin_election_timeout(&mut self) {
        let Some(seed) = self.config.election_seed else {
            return;
        };
        let min = self.config.election_ticks;
        let raft = &mut self.raw.raft;
        let role = match raft.state {
            StateRole::Follower => 1,
            StateRole::Candidate => 2,
            StateRole::Leader => 3,
            StateRole::PreCandidate => 4,
        };
        let draw = mix(seed ^ mix(raft.term.wrapping_mul(8).wrapping_add(role)));
        // raft-rs's default range: [election_tick, 2 * election_tick).
        let timeout = min + (draw % min.max(1) as u64) as usize;
        if raft.randomized_election_timeout() != timeout {
            raft.set_randomized_election_timeout(timeout);
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
    fn on_tick(&mut self, now: Now) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        if now.mono_ms.saturating_sub(self.last_state_tick_ms) >= self.config.state_tick_ms {
            self.last_state_tick_ms = now.mono_ms;
            let (tx, _rx) = oneshot::channel();
            self.queue(vec![Command::Tick], tx);
        }
        // Leases and sessions whose timers ran out end by log entry; what
        // heartbeats reported is written down every few seconds.
        let due = self.timers.due(&self.sm, now.mono_ms);
        let mut commands = Vec::new();
        if !due.leases.is_empty() {
            commands.push(Command::ExpireLeases { tasks: due.leases });
        }
        if !due.sessions.is_empty() {
            commands.push(Command::WorkersLost {
                workers: due.sessions,
            });
        }
        commands.extend(self.timers.heard(now.mono_ms));
        if !commands.is_empty() {
            let (tx, _rx) = oneshot::channel();
            self.queue(commands, tx);
        }
        // Promote a learner once it is within a few entries of the leader,
        // one change at a time. Only a learner that has acknowledged an
        // entry counts (`matched` is 0 until then): while the log is short,
        // one that was never heard from is also within a few entries, and
        // promoting it (a wrong address in AddNode, a node not started yet)
        // would cost the quorum, and with it any way to remove it again.
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
                .is_some_and(|p| p.matched > 0 && p.matched + 16 >= last);
            if caught_up {
                let cc = conf_change(ConfChangeType::AddNode, learner);
                if self.raw.propose_conf_change(Vec::new(), cc).is_ok() {
                    break;
                }
            }
        }
    }

    /// Packs queued proposals into as few entries as possible.
    fn flush_proposals(&mut self, now: Now) {
        if self.raw.raft.state == StateRole::Leader && self.holding_proposals(now) {
            return;
        }
        self.proposals_since_ms = None;
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
            if let Some(histogram) = &self.config.entry_commands {
                histogram.observe(commands.len() as f64);
            }
            self.last_entry_commands = commands.len();
            let voters: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
            let now_ms = self.clock.stamp(self.id, &voters, self.sm.now_ms(), now);
            // Planted bug: the leader's own clock is the cluster's.
            #[cfg(feature = "planted-bugs")]
            let now_ms = if self.config.planted.wall_clock_time {
                now.wall_ms.max(self.sm.now_ms())
            } else {
                now_ms
            };
            let entry = LogEntry { now_ms, commands };
            let data = super::entry::encode(&entry);
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
    fn on_ready(&mut self, now: Now) -> Result<(), NodeError> {
        if !self.raw.has_ready() {
            self.after_ready(now);
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
        self.after_ready(now);
        Ok(())
    }

    /// Bookkeeping after each turn: leadership changes, due reads, read
    /// timeouts.
    fn after_ready(&mut self, now: Now) {
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
            self.last_state_tick_ms = now.mono_ms;
            // Every live lease and session gets a fresh TTL from this
            // leader's start: none expires early for a failover.
            self.timers.start(&self.sm, now.mono_ms);
        }
        if self.was_leader && !is_leader {
            self.timers.clear();
        }
        self.was_leader = is_leader;
        let applied = self.applied;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.ready_reads = waiting;
        for (_, f) in due {
            f(&self.sm, applied);
        }
        // Reads that never got a read state (no leader) are dropped after a
        // while; their callers time out on their own.
        self.reads
            .retain(|_, (at, _)| now.mono_ms.saturating_sub(*at) < READ_STATE_WAIT_MS);
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
                        if let Some(applies) = &mut self.applies {
                            applies.push(ApplyRecord::Empty {
                                index: entry.index,
                                term: entry.term,
                            });
                        }
                        results.push((entry.index, entry.term, Vec::new()));
                        continue;
                    }
                    // A committed entry this build cannot read must stop the
                    // node: skipping it would make this replica's state differ
                    // from the others' (a mixed-version cluster mid-upgrade).
                    let Some(log_entry) = super::entry::decode(&entry.data) else {
                        return Err(NodeError::Storage(format!(
                            "committed log entry {} is not in entry format {ENTRY_FORMAT} (its first byte is {}); this coordinator is older than the one that wrote it, so upgrade it",
                            entry.index,
                            entry.data.first().copied().unwrap_or(0)
                        )));
                    };
                    let outcomes = self.sm.apply(&log_entry);
                    self.clock.applied(log_entry.now_ms, self.turn_ms);
                    if self.raw.raft.state == StateRole::Leader {
                        for (command, outcome) in log_entry.commands.iter().zip(&outcomes) {
                            if let Ok(outcome) = outcome {
                                self.timers
                                    .applied(&self.sm, command, outcome, self.turn_ms);
                            }
                        }
                    }
                    if let Some(applies) = &mut self.applies {
                        applies.push(ApplyRecord::Entry {
                            index: entry.index,
                            term: entry.term,
                            entry: log_entry,
                            outcomes: outcomes.clone(),
                        });
                    }
                    results.push((entry.index, entry.term, outcomes));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?;
                    if let Some(applies) = &mut self.applies {
                        applies.push(ApplyRecord::Empty {
                            index: entry.index,
                            term: entry.term,
                        });
                    }
                }
            }
            self.entries_since_checkpoint += 1;
        }
        // Written to the state store with the changes of the entries after
        // it, in one transaction with the applied index (`write_state`).
        self.unwritten.absorb(self.sm.take_changes());
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
        // A change whose index applied without applying the change was
        // either overwritten by another leader's entry or refused by Raft
        // (turned into an empty entry): either way it did not happen, and
        // it never will at another index.
        let stale: Vec<u64> = self
            .change_waiters
            .range(..=self.applied)
            .map(|(i, _)| *i)
            .collect();
        for index in stale {
            if let Some((_, reply)) = self.change_waiters.remove(&index) {
                let _ = reply.send(Err(NodeError::ChangeRefused));
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
                self.state.save_members(&self.members)?;
                self.share_members();
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

    fn share_members(&self) {
        if let Ok(mut shared) = self.members_shared.write() {
            *shared = self.members.clone();
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeError> {
        let payload: SnapshotPayload = postcard::from_bytes(snapshot.get_data())
            .map_err(|e| NodeError::Storage(format!("snapshot: {e}")))?;
        let sm =
            StateMachine::restore(&payload.state).map_err(|e| NodeError::Storage(e.to_string()))?;
        let index = snapshot.get_metadata().index;
        self.state.write_checkpoint(
            &snapshot
                .write_to_bytes()
                .map_err(|e| NodeError::Storage(e.to_string()))?,
        )?;
        self.state.replace(&sm, index)?;
        self.raw.mut_store().install_snapshot(snapshot)?;
        #[cfg(feature = "planted-bugs")]
        let sm = {
            let mut sm = sm;
            sm.plant(self.config.planted);
            sm
        };
        self.sm = sm;
        self.applied = index;
        // The store now holds exactly this state.
        self.unwritten = Changes::default();
        self.written_index = index;
        self.unwritten_since_ms = None;
        if let Some(applies) = &mut self.applies {
            applies.push(ApplyRecord::Snapshot { index });
        }
        self.members = payload.members;
        for (id, address) in &self.members {
            if *id != self.id {
                self.transport.set_peer(*id, Some(address.clone()));
            }
        }
        self.state.save_members(&self.members)?;
        self.share_members();
        self.entries_since_checkpoint = 0;
        Ok(())
    }

    /// Takes a checkpoint when enough entries were applied, or when raft-rs
    /// needs a snapshot for a lagging follower: the state is written with a
    /// real fsync first, and only then is the log compacted. With a staging
    /// file (on disk) the state is copied here and encoded and written off
    /// the thread ([`crate::raft::checkpoint`]); without one, inline.
    fn maybe_checkpoint(&mut self) {
        if self.checkpoint_in_flight.is_some() || self.applied == 0 {
            return;
        }
        let wanted = self.raw.store().snapshot_wanted();
        if self.entries_since_checkpoint < self.config.checkpoint_entries && wanted.is_none() {
            return;
        }
        let result = match self.state.checkpoint_staging() {
            Some(staging) => self.stage_checkpoint(staging),
            None => self.checkpoint(),
        };
        if let Err(e) = result {
            tracing::warn!(node = self.id, error = %e, "checkpoint failed; the log is not compacted");
        }
    }

    /// The applied index and the term of its entry: what a checkpoint is
    /// taken at.
    fn applied_at(&self) -> Result<(u64, u64), NodeError> {
        let term = self
            .raw
            .store()
            .term(self.applied)
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        Ok((self.applied, term))
    }

    fn checkpoint(&mut self) -> Result<(), NodeError> {
        let (index, term) = self.applied_at()?;
        let payload = SnapshotPayload {
            members: self.members.clone(),
            state: self.sm.snapshot(),
        };
        let snapshot = snapshot_of(&payload, index, term, self.raw.store().conf_state().clone());
        let bytes = snapshot
            .write_to_bytes()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        self.state.write_checkpoint(&bytes)?;
        self.raw.mut_store().compact_to_snapshot(snapshot)?;
        self.entries_since_checkpoint = 0;
        Ok(())
    }

    /// Copies what a checkpoint at the applied index holds, for the shell
    /// to encode and write to `staging` off the thread.
    fn stage_checkpoint(&mut self, staging: std::path::PathBuf) -> Result<(), NodeError> {
        let (index, term) = self.applied_at()?;
        self.checkpoint_job = Some(CheckpointJob {
            index,
            term,
            conf_state: self.raw.store().conf_state().clone(),
            members: self.members.clone(),
            core: self.sm.core().clone(),
            staging,
        });
        self.checkpoint_in_flight = Some(index);
        // A failed attempt is retried after as many entries again, not on
        // every turn (a full disk would otherwise be hammered).
        self.entries_since_checkpoint = 0;
        Ok(())
    }

    /// The checkpoint copied by the last turn, for the shell to run off the
    /// thread ([`CheckpointJob::run`]) and hand back to
    /// [`DriverCore::checkpoint_staged`].
    pub fn take_checkpoint_job(&mut self) -> Option<CheckpointJob> {
        self.checkpoint_job.take()
    }

    /// Adopts a checkpoint written off the thread and compacts the log to
    /// it, unless a newer checkpoint (a snapshot installed from the leader)
    /// took its place meanwhile. An error here is the checkpoint's, not the
    /// node's: the log is simply not compacted yet.
    pub fn checkpoint_staged(&mut self, result: Result<Snapshot, NodeError>) {
        let Some(index) = self.checkpoint_in_flight.take() else {
            return;
        };
        let adopted = result.and_then(|snapshot| {
            debug_assert_eq!(snapshot.get_metadata().index, index);
            if index <= self.raw.store().snapshot_meta().index {
                return Ok(());
            }
            self.state.adopt_staged_checkpoint()?;
            Ok(self.raw.mut_store().compact_to_snapshot(snapshot)?)
        });
        if let Err(e) = adopted {
            tracing::warn!(node = self.id, index, error = %e, "checkpoint failed; the log is not compacted");
        }
    }

    /// The node's Raft status.
    pub fn status(&self) -> NodeStatus {
        let raft = &self.raw.raft;
        let conf = raft.prs().conf();
        let is_leader = raft.state == StateRole::Leader;
        let member = |id: u64, address: String| {
            let progress = raft.prs().get(id);
            MemberStatus {
                id,
                address,
                voter: conf.voters().contains(id),
                match_index: progress.map_or(0, |p| p.matched),
                replication: match progress.map(|p| p.state) {
                    Some(_) if !is_leader || id == self.id => Replication::Unknown,
                    Some(ProgressState::Probe) => Replication::Probe,
                    Some(ProgressState::Replicate) => Replication::Replicate,
                    Some(ProgressState::Snapshot) => Replication::Snapshot,
                    None => Replication::Unknown,
                },
                last_contact_age_ms: (is_leader && id != self.id)
                    .then(|| self.heard_at_ms.get(&id))
                    .flatten()
                    .map(|at| self.turn_ms.saturating_sub(*at)),
            }
        };
        let mut members: Vec<MemberStatus> = self
            .members
            .iter()
            .map(|(id, address)| member(*id, address.clone()))
            .collect();
        for id in conf
            .voters()
            .ids()
            .iter()
            .chain(conf.learners().iter().copied())
        {
            if !self.members.contains_key(&id) {
                members.push(member(id, String::new()));
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
            is_leader,
            members,
            snapshot_index: self.raw.store().snapshot_meta().index,
            last_fsync_us: self.raw.store().last_sync_us(),
            failure: None,
        }
    }
}

/// SplitMix64's finaliser: spreads a seed over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::mem_log::MemLog;
    use crate::raft::mem_state::MemState;
    use raft::Storage;

    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(&self, _messages: Vec<Message>) {}
        fn set_peer(&self, _id: u64, _address: Option<String>) {}
    }

    fn config() -> NodeConfig {
        let mut config = NodeConfig::new(2, "/nonexistent/drover-test");
        config.peers = (1..=3).map(|id| (id, format!("mem:{id}"))).collect();
        config
    }

    fn voters() -> ConfState {
        ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        }
    }

    fn bootstrapped() -> MemLog {
        let mut log = MemLog::new();
        log.bootstrap(voters()).unwrap();
        log
    }

    fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                index,
                term,
                ..Entry::default()
            })
            .collect()
    }

    /// A snapshot from a leader at `index`/`term`, as `install_snapshot`
    /// writes it to the checkpoint before the log adopts it.
    fn checkpoint_from_leader(state: &mut MemState, index: u64, term: u64) {
        let payload = SnapshotPayload {
            members: config().peers,
            state: StateMachine::new(config().state_config).snapshot(),
        };
        let mut snapshot = Snapshot::default();
        snapshot.set_data(postcard::to_stdvec(&payload).unwrap().into());
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().set_conf_state(voters());
        state
            .write_checkpoint(&snapshot.write_to_bytes().unwrap())
            .unwrap();
    }

    /// Monotonic time `mono_ms`, on a wall clock that does not move.
    fn at(mono_ms: u64) -> Now {
        Now {
            mono_ms,
            wall_ms: 1_780_272_000_000,
        }
    }

    /// Opens the disk state in `dir`, waiting while a just-dropped sled
    /// database still holds its lock (released from a background thread).
    fn disk_state_when_unlocked(dir: &std::path::Path) -> crate::raft::backend::DiskState {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match crate::raft::backend::DiskState::open(dir) {
                Ok(state) => return state,
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    assert!(std::time::Instant::now() < deadline, "still locked: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A single-voter cluster in memory that has elected itself (at 1 ms).
    fn lone_voter() -> DriverCore<MemLog, MemState> {
        let mut config = NodeConfig::new(1, "/nonexistent/drover-test");
        config.peers = [(1, "mem:1".to_owned())].into();
        let mut core = DriverCore::open(
            config,
            MemLog::new(),
            MemState::new(),
            Box::new(NoNetwork),
            at(0),
        )
        .expect("the node opens");
        core.campaign_if_alone();
        core.turn(at(1)).unwrap();
        core
    }

    fn open(log: MemLog, state: MemState) -> Result<DriverCore<MemLog, MemState>, NodeError> {
        let now = Now {
            mono_ms: 0,
            wall_ms: 0,
        };
        DriverCore::open(config(), log, state, Box::new(NoNetwork), now)
    }

    #[test]
    fn a_committed_entry_in_an_unknown_format_stops_the_node_with_a_clear_error() {
        // Written by a newer release (a mixed-version cluster mid-upgrade):
        // applying anything else would make this replica diverge.
        let mut log = bootstrapped();
        let mut newer = entries(2..=2, 2);
        newer[0].data = vec![ENTRY_FORMAT + 1, 0, 0].into();
        let committed = raft::prelude::HardState {
            term: 2,
            commit: 2,
            ..raft::prelude::HardState::default()
        };
        log.persist(&newer, Some(&committed), true).unwrap();
        let mut core = open(log, MemState::new()).expect("the node opens");
        let now = Now {
            mono_ms: 1,
            wall_ms: 0,
        };
        let err = core.turn(now).unwrap_err().to_string();
        assert!(
            err.contains("committed log entry 2 is not in entry format 2 (its first byte is 3)")
                && err.contains("upgrade it"),
            "{err}"
        );
        assert_eq!(core.status().applied_index, 1);
    }

    #[test]
    fn a_crash_after_a_received_snapshot_was_saved_finishes_its_install_on_restart() {
        // The log ends at 6; the leader's snapshot at 8 was saved, then the
        // node crashed before the log adopted it.
        let mut log = bootstrapped();
        log.persist(&entries(2..=6, 2), None, true).unwrap();
        let mut state = MemState::new();
        checkpoint_from_leader(&mut state, 8, 3);
        let core = open(log, state).expect("the node starts");
        let status = core.status();
        assert_eq!(status.applied_index, 8);
        assert_eq!(status.snapshot_index, 8);
        assert_eq!(core.raw.store().first_index().unwrap(), 9);
    }

    #[test]
    fn a_received_snapshot_replaces_a_log_tail_from_another_term_on_restart() {
        // The log holds term-2 entries past 6 that the leader's term-3
        // snapshot at 6 overrides.
        let mut log = bootstrapped();
        log.persist(&entries(2..=9, 2), None, true).unwrap();
        let mut state = MemState::new();
        checkpoint_from_leader(&mut state, 6, 3);
        let core = open(log, state).expect("the node starts");
        assert_eq!(core.status().snapshot_index, 6);
        assert_eq!(core.raw.store().last_index().unwrap(), 6);
        assert_eq!(core.raw.store().term(6).unwrap(), 3);
    }

    #[test]
    fn a_learner_that_never_answered_is_not_promoted_while_the_log_is_short() {
        // A lone voter that has written only a few entries: every learner
        // is within a few entries of its log, so only an acknowledged entry
        // may count as catching up. Promoting a learner that is not there
        // (a wrong address in AddNode) would cost the cluster its quorum,
        // and with it the means to remove the learner again.
        let mut core = lone_voter();
        let (added, mut adding) = reply::channel();
        core.change_members(
            conf_change(ConfChangeType::AddLearnerNode, 2),
            Some((2, "mem:2".to_owned())),
            added,
        );
        // Well past any election timeout, a tick per turn.
        let mut ms = 1;
        for _ in 0..100 {
            ms += 100;
            core.turn(at(ms)).unwrap();
        }
        assert_eq!(adding.try_recv(), Ok(Ok(())), "the learner was added");
        let status = core.status();
        let learner = status.members.iter().find(|m| m.id == 2);
        assert!(
            learner.is_some_and(|m| !m.voter),
            "a learner that never answered stays a learner: {status:?}"
        );
        assert!(status.is_leader, "the lone voter still leads: {status:?}");
        let (tx, mut rx) = reply::channel();
        core.propose(vec![Command::Tick], tx);
        core.turn(at(ms + 1)).unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(Ok(_))),
            "the lone voter still commits"
        );
    }

    #[test]
    fn a_local_checkpoint_the_log_agrees_with_is_only_cached() {
        let mut log = bootstrapped();
        log.persist(&entries(2..=9, 3), None, true).unwrap();
        let mut state = MemState::new();
        checkpoint_from_leader(&mut state, 6, 3);
        let core = open(log, state).expect("the node starts");
        assert_eq!(core.status().applied_index, 6);
        assert_eq!(core.raw.store().last_index().unwrap(), 9);
        assert_eq!(
            core.raw
                .store()
                .snapshot(0, 1)
                .unwrap()
                .get_metadata()
                .index,
            6
        );
    }

    #[test]
    fn on_disk_a_checkpoint_is_copied_on_the_raft_thread_and_written_and_adopted_off_it() {
        use crate::raft::log_store::LogStore;
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(1, dir.path());
        config.peers = [(1, "mem:1".to_owned())].into();
        config.checkpoint_entries = 5;
        let at = |mono_ms| Now {
            mono_ms,
            wall_ms: 1_780_272_000_000,
        };
        let open = |config: NodeConfig| {
            DriverCore::open(
                config,
                LogStore::open(&dir.path().join("raft")).unwrap(),
                disk_state_when_unlocked(dir.path()),
                Box::new(NoNetwork),
                at(0),
            )
            .expect("the node opens")
        };
        let mut core = open(config.clone());
        core.campaign_if_alone();
        let mut ms = 1;
        let mut job = None;
        while job.is_none() {
            let (tx, _rx) = reply::channel();
            core.propose(vec![Command::Tick], tx);
            ms += 1;
            core.turn(at(ms)).unwrap();
            job = core.take_checkpoint_job();
            assert!(ms < 100, "no checkpoint was staged");
        }
        let job = job.unwrap();
        let index = job.index;
        assert_eq!(
            core.status().snapshot_index,
            BOOTSTRAP_INDEX,
            "staging neither writes nor compacts on the Raft thread"
        );
        // While it is written, entries keep applying and no second copy is
        // taken.
        for _ in 0..10 {
            let (tx, _rx) = reply::channel();
            core.propose(vec![Command::Tick], tx);
            ms += 1;
            core.turn(at(ms)).unwrap();
            assert!(core.take_checkpoint_job().is_none());
        }
        core.checkpoint_staged(job.run());
        assert_eq!(core.status().snapshot_index, index);
        assert_eq!(core.raw.store().first_index().unwrap(), index + 1);
        let applied = core.status().applied_index;
        core.close();
        drop(core);
        // A restart starts from the adopted checkpoint and replays the rest.
        let core = open(config);
        assert_eq!(core.status().snapshot_index, index);
        assert_eq!(core.status().applied_index, applied);
    }

    #[test]
    fn a_busy_leader_holds_proposals_into_larger_entries_and_an_idle_one_does_not() {
        let mut core = lone_voter();
        // Idle: a proposal goes out on the turn it arrives.
        let (tx, mut rx) = reply::channel();
        core.propose(vec![Command::Tick; BUSY_ENTRY_COMMANDS], tx);
        core.turn(at(2)).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Ok(_))), "proposed at once");
        // That entry was a busy one's: the next proposal (queued as of the
        // last turn, at 2) waits to be packed with more, and the driver
        // asks to be woken when the hold ends.
        let (tx, mut rx) = reply::channel();
        core.propose(vec![Command::Tick], tx);
        core.turn(at(3)).unwrap();
        assert!(rx.try_recv().is_err(), "held while busy");
        assert_eq!(core.next_tick_ms(), 2 + BUSY_HOLD_MS);
        core.turn(at(1 + BUSY_HOLD_MS)).unwrap();
        assert!(rx.try_recv().is_err(), "still held");
        core.turn(at(2 + BUSY_HOLD_MS)).unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(Ok(_))),
            "proposed when the hold ends"
        );
        // A small entry ends the busy spell.
        let (tx, mut rx) = reply::channel();
        core.propose(vec![Command::Tick], tx);
        core.turn(at(3 + BUSY_HOLD_MS)).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Ok(_))), "idle again");
    }
}
