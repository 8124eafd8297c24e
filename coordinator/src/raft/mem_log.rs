//! An in-memory Raft log that models durability, for the deterministic
//! simulation.
//!
//! It behaves like the raft-engine [`LogStore`](super::log_store::LogStore)
//! (same first and last index rules, same batches), and it remembers which
//! writes were synced. raft-engine appends batches to a file, so a crash
//! keeps every synced batch and, of the unsynced batches after the last
//! sync, some prefix (a torn tail is dropped on recovery); a synced write
//! also makes everything written before it durable.
//! [`MemLog::after_crash`] builds the log a restarted node finds, keeping the
//! prefix of unsynced batches the simulation chooses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::backend::{
    LogBackend, bootstrap_state, bounded_term, check_entries_range, serve_snapshot,
};
use super::log_store::LogStoreError;

/// What the log holds at one moment: what a read sees, or what is on
/// "disk".
#[derive(Debug, Clone, Default, PartialEq)]
struct Image {
    /// Entries by index.
    entries: BTreeMap<u64, Entry>,
    /// The latest hard state written.
    hard_state: HardState,
    /// The latest conf state written.
    conf_state: ConfState,
    /// The latest snapshot's metadata.
    snapshot_meta: SnapshotMetadata,
}

/// One write inside a batch; a batch is atomic.
#[derive(Debug, Clone)]
enum Op {
    /// Entries appended, replacing any from the first one's index on.
    Append(Vec<Entry>),
    /// The hard state.
    HardState(HardState),
    /// The conf state.
    ConfState(ConfState),
    /// The snapshot metadata.
    SnapshotMeta(SnapshotMetadata),
    /// Every entry removed (a snapshot install).
    Clean,
    /// Entries before this index removed.
    CompactTo(u64),
}

impl Image {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(entries) => {
                if let Some(first) = entries.first() {
                    self.entries.split_off(&first.index);
                }
                for e in entries {
                    self.entries.insert(e.index, e.clone());
                }
            }
            Op::HardState(hs) => self.hard_state = hs.clone(),
            Op::ConfState(cs) => self.conf_state = cs.clone(),
            Op::SnapshotMeta(meta) => self.snapshot_meta = meta.clone(),
            Op::Clean => self.entries.clear(),
            Op::CompactTo(index) => self.entries = self.entries.split_off(index),
        }
    }
}

/// The in-memory Raft log.
#[derive(Debug, Default)]
pub struct MemLog {
    /// What reads see: every write, synced or not.
    current: Image,
    /// What survives a crash for sure: every write up to the last sync.
    durable: Image,
    /// Batches written since the last sync, oldest first.
    unsynced: Vec<Vec<Op>>,
    /// The latest snapshot with its data, kept in memory only (as the real
    /// store does; a restart reloads it from the checkpoint).
    snapshot: Option<Snapshot>,
    /// A snapshot index raft-rs asked for and did not get.
    wanted_index: AtomicU64,
    /// Synced writes so far (for the simulation's statistics).
    syncs: u64,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log a node finds after a crash: everything synced, plus the
    /// first `keep_unsynced` of the batches written since (capped at how
    /// many there are).
    pub fn after_crash(&self, keep_unsynced: usize) -> MemLog {
        let mut image = self.durable.clone();
        for batch in self.unsynced.iter().take(keep_unsynced) {
            for op in batch {
                image.apply(op);
            }
        }
        MemLog {
            current: image.clone(),
            durable: image,
            unsynced: Vec::new(),
            snapshot: None,
            wanted_index: AtomicU64::new(0),
            syncs: self.syncs,
        }
    }

    /// Batches written since the last sync (a crash may lose them).
    pub fn unsynced_batches(&self) -> usize {
        self.unsynced.len()
    }

    /// Synced writes so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.current.hard_state
    }

    /// Applies a batch to what reads see and, when `sync`, makes it and
    /// every earlier batch durable.
    fn write(&mut self, batch: Vec<Op>, sync: bool) {
        for op in &batch {
            self.current.apply(op);
        }
        self.unsynced.push(batch);
        if sync {
            for batch in self.unsynced.drain(..) {
                for op in &batch {
                    self.durable.apply(op);
                }
            }
            self.syncs += 1;
        }
    }

    fn first(&self) -> u64 {
        let after_snapshot = self.current.snapshot_meta.index + 1;
        self.current
            .entries
            .keys()
            .next()
            .map_or(after_snapshot, |first| (*first).max(after_snapshot))
    }

    fn last(&self) -> u64 {
        let snapshot = self.current.snapshot_meta.index;
        self.current
            .entries
            .keys()
            .next_back()
            .map_or(snapshot, |last| (*last).max(snapshot))
    }
}

