//! The Raft log, HardState and ConfState in raft-engine, behind raft-rs's
//! [`Storage`] trait.
//!
//! **Architecture invariant:** everything Raft asks to persist in one
//! `Ready` (entries and hard state) goes into one raft-engine write with
//! `sync = true`, so one fsync covers one `Ready`, and nothing is acknowledged
//! before it returns.
//!
//! The log's first entry is always `snapshot_meta.index + 1`: compaction and
//! snapshot installation move both together, because raft-engine refuses
//! (panics on) holes and overwrites of compacted entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use raft_engine::{Command as EngineCommand, Config as EngineConfig, Engine, LogBatch, MessageExt};

use super::backend::{
    LogBackend, bootstrap_state, bounded_term, check_entries_range, serve_snapshot,
};
pub use super::error::LogStoreError;

/// Size at which raft-engine starts a new log file (its default).
const LOG_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// Log size past which files wholly before the last compaction are deleted.
/// raft-engine's default is 10 GiB; a coordinator compacts every few
/// thousand entries, so anything much above a few files is dead weight.
const LOG_PURGE_THRESHOLD_BYTES: u64 = 1024 * 1024 * 1024;

/// raft-engine can hold many Raft groups; Drover has one.
const REGION: u64 = 1;
const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";

/// Tells raft-engine how to read an entry's index.
#[derive(Debug, Clone, Copy)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// The Raft log store.
pub struct LogStore {
    engine: Arc<Engine>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the latest snapshot (checkpoint); the log starts
    /// right after it.
    snapshot_meta: SnapshotMetadata,
    /// The latest snapshot with its data, handed to raft-rs for lagging
    /// followers.
    snapshot: Option<Snapshot>,
    /// Set by [`Storage::snapshot`] when raft-rs asks for a snapshot newer
    /// than the cached one: the driver then takes a fresh checkpoint.
    wanted_index: AtomicU64,
    /// Where each synced write's duration is recorded (the fsync latency
    /// metric), if anywhere.
    fsync_seconds: Option<Histogram>,
    /// How long the last synced write took, in microseconds.
    last_sync_us: u64,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("hard_state", &self.hard_state)
            .field("conf_state", &self.conf_state)
            .field("snapshot_index", &self.snapshot_meta.index)
            .finish()
    }
}

fn read<M: protobuf::Message + Default>(
    engine: &Engine,
    key: &[u8],
    what: &'static str,
) -> Result<M, LogStoreError> {
    match engine.get(REGION, key) {
        Some(bytes) => M::parse_from_bytes(&bytes).map_err(|_| LogStoreError::Corrupt(what)),
        None => Ok(M::default()),
    }
}

fn put<M: protobuf::Message>(
    batch: &mut LogBatch,
    key: &[u8],
    value: &M,
) -> Result<(), LogStoreError> {
    let bytes = value
        .write_to_bytes()
        .map_err(|_| LogStoreError::Corrupt("encode"))?;
    batch.put(REGION, key.to_vec(), bytes)?;
    Ok(())
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, LogStoreError> {
        Self::open_with(dir, LOG_FILE_BYTES, LOG_PURGE_THRESHOLD_BYTES)
    }

    /// Opens the log with files rotated at `file_bytes`, purged once the
    /// log holds more than `purge_threshold_bytes`.
    fn open_with(
        dir: &std::path::Path,
        file_bytes: u64,
        purge_threshold_bytes: u64,
    ) -> Result<Self, LogStoreError> {
        let config = EngineConfig {
            dir: dir.to_string_lossy().into_owned(),
            target_file_size: raft_engine::ReadableSize(file_bytes),
            purge_threshold: raft_engine::ReadableSize(purge_threshold_bytes),
            ..EngineConfig::default()
        };
        let engine = Arc::new(Engine::open(config)?);
        let hard_state = read::<HardState>(&engine, HARD_STATE_KEY, "hard state")?;
        let conf_state = read::<ConfState>(&engine, CONF_STATE_KEY, "conf state")?;
        let snapshot_meta =
            read::<SnapshotMetadata>(&engine, SNAPSHOT_META_KEY, "snapshot metadata")?;
        Ok(Self {
            engine,
            hard_state,
            conf_state,
            snapshot_meta,
            snapshot: None,
            wanted_index: AtomicU64::new(0),
            fsync_seconds: None,
            last_sync_us: 0,
        })
    }

    /// Records how long each synced write takes in `histogram`.
    pub fn with_fsync_histogram(mut self, histogram: Option<Histogram>) -> Self {
        self.fsync_seconds = histogram;
        self
    }

    /// Current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn first(&self) -> u64 {
        self.engine
            .first_index(REGION)
            .unwrap_or(self.snapshot_meta.index + 1)
            .max(self.snapshot_meta.index + 1)
    }

    fn last(&self) -> u64 {
        self.engine
            .last_index(REGION)
            .unwrap_or(self.snapshot_meta.index)
            .max(self.snapshot_meta.index)
    }
}

