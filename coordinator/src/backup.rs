//! Backup files: a consistent copy of the replicated state, and seeding a
//! new cluster's data directories from one.
//!
//! # Format (version 1)
//!
//! ```text
//! "DROVERBK"             8 bytes, magic
//! format                 u32, little-endian: 1
//! header length          u32, little-endian
//! header                 JSON, [`BackupHeader`]
//! state                  the state snapshot (`DROVERSM`, its own version)
//! SHA-256                32 bytes, of everything before it
//! ```
//!
//! The checksum covers the whole file, so a truncated or altered backup is
//! refused before anything is restored from it. The state inside keeps its
//! own format version: a binary that cannot read it says so (see
//! [`crate::state::snapshot`]).
//!
//! A backup is taken by `AdminService.Backup` after a ReadIndex, so it
//! holds every write acknowledged before the request, at one log index.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::raft::backend::seed_checkpoint;
use crate::state::StateMachine;
use crate::state::restore::RestoreReport;
use crate::state::snapshot::SnapshotError;

/// Identifies a Drover backup file.
pub const MAGIC: &[u8; 8] = b"DROVERBK";

/// The backup format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest header accepted; real headers are a few hundred bytes.
const HEADER_BYTES_MAX: u32 = 64 * 1024;

/// Magic, format and header length.
const PREFIX_BYTES: usize = 16;

/// Length of the trailing checksum.
const CHECKSUM_BYTES: usize = 32;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupHeader {
    /// The release that took it.
    pub drover_version: String,
    /// When the answering coordinator took it, Unix milliseconds.
    pub created_unix_ms: i64,
    /// The coordinator that answered.
    pub node_id: u64,
    /// The log index the state reflects.
    pub applied_index: u64,
    /// Jobs in the state, finished ones included.
    pub jobs: u64,
    /// Schedules in the state.
    pub schedules: u64,
    /// Workers registered.
    pub workers: u64,
    /// Length of the state snapshot.
    pub state_bytes: u64,
}

/// Why a backup could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a backup file.
    #[error("not a Drover backup file (it does not start with DROVERBK)")]
    BadMagic,
    /// Written by a release with another backup format.
    #[error(
        "backup format version {found} is not supported by this binary (drover {}, which reads version {FORMAT_VERSION}); restore it with the release that took it or a newer one",
        crate::data_dir::DROVER_VERSION
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// Truncated, altered or otherwise unreadable.
    #[error("corrupt backup: {0}")]
    Corrupt(String),
    /// The state inside does not decode.
    #[error("the backed-up state: {0}")]
    State(#[from] SnapshotError),
    /// The directory to restore into is not empty.
    #[error(
        "{0} is not empty; restore into a new directory (a restored node must not mix with old data)"
    )]
    NotEmpty(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
}

