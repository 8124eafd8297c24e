//! What the driver core stores, behind two traits, so the same core runs on
//! disk (raft-engine, sled, fsynced files) or in memory (the simulation).
//!
//! The core is generic over both traits, so the real path pays nothing for
//! the choice: [`LogStore`](super::log_store::LogStore) and [`DiskState`]
//! are what a coordinator process uses, and
//! [`MemLog`](super::mem_log::MemLog) and
//! [`MemState`](super::mem_state::MemState) are what the deterministic
//! simulation uses; the in-memory ones model which writes a crash keeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::Storage;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use serde::{Deserialize, Serialize};

use super::error::{LogStoreError, NodeError};
use crate::state::StateMachine;
use crate::state::changes::Changes;
use crate::storage::{STORAGE_FORMAT_VERSION, StateStore};

/// The Raft log, HardState and ConfState: raft-rs's [`Storage`] plus the
/// writes the driver makes.
///
/// **Architecture invariant:** a write with `sync` (and every write below
/// that the docs call synced) is durable when the call returns; a crash may
/// lose any unsynced write, but never a synced one nor any write before it.
pub trait LogBackend: Storage {
    /// Whether the log has never been initialised (no conf state, no
    /// entries, no snapshot).
    fn is_blank(&self) -> bool;

    /// Current conf state.
    fn conf_state(&self) -> &ConfState;

    /// The latest snapshot's metadata; the log starts right after it.
    fn snapshot_meta(&self) -> &SnapshotMetadata;

    /// Persists a `Ready`'s entries and hard state in one atomic write;
    /// `sync` makes it durable before returning (Raft's `must_sync`).
    fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), LogStoreError>;

    /// Initialises a blank log for a bootstrapping node, synced: the
    /// bootstrap voters go into a snapshot at [`BOOTSTRAP_INDEX`] (the empty
    /// state), and the log starts after it.
    ///
    /// Why a snapshot rather than just a stored conf state: the voters must
    /// reach a node that joins later. A joiner asks the leader for entries
    /// from index 1; with index 1 compacted away from the start, the leader
    /// must send a snapshot, which carries its current configuration. A
    /// joiner that replayed the log from index 1 would never learn the
    /// bootstrap voters, because no entry names them.
    fn bootstrap(&mut self, conf_state: ConfState) -> Result<(), LogStoreError>;

    /// Records a new conf state (after a conf change applied), synced.
    fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), LogStoreError>;

    /// Records the commit index the state machine has reached, so a hard
    /// state written by a snapshot install is consistent (in memory only).
    fn set_commit(&mut self, commit: u64);

    /// Installs a snapshot received from the leader, synced: the log is
    /// cleared and restarts after the snapshot's index.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError>;

    /// Adopts a checkpoint taken locally (its data is already durable) and
    /// drops the log up to it.
    fn compact_to_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogStoreError>;

    /// Remembers a snapshot (with data) to serve to followers without
    /// compacting, e.g. the one loaded at start.
    fn cache_snapshot(&mut self, snapshot: Snapshot);

    /// The index of a snapshot raft-rs asked for and did not get, if any
    /// (taking it resets it).
    fn snapshot_wanted(&self) -> Option<u64>;

    /// How long the last synced write took, in microseconds, for metrics;
    /// 0 where nothing is measured.
    fn last_sync_us(&self) -> u64 {
        0
    }
}

/// The index of the snapshot every bootstrapped log starts from: it holds
/// the bootstrap voters and the empty state.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// What a snapshot (and the checkpoint file) carries besides the state:
/// the members' addresses.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotPayload {
    /// Raft id to gRPC address, for every member.
    pub members: BTreeMap<u64, String>,
    /// The state machine's snapshot encoding.
    pub state: Vec<u8>,
}

/// The term of the bootstrap snapshot; the first election is for term 2.
pub const BOOTSTRAP_TERM: u64 = 1;

/// The metadata and hard state a bootstrapped log starts with.
pub fn bootstrap_state(conf_state: ConfState) -> (SnapshotMetadata, HardState) {
    let mut meta = SnapshotMetadata::default();
    meta.set_conf_state(conf_state);
    meta.index = BOOTSTRAP_INDEX;
    meta.term = BOOTSTRAP_TERM;
    let hard_state = HardState {
        term: BOOTSTRAP_TERM,
        commit: BOOTSTRAP_INDEX,
        ..HardState::default()
    };
    (meta, hard_state)
}

