//! `annotation_export`: consensus labels, agreement figures and
//! pseudonymised annotators from an annotation dataset, as Parquet, JSONL
//! and COCO, with a quality report.
//!
//! The job spec expands it into one `calibrate` task that fits Dawid-Skene
//! on a sample of each classification project ([`calibrate`]), `shard`
//! tasks, each owning the items whose stable hash falls in its partition
//! and labelling them with that one model ([`shard`]), and one `merge` that
//! assembles the shards' outputs, found through their manifests, into the
//! final files and report ([`merge`]). Every attempt writes under its own
//! prefix below the spec's `output`; its `_manifest.json`, written last, and
//! the coordinator's acceptance of the completion that carries it (the
//! manifest's path and SHA-256) make it the task's output. An attempt that dies half-way leaves files no
//! manifest names, which no reader looks at.

mod calibrate;
mod input;
mod labels;
mod merge;
mod shard;
mod votes;

use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use drover_proto::v1::{LeasedTask, OutputFile, OutputManifest};
use object_store::ObjectStoreExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Attempt, AttemptContext, Executor, TaskError, config};
use crate::dataset::DatasetError;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile, Writer, hex};

pub use input::shard_of;
pub use labels::schema as labels_schema;

/// Version of this code, recorded in every manifest it writes.
pub const CODE_VERSION: &str = concat!("drover-worker ", env!("CARGO_PKG_VERSION"));

/// A shard's per-project quality sums.
const STATS_NAME: &str = "stats.json";

/// The `annotation_export` executor.
#[derive(Debug, Default)]
pub struct AnnotationExport;

impl Executor for AnnotationExport {
    fn kind(&self) -> &'static str {
        "annotation_export"
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        Box::pin(async move {
            let cfg: AnnotationExportConfig = config(&task)?;
            let export = Export::open(&cfg, &task)?;
            match task.template.rsplit('/').next() {
                Some("calibrate") => calibrate::run(&task, &cfg, &ctx, &export).await,
                Some("shard") => shard::run(&task, &cfg, &ctx, &export).await,
                Some("merge") => merge::run(&task, &cfg, &ctx, &export).await,
                _ => Err(TaskError::permanent(format!(
                    "template `{}` is not one of the export's stages (calibrate, shard, merge)",
                    task.template
                ))),
            }
        })
    }
}

/// Where an attempt reads and writes, and how it commits.
#[derive(Debug)]
struct Export {
    input: Location,
    /// The spec's `output`, where every attempt's prefix lives.
    root: Location,
    /// This attempt's own prefix below `root`.
    output: Location,
    /// The task's config as sent, for the input fingerprint.
    config_json: String,
}

impl Export {
    fn open(cfg: &AnnotationExportConfig, task: &LeasedTask) -> Result<Self, TaskError> {
        let input = Location::parse(&cfg.input).map_err(dataset_error)?;
        let root = Location::parse(&cfg.output).map_err(dataset_error)?;
        crate::output::attempt_dir(std::path::Path::new(""), &task.output_prefix)?;
        Ok(Self {
            input,
            output: root.child(&task.output_prefix),
            root,
            config_json: task.config_json.clone(),
        })
    }

    /// The input's manifest and its files.
    async fn input_files(&self) -> Result<(DatasetManifest, Vec<ManifestFile>), TaskError> {
        let m = manifest::read(&self.input)
            .await
            .map_err(dataset_error)?
            .ok_or_else(|| {
                TaskError::permanent(format!(
                    "{} has no {}: an export reads only committed datasets (`drover datagen annotations --out ...` writes one)",
                    self.input.url,
                    manifest::MANIFEST_NAME
                ))
            })?;
        let files = m
            .files
            .iter()
            .filter(|f| f.path.ends_with(".parquet"))
            .cloned()
            .collect();
        Ok((m, files))
    }

    /// The bytes of a small object (a model, a shard's sums), refusing
    /// one larger than `max`.
    async fn read_small(
        &self,
        location: &Location,
        relative: &str,
        max: usize,
    ) -> Result<bytes::Bytes, TaskError> {
        let bytes = location
            .store
            .get(&location.path(relative))
            .await
            .map_err(|e| dataset_error(e.into()))?
            .bytes()
            .await
            .map_err(|e| dataset_error(e.into()))?;
        if bytes.len() > max {
            return Err(TaskError::permanent(format!(
                "{}/{relative} is larger than {max} bytes",
                location.url
            )));
        }
        Ok(bytes)
    }