/// Encodes a backup of `state` (a state snapshot) with its header.
pub fn encode(header: &BackupHeader, state: &[u8]) -> Vec<u8> {
    // Plain data always encodes.
    let header = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(PREFIX_BYTES + header.len() + state.len() + CHECKSUM_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(state);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// What a backup of `sm` at `applied_index` by `node_id` holds: its header
/// and the state snapshot. Cheap enough to run on the driver thread; the
/// checksum is left to [`encode`], which can run elsewhere.
pub fn capture(
    sm: &StateMachine,
    applied_index: u64,
    node_id: u64,
    now_unix_ms: i64,
) -> (BackupHeader, Vec<u8>) {
    let state = sm.snapshot();
    let core = sm.core();
    let header = BackupHeader {
        drover_version: crate::data_dir::DROVER_VERSION.to_owned(),
        created_unix_ms: now_unix_ms,
        node_id,
        applied_index,
        jobs: core.jobs.len() as u64,
        schedules: core.schedules.len() as u64,
        workers: core.workers.len() as u64,
        state_bytes: state.len() as u64,
    };
    (header, state)
}

/// A decoded, verified backup.
#[derive(Debug, Clone)]
pub struct Backup {
    /// What it says about itself.
    pub header: BackupHeader,
    /// The state snapshot.
    pub state: Vec<u8>,
}

impl Backup {
    /// Checks the magic, the format, the checksum and the lengths.
    pub fn decode(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(BackupError::BadMagic);
        }
        if bytes.len() < PREFIX_BYTES + CHECKSUM_BYTES {
            return Err(BackupError::Corrupt(format!(
                "{} bytes is too short for a backup",
                bytes.len()
            )));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion { found: version });
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if Sha256::digest(body).as_slice() != sum {
            return Err(BackupError::Corrupt(
                "the checksum does not match: the file is truncated or was altered".into(),
            ));
        }
        let header_len = u32_at(12);
        if header_len > HEADER_BYTES_MAX || PREFIX_BYTES + header_len as usize > body.len() {
            return Err(BackupError::Corrupt(format!(
                "a header of {header_len} bytes does not fit"
            )));
        }
        let header_end = PREFIX_BYTES + header_len as usize;
        let header: BackupHeader = serde_json::from_slice(&body[PREFIX_BYTES..header_end])
            .map_err(|e| BackupError::Corrupt(format!("header: {e}")))?;
        let state = body[header_end..].to_vec();
        if state.len() as u64 != header.state_bytes {
            return Err(BackupError::Corrupt(format!(
                "the header says {} state bytes, the file holds {}",
                header.state_bytes,
                state.len()
            )));
        }
        Ok(Self { header, state })
    }

    /// Reads and verifies a backup file.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let bytes = std::fs::read(path)
            .map_err(|e| BackupError::Io(format!("reading {}: {e}", path.display())))?;
        Self::decode(&bytes)
    }

    /// The state, prepared to seed a new cluster (see
    /// [`crate::state::restore`]).
    pub fn prepared_state(&self) -> Result<(StateMachine, RestoreReport), BackupError> {
        let mut sm = StateMachine::restore(&self.state)?;
        let report = sm.prepare_for_restore();
        Ok((sm, report))
    }

    /// Seeds the empty data directory `dir` for one member of a new cluster
    /// whose voters are `members` (Raft id to gRPC address). Run it for
    /// every member, with the same backup and the same members; each then
    /// starts with `drover coordinator` as usual, from the same state at the
    /// same log index.
    pub fn restore_into(
        &self,
        dir: &Path,
        members: &BTreeMap<u64, String>,
    ) -> Result<RestoreReport, BackupError> {
        if members.is_empty() {
            return Err(BackupError::Io(
                "a cluster needs at least one member".into(),
            ));
        }
        let not_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if not_empty {
            return Err(BackupError::NotEmpty(dir.display().to_string()));
        }
        let (sm, report) = self.prepared_state()?;
        seed_checkpoint(dir, sm.snapshot(), self.header.applied_index, members)
            .map_err(|e| BackupError::Io(e.to_string()))?;
        crate::data_dir::open(dir).map_err(|e| BackupError::Io(e.to_string()))?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Config;

    fn backup() -> Vec<u8> {
        let (header, state) = capture(
            &StateMachine::new(Config::default()),
            42,
            2,
            1_700_000_000_000,
        );
        encode(&header, &state)
    }

    #[test]
    fn a_backup_round_trips_with_its_header() {
        let b = Backup::decode(&backup()).unwrap();
        assert_eq!(b.header.applied_index, 42);
        assert_eq!(b.header.node_id, 2);
        assert_eq!(b.header.drover_version, crate::data_dir::DROVER_VERSION);
        assert_eq!(b.state, StateMachine::new(Config::default()).snapshot());
    }

    #[test]
    fn any_flipped_or_missing_byte_is_refused() {
        let good = backup();
        for at in [0, 9, 13, PREFIX_BYTES + 3, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                Backup::decode(&bad).is_err(),
                "flipped byte {at} was accepted"
            );
        }
        let err = Backup::decode(&good[..good.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn another_format_version_is_named_in_the_error() {
        let mut newer = backup();
        newer[8..12].copy_from_slice(&7u32.to_le_bytes());
        let err = Backup::decode(&newer).unwrap_err().to_string();
        assert!(
            err.contains("backup format version 7 is not supported"),
            "{err}"
        );
        let err = Backup::decode(b"PK\x03\x04 a zip file").unwrap_err();
        assert!(matches!(err, BackupError::BadMagic));
    }

    #[test]
    fn restoring_refuses_a_directory_with_data_in_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("checkpoint.snap"), b"old").unwrap();
        let members = BTreeMap::from([(1, "127.0.0.1:7070".to_owned())]);
        let err = Backup::decode(&backup())
            .unwrap()
            .restore_into(dir.path(), &members)
            .unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("checkpoint.snap")).unwrap(),
            b"old"
        );
    }
}
