//! `_manifest.json`: what an output is. Every data task writes its files
//! under its attempt's prefix and then this one object naming them (paths
//! relative to the manifest, rows, bytes, SHA-256), the schema, and who
//! wrote it (task, attempt, fencing token, code version, input
//! fingerprint). One PUT is atomic in every object store, so a reader sees
//! a whole manifest or none; the accepted completion carries it, and that
//! makes the output canonical.

use object_store::{ObjectStoreExt, PutMode, UpdateVersion};
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
    let (json, file) = encoded(location, manifest)?;
    location
        .store
        .put(&location.path(MANIFEST_NAME), json.into())
        .await?;
    Ok(file)
}

/// `manifest` as written, and its own entry.
fn encoded(
    location: &Location,
    manifest: &DatasetManifest,
) -> Result<(Vec<u8>, ManifestFile), DatasetError> {
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
    Ok((json, file))
}

/// What a conditional manifest write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// The manifest is now this one; its own entry.
    Written(ManifestFile),
    /// A manifest of a later lease (this token) was there and stays.
    Newer(u64),
}

/// Times a conditional write is retried after losing a race.
const SWAP_ATTEMPTS: u32 = 32;

/// A lock object older than this belongs to a writer that died holding it.
const LOCK_STALE_MS: i64 = 30_000;

