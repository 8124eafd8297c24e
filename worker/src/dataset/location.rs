//! A place datasets are read from or written to: an object store and a
//! prefix in it, parsed from a URL.
//!
//! - `file:///abs/dir`, `file://./relative/dir` (relative to the worker's
//!   working directory), or a plain path: the local file system below that
//!   directory (created if missing).
//! - `s3://bucket/prefix`: S3 or an S3-compatible store. Endpoint, region
//!   and credentials come from the standard environment variables
//!   (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); requests are
//!   path-style (`endpoint/bucket/key`), which S3-compatible stores
//!   expect, and plain HTTP is allowed when the endpoint says `http://`.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::DatasetError;

/// An object store and a prefix in it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Where in it; empty for its root.
    pub prefix: Path,
    /// The URL it was parsed from, for messages.
    pub url: String,
}

impl Location {
    /// Parses `url` (see the module documentation).
    pub fn parse(url: &str) -> Result<Self, DatasetError> {
        let bad = |reason: &str| DatasetError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("names no bucket (s3://BUCKET/PREFIX)"));
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(false);
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok();
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build()?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: Path::parse(prefix.trim_end_matches('/'))
                    .map_err(|e| bad(&e.to_string()))?,
                url: url.to_owned(),
            });
        }
        let dir = match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => path,
            // `file://./data` is relative to the worker's directory, as
            // the examples write it.
            Some(path) if path.starts_with("./") || path.starts_with("../") => path,
            Some(_) => {
                return Err(bad(
                    "a file:// URL needs an absolute path (file:///dir) or one relative to the worker (file://./dir)",
                ));
            }
            None if url.contains("://") => {
                return Err(bad("only file:// and s3:// are supported"));
            }
            None => url,
        };
        if dir.is_empty() {
            return Err(bad("names no directory"));
        }
        std::fs::create_dir_all(dir).map_err(|e| bad(&format!("creating {dir}: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            url: url.to_owned(),
        })
    }

    /// The path of `relative` (slash-separated) below this location.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// A location for `relative` below this one, in the same store.
    pub fn child(&self, relative: &str) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.path(relative),
            url: format!("{}/{}", self.url.trim_end_matches('/'), relative),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_or_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("out");
        let loc = Location::parse(plain.to_str().unwrap()).unwrap();
        assert!(plain.is_dir(), "the directory is created");
        assert_eq!(loc.path("a/b.parquet").as_ref(), "a/b.parquet");
        let url = format!("file://{}", dir.path().display());
        let loc = Location::parse(&url).unwrap();
        assert_eq!(loc.child("x").path("y").as_ref(), "x/y");
        for (bad, says) in [
            ("file://relative/dir", "absolute path"),
            ("gs://bucket/x", "only file:// and s3://"),
            ("s3:///prefix", "no bucket"),
        ] {
            let err = Location::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let s3 = Location::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(s3.path("f.parquet").as_ref(), "some/prefix/f.parquet");
    }
}
