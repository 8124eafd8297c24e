//! A date's features where readers look for them, across jobs: a nightly
//! run and a backfill of the same date write the same place.
//!
//! ```text
//! <output>/date=YYYY-MM-DD/_manifest.json          names the current file
//! <output>/date=YYYY-MM-DD/part-<fingerprint>.parquet
//! ```
//!
//! An attempt computes into its own prefix as every attempt does; then it
//! publishes: it copies its file in (a hard link on a local disk, a
//! server-side copy on S3), named by the input fingerprint, puts the
//! partition's manifest, which is the switch from the old features to the
//! new in one PUT, and deletes the files the old manifest named. A reader
//! of the manifest sees the old day or the new one, never a mix; a reader
//! globbing `date=*/*.parquet` sees both files only in the moment between
//! the PUT and the delete.
//!
//! Fencing: a manifest written under a later lease (a higher fencing
//! token, which the coordinator only ever raises) is never replaced, so a
//! worker that lost its lease and finishes late cannot roll a date back;
//! the check and the write are one conditional write.
//! The same fingerprint always gives the same bytes, so two attempts that
//! publish one fingerprint at once write identical files.

use drover_proto::v1::OutputManifest;
use object_store::ObjectStoreExt;

use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile};
pub use crate::dataset::publish::{ORPHAN_AGE_MS, Published};
use crate::executors::TaskError;
use crate::executors::data_attempt::{CODE_VERSION, completion, dataset_error};

/// The published file of features computed from `fingerprint`.
pub fn file_name(fingerprint: &str) -> String {
    format!("part-{}.parquet", &fingerprint[..fingerprint.len().min(16)])
}

/// The date's committed features when they were computed from
/// `fingerprint` by this code and every file is still there, as the
/// completion that reuses them reports them: `prefix` is the date's
/// directory below the output.
pub async fn reusable(
    partition: &Location,
    prefix: &str,
    fingerprint: &str,
) -> Result<Option<OutputManifest>, TaskError> {
    let Some((m, entry)) = read_current(partition).await? else {
        return Ok(None);
    };
    if m.input_fingerprint != fingerprint || m.code_version != CODE_VERSION {
        return Ok(None);
    }
    for f in &m.files {
        match partition.store.head(&partition.path(&f.path)).await {
            Ok(meta) if meta.size == f.bytes => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(dataset_error(e.into())),
        }
    }
    Ok(Some(completion(prefix, m, entry)))
}

/// The partition's manifest; one that does not decode counts as none, so
/// a damaged manifest is replaced rather than blocking the date forever.
async fn read_current(
    partition: &Location,
) -> Result<Option<(DatasetManifest, ManifestFile)>, TaskError> {
    match manifest::read_with_entry(partition).await {
        Ok(m) => Ok(m),
        Err(crate::dataset::DatasetError::Manifest { path, reason }) => {
            tracing::warn!(%path, %reason, "replacing a partition manifest that does not decode");
            Ok(None)
        }
        Err(e) => Err(dataset_error(e)),
    }
}

/// Publishes the features `committed` names (its [`super::FEATURES_FILE`]),
/// written at `from`, as the features of `partition` (see
/// [`crate::dataset::publish`]).
pub async fn publish(
    from: &Location,
    committed: &DatasetManifest,
    partition: &Location,
) -> Result<Published, TaskError> {
    let name = file_name(&committed.input_fingerprint);
    crate::dataset::publish::publish(
        from,
        committed,
        partition,
        |p| (p == super::FEATURES_FILE).then(|| name.clone()),
        |p| p.starts_with("part-") && p.ends_with(".parquet") && !p.contains('/'),
    )
    .await
    .map_err(dataset_error)
}
