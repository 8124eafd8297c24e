//! Listing the files below a prefix, for inputs that have no manifest
//! (readings dropped in `date=YYYY-MM-DD/` directories by another
//! system, late files included).

use futures::StreamExt;

use super::DatasetError;
use super::location::Location;

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Path below the listed location, slash-separated.
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// The store's version tag (S3's ETag; on a local disk, inode, mtime
    /// and size), when it gives one.
    pub e_tag: Option<String>,
    /// Last modification, Unix milliseconds.
    pub modified_ms: i64,
}

/// Whether `path` is data rather than metadata or a temporary file: no
/// segment of it starts with `_` or `.`, the convention Hive, Spark,
/// DuckDB and pyarrow share.
pub fn is_data(path: &str) -> bool {
    path.split('/')
        .all(|s| !s.starts_with('_') && !s.starts_with('.'))
}

/// The files below `under` (relative to `location`) whose path there
/// `wanted` accepts, sorted by path; refuses more than `max`.
pub async fn list(
    location: &Location,
    under: &str,
    wanted: impl Fn(&str) -> bool,
    max: usize,
) -> Result<Vec<Listed>, DatasetError> {
    let prefix = location.path(under);
    let mut listed = location.store.list(Some(&prefix));
    let mut out = Vec::new();
    while let Some(meta) = listed.next().await {
        let meta = meta?;
        let Some(rel) = meta.location.prefix_match(&prefix) else {
            continue;
        };
        let rel: Vec<String> = rel.map(|p| p.as_ref().to_owned()).collect();
        let rel = rel.join("/");
        if !wanted(&rel) {
            continue;
        }
        if out.len() == max {
            return Err(DatasetError::TooManyFiles {
                url: format!("{}/{under}", location.url.trim_end_matches('/')),
                max,
            });
        }
        out.push(Listed {
            path: rel,
            bytes: meta.size,
            e_tag: meta.e_tag,
            modified_ms: meta.last_modified.timestamp_millis(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
