//! The data directory's format marker, `format.json`.
//!
//! Each part of a coordinator's data has its own version: the Raft log's
//! entry encoding, the state snapshot (`checkpoint.snap` and backups), the
//! sled state store. The marker versions the directory as a whole and
//! records which release last opened it, so that a binary meeting a
//! directory from a newer release refuses it before touching anything,
//! and says which release wrote it:
//!
//! ```text
//! data directory /var/lib/drover/node-1 is in on-disk format 2, last opened by drover 0.3.0;
//! this binary (drover 0.1.0) reads formats up to 1. Run drover 0.3.0 or newer on it ...
//! ```
//!
//! An older format is upgraded in place when this binary knows how; a
//! directory without a marker predates it and is format 1.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::raft::backend::write_durably;
use crate::raft::error::NodeError;

/// The data directory format this binary writes. Version 1: `raft/`
/// (raft-engine), `state/` (sled), `checkpoint.snap`, `members.json`.
pub const DATA_DIR_FORMAT: u32 = 1;

/// The marker's file name.
pub const MARKER_FILE: &str = "format.json";

/// This build's version, as the marker records it.
pub const DROVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The marker's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// The directory's format.
    pub format: u32,
    /// The release that last opened the directory.
    pub written_by: String,
}

/// Checks that this binary can open the data directory `dir` (creating it
/// when missing), then records this binary in its marker.
pub fn open(dir: &Path) -> Result<(), NodeError> {
    let io = |e: std::io::Error| NodeError::Storage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(MARKER_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::Storage(format!(
                    "{} is not a Drover format marker ({e}); restore the file or point --data-dir at the right directory",
                    path.display()
                ))
            })?;
            if marker.format > DATA_DIR_FORMAT {
                return Err(NodeError::Storage(format!(
                    "data directory {} is in on-disk format {}, last opened by drover {}; this binary (drover {DROVER_VERSION}) reads formats up to {DATA_DIR_FORMAT}. Run drover {} or newer on it, or restore a backup (`drover cluster restore`) into a new directory",
                    dir.display(),
                    marker.format,
                    marker.written_by,
                    marker.written_by
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let marker = Marker {
        format: DATA_DIR_FORMAT,
        written_by: DROVER_VERSION.to_owned(),
    };
    let bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
    write_durably(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_stamped_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node-1");
        open(&data).unwrap();
        let marker: Marker =
            serde_json::from_slice(&std::fs::read(data.join(MARKER_FILE)).unwrap()).unwrap();
        assert_eq!(marker.format, DATA_DIR_FORMAT);
        assert_eq!(marker.written_by, DROVER_VERSION);
        open(&data).unwrap();
    }

    #[test]
    fn a_newer_format_is_refused_naming_the_release_that_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let newer = format!(
            r#"{{"format": {}, "writtenBy": "9.4.0"}}"#,
            DATA_DIR_FORMAT + 1
        );
        std::fs::write(dir.path().join(MARKER_FILE), &newer).unwrap();
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("on-disk format 2, last opened by drover 9.4.0"),
            "{err}"
        );
        assert!(err.contains("Run drover 9.4.0 or newer"), "{err}");
        // Refused before anything was written.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap(),
            newer
        );
    }

    #[test]
    fn a_garbled_marker_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER_FILE), "not json").unwrap();
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a Drover format marker"), "{err}");
    }
}
