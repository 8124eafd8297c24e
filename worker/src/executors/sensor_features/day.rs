//! What every task of one date shares, whether it computes the whole date,
//! one shard of its devices, or merges the shards: the date's files and
//! fingerprint, the reuse of unchanged features, the read-and-aggregate
//! pipeline, and writing and publishing the features.

use std::sync::Arc;

use drover_jobspecs::kinds::SensorFeatureConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;

use super::compute::{Ingest, Plan, Stats};
use super::{FEATURES_FILE, STATS_JSON, input, output, publish};
use crate::annotation::pseudonym::Pseudonymiser;
use crate::dataset::listing::Listed;
use crate::dataset::location::Location;
use crate::dataset::manifest::DatasetManifest;
use crate::dataset::parquet::{self as pq, ParquetSink, READ_BATCH_ROWS, ROW_GROUP_ROWS};
use crate::executors::data_attempt::{DataAttempt, dataset_error};
use crate::executors::{AttemptContext, TaskError};
use crate::sensors::clean::Thresholds;
use crate::sensors::features::{Features, Grid};

/// Batches decoded ahead of the thread that aggregates them.
const BATCHES_AHEAD: usize = 4;

/// One date of a backfill, as a task sees it.
pub struct Day {
    /// The task's config.
    pub cfg: SensorFeatureConfig,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `date=YYYY-MM-DD`, below the input and the output.
    pub dir: String,
    /// Where the task reads and writes.
    pub attempt: DataAttempt,
    /// Cells and windows.
    pub grid: Grid,
    /// The date's files, sorted by path.
    pub files: Vec<Listed>,
    /// What decides the date's features ([`input::fingerprint`]).
    pub fingerprint: String,
    /// Where the date's features are published.
    pub partition: Location,
    /// Memory the task aims to stay within.
    pub budget: u64,
}

