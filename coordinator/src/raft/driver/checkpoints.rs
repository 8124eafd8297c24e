//! Checkpoints: when to take one, staging it off the Raft thread, and
//! adopting it so the log can be compacted.

use raft::prelude::Snapshot;

use crate::raft::backend::{LogBackend, SnapshotPayload, StateBackend};
use crate::raft::checkpoint::{CheckpointJob, snapshot_of};
use crate::raft::error::NodeError;

use super::*;

impl<L: LogBackend, S: StateBackend> DriverCore<L, S> {
    /// Takes a checkpoint when enough entries were applied, or when raft-rs
    /// needs a snapshot for a lagging follower: the state is written with a
    /// real fsync first, and only then is the log compacted. With a staging
    /// file (on disk) the state is copied here and encoded and written off
    /// the thread ([`crate::raft::checkpoint`]); without one, inline.
    pub(super) fn maybe_checkpoint(&mut self) {
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
    pub(super) fn applied_at(&self) -> Result<(u64, u64), NodeError> {
        let term = self
            .raw
            .store()
            .term(self.applied)
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        Ok((self.applied, term))
    }

    pub(super) fn checkpoint(&mut self) -> Result<(), NodeError> {
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
    pub(super) fn stage_checkpoint(
        &mut self,
        staging: std::path::PathBuf,
    ) -> Result<(), NodeError> {
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
    /// thread (`CheckpointJob::run`) and hand back to
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
}