/// Writes `manifest` at `location` unless the manifest there was written
/// under a later lease (a higher fencing token, which the coordinator
/// only ever raises), so a worker that lost its lease and finishes late
/// cannot roll a published result back. The check and the write are one
/// compare-and-swap: on the store's version tag where it has conditional
/// writes (S3's `If-Match`, `If-None-Match`), else under a lock object
/// beside the manifest (a local disk).
pub async fn write_unless_newer(
    location: &Location,
    manifest: &DatasetManifest,
) -> Result<Swapped, DatasetError> {
    let path = location.path(MANIFEST_NAME);
    let (json, entry) = encoded(location, manifest)?;
    for _ in 0..SWAP_ATTEMPTS {
        let (current, version) = read_versioned(location).await?;
        if let Some(c) = &current
            && c.fencing_token > manifest.fencing_token
        {
            return Ok(Swapped::Newer(c.fencing_token));
        }
        let mode = match version {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        match location
            .store
            .put_opts(&path, json.clone().into(), mode.into())
            .await
        {
            Ok(_) => return Ok(Swapped::Written(entry)),
            // Another writer got in between: look again.
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => continue,
            Err(object_store::Error::NotImplemented { .. }) => {
                return write_locked(location, manifest, json, entry).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DatasetError::Manifest {
        path: path.to_string(),
        reason: format!("lost {SWAP_ATTEMPTS} races to write it in a row"),
    })
}

/// [`write_unless_newer`] for a store without conditional updates: the
/// check and the write happen while holding `_manifest.json.lock`, made
/// with a create-if-absent put (atomic on a local disk).
async fn write_locked(
    location: &Location,
    manifest: &DatasetManifest,
    json: Vec<u8>,
    entry: ManifestFile,
) -> Result<Swapped, DatasetError> {
    let lock = location.path(&format!("{MANIFEST_NAME}.lock"));
    let holder = format!("token {}\n", manifest.fencing_token);
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(2 * LOCK_STALE_MS as u64);
    loop {
        match location
            .store
            .put_opts(
                &lock,
                holder.clone().into_bytes().into(),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => break,
            Err(object_store::Error::AlreadyExists { .. }) => {
                let age = match location.store.head(&lock).await {
                    Ok(meta) => {
                        chrono::Utc::now().timestamp_millis()
                            - meta.last_modified.timestamp_millis()
                    }
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                if age > LOCK_STALE_MS {
                    tracing::warn!(lock = %lock, age_ms = age, "removing a manifest lock its holder left");
                    match location.store.delete(&lock).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                if std::time::Instant::now() > deadline {
                    return Err(DatasetError::Manifest {
                        path: lock.to_string(),
                        reason: "held by another writer for too long".to_owned(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let result = async {
        let (current, _) = read_versioned(location).await?;
        if let Some(c) = current
            && c.fencing_token > manifest.fencing_token
        {
            return Ok(Swapped::Newer(c.fencing_token));
        }
        location
            .store
            .put(&location.path(MANIFEST_NAME), json.into())
            .await?;
        Ok(Swapped::Written(entry))
    }
    .await;
    match location.store.delete(&lock).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(lock = %lock, error = %e, "could not remove the manifest lock"),
    }
    result
}

/// The manifest at `location` and the store's version of it; one that
/// does not decode counts as none (and is replaced), so a damaged
/// manifest cannot block a result forever.
async fn read_versioned(
    location: &Location,
) -> Result<(Option<DatasetManifest>, Option<UpdateVersion>), DatasetError> {
    let path = location.path(MANIFEST_NAME);
    let got = match location.store.get(&path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok((None, None)),
        Err(e) => return Err(e.into()),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let bytes = got.bytes().await?;
    let manifest = decode(&path, &bytes)
        .inspect_err(|e| tracing::warn!(error = %e, "replacing a manifest that does not decode"))
        .ok();
    Ok((manifest, Some(version)))
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
    let manifest = decode(&path, &bytes)?;
    let entry = ManifestFile {
        path: MANIFEST_NAME.to_owned(),
        rows: manifest.files.len() as u64,
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
    };
    Ok(Some((manifest, entry)))
}

/// Decodes the manifest at `path`.
fn decode(path: &object_store::path::Path, bytes: &[u8]) -> Result<DatasetManifest, DatasetError> {
    let bad = |reason: String| DatasetError::Manifest {
        path: path.to_string(),
        reason,
    };
    if bytes.len() > MANIFEST_BYTES_MAX {
        return Err(bad(format!("larger than {MANIFEST_BYTES_MAX} bytes")));
    }
    let manifest: DatasetManifest =
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "format {} is not {MANIFEST_FORMAT}, the one this worker reads",
            manifest.format
        )));
    }
    Ok(manifest)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn by(token: u64) -> DatasetManifest {
        DatasetManifest::new(
            Vec::new(),
            Vec::new(),
            &Writer {
                fencing_token: token,
                ..Writer::default()
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_writers_leave_the_highest_token_and_never_roll_it_back() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..8u64 {
            let at = Location::parse(dir.path().join(round.to_string()).to_str().unwrap()).unwrap();
            // Tokens in an order that differs each round, all at once.
            let tokens: Vec<u64> = (1..=12).map(|i| (i * 7 + round * 5) % 12 + 1).collect();
            let writers: Vec<_> = tokens
                .iter()
                .map(|&t| {
                    let at = at.clone();
                    tokio::spawn(async move { (t, write_unless_newer(&at, &by(t)).await.unwrap()) })
                })
                .collect();
            let mut written = Vec::new();
            for w in writers {
                let (t, swapped) = w.await.unwrap();
                match swapped {
                    Swapped::Written(_) => written.push(t),
                    Swapped::Newer(newer) => assert!(newer > t, "{t} refused for {newer}"),
                }
            }
            assert!(written.contains(&12), "round {round}: {written:?}");
            assert_eq!(
                read(&at).await.unwrap().unwrap().fencing_token,
                12,
                "round {round}"
            );
            // A late writer of a lower token changes nothing.
            assert_eq!(
                write_unless_newer(&at, &by(3)).await.unwrap(),
                Swapped::Newer(12)
            );
            assert!(
                !dir.path()
                    .join(round.to_string())
                    .join("_manifest.json.lock")
                    .exists()
            );
        }
    }

    #[tokio::test]
    async fn a_lock_its_holder_left_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let at = Location::parse(dir.path().to_str().unwrap()).unwrap();
        write_unless_newer(&at, &by(1)).await.unwrap();
        let lock = dir.path().join("_manifest.json.lock");
        std::fs::write(&lock, "token 0\n").unwrap();
        let old = std::time::SystemTime::now()
            - std::time::Duration::from_millis(2 * LOCK_STALE_MS as u64);
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(
            write_unless_newer(&at, &by(2)).await.unwrap(),
            Swapped::Written(_)
        ));
        assert!(!lock.exists());
    }
}