impl LogBackend for MemLog {
    fn is_blank(&self) -> bool {
        self.current.conf_state.voters.is_empty()
            && self.current.conf_state.learners.is_empty()
            && self.current.snapshot_meta.index == 0
            && self.current.entries.is_empty()
    }

    fn conf_state(&self) -> &ConfState {
        &self.current.conf_state
    }

    fn snapshot_meta(&self) -> &SnapshotMetadata {
        &self.current.snapshot_meta
    }

    fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), LogStoreError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(2);
        if !entries.is_empty() {
            batch.push(Op::Append(entries.to_vec()));
        }
        if let Some(hs) = hard_state {
            batch.push(Op::HardState(hs.clone()));
        }
        self.write(batch, sync);
        Ok(())
    }

    fn bootstrap(&mut self, conf_state: ConfState) -> Result<(), LogStoreError> {
        let (meta, hs) = bootstrap_state(conf_state.clone());
        self.write(
            vec![
                Op::HardState(hs),
                Op::ConfState(conf_state),
                Op::SnapshotMeta(meta),
            ],
            true,
        );
        Ok(())
    }

    fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), LogStoreError> {
        self.write(vec![Op::ConfState(conf_state)], true);
        Ok(())
    }

    fn set_commit(&mut self, commit: u64) {
        // Like the real store: only the in-memory copy, written with the
        // next hard state.
        if commit > self.current.hard_state.commit {
            self.current.hard_state.commit = commit;
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snapshot.get_metadata();
        let mut hs = self.current.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.write(
            vec![
                Op::Clean,
                Op::HardState(hs),
                Op::ConfState(meta.get_conf_state().clone()),
                Op::SnapshotMeta(meta.clone()),
            ],
            true,
        );
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    fn compact_to_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogStoreError> {
        let meta = snapshot.get_metadata().clone();
        if meta.index <= self.current.snapshot_meta.index {
            self.snapshot = Some(snapshot);
            return Ok(());
        }
        let index = meta.index;
        self.write(vec![Op::SnapshotMeta(meta)], true);
        // raft-engine writes its compaction without a sync.
        self.write(vec![Op::CompactTo(index + 1)], false);
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn cache_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
    }

    fn snapshot_wanted(&self) -> Option<u64> {
        match self.wanted_index.swap(0, Ordering::Relaxed) {
            0 => None,
            index => Some(index),
        }
    }
}

impl Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.current.hard_state.clone(),
            conf_state: self.current.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        check_entries_range(self.first(), self.last(), low, high)?;
        let mut entries: Vec<Entry> = self
            .current
            .entries
            .range(low..high)
            .map(|(_, e)| e.clone())
            .collect();
        if entries.len() as u64 != high - low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snapshot = &self.current.snapshot_meta;
        if let Some(decided) = bounded_term(snapshot, self.first(), self.last(), idx) {
            return decided;
        }
        match self.current.entries.get(&idx) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        serve_snapshot(
            self.snapshot.as_ref(),
            &self.wanted_index,
            request_index,
            to,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn a_crash_keeps_synced_writes_and_the_chosen_prefix_of_the_rest() {
        let mut log = MemLog::new();
        log.persist(&[entry(1, 1), entry(2, 1)], None, true)
            .unwrap();
        log.persist(&[entry(3, 1)], None, false).unwrap();
        log.persist(&[entry(4, 1)], None, false).unwrap();
        assert_eq!(log.last_index().unwrap(), 4);
        assert_eq!(log.after_crash(0).last_index().unwrap(), 2);
        assert_eq!(log.after_crash(1).last_index().unwrap(), 3);
        assert_eq!(log.after_crash(9).last_index().unwrap(), 4);
        // A later sync makes the earlier unsynced writes durable too.
        log.persist(&[entry(5, 1)], None, true).unwrap();
        assert_eq!(log.after_crash(0).last_index().unwrap(), 5);
    }

    #[test]
    fn appends_replace_a_conflicting_tail_and_compaction_moves_the_first_index() {
        let mut log = MemLog::new();
        let all: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
        log.persist(&all, None, true).unwrap();
        log.persist(&[entry(3, 2)], None, true).unwrap();
        assert_eq!(log.last_index().unwrap(), 3);
        assert_eq!(log.term(3).unwrap(), 2);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 2;
        snapshot.mut_metadata().term = 1;
        log.compact_to_snapshot(snapshot).unwrap();
        assert_eq!(log.first_index().unwrap(), 3);
        assert_eq!(log.term(2).unwrap(), 1);
        assert!(log.term(1).is_err());
    }
}
