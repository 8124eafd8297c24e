//! The whole replicated state as bytes, for Raft snapshots and backups.
//!
//! Format: the 8-byte magic `DROVERSM`, a little-endian `u32` format version,
//! then the [`Core`] encoded with postcard. Indexes are not included; they
//! are rebuilt on restore. A binary refuses a version it does not know with
//! a clear error instead of guessing.

use super::{Core, StateMachine};

/// Identifies a Drover state snapshot.
pub const MAGIC: &[u8; 8] = b"DROVERSM";

/// The format this build writes and reads. Version 2: jobs and schedules
/// keep their `traceparent`, templates their open time.
pub const FORMAT_VERSION: u32 = 2;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Drover snapshot at all.
    #[error("not a Drover state snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer or older binary.
    #[error(
        "snapshot format version {found} is not supported by this binary (it reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u32,
    },
    /// The body does not decode.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

impl StateMachine {
    /// Encodes the replicated state. Equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Encoding plain data into a Vec cannot fail.
        let body = postcard::to_stdvec(&self.core).unwrap_or_default();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot and rebuilds the indexes.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        let core: Core = postcard::from_bytes(&bytes[12..])
            .map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        Ok(StateMachine::from_core(core))
    }
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
                "snapshot format version {} is not supported by this binary (it reads version {FORMAT_VERSION})",
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
}
