//! Turning the Raft core: ticks, held proposals flushed into entries, and
//! each `Ready` persisted, sent and applied.

use raft::StateRole;
use raft::prelude::{ConfChangeType, Snapshot};
use tokio::sync::oneshot;

use crate::clock::Now;
use crate::raft::backend::{LogBackend, StateBackend};
use crate::raft::error::NodeError;
use crate::state::{Command, LogEntry};

use super::*;

impl<L: LogBackend, S: StateBackend> DriverCore<L, S> {
    /// Leader duties on each tick: the state machine's clock, and promoting
    /// learners that caught up.
    pub(super) fn on_tick(&mut self, now: Now) {
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
    pub(super) fn flush_proposals(&mut self, now: Now) {
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
            let data = crate::raft::entry::encode(&entry);
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
    pub(super) fn on_ready(&mut self, now: Now) -> Result<(), NodeError> {
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
    pub(super) fn after_ready(&mut self, now: Now) {
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

    pub(super) fn collect_reads(&mut self, states: Vec<raft::ReadState>) {
        for state in states {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            if let Some((_, f)) = self.reads.remove(&u64::from_be_bytes(bytes)) {
                self.ready_reads.push((state.index, f));
            }
        }
    }
}
