//! Applying committed entries and snapshots to the state machine, and
//! membership changes to the configuration.

use raft::StateRole;
use raft::prelude::{ConfChangeType, ConfChangeV2, Entry, EntryType, Snapshot};

use crate::raft::backend::{LogBackend, SnapshotPayload, StateBackend};
use crate::raft::entry::ENTRY_FORMAT;
use crate::raft::error::NodeError;
use crate::state::changes::Changes;
use crate::state::{Applied, StateMachine};

use super::*;

impl<L: LogBackend, S: StateBackend> DriverCore<L, S> {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
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
                    let Some(log_entry) = crate::raft::entry::decode(&entry.data) else {
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

    pub(super) fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), NodeError> {
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

    pub(super) fn share_members(&self) {
        if let Ok(mut shared) = self.members_shared.write() {
            *shared = self.members.clone();
        }
    }

    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeError> {
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
}
