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
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Message, Snapshot};
use raft::{ProgressState, RawNode, StateRole};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::backend::{BOOTSTRAP_INDEX, LogBackend, SnapshotPayload, StateBackend};
use super::checkpoint::CheckpointJob;
use super::cluster_clock::ClusterClock;
use super::config::{NodeConfig, Transport};
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
mod apply;
mod checkpoints;
mod ready;

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
mod tests;
