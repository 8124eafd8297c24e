//! `sensor_feature_backfill`: features per (H3 cell, window) for one date
//! of crowdsourced device readings, one task per date.
//!
//! A task:
//!
//! 1. lists `<input>/date=YYYY-MM-DD/` and fingerprints what it found
//!    ([`input`]) with the config and this code's version;
//! 2. reuses the date's committed features when they carry that same
//!    fingerprint ([`publish::reusable`]), reporting the task skipped,
//!    unless the spec says `recompute: true`;
//! 3. otherwise reads the day's Parquet (only the columns it needs), and
//!    on a blocking thread pseudonymises, cleans per device, and
//!    aggregates per (cell, window) in bounded memory ([`compute`]);
//! 4. writes the rows that pass k-anonymity ([`output`]) and `stats.json`
//!    under its own prefix and commits them;
//! 5. publishes them as the date's features ([`publish`]).

mod compute;
mod input;
mod output;
mod publish;
mod spill;

use drover_jobspecs::kinds::SensorFeatureConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;

use super::data_attempt::{DataAttempt, dataset_error};
use super::{Attempt, AttemptContext, Executor, TaskError, config};
use crate::annotation::pseudonym::Pseudonymiser;
use crate::dataset::manifest::DatasetManifest;
use crate::dataset::parquet::{
    self as pq, ParquetSink, READ_BATCH_ROWS, ROW_GROUP_ROWS, manifest_schema,
};
use crate::sensors::clean::Thresholds;
use crate::sensors::features::Grid;

pub use compute::{Plan, Stats};
pub use publish::{ORPHAN_AGE_MS, file_name};

/// The features file in an attempt's prefix.
pub const FEATURES_FILE: &str = "part-00000.parquet";
/// What the attempt read, dropped and wrote.
pub const STATS_JSON: &str = "stats.json";

/// Memory one task aims to stay within, unless told otherwise.
pub const MEMORY_BUDGET_BYTES: u64 = 1 << 30;

/// Batches decoded ahead of the thread that aggregates them.
const BATCHES_AHEAD: usize = 4;

/// The `sensor_feature_backfill` executor.
#[derive(Debug, Clone)]
pub struct SensorFeatures {
    /// Memory a task aims to stay within; beyond it, it spills to scratch.
    pub memory_budget: u64,
}

impl Default for SensorFeatures {
    fn default() -> Self {
        Self {
            memory_budget: MEMORY_BUDGET_BYTES,
        }
    }
}

impl Executor for SensorFeatures {
    fn kind(&self) -> &'static str {
        "sensor_feature_backfill"
    }

    fn uses_scratch_dir(&self) -> bool {
        true
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        let budget = self.memory_budget;
        Box::pin(async move { run(task, ctx, budget).await })
    }
}

