//! The whole replicated state as bytes, for Raft snapshots and backups.
//!
//! Format: the 8-byte magic `DROVERSM`, a little-endian `u32` format version,
//! then the [`Core`] encoded with postcard. Indexes are not included; they
//! are rebuilt on restore. A binary refuses a version it does not know with
//! a clear error instead of guessing.

use std::collections::BTreeMap;

use super::history::JobHistory;
use super::policy::NamespacePolicy;
use super::security::{CertificateBinding, Security};
use super::{Core, StateMachine};

/// Identifies a Drover state snapshot.
pub const MAGIC: &[u8; 8] = b"DROVERSM";

/// The format this build writes. Version 2: jobs and schedules keep their
/// `traceparent`, templates their open time. Version 3: API tokens, as the
/// last field of [`Core`]. Version 4: namespace policies and client
/// certificate bindings, as the last two fields of that last field.
/// Version 5: task history and the id seed, as the last fields of
/// [`Core`] (job and schedule ids grew to 128 bits, which postcard's
/// varints read back unchanged).
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 2;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Drover snapshot at all.
    #[error("not a Drover state snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer or older binary.
    #[error(
        "snapshot format version {found} is not supported by this binary (it reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u32,
    },
    /// The body does not decode.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// Encodes a replicated state as [`StateMachine::snapshot`] does; for a
/// copy taken to be encoded elsewhere (a checkpoint off the Raft thread).
pub fn encode(core: &Core) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Encoding plain data into a Vec cannot fail.
    let body = postcard::to_stdvec(core).unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

impl StateMachine {
    /// Encodes the replicated state. Equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        encode(&self.core)
    }

    /// Decodes a snapshot and rebuilds the indexes.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        // Versions 3, 4 and 5 each only added fields at the very end of
        // `Core`, and postcard writes fields one after another: an older
        // body followed by the missing fields' empty bytes is the current
        // encoding of the same state.
        let mut body = std::borrow::Cow::Borrowed(&bytes[12..]);
        let mut append = |missing: Vec<u8>| body.to_mut().extend(missing);
        if version == 2 {
            append(postcard::to_stdvec(&Security::default()).unwrap_or_default());
        }
        if version == 3 {
            append(postcard::to_stdvec(&added_in_4()).unwrap_or_default());
        }
        if version <= 4 {
            append(postcard::to_stdvec(&added_in_5()).unwrap_or_default());
        }
        let core: Core =
            postcard::from_bytes(&body).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        Ok(StateMachine::from_core(core))
    }
}

/// What a version 4 snapshot lacks: no task history, and ids not yet
/// seeded.
fn added_in_5() -> (BTreeMap<super::JobId, JobHistory>, u64) {
    (BTreeMap::new(), 0)
}

/// What a version 3 snapshot lacks: no namespace policies and no
/// certificate bindings (postcard writes a tuple as its fields in turn).
fn added_in_4() -> (
    BTreeMap<String, NamespacePolicy>,
    BTreeMap<String, CertificateBinding>,
) {
    Default::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Config;

    #[test]
    fn another_format_version_or_foreign_bytes_are_refused_by_name() {
        let mut bytes = StateMachine::new(Config::default()).snapshot();
        assert!(StateMachine::restore(&bytes).is_ok());
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = StateMachine::restore(&bytes).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "snapshot format version {} is not supported by this binary (it reads versions 2 to {FORMAT_VERSION})",
                FORMAT_VERSION + 1
            )
        );
        assert!(matches!(
            StateMachine::restore(b"DROVERBK\x01\0\0\0"),
            Err(SnapshotError::BadMagic)
        ));
        let mut truncated = StateMachine::new(Config::default()).snapshot();
        truncated.truncate(14);
        assert!(matches!(
            StateMachine::restore(&truncated),
            Err(SnapshotError::Corrupt(_))
        ));
    }

    /// A state with something in it, and its current snapshot.
    fn current() -> Vec<u8> {
        let mut sm = StateMachine::new(Config::default());
        sm.apply(&crate::state::LogEntry {
            now_ms: 5,
            commands: vec![crate::state::Command::SetNamespaceWeight {
                namespace: "a".into(),
                weight: 3,
            }],
        });
        sm.snapshot()
    }

    /// `current` as an older `version` wrote it: without the `missing`
    /// trailing bytes of the fields that version lacked.
    fn older(current: &[u8], missing: &[u8], version: u32) -> Vec<u8> {
        let mut old = current[..current.len() - missing.len()].to_vec();
        old[8..12].copy_from_slice(&version.to_le_bytes());
        old
    }

    #[test]
    fn a_version_4_snapshot_restores_with_no_task_history() {
        let v5 = current();
        let v4 = older(&v5, &postcard::to_stdvec(&added_in_5()).unwrap(), 4);
        let restored = StateMachine::restore(&v4).expect("a version 4 snapshot restores");
        assert_eq!(restored.snapshot(), v5);
    }

    #[test]
    fn a_version_3_snapshot_restores_with_no_policies_or_bindings() {
        let v5 = current();
        let mut missing = postcard::to_stdvec(&added_in_4()).unwrap();
        missing.extend(postcard::to_stdvec(&added_in_5()).unwrap());
        let v3 = older(&v5, &missing, 3);
        let restored = StateMachine::restore(&v3).expect("a version 3 snapshot restores");
        assert_eq!(restored.snapshot(), v5);
    }

    #[test]
    fn a_version_2_snapshot_restores_with_no_tokens() {
        // A version 2 body lacks the whole of `Security`, tokens and
        // policies.
        let v5 = current();
        let mut missing = postcard::to_stdvec(&Security::default()).unwrap();
        missing.extend(postcard::to_stdvec(&added_in_5()).unwrap());
        let v2 = older(&v5, &missing, 2);
        let restored = StateMachine::restore(&v2).expect("a version 2 snapshot restores");
        assert_eq!(restored.snapshot(), v5);
        let mut v1 = v2;
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            StateMachine::restore(&v1),
            Err(SnapshotError::UnsupportedVersion { found: 1 })
        ));
    }
}