    /// An upstream task's committed output at `prefix` below the output
    /// root, with its manifest; `what` names it in the error when there is
    /// no manifest.
    async fn committed(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<(Location, DatasetManifest), TaskError> {
        let location = self.root.child(prefix);
        let m = manifest::read(&location)
            .await
            .map_err(dataset_error)?
            .ok_or_else(|| {
                TaskError::permanent(format!("{what} {} has no manifest", location.url))
            })?;
        Ok((location, m))
    }

    /// Reads an input file, keeping the rows `filters` keeps.
    async fn read_input(
        &self,
        relative: &str,
        filters: &input::Filters,
    ) -> Result<
        (
            arrow_schema::SchemaRef,
            impl futures::Stream<Item = Result<arrow_array::RecordBatch, DatasetError>> + use<>,
        ),
        TaskError,
    > {
        crate::dataset::parquet::read_where(
            &self.input,
            relative,
            crate::dataset::parquet::READ_BATCH_ROWS,
            input::FILTER_COLUMNS,
            filters.clone().predicate(),
        )
        .await
        .map_err(dataset_error)
    }

    /// Fails the attempt if it was told to stop.
    fn stopped(&self, ctx: &AttemptContext) -> Result<(), TaskError> {
        if *ctx.cancel.borrow() {
            Err(TaskError::retryable("stopped"))
        } else {
            Ok(())
        }
    }

    /// Writes `value` as pretty JSON at `relative` in one PUT.
    async fn write_json<T: Serialize>(
        &self,
        relative: &str,
        value: &T,
        rows: u64,
    ) -> Result<ManifestFile, TaskError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| TaskError::permanent(format!("{relative}: {e}")))?;
        self.write_bytes(relative, bytes, rows).await
    }

    async fn write_bytes(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        rows: u64,
    ) -> Result<ManifestFile, TaskError> {
        let file = ManifestFile {
            path: relative.to_owned(),
            rows,
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        };
        self.output
            .store
            .put(&self.output.path(relative), bytes.into())
            .await
            .map_err(|e| dataset_error(e.into()))?;
        Ok(file)
    }

    /// The input fingerprint: the config and the hashes of what was read.
    fn fingerprint(&self, task: &LeasedTask, inputs: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(self.config_json.as_bytes());
        h.update([0]);
        h.update(task.partition_index.to_le_bytes());
        for i in inputs {
            h.update(i.as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())
    }

    fn writer(&self, task: &LeasedTask, input_fingerprint: String) -> Writer {
        Writer {
            task: task.task_id.clone(),
            attempt: task.attempt,
            fencing_token: task.fencing_token,
            code_version: CODE_VERSION.to_owned(),
            input_fingerprint,
        }
    }

    /// Writes the manifest (the commit point of the attempt's files) and
    /// returns what the completion carries to the coordinator: the
    /// manifest file alone. Its SHA-256 pins every file it lists, so the
    /// coordinator's record stays a few hundred bytes however many files
    /// an output has.
    async fn commit(
        &self,
        task: &LeasedTask,
        m: DatasetManifest,
    ) -> Result<OutputManifest, TaskError> {
        let json = manifest::write(&self.output, &m)
            .await
            .map_err(dataset_error)?;
        Ok(OutputManifest {
            output_prefix: task.output_prefix.clone(),
            files: vec![OutputFile {
                path: json.path,
                rows: m.rows,
                bytes: json.bytes,
                sha256: json.sha256,
            }],
            schema_json: serde_json::to_string(&m.schema).unwrap_or_default(),
            code_version: m.code_version,
            input_fingerprint: m.input_fingerprint,
            created_unix_ms: chrono::Utc::now().timestamp_millis(),
        })
    }
}

/// A dataset failure as an attempt failure: a store that failed may work
/// on a retry; data that does not decode will not.
fn dataset_error(e: DatasetError) -> TaskError {
    match e {
        // The Parquet writer reports the store's failures as external.
        DatasetError::Store(_)
        | DatasetError::Parquet(::parquet::errors::ParquetError::External(_)) => {
            TaskError::retryable(e.to_string())
        }
        _ => TaskError::permanent(e.to_string()),
    }
}

/// A project name as one safe path segment: kept when it is plain
/// (letters, digits, `.`, `_`, `-`), otherwise its other characters become
/// `_` and a hash of the name is appended, so two names never share one.
pub fn project_dir(project: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !project.is_empty() && project.chars().all(plain) && !project.starts_with('.') {
        return project.to_owned();
    }
    let cleaned: String = project
        .chars()
        .take(64)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let digest = Sha256::digest(project.as_bytes());
    format!("{cleaned}-{}", &hex(&digest)[..8])
}

#[cfg(test)]
mod tests;
