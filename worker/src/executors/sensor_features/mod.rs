//! `sensor_feature_backfill`: features per (H3 cell, window) for one date
//! of crowdsourced device readings, one task per date, or with `shards: N`
//! N `part` tasks per date and a `merge` ([`part`], [`merge`]).
//!
//! A task of the whole date ([`day`] holds what every task shares):
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
mod day;
mod input;
mod merge;
mod output;
mod part;
mod publish;
mod spill;

use drover_jobspecs::kinds::SensorFeatureConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;

use super::data_attempt::dataset_error;
use super::{Attempt, AttemptContext, Executor, TaskError};
use crate::dataset::parquet as pq;
use day::{Day, file_error};

pub use compute::{Plan, Stats};
pub use publish::{ORPHAN_AGE_MS, file_name};

/// The features file in an attempt's prefix.
pub const FEATURES_FILE: &str = "part-00000.parquet";
/// What the attempt read, dropped and wrote.
pub const STATS_JSON: &str = "stats.json";

/// Memory one task aims to stay within, unless told otherwise.
pub const MEMORY_BUDGET_BYTES: u64 = 1 << 30;

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
    match task.template.rsplit_once('/').map(|(_, stage)| stage) {
        Some("part") => part::run(&task, &ctx, budget).await,
        Some("merge") => merge::run(&task, &ctx, budget).await,
        _ => whole(&task, &ctx, budget).await,
    }
}

/// One task computes the whole date.
async fn whole(
    task: &LeasedTask,
    ctx: &AttemptContext,
    budget: u64,
) -> Result<OutputManifest, TaskError> {
    let day = Day::open(task, &task.partition_key, budget).await?;
    if let Some(reused) = day.reused(ctx).await? {
        return Ok(reused);
    }
    let rows = day.rows().await?;
    let plan = day.plan(rows);
    tracing::info!(date = %day.date, files = day.files.len(), rows, ?plan, "computing features");
    let ingest = compute::Ingest::new(day.pseudonyms()?, plan, rows, &ctx.scratch_dir)?;
    let (grid, thresholds, k) = (day.grid, day.thresholds(), day.cfg.k_anonymity);
    let scratch = ctx.scratch_dir.clone();
    let (cancel, progress) = (ctx.cancel.clone(), ctx.progress.clone());
    let (features, stats) = day
        .read(ctx, ingest, move |ingest| {
            ingest.finish(grid, &thresholds, k, &scratch, &cancel, &progress)
        })
        .await?;
    day.write(task, ctx, &features, &stats).await
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
