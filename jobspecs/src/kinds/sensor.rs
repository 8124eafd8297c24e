//! `sensor_feature_backfill`: H3-cell features per time window from
//! crowdsourced device readings, with k-anonymity. One task per date
//! partition, taken from the task's `partitions`; with `shards: N`, each
//! date is N `part` tasks (each the devices whose id hashes to it) and a
//! `merge` that combines their sums into the date's features.

use serde::{Deserialize, Serialize};

use super::{KeySource, Stage, decode_key_source, urls};
use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::partitions::PartitionSet;
use crate::yaml::Node;

/// Keys of a `sensor_feature_backfill` config.
pub const FIELDS: &[&str] = &[
    "input",
    "output",
    "h3Resolution",
    "window",
    "kAnonymity",
    "maxAccuracyM",
    "maxSpeedMps",
    "features",
    "pseudonymize",
    "recompute",
    "shards",
    "memoryMb",
];

/// Features the kind can compute.
pub const FEATURES: &[&str] = &[
    "observations",
    "distinct_devices",
    "speed_mean",
    "speed_p50",
    "speed_p90",
    "dwell_seconds",
    "accuracy_mean",
    "rssi_mean_by_source",
];

/// Config of `sensor_feature_backfill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SensorFeatureConfig {
    /// Dataset URL of readings partitioned by `date=YYYY-MM-DD/`.
    pub input: String,
    /// Dataset URL features are written under, by `date=YYYY-MM-DD/`.
    pub output: String,
    /// H3 resolution of the feature cells (0 coarsest, 15 finest).
    pub h3_resolution: u8,
    /// Aggregation window in milliseconds; divides a day.
    pub window_ms: u64,
    /// Cells seen by fewer distinct devices than this are suppressed.
    pub k_anonymity: u32,
    /// Readings less accurate than this (metres) are dropped.
    pub max_accuracy_m: f64,
    /// Jumps implying more than this speed (m/s) are outliers.
    pub max_speed_mps: f64,
    /// Features computed, in output order.
    pub features: Vec<String>,
    /// Where the device-pseudonymisation key is read on the worker.
    pub pseudonymize: KeySource,
    /// Compute every partition again, even one whose committed features
    /// were made from the same input, config and code.
    #[serde(default)]
    pub recompute: bool,
    /// Tasks each date's devices are split over (1: one task per date).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub shards: u32,
    /// Memory a task aims to stay within, MiB; the worker's default (1
    /// GiB) when absent. Beyond it, a task spills to scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

fn one() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_one(n: &u32) -> bool {
    *n == 1
}

impl SensorFeatureConfig {
    /// The stages of a task over `dates`: one per date, or with `shards`
    /// over 1, `part` (a task per date and shard, keyed `DATE/SHARD`) then
    /// `merge` (one per date).
    pub fn stages(&self, dates: &PartitionSet) -> Vec<Stage> {
        if self.shards <= 1 {
            return vec![Stage {
                name: None,
                partitions: dates.clone(),
                also_reads: &[],
            }];
        }
        let keys = (0..dates.count())
            .filter_map(|i| dates.key(i))
            .flat_map(|date| (0..self.shards).map(move |s| part_key(&date, s)))
            .collect();
        vec![
            Stage {
                name: Some("part"),
                partitions: PartitionSet::List { keys },
                also_reads: &[],
            },
            Stage {
                name: Some("merge"),
                partitions: dates.clone(),
                also_reads: &[],
            },
        ]
    }
}

/// The partition key of shard `shard` of `date`'s part tasks.
pub fn part_key(date: &str, shard: u32) -> String {
    format!("{date}/{shard}")
}

/// The date and shard of a part task's partition key.
pub fn parse_part_key(key: &str) -> Option<(&str, u32)> {
    let (date, shard) = key.split_once('/')?;
    Some((date, shard.parse().ok()?))
}