impl LogBackend for LogStore {
    /// Whether the log has never been initialised (no conf state).
    fn is_blank(&self) -> bool {
        self.conf_state.voters.is_empty()
            && self.conf_state.learners.is_empty()
            && self.snapshot_meta.index == 0
            && self.engine.last_index(REGION).is_none()
    }

    /// Current conf state.
    fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot's metadata.
    fn snapshot_meta(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// Persists a `Ready`'s entries and hard state in one write; `sync`
    /// makes it an fsync (Raft's `must_sync`).
    fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), LogStoreError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut batch = LogBatch::default();
        batch.add_entries::<EntryExt>(REGION, entries)?;
        if let Some(hs) = hard_state {
            put(&mut batch, HARD_STATE_KEY, hs)?;
        }
        let started = Instant::now();
        self.engine.write(&mut batch, sync)?;
        if sync {
            let elapsed = started.elapsed();
            self.last_sync_us = elapsed.as_micros() as u64;
            if let Some(histogram) = &self.fsync_seconds {
                histogram.observe(elapsed.as_secs_f64());
            }
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    fn bootstrap(&mut self, conf_state: ConfState) -> Result<(), LogStoreError> {
        let (meta, hs) = bootstrap_state(conf_state.clone());
        let mut batch = LogBatch::default();
        put(&mut batch, HARD_STATE_KEY, &hs)?;
        put(&mut batch, CONF_STATE_KEY, &conf_state)?;
        put(&mut batch, SNAPSHOT_META_KEY, &meta)?;
        self.engine.write(&mut batch, true)?;
        self.hard_state = hs;
        self.conf_state = conf_state;
        self.snapshot_meta = meta;
        Ok(())
    }

    /// Records a new conf state (after a conf change applied), synced.
    fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), LogStoreError> {
        let mut batch = LogBatch::default();
        put(&mut batch, CONF_STATE_KEY, &conf_state)?;
        self.engine.write(&mut batch, true)?;
        self.conf_state = conf_state;
        Ok(())
    }

