//! The cluster's task log store as a coordinator reads it: a directory or
//! an object store (`s3://bucket/prefix`), reached the way workers reach
//! it, so both sides agree on every key.

use std::sync::Arc;

use drover_coordinator::task_logs::{StoredTail, TailFuture, TaskLogStore};
use drover_worker::dataset::DatasetError;
use drover_worker::dataset::location::Location;
use object_store::{GetOptions, GetRange, ObjectStore};

/// A task log store on `object_store`.
#[derive(Debug)]
pub struct ObjectTaskLogs {
    location: Location,
    /// The URL workers are given: a local directory made absolute, since
    /// workers resolve it from their own working directory.
    url: String,
}

/// A `--task-logs` value that names no usable store.
#[derive(Debug, thiserror::Error)]
pub enum TaskLogsError {
    /// Not a URL or directory a store can be opened at.
    #[error("--task-logs {url}: {source}")]
    Url {
        /// As given.
        url: String,
        /// Why.
        source: DatasetError,
    },
    /// A relative directory that cannot be made absolute.
    #[error("--task-logs {url}: {source}")]
    Directory {
        /// As given.
        url: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the store `--task-logs` names.
pub fn open(url: &str) -> Result<Arc<dyn TaskLogStore>, TaskLogsError> {
    let url = absolute(url)?;
    let location = Location::parse(&url).map_err(|source| TaskLogsError::Url {
        url: url.clone(),
        source,
    })?;
    Ok(Arc::new(ObjectTaskLogs { location, url }))
}

/// `url` with a relative local path made absolute.
fn absolute(url: &str) -> Result<String, TaskLogsError> {
    if url.starts_with("s3://") {
        return Ok(url.to_owned());
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    let path = std::path::absolute(path).map_err(|source| TaskLogsError::Directory {
        url: url.to_owned(),
        source,
    })?;
    Ok(path.display().to_string())
}

impl TaskLogStore for ObjectTaskLogs {
    fn url(&self) -> &str {
        &self.url
    }

    fn read_tail(&self, key: &str, max_bytes: u64) -> TailFuture<'_> {
        let path = self.location.path(key);
        Box::pin(async move {
            let options = GetOptions {
                range: Some(GetRange::Suffix(max_bytes)),
                ..GetOptions::default()
            };
            let got = match self.location.store.get_opts(&path, options).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let total_bytes = got.meta.size;
            let bytes = got.bytes().await.map_err(|e| e.to_string())?;
            Ok(Some(StoredTail {
                bytes: bytes.to_vec(),
                total_bytes,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_end_of_a_log_and_none_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap()).unwrap();
        let file = dir.path().join("jobs/j1/0/0/attempt-1-4.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "first\nsecond\n").unwrap();
        let whole = store
            .read_tail("jobs/j1/0/0/attempt-1-4.log", 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(whole.bytes, b"first\nsecond\n");
        assert_eq!(whole.total_bytes, 13);
        let end = store
            .read_tail("jobs/j1/0/0/attempt-1-4.log", 7)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(end.bytes, b"second\n");
        assert_eq!(end.total_bytes, 13);
        assert_eq!(
            store
                .read_tail("jobs/j1/0/0/attempt-2-5.log", 10)
                .await
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_relative_directory_is_handed_to_workers_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute("logs").unwrap(),
            cwd.join("logs").display().to_string()
        );
        assert_eq!(
            absolute("file://./logs").unwrap(),
            cwd.join("logs").display().to_string()
        );
        assert_eq!(absolute("/var/logs").unwrap(), "/var/logs");
        assert_eq!(absolute("s3://b/p").unwrap(), "s3://b/p");
    }
}
