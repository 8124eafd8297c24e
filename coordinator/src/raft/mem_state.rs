//! The in-memory state backend of the simulation: the state store, the
//! checkpoint and the members' addresses, with sled's durability.
//!
//! sled writes its batches atomically but flushes them to disk only in the
//! background (every 500 ms by default), so after a crash the stored state
//! is some version between the last flush and the latest write, and the log
//! replays the rest. The checkpoint and the members file are written with a
//! real fsync, so a crash keeps them. [`MemState::after_crash`] builds what a
//! restarted node finds; the simulation chooses which state version
//! survives.

use std::collections::BTreeMap;

use super::backend::StateBackend;
use super::node::NodeError;
use crate::state::StateMachine;
use crate::state::changes::Changes;

/// One stored version of the state: its snapshot bytes and applied index.
type Version = (Vec<u8>, u64);

/// The in-memory state backend.
#[derive(Debug, Clone, Default)]
pub struct MemState {
    /// The latest state written (what a read of sled sees).
    latest: Option<Version>,
    /// The state as of the last flush (what survives any crash).
    flushed: Option<Version>,
    /// The checkpoint, written durably.
    checkpoint: Option<Vec<u8>>,
    /// The members' addresses, written durably.
    members: Option<BTreeMap<u64, String>>,
}

impl MemState {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flushes the latest state, as sled's background flusher does.
    pub fn background_flush(&mut self) {
        self.flushed = self.latest.clone();
    }

    /// What a node finds after a crash: the checkpoint and members, and the
    /// latest state if `keep_latest` (the flusher ran just before the crash),
    /// else the state as of the last flush.
    pub fn after_crash(&self, keep_latest: bool) -> MemState {
        let state = if keep_latest {
            self.latest.clone()
        } else {
            self.flushed.clone()
        };
        MemState {
            latest: state.clone(),
            flushed: state,
            checkpoint: self.checkpoint.clone(),
            members: self.members.clone(),
        }
    }

    /// The applied index of the latest state written.
    pub fn applied_index(&self) -> Option<u64> {
        self.latest.as_ref().map(|(_, index)| *index)
    }
}

impl StateBackend for MemState {
    fn load(&self) -> Result<Option<(StateMachine, u64)>, NodeError> {
        let Some((bytes, index)) = &self.latest else {
            return Ok(None);
        };
        let sm = StateMachine::restore(bytes).map_err(|e| NodeError::Storage(e.to_string()))?;
        Ok(Some((sm, *index)))
    }

    fn persist(
        &mut self,
        sm: &StateMachine,
        _changes: &Changes,
        applied_index: u64,
    ) -> Result<(), NodeError> {
        // The whole state rather than the changed records: the simulation
        // tests replication and recovery, and the sled store's per-record
        // writes have their own round-trip tests.
        self.latest = Some((sm.snapshot(), applied_index));
        Ok(())
    }

    fn replace(&mut self, sm: &StateMachine, applied_index: u64) -> Result<(), NodeError> {
        self.latest = Some((sm.snapshot(), applied_index));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        self.background_flush();
        Ok(())
    }

    fn read_checkpoint(&self) -> Option<Vec<u8>> {
        self.checkpoint.clone()
    }

    fn write_checkpoint(&mut self, bytes: &[u8]) -> Result<(), NodeError> {
        self.checkpoint = Some(bytes.to_vec());
        Ok(())
    }

    fn load_members(&self) -> Option<BTreeMap<u64, String>> {
        self.members.clone()
    }

    fn save_members(&mut self, members: &BTreeMap<u64, String>) -> Result<(), NodeError> {
        self.members = Some(members.clone());
        Ok(())
    }
}
