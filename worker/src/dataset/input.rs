//! An input as users bring it: a directory (`file://`, `s3://`) of
//! Parquet, JSONL or CSV files that some other tool wrote. Its
//! `_manifest.json`, when there is one (a Drover output), pins the exact
//! files; without one, a listing finds them: every file below the
//! directory, Hive-style `key=value/` directories included, whose name has
//! an accepted extension and no path segment starting with `_` or `.`
//! (Spark's `_SUCCESS`, temporary and hidden files).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DatasetError;
use super::listing;
use super::location::Location;
use super::manifest::{self, MANIFEST_NAME, hex};

/// How a file is encoded, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.parquet` (or `.pq`).
    Parquet,
    /// `.jsonl` (or `.ndjson`): one JSON object per line.
    Jsonl,
    /// `.csv`, with a header row.
    Csv,
}

impl Format {
    /// Every format, in the order messages list them.
    pub const ALL: [Format; 3] = [Format::Parquet, Format::Jsonl, Format::Csv];

    /// The format a file's name says, if any.
    pub fn of_path(path: &str) -> Option<Self> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The name a spec uses (`parquet`, `jsonl`, `csv`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// The extensions a listing takes, for messages.
    pub fn extensions(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet/.pq",
            Format::Jsonl => ".jsonl/.ndjson",
            Format::Csv => ".csv",
        }
    }

    /// The format a spec names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path below the input, slash-separated.
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// Encoding.
    pub format: Format,
    /// Rows, when a manifest says.
    pub rows: Option<u64>,
    /// SHA-256, when a manifest says.
    pub sha256: Option<String>,
}

/// The files of an input and what identifies their contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The files, sorted by path.
    pub files: Vec<InputFile>,
    /// A hash that changes when any file does: the manifest's content
    /// hash, or for a listing each file's path, size and version tag (its
    /// modification time when the store gives none).
    pub content_hash: String,
    /// Whether a manifest named the files (else a listing found them).
    pub from_manifest: bool,
}

impl Input {
    /// Bytes over all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// The files of the input at `location` in one of `accepted` formats,
/// sorted by path: those its manifest names, or a listing's. Refuses more
/// than `max` files, and none.
pub async fn resolve(
    location: &Location,
    accepted: &[Format],
    max: usize,
) -> Result<Input, DatasetError> {
    let wanted = |path: &str| Format::of_path(path).filter(|f| accepted.contains(f));
    let input = match manifest::read(location).await? {
        Some(m) => {
            let content_hash = m.content_hash();
            let files = m
                .files
                .into_iter()
                // A job's result names its metadata too (`_dedup/...`).
                .filter(|f| listing::is_data(&f.path))
                .filter_map(|f| {
                    Some(InputFile {
                        format: wanted(&f.path)?,
                        path: f.path,
                        bytes: f.bytes,
                        rows: Some(f.rows),
                        sha256: Some(f.sha256),
                    })
                })
                .collect();
            Input {
                files,
                content_hash,
                from_manifest: true,
            }
        }
        None => {
            let listed = listing::list(
                location,
                "",
                |p| p != MANIFEST_NAME && listing::is_data(p) && wanted(p).is_some(),
                max,
            )
            .await?;
            let mut h = Sha256::new();
            let mut field = |v: &str| {
                h.update(v.as_bytes());
                h.update([0]);
            };
            for f in &listed {
                field(&f.path);
                field(&f.bytes.to_string());
                match &f.e_tag {
                    Some(tag) => field(tag),
                    None => field(&f.modified_ms.to_string()),
                }
            }
            let content_hash = hex(&h.finalize());
            let files = listed
                .into_iter()
                .filter_map(|f| {
                    Some(InputFile {
                        format: wanted(&f.path)?,
                        path: f.path,
                        bytes: f.bytes,
                        rows: None,
                        sha256: None,
                    })
                })
                .collect();
            Input {
                files,
                content_hash,
                from_manifest: false,
            }
        }
    };
    if input.files.len() > max {
        return Err(DatasetError::TooManyFiles {
            url: location.url.clone(),
            max,
        });
    }
    if input.files.is_empty() {
        return Err(DatasetError::NoFiles {
            url: location.url.clone(),
            accepted: accepted
                .iter()
                .map(|f| f.extensions())
                .collect::<Vec<_>>()
                .join(", "),
            manifest: input.from_manifest,
        });
    }
    let mut input = input;
    input.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_file_name() {
        assert_eq!(Format::of_path("a/b.parquet"), Some(Format::Parquet));
        assert_eq!(Format::of_path("part-0.PQ"), Some(Format::Parquet));
        assert_eq!(Format::of_path("x.ndjson"), Some(Format::Jsonl));
        assert_eq!(Format::of_path("dir.csv/readme"), None);
        assert_eq!(Format::of_path("data.csv"), Some(Format::Csv));
        assert_eq!(Format::of_path("_SUCCESS"), None);
        assert_eq!(Format::parse("jsonl"), Some(Format::Jsonl));
    }

    #[tokio::test]
    async fn a_directory_without_a_manifest_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("project=a/part-0.parquet", "x"),
            ("project=b/part-0.csv", "xy"),
            ("_SUCCESS", ""),
            (".part-1.parquet.crc", "z"),
            ("_temporary/0/part-9.parquet", "z"),
            ("notes.txt", "z"),
        ] {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let at = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let input = resolve(&at, &Format::ALL, 10).await.unwrap();
        let paths: Vec<&str> = input.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["project=a/part-0.parquet", "project=b/part-0.csv"]);
        assert!(!input.from_manifest);
        assert_eq!(input.bytes(), 3);

        // Changing a file changes the hash; only Parquet wanted: one file.
        let before = input.content_hash.clone();
        std::fs::write(dir.path().join("project=b/part-0.csv"), "xyz").unwrap();
        let again = resolve(&at, &Format::ALL, 10).await.unwrap();
        assert_ne!(again.content_hash, before);
        let parquet = resolve(&at, &[Format::Parquet], 10).await.unwrap();
        assert_eq!(parquet.files.len(), 1);

        let err = resolve(&at, &[Format::Jsonl], 10).await.unwrap_err();
        assert!(err.to_string().contains("no .jsonl/.ndjson files"), "{err}");
        let err = resolve(&at, &Format::ALL, 1).await.unwrap_err();
        assert!(err.to_string().contains("more than 1 files"), "{err}");
    }
}