/// Whether a cached snapshot can be sent to node `to` when raft-rs asks
/// for one at `request_index` or later.
///
/// A follower refuses a snapshot whose configuration does not name it, so
/// one cached before `to` was added is useless to it, and serving it would
/// loop forever (send, refuse, send). Not serving it makes the driver take
/// a fresh checkpoint, whose configuration includes `to`.
pub fn snapshot_serves(snapshot: &Snapshot, request_index: u64, to: u64) -> bool {
    let meta = snapshot.get_metadata();
    let cs = meta.get_conf_state();
    meta.index >= request_index
        && [
            &cs.voters,
            &cs.learners,
            &cs.voters_outgoing,
            &cs.learners_next,
        ]
        .iter()
        .any(|ids| ids.contains(&to))
}

/// The bounds every log checks before reading entries `low..high`: below
/// its first index they were compacted, past its last they are not there
/// yet.
pub fn check_entries_range(first: u64, last: u64, low: u64, high: u64) -> raft::Result<()> {
    if low < first {
        return Err(raft::Error::Store(raft::StorageError::Compacted));
    }
    if high > last + 1 {
        return Err(raft::Error::Store(raft::StorageError::Unavailable));
    }
    Ok(())
}

/// The term of `idx` when a log's bounds decide it: the snapshot's own
/// index has the snapshot's term, and an index outside the log is an
/// error; `None` when the log must read the entry.
pub fn bounded_term(
    snapshot: &SnapshotMetadata,
    first: u64,
    last: u64,
    idx: u64,
) -> Option<raft::Result<u64>> {
    if idx == snapshot.index {
        Some(Ok(snapshot.term))
    } else if idx < first {
        Some(Err(raft::Error::Store(raft::StorageError::Compacted)))
    } else if idx > last {
        Some(Err(raft::Error::Store(raft::StorageError::Unavailable)))
    } else {
        None
    }
}

/// raft-rs's `Storage::snapshot` for both log stores: the cached snapshot
/// when [`snapshot_serves`] says it can be sent to `to`; otherwise the index
/// is recorded in `wanted` (the driver then takes a fresh checkpoint) and
/// raft-rs is told to ask again.
pub fn serve_snapshot(
    cached: Option<&Snapshot>,
    wanted: &std::sync::atomic::AtomicU64,
    request_index: u64,
    to: u64,
) -> raft::Result<Snapshot> {
    match cached {
        Some(s) if snapshot_serves(s, request_index, to) => Ok(s.clone()),
        _ => {
            wanted.store(request_index.max(1), std::sync::atomic::Ordering::Relaxed);
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ))
        }
    }
}

/// Everything else the driver keeps: the state machine's store (with the
/// applied index), the checkpoint (a snapshot the log is compacted to), and
/// the members' addresses.
///
/// **Architecture invariant:** the checkpoint and the members are written
/// durably (a real fsync) before the call returns; the state store need not
/// be, because the log replays whatever it lost.
pub trait StateBackend {
    /// The stored state and its applied index; `None` when nothing was
    /// stored.
    fn load(&self) -> Result<Option<(StateMachine, u64)>, NodeError>;

    /// Writes the records `changes` names, as they are in `sm`, together
    /// with the applied index, atomically.
    fn persist(
        &mut self,
        sm: &StateMachine,
        changes: &Changes,
        applied_index: u64,
    ) -> Result<(), NodeError>;

    /// Replaces the whole stored state (after a snapshot from the leader).
    fn replace(&mut self, sm: &StateMachine, applied_index: u64) -> Result<(), NodeError>;

    /// Pushes buffered state writes out (on shutdown).
    fn flush(&mut self) -> Result<(), NodeError>;

    /// The checkpoint's bytes (an encoded Raft `Snapshot`), if one exists.
    fn read_checkpoint(&self) -> Option<Vec<u8>>;

    /// Replaces the checkpoint, durably.
    fn write_checkpoint(&mut self, bytes: &[u8]) -> Result<(), NodeError>;

    /// Where a checkpoint encoded off the driver's thread is written
    /// (durably) before [`StateBackend::adopt_staged_checkpoint`] makes it
    /// the checkpoint; `None` takes checkpoints inline.
    fn checkpoint_staging(&self) -> Option<PathBuf> {
        None
    }

    /// Makes the staged checkpoint the checkpoint, durably.
    fn adopt_staged_checkpoint(&mut self) -> Result<(), NodeError> {
        Err(NodeError::Storage(
            "this store takes checkpoints inline".into(),
        ))
    }

    /// The members' addresses as last saved.
    fn load_members(&self) -> Option<BTreeMap<u64, String>>;

    /// Saves the members' addresses, durably.
    fn save_members(&mut self, members: &BTreeMap<u64, String>) -> Result<(), NodeError>;
}

/// The checkpoint's file name in the data directory.
const CHECKPOINT_FILE: &str = "checkpoint.snap";

/// A checkpoint written off the driver's thread, not yet adopted. One left
/// by a crash is never read: it is replaced by the next one.
const STAGED_CHECKPOINT_FILE: &str = "checkpoint.snap.staged";

