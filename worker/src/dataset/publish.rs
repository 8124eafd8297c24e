//! A job's result where users and the next job look for it: the spec's
//! `output` itself, not an attempt's directory below it.
//!
//! ```text
//! <output>/_manifest.json                   names the current result's files
//! <output>/<path>.r<token>.<ext>            each file of the result
//! <output>/jobs/...                         attempts' own directories (staging)
//! ```
//!
//! The last task of a job computes into its attempt's prefix and commits
//! there as every task does; then it publishes: it copies its files in (a
//! hard link on a local disk, a server-side copy on S3) under names that
//! carry its lease's fencing token, writes the manifest naming them (the
//! switch from the old result to the new in one conditional write), and
//! deletes the files the old manifest named. A reader of the manifest sees
//! the old result or the new one, never a mix; a reader globbing the
//! directory sees both only in the moment between the write and the
//! deletes.
//!
//! Fencing: a manifest written under a later lease is never replaced
//! ([`manifest::write_unless_newer`]), so a worker that lost its lease and
//! finishes late cannot roll the result back; its copies are deleted.

use object_store::ObjectStoreExt;

use super::DatasetError;
use super::listing;
use super::location::Location;
use super::manifest::{self, DatasetManifest, ManifestFile, Swapped};

/// Files that no manifest names and that are older than this are left
/// over from a publisher that died between its copies and its manifest,
/// and the next publish removes them. Younger ones may be another
/// publisher's, about to be named.
pub const ORPHAN_AGE_MS: i64 = 3_600_000;

/// Files looked at for leftovers.
const LEFTOVERS_LISTED_MAX: usize = 100_000;

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The output now holds this result; `removed` files of earlier ones
    /// went.
    Replaced {
        /// Files deleted.
        removed: usize,
    },
    /// A later lease already published; its result was left alone.
    Newer {
        /// That lease's token.
        token: u64,
    },
}

/// The published name of a result's `path` for the lease of `token`: the
/// tag goes before the extension, so the name still says the file's kind
/// (`labels/project=a/part-00002.r41.parquet`).
pub fn tagged(path: &str, token: u64) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let name = match name.split_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.r{token}.{ext}"),
        _ => format!("{name}.r{token}"),
    };
    match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    }
}

/// Whether `path` is a name [`tagged`] gives.
pub fn is_tagged(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.').skip(1).any(|part| {
        part.strip_prefix('r')
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Publishes the files of `committed` (an attempt's manifest, its files
/// below `from`) at `to`, each under the name `name` gives it (`None`
/// leaves a file out), with the committed manifest's rows, schema and
/// writer. `leftover` says which files at `to` a publisher of this kind
/// may have left (only those are ever swept).
pub async fn publish(
    from: &Location,
    committed: &DatasetManifest,
    to: &Location,
    name: impl Fn(&str) -> Option<String>,
    leftover: impl Fn(&str) -> bool,
) -> Result<Published, DatasetError> {
    let current = match manifest::read(to).await {
        Ok(m) => m,
        // A damaged manifest is replaced rather than blocking the output.
        Err(DatasetError::Manifest { .. }) => None,
        Err(e) => return Err(e),
    };
    if let Some(c) = &current
        && c.fencing_token > committed.fencing_token
    {
        return Ok(Published::Newer {
            token: c.fencing_token,
        });
    }
    let files: Vec<(&ManifestFile, String)> = committed
        .files
        .iter()
        .filter_map(|f| Some((f, name(&f.path)?)))
        .collect();
    for (file, name) in &files {
        to.store
            .copy(&from.path(&file.path), &to.path(name))
            .await?;
    }
    let mut m = committed.clone();
    m.files = files
        .iter()
        .map(|(f, name)| ManifestFile {
            path: name.clone(),
            ..(*f).clone()
        })
        .collect();
    m.files.sort_by(|a, b| a.path.cmp(&b.path));
    m.bytes = m.files.iter().map(|f| f.bytes).sum();
    if let Swapped::Newer(token) = manifest::write_unless_newer(to, &m).await? {
        // Lost to a later lease between the look and the write: the
        // copies are no one's, unless the later result names the same
        // file (the same name means the same bytes).
        let newer = manifest::read(to)
            .await?
            .map(|m| m.files)
            .unwrap_or_default();
        for (_, name) in &files {
            if !newer.iter().any(|f| f.path == *name) {
                delete(to, name).await?;
            }
        }
        return Ok(Published::Newer { token });
    }

    let mine: std::collections::HashSet<&str> = files.iter().map(|(_, n)| n.as_str()).collect();
    let mut removed = 0;
    for f in current.into_iter().flat_map(|c| c.files) {
        if !mine.contains(f.path.as_str()) {
            removed += delete(to, &f.path).await?;
        }
    }
    // Files of publishers that died before naming theirs, looked for
    // where this result's files are (not below every attempt's
    // directory). Tidying only: the result is published whatever happens
    // here.
    let old = |modified: i64| chrono::Utc::now().timestamp_millis() - modified > ORPHAN_AGE_MS;
    let dirs: std::collections::BTreeSet<&str> = mine
        .iter()
        .map(|n| n.split_once('/').map_or("", |(dir, _)| dir))
        .collect();
    for dir in dirs {
        let stale: Result<Vec<String>, DatasetError> = if dir.is_empty() {
            // Only the files at the top, not the directories below it.
            to.store
                .list_with_delimiter(Some(&to.prefix))
                .await
                .map(|l| {
                    l.objects
                        .into_iter()
                        .filter_map(|o| {
                            let name = o.location.filename()?.to_owned();
                            (leftover(&name)
                                && !mine.contains(name.as_str())
                                && old(o.last_modified.timestamp_millis()))
                            .then_some(name)
                        })
                        .collect()
                })
                .map_err(DatasetError::from)
        } else {
            listing::list(
                to,
                dir,
                |p| leftover(&format!("{dir}/{p}")),
                LEFTOVERS_LISTED_MAX,
            )
            .await
            .map(|l| {
                l.into_iter()
                    .map(|f| (format!("{dir}/{}", f.path), f.modified_ms))
                    .filter(|(p, modified)| !mine.contains(p.as_str()) && old(*modified))
                    .map(|(p, _)| p)
                    .collect()
            })
        };
        match stale {
            Ok(stale) => {
                for path in stale {
                    removed += delete(to, &path).await?;
                }
            }
            Err(e) => tracing::warn!(error = %e, "not looking for leftover files"),
        }
    }
    Ok(Published::Replaced { removed })
}

async fn delete(at: &Location, path: &str) -> Result<usize, DatasetError> {
    match at.store.delete(&at.path(path)).await {
        Ok(()) => Ok(1),
        Err(object_store::Error::NotFound { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_before_the_extension() {
        assert_eq!(
            tagged("labels/project=a/part-00002.parquet", 41),
            "labels/project=a/part-00002.r41.parquet"
        );
        assert_eq!(tagged("quality/report.json", 7), "quality/report.r7.json");
        assert_eq!(tagged("kept/part.jsonl.gz", 7), "kept/part.r7.jsonl.gz");
        assert_eq!(tagged("README", 7), "README.r7");
        assert_eq!(tagged(".hidden", 7), ".hidden.r7");
        for p in ["a/b.r41.parquet", "README.r7", "x.r1.jsonl.gz"] {
            assert!(is_tagged(p), "{p}");
        }
        for p in [
            "a/b.parquet",
            "rr.json",
            "a.r.json",
            "a.rx1.json",
            "r41/b.json",
        ] {
            assert!(!is_tagged(p), "{p}");
        }
    }
}
