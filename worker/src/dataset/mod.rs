//! Dataset IO shared by every data job: where data lives ([`location`]:
//! `file://` paths and `s3://` buckets through the `object_store` crate),
//! Parquet written and read a row group at a time so memory stays bounded
//! whatever the input's size ([`parquet`]), and the `_manifest.json` that
//! makes an output canonical ([`manifest`]).
//!
//! A job's own readers (the next task of a job) find files through
//! manifests only, never by listing: an attempt's half-written files are
//! invisible to them until a manifest names those files. Users' inputs
//! are read as they come ([`input`]): a manifest pins their files when
//! there is one, a listing finds them otherwise; CSV and JSONL tables
//! decode to Arrow batches ([`table`]) and every string encoding reads as
//! one ([`strings`]).

pub mod input;
pub mod jsonl;
pub mod listing;
pub mod location;
pub mod manifest;
pub mod parquet;
pub mod publish;
mod reader;
pub mod strings;
pub mod table;
pub mod text;

/// Why dataset IO failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A URL this worker cannot use.
    #[error("dataset URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object store failed (IO, permissions, network, missing object).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// A manifest does not decode.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A listing found more files than a job takes.
    #[error("{url} holds more than {max} files")]
    TooManyFiles {
        /// What was listed.
        url: String,
        /// The limit.
        max: usize,
    },
    /// An input holds no file a job reads.
    #[error("{url} has no {accepted} files{}", if *manifest { " in its _manifest.json" } else { "" })]
    NoFiles {
        /// The input.
        url: String,
        /// The extensions looked for.
        accepted: String,
        /// Whether a manifest named the files.
        manifest: bool,
    },
    /// A CSV or JSONL file does not decode.
    #[error("{path}: {reason}")]
    Decode {
        /// The file.
        path: String,
        /// Why, with the line when the decoder knows it.
        reason: String,
    },
    /// A file does not match what its manifest says.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file.
        path: String,
        /// How it differs.
        reason: String,
    },
}