async fn run(
    task: LeasedTask,
    ctx: AttemptContext,
    budget: u64,
) -> Result<OutputManifest, TaskError> {
    let cfg: SensorFeatureConfig = config(&task)?;
    let date = chrono::NaiveDate::parse_from_str(&task.partition_key, "%Y-%m-%d")
        .map_err(|_| {
            TaskError::permanent(format!(
                "partition `{}` is not a YYYY-MM-DD date",
                task.partition_key
            ))
        })?
        .format("%Y-%m-%d")
        .to_string();
    let attempt = DataAttempt::open(&cfg.input, &cfg.output, &task)?;
    let grid = Grid::new(cfg.h3_resolution, cfg.window_ms).map_err(TaskError::permanent)?;
    let pseudonyms = Pseudonymiser::from_source(&cfg.pseudonymize)
        .map_err(|e| TaskError::permanent(e.to_string()))?;
    let dir = format!("date={date}");
    let files = input::day_files(&attempt.input, &dir).await?;
    let fingerprint = input::fingerprint(&cfg, &date, &files);
    let partition = attempt.root.child(&dir);
    if !cfg.recompute
        && let Some(reused) = publish::reusable(&partition, &dir, &fingerprint).await?
    {
        ctx.reused.mark();
        ctx.progress
            .set(1.0, format!("{dir} unchanged; its features are reused"));
        tracing::info!(date, "input, config and code unchanged; features reused");
        return Ok(reused);
    }

    let mut rows = 0u64;
    for f in &files {
        let relative = format!("{dir}/{}", f.path);
        rows += pq::row_count(&attempt.input, &relative)
            .await
            .map_err(|e| file_error(&relative, e))?;
    }
    let plan = Plan::new(rows, budget);
    tracing::info!(date, files = files.len(), rows, ?plan, "computing features");

    // Decoding here, aggregating on a blocking thread: the two overlap.
    let (tx, mut rx) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let thresholds = Thresholds {
        max_accuracy_m: cfg.max_accuracy_m,
        max_speed_mps: cfg.max_speed_mps,
    };
    let k = cfg.k_anonymity;
    let scratch = ctx.scratch_dir.clone();
    let (cancel, progress) = (ctx.cancel.clone(), ctx.progress.clone());
    let aggregate = tokio::task::spawn_blocking(move || {
        let mut ingest = compute::Ingest::new(pseudonyms, plan, rows, &scratch)?;
        while let Some(feed) = rx.blocking_recv() {
            let Some((file, batch)) = feed else {
                // Reading failed or was stopped; its error is the one
                // reported, and aggregating part of the day is waste.
                return Err(TaskError::retryable("reading stopped"));
            };
            let file: std::sync::Arc<str> = file;
            ingest.add(&batch, &scratch).map_err(|e| TaskError {
                message: format!("{file}: {}", e.message),
                ..e
            })?;
            progress.set(
                0.5 * ingest.fraction(),
                "reading and pseudonymising readings",
            );
        }
        ingest.finish(grid, &thresholds, k, &scratch, &cancel, &progress)
    });
    let read = async {
        for f in &files {
            let relative: std::sync::Arc<str> = format!("{dir}/{}", f.path).into();
            let (_, mut batches) = pq::read_row_groups_starting_in(
                &attempt.input,
                &relative,
                0,
                u64::MAX,
                Some(&input::COLUMNS),
                READ_BATCH_ROWS,
            )
            .await
            .map_err(|e| file_error(&relative, e))?;
            while let Some(batch) = batches.next().await {
                attempt.stopped(&ctx)?;
                let batch = batch.map_err(|e| file_error(&relative, e))?;
                if tx.send(Some((relative.clone(), batch))).await.is_err() {
                    // The aggregating side failed; its error says why.
                    return Ok(());
                }
            }
        }
        Ok::<(), TaskError>(())
    };
    let read = read.await;
    if read.is_err() {
        let _ = tx.send(None).await;
    }
    drop(tx);
    let aggregated = aggregate
        .await
        .map_err(|e| TaskError::retryable(format!("the aggregating thread failed: {e}")))?;
    read?;
    let (features, stats) = aggregated?;
    attempt.stopped(&ctx)?;

    let schema = output::schema(&cfg.features);
    let mut sink = ParquetSink::create(
        &attempt.output,
        FEATURES_FILE,
        schema.clone(),
        ROW_GROUP_ROWS,
    )
    .map_err(dataset_error)?;
    for batch in output::batches(&features.rows, &cfg.features, &schema)? {
        sink.write(&batch).await.map_err(dataset_error)?;
    }
    let part = sink.finish().await.map_err(dataset_error)?;
    let stats_file = attempt.write_json(STATS_JSON, &stats, 0).await?;
    let writer = attempt.writer(&task, fingerprint);
    let columns = manifest_schema(&schema);
    let mut m = DatasetManifest::new(vec![part.clone(), stats_file], columns, &writer);
    m.rows = part.rows;
    let committed = attempt.commit(&task, m.clone()).await?;

    attempt.stopped(&ctx)?;
    let published = publish::publish(&attempt.output, &m, &partition).await?;
    tracing::info!(
        date,
        readings = stats.readings,
        devices = stats.devices,
        clean = stats.clean,
        rows = stats.rows,
        suppressed_groups = stats.suppressed_groups,
        spilled_bytes = stats.spilled_bytes,
        ?published,
        "features computed"
    );
    ctx.progress.set(
        1.0,
        format!(
            "{} readings, {} devices: {} feature rows ({} groups under k suppressed)",
            stats.readings, stats.devices, stats.rows, stats.suppressed_groups
        ),
    );
    Ok(committed)
}

/// A file that could not be read, named.
fn file_error(relative: &str, e: crate::dataset::DatasetError) -> TaskError {
    let e = dataset_error(e);
    TaskError {
        message: format!("{relative}: {}", e.message),
        ..e
    }
}

/// Dates `drover job plan --check-input` lists at most.
const CHECKED_DATES_MAX: u64 = 400;

/// Checks a backfill's readings before it is submitted: each date's
/// directory is listed as its task lists it (up to [`CHECKED_DATES_MAX`]
/// dates), and the first rows of its first file decode as the task
/// decodes them. A date with no readings yet is a note: its task waits
/// and retries.
pub async fn check_input(
    cfg: &SensorFeatureConfig,
    partitions: &drover_jobspecs::partitions::PartitionSet,
) -> Result<super::input_check::InputCheck, TaskError> {
    let location = crate::dataset::location::Location::parse(&cfg.input).map_err(dataset_error)?;
    let mut check = super::input_check::InputCheck::new(&cfg.input, false);
    let dates = partitions.count();
    for index in 0..dates.min(CHECKED_DATES_MAX) {
        let Some(date) = partitions.key(index) else {
            continue;
        };
        let dir = format!("date={date}");
        let files = match input::day_files(&location, &dir).await {
            Ok(files) => files,
            Err(e) if e.retryable => {
                check.notes.push(e.message);
                continue;
            }
            Err(e) => return Err(e),
        };
        for f in &files {
            check.add_file(&dir, f.bytes);
        }
        let relative = format!("{dir}/{}", files[0].path);
        let problem = async {
            let (_, mut batches) = pq::read_row_groups_starting_in(
                &location,
                &relative,
                0,
                u64::MAX,
                Some(&input::COLUMNS),
                64,
            )
            .await
            .map_err(|e| file_error(&relative, e))?;
            if let Some(batch) = batches.next().await {
                let batch = input::plain_strings(&batch.map_err(|e| file_error(&relative, e))?)?;
                input::Columns::default()
                    .decode(&batch)
                    .map_err(|e| TaskError::permanent(format!("{relative}: {}", e.message)))?;
            }
            Ok::<(), TaskError>(())
        }
        .await
        .err();
        check.checked(problem.map(|e| e.message));
    }
    if dates > CHECKED_DATES_MAX {
        check.notes.push(format!(
            "checked the first {CHECKED_DATES_MAX} of {dates} dates"
        ));
    }
    Ok(check)
}
