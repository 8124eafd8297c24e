//! `_manifest.json`: what an output is. Every data task writes its files
//! under its attempt's prefix and then this one object naming them (paths
//! relative to the manifest, rows, bytes, SHA-256), the schema, and who
//! wrote it (task, attempt, fencing token, code version, input
//! fingerprint). One PUT is atomic in every object store, so a reader sees
//! a whole manifest or none; the accepted completion carries it, and that
//! makes the output canonical.

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DatasetError;
use super::location::Location;

/// The manifest's object name.
pub const MANIFEST_NAME: &str = "_manifest.json";

/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// Largest manifest read: a manifest lists files, not rows.
const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One file of an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// Path relative to the manifest, slash-separated.
    pub path: String,
    /// Rows (records) in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
}

/// One column of the output's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestColumn {
    /// Column name.
    pub name: String,
    /// Arrow data type, as Arrow prints it (`Utf8`, `Int64`, ...).
    pub data_type: String,
    /// Whether it may be null.
    pub nullable: bool,
}

/// An output's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The files, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Rows over all files.
    pub rows: u64,
    /// Bytes over all files.
    pub bytes: u64,
    /// The columns, when the files are tables.
    pub schema: Vec<ManifestColumn>,
    /// The task that wrote it (`j7/0/12`).
    pub task: String,
    /// Its attempt.
    pub attempt: u32,
    /// The lease's fencing token.
    pub fencing_token: u64,
    /// Version of the code that wrote it.
    pub code_version: String,
    /// Fingerprint of the inputs it read (their manifests' hashes).
    pub input_fingerprint: String,
}

/// Who is writing an output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Writer {
    /// The task (`j7/0/12`).
    pub task: String,
    /// Its attempt.
    pub attempt: u32,
    /// The lease's fencing token.
    pub fencing_token: u64,
    /// Code version.
    pub code_version: String,
    /// Input fingerprint.
    pub input_fingerprint: String,
}

impl DatasetManifest {
    /// A manifest of `files` (sorted here) written by `writer`.
    pub fn new(mut files: Vec<ManifestFile>, schema: Vec<ManifestColumn>, writer: &Writer) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            format: MANIFEST_FORMAT,
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            schema,
            task: writer.task.clone(),
            attempt: writer.attempt,
            fencing_token: writer.fencing_token,
            code_version: writer.code_version.clone(),
            input_fingerprint: writer.input_fingerprint.clone(),
        }
    }

    /// SHA-256 of the manifest's files' hashes and paths: what a reader
    /// folds into its own input fingerprint.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update([0]);
            h.update(f.sha256.as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `manifest` as `_manifest.json` at `location`, in one PUT;
/// returns the manifest file's own entry (path, bytes, checksum).
pub async fn write(
    location: &Location,
    manifest: &DatasetManifest,
) -> Result<ManifestFile, DatasetError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| DatasetError::Manifest {
        path: location.path(MANIFEST_NAME).to_string(),
        reason: e.to_string(),
    })?;
    let file = ManifestFile {
        path: MANIFEST_NAME.to_owned(),
        rows: manifest.files.len() as u64,
        bytes: json.len() as u64,
        sha256: hex(&Sha256::digest(&json)),
    };
    location
        .store
        .put(&location.path(MANIFEST_NAME), json.into())
        .await?;
    Ok(file)
}

/// Reads the manifest at `location`; `None` when there is none (nothing
/// was committed there).
pub async fn read(location: &Location) -> Result<Option<DatasetManifest>, DatasetError> {
    Ok(read_with_entry(location).await?.map(|(m, _)| m))
}

/// Like [`read`], with the manifest file's own entry (its size and
/// SHA-256), which pins every file it lists.
pub async fn read_with_entry(
    location: &Location,
) -> Result<Option<(DatasetManifest, ManifestFile)>, DatasetError> {
    let path = location.path(MANIFEST_NAME);
    let bytes = match location.store.get(&path).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bad = |reason: String| DatasetError::Manifest {
        path: path.to_string(),
        reason,
    };
    if bytes.len() > MANIFEST_BYTES_MAX {
        return Err(bad(format!("larger than {MANIFEST_BYTES_MAX} bytes")));
    }
    let manifest: DatasetManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "format {} is not {MANIFEST_FORMAT}, the one this worker reads",
            manifest.format
        )));
    }
    let entry = ManifestFile {
        path: MANIFEST_NAME.to_owned(),
        rows: manifest.files.len() as u64,
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
    };
    Ok(Some((manifest, entry)))
}

/// Checks that every file the manifest names exists at `location` with
/// the size and SHA-256 it records.
pub async fn verify(location: &Location, manifest: &DatasetManifest) -> Result<(), DatasetError> {
    for f in &manifest.files {
        let bytes = location
            .store
            .get(&location.path(&f.path))
            .await?
            .bytes()
            .await?;
        let mismatch = |reason: String| DatasetError::Mismatch {
            path: f.path.clone(),
            reason,
        };
        if bytes.len() as u64 != f.bytes {
            return Err(mismatch(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                f.bytes
            )));
        }
        let sha = hex(&Sha256::digest(&bytes));
        if sha != f.sha256 {
            return Err(mismatch(format!(
                "SHA-256 {sha}, the manifest says {}",
                f.sha256
            )));
        }
    }
    Ok(())
}