/// The members file's name in the data directory.
const MEMBERS_FILE: &str = "members.json";

/// The real [`StateBackend`]: sled under `state/`, `checkpoint.snap` and
/// `members.json` in the data directory.
#[derive(Debug)]
pub struct DiskState {
    /// The data directory, where the checkpoint and members files live.
    dir: PathBuf,
    /// The state machine's sled store.
    store: StateStore,
}

impl DiskState {
    /// Opens (or creates) the state under `dir`.
    ///
    /// A state store in an older format than this binary writes is emptied,
    /// and the node rebuilds it from its checkpoint and log: the store is
    /// only ever a cache of those (see [`StateBackend`]). A newer format is
    /// refused when the store loads.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::Storage(e.to_string()))?;
        let store = StateStore::open(&dir.join("state"))?;
        if let Some(found) = store.stored_format()?
            && found < STORAGE_FORMAT_VERSION
        {
            tracing::warn!(
                dir = %dir.display(),
                found,
                current = STORAGE_FORMAT_VERSION,
                "the state store is in an older format; rebuilding it from the checkpoint and the log"
            );
            store.clear()?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            store,
        })
    }
}

impl StateBackend for DiskState {
    fn load(&self) -> Result<Option<(StateMachine, u64)>, NodeError> {
        Ok(self.store.load()?)
    }

    fn persist(
        &mut self,
        sm: &StateMachine,
        changes: &Changes,
        applied_index: u64,
    ) -> Result<(), NodeError> {
        Ok(self.store.persist(sm, changes, applied_index)?)
    }

    fn replace(&mut self, sm: &StateMachine, applied_index: u64) -> Result<(), NodeError> {
        Ok(self.store.replace(sm, applied_index)?)
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        Ok(self.store.flush()?)
    }

    fn read_checkpoint(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(CHECKPOINT_FILE)).ok()
    }

    fn write_checkpoint(&mut self, bytes: &[u8]) -> Result<(), NodeError> {
        write_durably(&self.dir.join(CHECKPOINT_FILE), bytes)
    }

    fn checkpoint_staging(&self) -> Option<PathBuf> {
        Some(self.dir.join(STAGED_CHECKPOINT_FILE))
    }

    fn adopt_staged_checkpoint(&mut self) -> Result<(), NodeError> {
        let checkpoint = self.dir.join(CHECKPOINT_FILE);
        crate::durable::rename(&self.dir.join(STAGED_CHECKPOINT_FILE), &checkpoint)
            .map_err(|e| NodeError::Storage(format!("{}: {e}", checkpoint.display())))
    }

    fn load_members(&self) -> Option<BTreeMap<u64, String>> {
        serde_json::from_slice(&std::fs::read(self.dir.join(MEMBERS_FILE)).ok()?).ok()
    }

    fn save_members(&mut self, members: &BTreeMap<u64, String>) -> Result<(), NodeError> {
        let bytes = serde_json::to_vec_pretty(members).unwrap_or_default();
        write_durably(&self.dir.join(MEMBERS_FILE), &bytes)
    }
}

/// [`crate::durable::write_file`], its error naming the file.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    crate::durable::write_file(path, bytes)
        .map_err(|e| NodeError::Storage(format!("{}: {e}", path.display())))
}

/// Seeds an empty data directory so that a coordinator started on it begins
/// from `state` at log index `index`, with `members` as the voters: the
/// checkpoint a node would have written for a snapshot from its leader,
/// which the driver finishes installing when it opens (see
/// [`DriverCore::open`](super::driver::DriverCore::open)). Every member of a
/// new cluster seeded from the same state, index and members starts from
/// the same log position and byte-identical state.
pub fn seed_checkpoint(
    dir: &Path,
    state: Vec<u8>,
    index: u64,
    members: &BTreeMap<u64, String>,
) -> Result<(), NodeError> {
    let io = |e: std::io::Error| NodeError::Storage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let payload = SnapshotPayload {
        members: members.clone(),
        state,
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(
        postcard::to_stdvec(&payload)
            .map_err(|e| NodeError::Storage(e.to_string()))?
            .into(),
    );
    let meta = snapshot.mut_metadata();
    // The bootstrap snapshot owns index 1; a seeded log starts after it.
    meta.index = index.max(BOOTSTRAP_INDEX + 1);
    meta.term = BOOTSTRAP_TERM;
    meta.set_conf_state(ConfState {
        voters: members.keys().copied().collect(),
        ..ConfState::default()
    });
    let bytes = snapshot
        .write_to_bytes()
        .map_err(|e| NodeError::Storage(e.to_string()))?;
    write_durably(&dir.join(CHECKPOINT_FILE), &bytes)?;
    let members = serde_json::to_vec_pretty(members).unwrap_or_default();
    write_durably(&dir.join(MEMBERS_FILE), &members)
}
