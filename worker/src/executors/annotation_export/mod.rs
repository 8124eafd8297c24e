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
//! prefix below the spec's `output` and commits with its `_manifest.json`
//! ([`super::data_attempt`]).

mod calibrate;
mod input;
mod labels;
mod merge;
mod shard;
mod votes;

use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use drover_proto::v1::LeasedTask;
use sha2::{Digest, Sha256};

use super::data_attempt::DataAttempt as Export;
use super::{Attempt, AttemptContext, Executor, TaskError, config};
use crate::dataset::input::{Format, Input, InputFile};
use crate::dataset::manifest::hex;

pub use super::data_attempt::{CODE_VERSION, dataset_error};
pub use input::shard_of;
pub use labels::schema as labels_schema;

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
            let export = Export::open(&cfg.input, &cfg.output, &task)?;
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

/// Files an export's input may hold.
const INPUT_FILES_MAX: usize = 100_000;

/// The input's files: those its manifest names, or a listing's (Parquet,
/// JSONL and CSV).
async fn input_files(export: &Export) -> Result<Input, TaskError> {
    input::files(&export.input, INPUT_FILES_MAX).await
}

/// Reads an input file, keeping the rows `filters` keeps, with its string
/// columns as `Utf8` whatever their encoding in the file; returns the
/// schema the batches have.
async fn read_input(
    export: &Export,
    file: &InputFile,
    filters: &input::Filters,
) -> Result<
    (
        arrow_schema::SchemaRef,
        futures::stream::BoxStream<'static, Result<arrow_array::RecordBatch, TaskError>>,
    ),
    TaskError,
> {
    use futures::{StreamExt, TryStreamExt};

    use crate::dataset::{parquet, table};

    let path = file.path.clone();
    let (schema, stream) = match file.format {
        Format::Parquet => {
            let predicate = filters.clone().predicate();
            let (schema, stream) = parquet::read_where(
                &export.input,
                &file.path,
                parquet::READ_BATCH_ROWS,
                input::FILTER_COLUMNS,
                input::normalising(predicate),
            )
            .await
            .map_err(dataset_error)?;
            (schema, stream.map_err(dataset_error).boxed())
        }
        Format::Jsonl | Format::Csv => {
            let schema = table::infer_schema(
                &export.input,
                &file.path,
                file.format,
                &input::known_types(),
            )
            .await
            .map_err(dataset_error)?;
            let schema = std::sync::Arc::new(schema);
            let mut keep = filters.clone().predicate();
            let stream = table::read(
                &export.input,
                &file.path,
                file.format,
                schema.clone(),
                parquet::READ_BATCH_ROWS,
            )
            .await
            .map_err(dataset_error)?
            .map(move |batch| {
                let batch = batch.map_err(dataset_error)?;
                let kept = keep(batch.clone())
                    .map_err(|e| TaskError::permanent(format!("input {path}: {e}")))?;
                arrow_select::filter::filter_record_batch(&batch, &kept)
                    .map_err(|e| TaskError::permanent(e.to_string()))
            })
            .boxed();
            (schema, stream)
        }
    };
    input::check_schema(&file.path, &schema)?;
    let out = std::sync::Arc::new(input::normal_schema(&schema));
    let path = file.path.clone();
    let stream = stream
        .map(move |batch| {
            input::normalise(&batch?)
                .map_err(|e| TaskError::permanent(format!("input {path}: {e}")))
        })
        .boxed();
    Ok((out, stream))
}

#[cfg(test)]
mod tests;

/// Files `drover job plan --check-input` reads the schema of.
const CHECKED_FILES_MAX: usize = 1_000;

/// Checks an export's input before it is submitted: its files are found
/// as the job finds them, and the columns of each (up to
/// [`CHECKED_FILES_MAX`]: a Parquet footer, a text file's first records)
/// are checked as the job checks them.
pub async fn check_input(
    cfg: &AnnotationExportConfig,
) -> Result<super::input_check::InputCheck, TaskError> {
    use crate::dataset::location::Location;
    use crate::dataset::{parquet, table};

    let location = Location::parse(&cfg.input).map_err(dataset_error)?;
    let found = input::files(&location, INPUT_FILES_MAX).await?;
    let mut check = super::input_check::InputCheck::new(&cfg.input, found.from_manifest);
    for f in &found.files {
        check.add_file(f.format.name(), f.bytes);
    }
    for f in found.files.iter().take(CHECKED_FILES_MAX) {
        let schema = match f.format {
            Format::Parquet => parquet::schema(&location, &f.path)
                .await
                .map(|s| s.as_ref().clone()),
            Format::Jsonl | Format::Csv => {
                table::infer_schema(&location, &f.path, f.format, &input::known_types()).await
            }
        };
        let problem = match schema {
            Ok(schema) => input::check_schema(&f.path, &schema).err(),
            Err(e) => Some(dataset_error(e)),
        };
        check.checked(problem.map(|e| e.message));
    }
    Ok(check)
}