/// Decodes a `sensor_feature_backfill` config; `partitions` must be dates.
pub fn decode(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    partitions: Option<&PartitionSet>,
    task: &Node,
    task_path: &str,
) -> Option<SensorFeatureConfig> {
    let dated = match partitions {
        // Invalid partitions were reported already; don't pile on.
        None => true,
        Some(PartitionSet::Daily { .. }) => true,
        Some(PartitionSet::List { keys }) => keys
            .iter()
            .all(|k| chrono::NaiveDate::parse_from_str(k, "%Y-%m-%d").is_ok()),
        Some(_) => false,
    };
    if !dated {
        let span = task.get("partitions").map(|p| p.span).unwrap_or(task.span);
        d.error_hint(
            span,
            &decode::join(task_path, "partitions"),
            "`sensor_feature_backfill` runs one task per date, so its partitions must be dates",
            "use `partitions: {daily: {start: \"2026-01-01\", end: \"2026-01-31\"}}` or a `list` of YYYY-MM-DD dates",
        );
    }
    let f = decode::fields(d, node, path, FIELDS)?;
    let input = f
        .required(d, "input", "e.g. `input: file://./drover-data/sensors`")
        .and_then(|n| urls::url(d, n, &f.path("input")));
    let output = f
        .required(d, "output", "e.g. `output: file://./drover-data/features`")
        .and_then(|n| urls::url(d, n, &f.path("output")));
    let h3_resolution = match f.get("h3Resolution") {
        None => Some(9),
        Some(n) => decode::int(d, n, &f.path("h3Resolution"), 0, 15).map(|v| v as u8),
    };
    let window_ms = match f.get("window") {
        None => Some(3_600_000),
        Some(n) => window(d, n, &f.path("window")),
    };
    let k_anonymity = match f.get("kAnonymity") {
        None => Some(5),
        Some(n) => decode::u32_in(d, n, &f.path("kAnonymity"), 1, 100_000),
    };
    let max_accuracy_m = match f.get("maxAccuracyM") {
        None => Some(100.0),
        Some(n) => decode::float(d, n, &f.path("maxAccuracyM"), 0.1, 100_000.0),
    };
    let max_speed_mps = match f.get("maxSpeedMps") {
        None => Some(70.0),
        Some(n) => decode::float(d, n, &f.path("maxSpeedMps"), 0.1, 1_000.0),
    };
    let features = match f.get("features") {
        None => Some(FEATURES.iter().map(|s| (*s).to_owned()).collect()),
        Some(n) => decode_features(d, n, &f.path("features")),
    };
    let pseudonymize = match f.get("pseudonymize") {
        None => Some(KeySource::default()),
        Some(n) => decode_key_source(d, n, &f.path("pseudonymize")),
    };
    let recompute = match f.get("recompute") {
        None => Some(false),
        Some(n) => decode::boolean(d, n, &f.path("recompute")),
    };
    let shards = match f.get("shards") {
        None => Some(1),
        Some(n) => {
            let shards = decode::u32_in(d, n, &f.path("shards"), 1, limits::SENSOR_SHARDS_MAX);
            let dates = partitions.map_or(0, PartitionSet::count);
            match shards {
                Some(s) if u64::from(s) > 1 && dates * u64::from(s) > limits::SENSOR_PARTS_MAX => {
                    d.error_hint(
                        n.span,
                        &f.path("shards"),
                        format!(
                            "{dates} dates × {s} shards is {} part tasks; a backfill takes at most {}",
                            dates * u64::from(s),
                            limits::SENSOR_PARTS_MAX
                        ),
                        "use fewer shards, or split the dates over several jobs",
                    );
                    None
                }
                s => s,
            }
        }
    };
    let memory_mb = match f.get("memoryMb") {
        None => Some(None),
        Some(n) => {
            decode::u32_in(d, n, &f.path("memoryMb"), 16, limits::SENSOR_MEMORY_MB_MAX).map(Some)
        }
    };
    if !dated {
        return None;
    }
    Some(SensorFeatureConfig {
        input: input?,
        output: output?,
        h3_resolution: h3_resolution?,
        window_ms: window_ms?,
        k_anonymity: k_anonymity?,
        max_accuracy_m: max_accuracy_m?,
        max_speed_mps: max_speed_mps?,
        features: features?,
        pseudonymize: pseudonymize?,
        recompute: recompute?,
        shards: shards?,
        memory_mb: memory_mb?,
    })
}

/// A window between 1 minute and 1 day that divides a day evenly, so windows
/// line up with date partitions.
fn window(d: &mut Diagnostics, node: &Node, path: &str) -> Option<u64> {
    const DAY_MS: u64 = 86_400_000;
    let ms = decode::duration_ms(d, node, path, 60_000, DAY_MS)?;
    if !DAY_MS.is_multiple_of(ms) {
        d.error_hint(
            node.span,
            path,
            format!("a {} window does not divide a day", decode::format_ms(ms)),
            "use e.g. 5m, 15m, 30m, 1h, 2h, 6h or 1d",
        );
        return None;
    }
    Some(ms)
}

fn decode_features(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = decode::list(d, node, path)?;
    if items.is_empty() {
        d.error_hint(
            node.span,
            path,
            "no features selected",
            format!("choose from: {}", FEATURES.join(", ")),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match decode::one_of(d, item, &decode::index(path, i), FEATURES) {
            Some(f) if out.iter().any(|o| o == f) => {
                d.error(
                    item.span,
                    &decode::index(path, i),
                    format!("`{f}` is listed twice"),
                );
                ok = false;
            }
            Some(f) => out.push(f.to_owned()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