    /// Records the commit index the state machine has reached, so a hard
    /// state written by a snapshot install is consistent.
    fn set_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
        }
    }

    /// Installs a snapshot received from the leader: the log is cleared and
    /// restarts after the snapshot's index.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snapshot.get_metadata();
        let mut batch = LogBatch::default();
        batch.add_command(REGION, EngineCommand::Clean);
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        put(&mut batch, HARD_STATE_KEY, &hs)?;
        put(&mut batch, CONF_STATE_KEY, meta.get_conf_state())?;
        put(&mut batch, SNAPSHOT_META_KEY, meta)?;
        self.engine.write(&mut batch, true)?;
        self.hard_state = hs;
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot_meta = meta.clone();
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    /// Adopts a checkpoint taken locally (its data is already durable in a
    /// file) and drops the log up to it.
    fn compact_to_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogStoreError> {
        let meta = snapshot.get_metadata().clone();
        if meta.index <= self.snapshot_meta.index {
            self.snapshot = Some(snapshot);
            return Ok(());
        }
        let mut batch = LogBatch::default();
        put(&mut batch, SNAPSHOT_META_KEY, &meta)?;
        self.engine.write(&mut batch, true)?;
        self.engine.compact_to(REGION, meta.index + 1);
        // compact_to only forgets the entries; their files are deleted
        // here (once the log is past its purge threshold), else the log
        // would grow on disk for as long as the node runs. A region it
        // names as needing compaction is this one, just compacted.
        self.engine.purge_expired_files()?;
        self.snapshot_meta = meta;
        self.snapshot = Some(snapshot);
        Ok(())
    }

    /// Remembers a snapshot (with data) to serve to followers without
    /// compacting, e.g. the one loaded at start.
    fn cache_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
    }

    /// The index of a snapshot raft-rs asked for and did not get, if any.
    fn snapshot_wanted(&self) -> Option<u64> {
        match self.wanted_index.swap(0, Ordering::Relaxed) {
            0 => None,
            index => Some(index),
        }
    }

    fn last_sync_us(&self) -> u64 {
        self.last_sync_us
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
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
        let mut entries = Vec::with_capacity((high - low) as usize);
        let max = max_size.into().map(|m| m as usize);
        self.engine
            .fetch_entries_to::<EntryExt>(REGION, low, high, max, &mut entries)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        // raft-rs wants at least one entry even when it exceeds max_size.
        if entries.is_empty() && low < high {
            self.engine
                .fetch_entries_to::<EntryExt>(REGION, low, low + 1, None, &mut entries)
                .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if let Some(decided) = bounded_term(&self.snapshot_meta, self.first(), self.last(), idx) {
            return decided;
        }
        match self.engine.get_entry::<EntryExt>(REGION, idx) {
            Ok(Some(entry)) => Ok(entry.term),
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(raft::Error::Store(StorageError::Other(Box::new(e)))),
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
    use crate::raft::backend::{BOOTSTRAP_INDEX, BOOTSTRAP_TERM};

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..ConfState::default()
        }
    }

    #[test]
    fn a_bootstrapped_log_starts_after_a_snapshot_that_names_the_voters_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            assert!(log.is_blank());
            log.bootstrap(voters(&[1, 2, 3])).unwrap();
        }
        let log = LogStore::open(dir.path()).unwrap();
        assert!(!log.is_blank());
        assert_eq!(log.first_index().unwrap(), BOOTSTRAP_INDEX + 1);
        assert_eq!(log.last_index().unwrap(), BOOTSTRAP_INDEX);
        assert_eq!(log.term(BOOTSTRAP_INDEX).unwrap(), BOOTSTRAP_TERM);
        // A joiner asking from index 1 is told it was compacted, so the
        // leader sends a snapshot instead of replaying a log that never
        // names the bootstrap voters.
        assert!(matches!(
            log.entries(1, 2, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let state = log.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, [1, 2, 3]);
        assert_eq!(state.hard_state.commit, BOOTSTRAP_INDEX);
        assert_eq!(log.snapshot_meta().get_conf_state().voters, [1, 2, 3]);
    }

    #[test]
    fn a_cached_snapshot_is_not_served_to_a_node_it_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        log.bootstrap(voters(&[1, 2, 3])).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = BOOTSTRAP_INDEX;
        snapshot.mut_metadata().term = BOOTSTRAP_TERM;
        snapshot.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
        log.cache_snapshot(snapshot);
        assert!(log.snapshot(0, 2).is_ok());
        assert_eq!(log.snapshot_wanted(), None);
        // Node 4 was added after the snapshot was cached: it would refuse
        // it. The store asks for a fresh one instead.
        assert!(matches!(
            log.snapshot(0, 4),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(log.snapshot_wanted().is_some());
        // And one older than asked for is not served to anyone.
        assert!(log.snapshot(BOOTSTRAP_INDEX + 1, 2).is_err());
    }

    #[test]
    fn compaction_deletes_the_log_files_it_no_longer_needs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open_with(dir.path(), 64 * 1024, 256 * 1024).unwrap();
        log.bootstrap(voters(&[1])).unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        // Incompressible, so the files really fill up (raft-engine
        // compresses batches with LZ4).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = move || -> Vec<u8> {
            (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let mut last = BOOTSTRAP_INDEX;
        for _ in 0..40 {
            let batch: Vec<Entry> = (1..=64)
                .map(|i| Entry {
                    index: last + i,
                    term: BOOTSTRAP_TERM,
                    data: noise().into(),
                    ..Entry::default()
                })
                .collect();
            last += 64;
            log.persist(&batch, None, false).unwrap();
        }
        let before = files();
        assert!(before > 20, "{before} files: the test needs many");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = last;
        snapshot.mut_metadata().term = BOOTSTRAP_TERM;
        snapshot.mut_metadata().set_conf_state(voters(&[1]));
        log.compact_to_snapshot(snapshot).unwrap();
        let after = files();
        assert!(
            after < before / 4,
            "{before} files before compaction, {after} after"
        );
        assert_eq!(log.first_index().unwrap(), last + 1);
    }
}