impl Day {
    /// The date `date` (`YYYY-MM-DD`) of `task`; `default_budget` unless
    /// the config sets `memoryMb`.
    pub async fn open(
        task: &LeasedTask,
        date: &str,
        default_budget: u64,
    ) -> Result<Self, TaskError> {
        let cfg: SensorFeatureConfig = crate::executors::config(task)?;
        let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| {
                TaskError::permanent(format!("partition `{date}` is not a YYYY-MM-DD date"))
            })?
            .format("%Y-%m-%d")
            .to_string();
        let attempt = DataAttempt::open(&cfg.input, &cfg.output, task)?;
        let grid = Grid::new(cfg.h3_resolution, cfg.window_ms).map_err(TaskError::permanent)?;
        let dir = format!("date={date}");
        let files = input::day_files(&attempt.input, &dir).await?;
        let fingerprint = input::fingerprint(&cfg, &date, &files);
        let partition = attempt.root.child(&dir);
        let budget = cfg
            .memory_mb
            .map_or(default_budget, |mb| u64::from(mb) << 20);
        Ok(Self {
            cfg,
            date,
            dir,
            attempt,
            grid,
            files,
            fingerprint,
            partition,
            budget,
        })
    }

    /// The date's published features, when they were made from the same
    /// readings, config and code (and the spec does not say `recompute`),
    /// as the completion that reuses them; the task is then reported
    /// skipped.
    pub async fn reused(&self, ctx: &AttemptContext) -> Result<Option<OutputManifest>, TaskError> {
        if self.cfg.recompute {
            return Ok(None);
        }
        let reused = publish::reusable(&self.partition, &self.dir, &self.fingerprint).await?;
        if reused.is_some() {
            ctx.reused.mark();
            ctx.progress.set(
                1.0,
                format!("{} unchanged; its features are reused", self.dir),
            );
            tracing::info!(date = %self.date, "input, config and code unchanged; features reused");
        }
        Ok(reused)
    }

    /// Readings in the date's files, from their footers.
    pub async fn rows(&self) -> Result<u64, TaskError> {
        let mut rows = 0u64;
        for f in &self.files {
            let relative = self.relative(f);
            rows += pq::row_count(&self.attempt.input, &relative)
                .await
                .map_err(|e| file_error(&relative, e))?;
        }
        Ok(rows)
    }

    /// The pseudonymiser of device ids.
    pub fn pseudonyms(&self) -> Result<Pseudonymiser, TaskError> {
        Pseudonymiser::from_source(&self.cfg.pseudonymize)
            .map_err(|e| TaskError::permanent(e.to_string()))
    }

    /// The cleaning thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_accuracy_m: self.cfg.max_accuracy_m,
            max_speed_mps: self.cfg.max_speed_mps,
        }
    }

    fn relative(&self, f: &Listed) -> String {
        format!("{}/{}", self.dir, f.path)
    }

    /// Reads the date's readings into `ingest` (decoding here, taking them
    /// in on a blocking thread, so the two overlap), then runs `finish` on
    /// it on that thread.
    pub async fn read<T: Send + 'static>(
        &self,
        ctx: &AttemptContext,
        ingest: Ingest,
        finish: impl FnOnce(Ingest) -> Result<T, TaskError> + Send + 'static,
    ) -> Result<T, TaskError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        let scratch = ctx.scratch_dir.clone();
        let progress = ctx.progress.clone();
        let aggregate = tokio::task::spawn_blocking(move || {
            let mut ingest = ingest;
            while let Some(feed) = rx.blocking_recv() {
                let Some((file, batch)) = feed else {
                    // Reading failed or was stopped; its error is the one
                    // reported, and aggregating part of the day is waste.
                    return Err(TaskError::retryable("reading stopped"));
                };
                let file: Arc<str> = file;
                ingest.add(&batch, &scratch).map_err(|e| TaskError {
                    message: format!("{file}: {}", e.message),
                    ..e
                })?;
                progress.set(
                    0.5 * ingest.fraction(),
                    "reading and pseudonymising readings",
                );
            }
            finish(ingest)
        });
        let read = async {
            for f in &self.files {
                let relative: Arc<str> = self.relative(f).into();
                let (_, mut batches) = pq::read_row_groups_starting_in(
                    &self.attempt.input,
                    &relative,
                    0,
                    u64::MAX,
                    Some(&input::COLUMNS),
                    READ_BATCH_ROWS,
                )
                .await
                .map_err(|e| file_error(&relative, e))?;
                while let Some(batch) = batches.next().await {
                    self.attempt.stopped(ctx)?;
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
        aggregated
    }

    /// Writes the date's features and `stats.json` under the attempt's
    /// prefix, commits them, and publishes the features as the date's.
    pub async fn write(
        &self,
        task: &LeasedTask,
        ctx: &AttemptContext,
        features: &Features,
        stats: &Stats,
    ) -> Result<OutputManifest, TaskError> {
        self.attempt.stopped(ctx)?;
        let schema = output::schema(&self.cfg.features);
        let mut sink = ParquetSink::create(
            &self.attempt.output,
            FEATURES_FILE,
            schema.clone(),
            ROW_GROUP_ROWS,
        )
        .map_err(dataset_error)?;
        for batch in output::batches(&features.rows, &self.cfg.features, &schema)? {
            sink.write(&batch).await.map_err(dataset_error)?;
        }
        let part = sink.finish().await.map_err(dataset_error)?;
        let stats_file = self.attempt.write_json(STATS_JSON, stats, 0).await?;
        let writer = self.attempt.writer(task, self.fingerprint.clone());
        let columns = pq::manifest_schema(&schema);
        let mut m = DatasetManifest::new(vec![part.clone(), stats_file], columns, &writer);
        m.rows = part.rows;
        let committed = self.attempt.commit(task, m.clone()).await?;

        self.attempt.stopped(ctx)?;
        let published = publish::publish(&self.attempt.output, &m, &self.partition).await?;
        tracing::info!(
            date = %self.date,
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

    /// How the whole date is cut to fit the budget.
    pub fn plan(&self, rows: u64) -> Plan {
        Plan::new(rows, self.budget)
    }
}

/// A file that could not be read, named.
pub fn file_error(relative: &str, e: crate::dataset::DatasetError) -> TaskError {
    let e = dataset_error(e);
    TaskError {
        message: format!("{relative}: {}", e.message),
        ..e
    }
}
