//! The sensor feature backfill end to end in one process, each date's task
//! run as the coordinator would lease it: k-anonymity and no raw device id
//! in the output, identical files from two runs, the same features when
//! the day is spilled to disk, incremental skips and recomputes, fencing
//! of a late publisher, and clear failures.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use drover_jobspecs::kinds::{KeySource, SensorFeatureConfig};
use drover_proto::v1::{LeasedTask, OutputManifest, TaskKind};
use drover_worker::datagen::sensors::{self, SensorsSpec};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest::{self, DatasetManifest};
use drover_worker::executors::sensor_features::{SensorFeatures, file_name};
use drover_worker::executors::{Executor, TaskError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const DATES: [&str; 2] = ["2026-03-01", "2026-03-02"];

struct Fixture {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Fixture {
    /// Two days of readings from `devices` devices.
    async fn new(devices: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::support::export::key_file(dir.path(), 7);
        let spec = SensorsSpec {
            devices,
            start: chrono::NaiveDate::parse_from_str(DATES[0], "%Y-%m-%d").unwrap(),
            days: 2,
            seed: 11,
        };
        let input = Location::parse(&url(&dir.path().join("readings"))).unwrap();
        sensors::generate(&input, &spec, |_| {}).await.unwrap();
        Self { dir, key }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self, out: &str) -> SensorFeatureConfig {
        SensorFeatureConfig {
            input: url(&self.path("readings")),
            output: url(&self.path(out)),
            // Coarse cells and a small k: a few dozen devices in a city
            // would leave few cells k-anonymous at the default 9 and 5.
            h3_resolution: 7,
            window_ms: 3_600_000,
            k_anonymity: 3,
            max_accuracy_m: 100.0,
            max_speed_mps: 70.0,
            features: drover_jobspecs::kinds::sensor::FEATURES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            pseudonymize: KeySource::File(self.key.display().to_string()),
            recompute: false,
            shards: 1,
            memory_mb: None,
        }
    }
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The lease of date `DATES[partition]` in job `job` under `token`.
fn lease(cfg: &SensorFeatureConfig, job: u32, partition: usize, token: u64) -> LeasedTask {
    LeasedTask {
        task_id: format!("j{job}/0/{partition}"),
        job_id: format!("j{job}"),
        template: "features".into(),
        kind: TaskKind::SensorFeatureBackfill as i32,
        partition_index: partition as u64,
        partition_key: DATES[partition].into(),
        config_json: serde_json::to_string(cfg).unwrap(),
        attempt: 1,
        fencing_token: token,
        output_prefix: format!("jobs/j{job}/features/{partition}/attempt-1-{token}"),
        ..LeasedTask::default()
    }
}

/// Runs one attempt; the manifest and whether it reused the date's
/// committed features.
async fn run(
    executor: &SensorFeatures,
    task: LeasedTask,
    scratch: &Path,
) -> Result<(OutputManifest, bool), TaskError> {
    let ctx = crate::support::export::context(scratch);
    let reused = ctx.reused.clone();
    let m = executor.run(task, ctx).await?;
    Ok((m, reused.is_marked()))
}

/// Every date of `cfg` as job `job`, tokens from `token`.
async fn run_all(
    cfg: &SensorFeatureConfig,
    job: u32,
    token: u64,
    scratch: &Path,
) -> Vec<(OutputManifest, bool)> {
    let executor = SensorFeatures::default();
    let mut out = Vec::new();
    for p in 0..DATES.len() {
        out.push(
            run(&executor, lease(cfg, job, p, token + p as u64), scratch)
                .await
                .unwrap(),
        );
    }
    out
}

async fn partition_manifest(out: &Path, date: &str) -> DatasetManifest {
    let loc = Location::parse(&url(&out.join(format!("date={date}")))).unwrap();
    manifest::read(&loc)
        .await
        .unwrap()
        .expect("a partition manifest")
}

/// The published features of `date` below `out`.
async fn published(out: &Path, date: &str) -> (PathBuf, RecordBatch) {
    let m = partition_manifest(out, date).await;
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].path, file_name(&m.input_fingerprint));
    let path = out.join(format!("date={date}")).join(&m.files[0].path);
    (path.clone(), read_parquet(&path))
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_are_k_anonymous_and_carry_no_device_id() {
    let fx = Fixture::new(60).await;
    let cfg = fx.config("features");
    let runs = run_all(&cfg, 1, 10, &fx.path("scratch")).await;
    assert!(runs.iter().all(|(_, reused)| !reused));
    let mut rows = 0;
    for date in DATES {
        let (_, b) = published(&fx.path("features"), date).await;
        rows += b.num_rows();
        let devices = ints(&b, "distinct_devices");
        let observations = ints(&b, "observations");
        assert!(
            devices.iter().all(|d| *d >= 3),
            "no row of fewer than k devices"
        );
        assert!(devices.iter().zip(&observations).all(|(d, o)| d <= o));
        let schema: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            schema,
            [
                "h3_cell",
                "window_start",
                "observations",
                "distinct_devices",
                "speed_mean",
                "speed_p50",
                "speed_p90",
                "dwell_seconds",
                "accuracy_mean",
                "rssi_mean_gps",
                "rssi_mean_wifi",
                "rssi_mean_cell"
            ]
        );
        // Cells are resolution 9 H3 indexes; windows are whole hours of
        // the date.
        let cells = b
            .column_by_name("h3_cell")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert!(cells.values().iter().all(|c| (c >> 52) & 0xf == 7));
        let p50 = b
            .column_by_name("speed_p50")
            .unwrap()
            .as_primitive::<Float64Type>();
        let p90 = b
            .column_by_name("speed_p90")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!((0..b.num_rows()).all(|i| p50.is_null(i) || p50.value(i) <= p90.value(i)));
    }
    assert!(
        rows > 100,
        "{rows} feature rows from 60 devices over two days"
    );

    // No device id, raw or as a pseudonym, in any file written.
    let input = fx.path("readings");
    let mut inputs = Vec::new();
    files_below(&input, &mut inputs);
    let mut ids = BTreeSet::new();
    for f in inputs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        let b = read_parquet(f);
        let col = b.column_by_name("device_id").unwrap().as_string::<i32>();
        ids.extend(col.iter().flatten().map(str::to_owned));
    }
    assert_eq!(ids.len(), 60);
    let mut outputs = Vec::new();
    files_below(&fx.path("features"), &mut outputs);
    assert!(outputs.len() >= 6, "{outputs:?}");
    for f in outputs {
        let bytes = std::fs::read(&f).unwrap();
        for id in &ids {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{} holds device id {id}",
                f.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_write_identical_files_and_the_second_is_skipped() {
    let fx = Fixture::new(40).await;
    let a = fx.config("a");
    let b = fx.config("b");
    run_all(&a, 1, 10, &fx.path("scratch")).await;
    run_all(&b, 2, 20, &fx.path("scratch")).await;
    for date in DATES {
        let (pa, _) = published(&fx.path("a"), date).await;
        let (pb, _) = published(&fx.path("b"), date).await;
        assert_eq!(
            pa.file_name(),
            pb.file_name(),
            "one name for one fingerprint"
        );
        assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
    }

    // Again into `a`: nothing changed, so every date is reused, reported
    // under the date's own prefix.
    let again = run_all(&a, 3, 30, &fx.path("scratch")).await;
    for ((m, reused), date) in again.iter().zip(DATES) {
        assert!(reused, "{date} reused");
        assert_eq!(m.output_prefix, format!("date={date}"));
        assert_eq!(m.files[0].path, "_manifest.json");
    }
    assert!(
        !fx.path("a/jobs/j3").exists(),
        "a skipped date writes nothing"
    );
    for date in DATES {
        assert_eq!(
            partition_manifest(&fx.path("a"), date).await.task,
            format!("j1/0/{}", DATES.iter().position(|d| *d == date).unwrap())
        );
    }

    // `recompute: true` runs every date again, to the same bytes.
    let mut forced = a.clone();
    forced.recompute = true;
    let before = published(&fx.path("a"), DATES[0]).await;
    let redone = run_all(&forced, 4, 40, &fx.path("scratch")).await;
    assert!(redone.iter().all(|(_, reused)| !reused));
    let after = published(&fx.path("a"), DATES[0]).await;
    assert_eq!(
        std::fs::read(&before.0).unwrap(),
        std::fs::read(&after.0).unwrap()
    );
    assert_eq!(
        partition_manifest(&fx.path("a"), DATES[0]).await.task,
        "j4/0/0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_file_reruns_just_its_date_and_replaces_the_old_features() {
    let fx = Fixture::new(40).await;
    let cfg = fx.config("features");
    run_all(&cfg, 1, 10, &fx.path("scratch")).await;
    let (old_path, old) = published(&fx.path("features"), DATES[1]).await;

    // A late upload for the second date: another device's readings, taken
    // from the first date and moved a day on.
    let day1 = fx.path(&format!("readings/date={}", DATES[0]));
    let first_part = std::fs::read_dir(&day1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let batch = read_parquet(&first_part);
    let late = shift_one_day(&batch.slice(0, batch.num_rows().min(5_000)));
    write_parquet(
        &fx.path(&format!("readings/date={}/late-99999.parquet", DATES[1])),
        &late,
    );

    let rerun = run_all(&cfg, 2, 20, &fx.path("scratch")).await;
    assert!(rerun[0].1, "the first date is unchanged and skipped");
    assert!(!rerun[1].1, "the second date has a new file and runs");
    let (new_path, new) = published(&fx.path("features"), DATES[1]).await;
    assert_ne!(new_path, old_path);
    assert!(!old_path.exists(), "the replaced features are deleted");
    assert!(
        ints(&new, "observations").iter().sum::<i64>()
            > ints(&old, "observations").iter().sum::<i64>()
    );
    // Only the manifest and the current file are in the date's directory.
    let names: BTreeSet<String> =
        std::fs::read_dir(fx.path(&format!("features/date={}", DATES[1])))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "_manifest.json".to_owned(),
            new_path.file_name().unwrap().to_str().unwrap().to_owned()
        ])
    );
}

fn shift_one_day(b: &RecordBatch) -> RecordBatch {
    use arrow_array::TimestampMillisecondArray;
    let ts = b
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<arrow_array::types::TimestampMillisecondType>();
    let shifted =
        TimestampMillisecondArray::from_iter_values(ts.values().iter().map(|t| t + 86_400_000))
            .with_timezone("UTC");
    let i = b.schema().index_of("ts").unwrap();
    let mut columns = b.columns().to_vec();
    columns[i] = std::sync::Arc::new(shifted);
    RecordBatch::try_new(b.schema(), columns).unwrap()
}

fn write_parquet(path: &Path, b: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, b.schema(), None).unwrap();
    w.write(b).unwrap();
    w.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_spilled_to_disk_gives_the_same_features() {
    let fx = Fixture::new(40).await;
    let memory = fx.config("memory");
    let disk = fx.config("disk");
    let small = SensorFeatures {
        // A few megabytes: several device buckets and speed cuts.
        memory_budget: 2 << 20,
    };
    let roomy = SensorFeatures::default();
    run(&roomy, lease(&memory, 1, 0, 10), &fx.path("scratch"))
        .await
        .unwrap();
    let (m, _) = run(&small, lease(&disk, 2, 0, 20), &fx.path("scratch"))
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fx.path("disk").join(&m.output_prefix).join("stats.json")).unwrap(),
    )
    .unwrap();
    assert!(stats["plan"]["buckets"].as_u64().unwrap() > 1, "{stats}");
    assert!(stats["plan"]["speedCuts"].as_u64().unwrap() > 1, "{stats}");
    assert!(stats["spilledBytes"].as_u64().unwrap() > 0, "{stats}");

    let (_, a) = published(&fx.path("memory"), DATES[0]).await;
    let (_, b) = published(&fx.path("disk"), DATES[0]).await;
    assert!(a.num_rows() > 50, "{} rows", a.num_rows());
    assert_eq!(a.num_rows(), b.num_rows());
    for (i, field) in a.schema().fields().iter().enumerate() {
        let (x, y) = (a.column(i), b.column(i));
        match field.data_type() {
            arrow_schema::DataType::Float64 => {
                let (x, y) = (
                    x.as_primitive::<Float64Type>(),
                    y.as_primitive::<Float64Type>(),
                );
                for r in 0..x.len() {
                    assert_eq!(x.is_null(r), y.is_null(r));
                    if !x.is_null(r) {
                        let (p, q) = (x.value(r), y.value(r));
                        // Sums taken in another device order may round
                        // differently in the last bit.
                        assert!(
                            (p - q).abs() <= 1e-12 * p.abs().max(1.0),
                            "{} row {r}: {p} vs {q}",
                            field.name()
                        );
                    }
                }
            }
            _ => assert_eq!(x, y, "column {}", field.name()),
        }
    }
    // The scratch space is the attempt's own; nothing is left in it.
    let mut left = Vec::new();
    if fx.path("scratch/scratch").exists() {
        files_below(&fx.path("scratch/scratch"), &mut left);
    }
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_publisher_never_rolls_a_date_back() {
    let fx = Fixture::new(20).await;
    let cfg = fx.config("features");
    let executor = SensorFeatures::default();
    // The lease with token 50 publishes first; then a stale attempt with
    // token 40 of another job, on a changed day, finishes.
    let mut forced = cfg.clone();
    forced.recompute = true;
    run(&executor, lease(&forced, 1, 0, 50), &fx.path("scratch"))
        .await
        .unwrap();
    let before = partition_manifest(&fx.path("features"), DATES[0]).await;
    let mut other = forced.clone();
    other.k_anonymity = 2;
    assert_ne!(other.k_anonymity, forced.k_anonymity);
    let (stale, reused) = run(&executor, lease(&other, 2, 0, 40), &fx.path("scratch"))
        .await
        .unwrap();
    assert!(!reused);
    assert!(
        stale.output_prefix.starts_with("jobs/j2/"),
        "its own output is still committed"
    );
    let after = partition_manifest(&fx.path("features"), DATES[0]).await;
    assert_eq!(after, before, "the date keeps the later lease's features");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_dead_attempt_are_swept_but_young_ones_stay() {
    let fx = Fixture::new(20).await;
    let cfg = fx.config("features");
    run_all(&cfg, 1, 10, &fx.path("scratch")).await;
    let dir = fx.path(&format!("features/date={}", DATES[0]));
    let old = dir.join("part-0123456789abcdef.parquet");
    let young = dir.join("part-fedcba9876543210.parquet");
    for p in [&old, &young] {
        std::fs::write(p, b"half-written").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let mut forced = cfg.clone();
    forced.recompute = true;
    run(
        &SensorFeatures::default(),
        lease(&forced, 2, 0, 20),
        &fx.path("scratch"),
    )
    .await
    .unwrap();
    assert!(
        !old.exists(),
        "an hour-old file no manifest names is removed"
    );
    assert!(
        young.exists(),
        "a fresh one may be another attempt's, about to be named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly() {
    let fx = Fixture::new(5).await;
    let cfg = fx.config("features");
    let executor = SensorFeatures::default();
    let scratch = fx.path("scratch");

    // A date with no readings yet: retryable, it may still land.
    let mut missing = lease(&cfg, 1, 0, 10);
    missing.partition_key = "2026-04-01".into();
    let e = run(&executor, missing, &scratch).await.unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(
        e.message.contains("no readings in") && e.message.contains("date=2026-04-01"),
        "{e}"
    );

    // A partition key that is not a date.
    let mut odd = lease(&cfg, 1, 0, 11);
    odd.partition_key = "march".into();
    let e = run(&executor, odd, &scratch).await.unwrap_err();
    assert!(
        !e.retryable && e.message.contains("`march` is not a YYYY-MM-DD date"),
        "{e}"
    );

    // A file whose `lat` is text: permanent, and names the file and column.
    let dir = fx.path(&format!("readings/date={}", DATES[0]));
    let good = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let b = read_parquet(&good).slice(0, 10);
    let i = b.schema().index_of("lat").unwrap();
    let mut fields: Vec<arrow_schema::Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[i] = arrow_schema::Field::new("lat", arrow_schema::DataType::Utf8, false);
    let mut columns = b.columns().to_vec();
    columns[i] = std::sync::Arc::new(arrow_array::StringArray::from_iter_values(
        (0..10).map(|_| "north"),
    ));
    let bad = RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        columns,
    )
    .unwrap();
    write_parquet(&dir.join("zz-bad.parquet"), &bad);
    let e = run(&executor, lease(&cfg, 1, 0, 12), &scratch)
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(
        e.message.contains("zz-bad.parquet: column `lat` is Utf8"),
        "{e}"
    );

    // A file that is not Parquet at all: named, and not retried.
    std::fs::remove_file(dir.join("zz-bad.parquet")).unwrap();
    std::fs::write(dir.join("zz-torn.parquet"), b"not parquet").unwrap();
    let e = run(&executor, lease(&cfg, 1, 0, 14), &scratch)
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(e.message.contains("zz-torn.parquet: parquet"), "{e}");

    // No key: permanent, and says which variable.
    let mut no_key = cfg.clone();
    no_key.pseudonymize = KeySource::Env("DROVER_TEST_KEY_THAT_IS_NOT_SET".into());
    let e = run(&executor, lease(&no_key, 1, 1, 13), &scratch)
        .await
        .unwrap_err();
    assert!(e.message.contains("DROVER_TEST_KEY_THAT_IS_NOT_SET"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_and_large_string_readings_give_the_same_features() {
    use arrow_schema::DataType;

    let fx = Fixture::new(30).await;
    let reference = fx.config("reference");
    run(
        &SensorFeatures::default(),
        lease(&reference, 1, 0, 10),
        &fx.path("scratch"),
    )
    .await
    .unwrap();
    let (_, want) = published(&fx.path("reference"), DATES[0]).await;

    // The same readings as pandas categoricals and polars would write them.
    let dictionary = |t: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(t));
    let mut files = Vec::new();
    files_below(&fx.path("readings"), &mut files);
    let day = format!("date={}", DATES[0]);
    files.retain(|f| {
        f.extension().is_some_and(|e| e == "parquet") && f.to_string_lossy().contains(&day)
    });
    assert!(!files.is_empty());
    for f in &files {
        let b = read_parquet(f);
        let mut columns = b.columns().to_vec();
        let mut fields: Vec<arrow_schema::Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (name, t) in [
            ("device_id", dictionary(DataType::Utf8)),
            ("source", dictionary(DataType::LargeUtf8)),
        ] {
            let i = b.schema().index_of(name).unwrap();
            columns[i] = arrow_cast::cast(&columns[i], &t).unwrap();
            fields[i] = arrow_schema::Field::new(name, t, true);
        }
        let recoded = RecordBatch::try_new(
            std::sync::Arc::new(arrow_schema::Schema::new(fields)),
            columns,
        )
        .unwrap();
        write_parquet(f, &recoded);
    }
    let recoded = fx.config("recoded");
    run(
        &SensorFeatures::default(),
        lease(&recoded, 2, 0, 20),
        &fx.path("scratch"),
    )
    .await
    .unwrap();
    let (_, got) = published(&fx.path("recoded"), DATES[0]).await;
    assert!(want.num_rows() > 20, "{} rows", want.num_rows());
    assert_eq!(got, want);
}

/// Runs date `DATES[0]` of `cfg` (with `shards` set) as its parts and
/// then its merge, as job `job` with tokens from `token`; the merge's
/// output and the parts'.
async fn run_sharded(
    executor: &SensorFeatures,
    cfg: &SensorFeatureConfig,
    job: u32,
    token: u64,
    scratch: &Path,
) -> (OutputManifest, Vec<OutputManifest>) {
    let shards = u64::from(cfg.shards);
    let mut parts = Vec::new();
    for s in 0..shards {
        let mut t = lease(cfg, job, 0, token + s);
        t.template = "features/part".into();
        t.partition_index = s;
        t.partition_key = format!("{}/{s}", DATES[0]);
        t.task_id = format!("j{job}/0/{s}");
        t.output_prefix = format!("jobs/j{job}/features/part/{s}/attempt-1-{}", token + s);
        parts.push(run(executor, t, scratch).await.unwrap().0);
    }
    let merge = merge_lease(cfg, job, token + shards, &parts);
    let (merged, _) = run(executor, merge, scratch).await.unwrap();
    (merged, parts)
}

/// The lease of `DATES[0]`'s merge in job `job` under `token`, listing
/// the outputs of its `parts` in shard order.
fn merge_lease(
    cfg: &SensorFeatureConfig,
    job: u32,
    token: u64,
    parts: &[OutputManifest],
) -> LeasedTask {
    let mut merge = lease(cfg, job, 0, token);
    merge.template = "features/merge".into();
    merge.task_id = format!("j{job}/1/0");
    merge.output_prefix = format!("jobs/j{job}/features/merge/0/attempt-1-{token}");
    merge.upstream_outputs = parts
        .iter()
        .enumerate()
        .map(|(i, m)| drover_proto::v1::UpstreamOutput {
            template: "features/part".into(),
            partition_index: i as u64,
            partition_key: format!("{}/{i}", DATES[0]),
            output_prefix: m.output_prefix.clone(),
        })
        .collect();
    merge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_split_over_parts_gives_the_one_task_features_bit_for_bit() {
    let fx = Fixture::new(60).await;
    let whole = fx.config("whole");
    run(
        &SensorFeatures::default(),
        lease(&whole, 1, 0, 10),
        &fx.path("scratch"),
    )
    .await
    .unwrap();
    let (_, want) = published(&fx.path("whole"), DATES[0]).await;
    assert!(want.num_rows() > 50, "{} rows", want.num_rows());
    let whole_stats: serde_json::Value = {
        let m = partition_manifest(&fx.path("whole"), DATES[0]).await;
        let dir = fx.path("whole").join("jobs/j1/features/0/attempt-1-10");
        assert!(m.files.len() == 1);
        serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap()
    };

    // Three shards and a budget so small that every part spills and the
    // merge takes the groups in several cuts.
    let small = SensorFeatures {
        memory_budget: 2 << 20,
    };
    for shards in [3u32, 7] {
        let mut cfg = fx.config(&format!("sharded-{shards}"));
        cfg.shards = shards;
        let (merged, parts) = run_sharded(&small, &cfg, 2, 100, &fx.path("scratch")).await;
        let (_, got) = published(&fx.path(&format!("sharded-{shards}")), DATES[0]).await;
        assert_eq!(got, want, "{shards} shards");
        let out = fx.path(&format!("sharded-{shards}"));
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(&parts[0].output_prefix).join("part.json")).unwrap(),
        )
        .unwrap();
        assert!(info["cuts"].as_u64().unwrap() > 1, "{info}");
        let stats: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(&merged.output_prefix).join("stats.json")).unwrap(),
        )
        .unwrap();
        for field in [
            "readings",
            "invalid",
            "devices",
            "clean",
            "groups",
            "rows",
            "suppressedGroups",
        ] {
            assert_eq!(stats[field], whole_stats[field], "{shards} shards: {field}");
        }
        // The same fingerprint: a later whole-date run reuses these.
        let m = partition_manifest(&out, DATES[0]).await;
        let w = partition_manifest(&fx.path("whole"), DATES[0]).await;
        assert_eq!(m.input_fingerprint, w.input_fingerprint);
        // Run again, the date unchanged: every part and the merge skip.
        let mut again = lease(&cfg, 3, 0, 200);
        again.template = "features/part".into();
        again.partition_key = format!("{}/1", DATES[0]);
        let (_, reused) = run(&small, again, &fx.path("scratch")).await.unwrap();
        assert!(reused, "an unchanged date's part is skipped");
        let mut again = lease(&cfg, 3, 0, 201);
        again.template = "features/merge".into();
        let (_, reused) = run(&small, again, &fx.path("scratch")).await.unwrap();
        assert!(reused, "an unchanged date's merge is skipped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_refuses_parts_that_saw_other_readings() {
    let fx = Fixture::new(20).await;
    let mut cfg = fx.config("out");
    cfg.shards = 2;
    let executor = SensorFeatures::default();
    let mut part = lease(&cfg, 1, 0, 10);
    part.template = "features/part".into();
    part.partition_key = format!("{}/0", DATES[0]);
    part.output_prefix = "jobs/j1/features/part/0/attempt-1-10".into();
    let (p0, _) = run(&executor, part.clone(), &fx.path("scratch"))
        .await
        .unwrap();
    // A late file lands before the second part reads the date.
    let mut files = Vec::new();
    files_below(&fx.path(&format!("readings/date={}", DATES[0])), &mut files);
    let first = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    std::fs::copy(first, first.with_file_name("late.parquet")).unwrap();
    part.partition_index = 1;
    part.partition_key = format!("{}/1", DATES[0]);
    part.fencing_token = 11;
    part.output_prefix = "jobs/j1/features/part/1/attempt-1-11".into();
    let (p1, _) = run(&executor, part, &fx.path("scratch")).await.unwrap();
    let merge = merge_lease(&cfg, 1, 12, &[p0, p1]);
    let err = run(&executor, merge, &fx.path("scratch"))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message.contains("changed while its parts ran"),
        "{}",
        err.message
    );
}
