//! A checkpoint taken off the Raft thread.
//!
//! Encoding the whole state and writing it with a real fsync grows with the
//! state: at 10M finished partitions it held the Raft thread for hundreds
//! of milliseconds, long enough for followers to miss heartbeats and elect
//! another leader. The driver instead copies the state (tens of
//! milliseconds at that size), and the shell encodes and writes the copy on
//! a thread of its own, to a staging file. Back on the Raft thread the
//! driver adopts the staged file (a rename) and compacts the log, unless a
//! newer checkpoint (a snapshot from the leader) arrived meanwhile.
//!
//! The simulation's in-memory state has no staging file, so it takes
//! checkpoints inline and stays deterministic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use protobuf::Message as _;
use raft::prelude::{ConfState, Snapshot};

use super::backend::{SnapshotPayload, write_durably};
use super::error::NodeError;
use crate::state::Core;

/// Everything a checkpoint at `index` holds, copied off the driver.
pub struct CheckpointJob {
    /// Applied index the state is at.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// Membership at `index`.
    pub conf_state: ConfState,
    /// Members' addresses.
    pub members: BTreeMap<u64, String>,
    /// A copy of the replicated state.
    pub core: Core,
    /// Where the encoded checkpoint is written.
    pub staging: PathBuf,
}

impl std::fmt::Debug for CheckpointJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointJob")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("staging", &self.staging)
            .finish_non_exhaustive()
    }
}

impl CheckpointJob {
    /// Encodes the checkpoint and writes it durably to the staging file;
    /// returns the snapshot (with its data) for the log to serve.
    pub fn run(self) -> Result<Snapshot, NodeError> {
        let payload = SnapshotPayload {
            members: self.members,
            state: crate::state::snapshot::encode(&self.core),
        };
        drop(self.core);
        let snapshot = snapshot_of(&payload, self.index, self.term, self.conf_state);
        drop(payload);
        let bytes = snapshot
            .write_to_bytes()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        write_durably(&self.staging, &bytes)?;
        Ok(snapshot)
    }
}

/// The Raft snapshot of `payload` at (`index`, `term`).
pub(crate) fn snapshot_of(
    payload: &SnapshotPayload,
    index: u64,
    term: u64,
    conf_state: ConfState,
) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.set_data(postcard::to_stdvec(payload).unwrap_or_default().into());
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state);
    snapshot
}
