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
//! worker that lost its lease and finishes late cannot roll a date back.
//! The same fingerprint always gives the same bytes, so two attempts that
//! publish one fingerprint at once write identical files.

use drover_proto::v1::OutputManifest;
use object_store::ObjectStoreExt;

use crate::dataset::listing;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestColumn, ManifestFile, Writer};
use crate::executors::TaskError;
use crate::executors::data_attempt::{CODE_VERSION, completion, dataset_error};

/// Files in a date's directory that no manifest names and that are older
/// than this are left over from an attempt that died between its copy and
/// its manifest, and are removed by the next publish. Younger ones may be
/// another attempt's, about to be named.
pub const ORPHAN_AGE_MS: i64 = 3_600_000;

/// Files of a date's directory looked at for leftovers.
const LEFTOVERS_LISTED_MAX: usize = 10_000;

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

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The date now holds this attempt's features; `removed` files of
    /// earlier ones went.
    Replaced {
        /// Files deleted.
        removed: usize,
    },
    /// A later lease already published the date; it was left alone.
    Newer {
        /// That lease's token.
        token: u64,
    },
}

/// Publishes `file`, written at `from`, as the features of `partition`,
/// with `writer`'s fencing token and fingerprint.
pub async fn publish(
    from: &Location,
    file: &ManifestFile,
    schema: Vec<ManifestColumn>,
    partition: &Location,
    writer: &Writer,
) -> Result<Published, TaskError> {
    let current = read_current(partition).await?.map(|(m, _)| m);
    if let Some(c) = &current
        && c.fencing_token > writer.fencing_token
    {
        return Ok(Published::Newer {
            token: c.fencing_token,
        });
    }
    let name = file_name(&writer.input_fingerprint);
    partition
        .store
        .copy(&from.path(&file.path), &partition.path(&name))
        .await
        .map_err(|e| dataset_error(e.into()))?;
    let published = ManifestFile {
        path: name.clone(),
        ..file.clone()
    };
    let rows = published.rows;
    let mut m = DatasetManifest::new(vec![published], schema, writer);
    m.rows = rows;
    manifest::write(partition, &m)
        .await
        .map_err(dataset_error)?;

    let mut removed = 0;
    let superseded: Vec<String> = current
        .into_iter()
        .flat_map(|c| c.files)
        .map(|f| f.path)
        .filter(|p| *p != name)
        .collect();
    for path in superseded {
        removed += delete(partition, &path).await?;
    }
    // Files of attempts that died before naming theirs. Tidying only:
    // the date is published whatever happens here.
    let now = chrono::Utc::now().timestamp_millis();
    let listed = listing::list(
        partition,
        "",
        |p| p.starts_with("part-") && p.ends_with(".parquet") && !p.contains('/'),
        LEFTOVERS_LISTED_MAX,
    )
    .await;
    match listed {
        Ok(listed) => {
            for f in listed {
                if f.path != name && now - f.modified_ms > ORPHAN_AGE_MS {
                    removed += delete(partition, &f.path).await?;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "not looking for leftover files"),
    }
    Ok(Published::Replaced { removed })
}

async fn delete(partition: &Location, path: &str) -> Result<usize, TaskError> {
    match partition.store.delete(&partition.path(path)).await {
        Ok(()) => Ok(1),
        Err(object_store::Error::NotFound { .. }) => Ok(0),
        Err(e) => Err(dataset_error(e.into())),
    }
}
