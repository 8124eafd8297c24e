//! `annotation_export`: consensus labels, agreement metrics and pseudonymised
//! annotators, written as COCO, JSONL or Parquet.
//!
//! It expands into one `calibrate` task (Dawid-Skene fitted on a sample of
//! each classification project), `shard` tasks (items split by a stable
//! hash of their id) and one `merge` task that assembles the final files,
//! manifest and quality report.

use serde::{Deserialize, Serialize};

use super::{KeySource, Stage, decode_key_source, urls};
use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::partitions::PartitionSet;
use crate::yaml::Node;

/// Keys of an `annotation_export` config.
pub const FIELDS: &[&str] = &[
    "input",
    "output",
    "projects",
    "timeWindow",
    "labels",
    "formats",
    "consensus",
    "minAnnotators",
    "dropFields",
    "pseudonymize",
    "shards",
];

/// Keys of `consensus`.
pub const CONSENSUS_FIELDS: &[&str] = &["classes", "boxes", "iouThreshold"];

/// Keys of `timeWindow`.
pub const TIME_WINDOW_FIELDS: &[&str] = &["start", "end"];

/// Output formats.
pub const FORMATS: &[&str] = &["coco", "jsonl", "parquet"];

/// Class consensus methods.
pub const CLASS_METHODS: &[&str] = &["majority", "dawid_skene"];

/// Box consensus methods.
pub const BOX_METHODS: &[&str] = &["iou_fusion"];

/// Config of `annotation_export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationExportConfig {
    /// Dataset URL of the annotation project data.
    pub input: String,
    /// Dataset URL the export is written under.
    pub output: String,
    /// Only these projects; all when empty.
    #[serde(default)]
    pub projects: Vec<String>,
    /// Only annotations made in this window (RFC 3339 instants or dates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
    /// Only these labels; all when empty.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Output formats, at least one.
    pub formats: Vec<String>,
    /// How annotators' answers are combined.
    pub consensus: Consensus,
    /// Items with fewer annotators than this are left out.
    pub min_annotators: u32,
    /// Fields removed from the export (PII).
    #[serde(default)]
    pub drop_fields: Vec<String>,
    /// Where the annotator-pseudonymisation key is read on the worker.
    pub pseudonymize: KeySource,
    /// Shard tasks the items are split across.
    pub shards: u32,
}

/// A half-open time window `[start, end)`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Inclusive start.
    pub start: String,
    /// Exclusive end.
    pub end: String,
}

/// Consensus settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consensus {
    /// `majority` or `dawid_skene` for classification labels.
    pub classes: String,
    /// `iou_fusion` for bounding boxes.
    pub boxes: String,
    /// IoU above which two boxes are the same object.
    pub iou_threshold: f64,
}

impl Default for Consensus {
    /// Dawid-Skene, because it discounts careless annotators where majority
    /// vote counts them fully.
    fn default() -> Self {
        Self {
            classes: "dawid_skene".to_owned(),
            boxes: "iou_fusion".to_owned(),
            iou_threshold: 0.5,
        }
    }
}

impl AnnotationExportConfig {
    /// One `calibrate` (Dawid-Skene on a sample of each project), `shard`
    /// over `shards` partitions, then one `merge`.
    pub fn stages(&self) -> Vec<Stage> {
        vec![
            Stage {
                name: Some("calibrate"),
                partitions: PartitionSet::Single,
                also_reads: &[],
            },
            Stage {
                name: Some("shard"),
                partitions: PartitionSet::Shards {
                    count: u64::from(self.shards),
                },
                also_reads: &[],
            },
            Stage {
                name: Some("merge"),
                partitions: PartitionSet::Single,
                also_reads: &[],
            },
        ]
    }
}

/// Decodes an `annotation_export` config.
pub fn decode(d: &mut Diagnostics, node: &Node, path: &str) -> Option<AnnotationExportConfig> {
    let f = decode::fields(d, node, path, FIELDS)?;
    let input = f
        .required(d, "input", "e.g. `input: file://./drover-data/annotations`")
        .and_then(|n| urls::url(d, n, &f.path("input")));
    let output = f
        .required(d, "output", "e.g. `output: file://./drover-data/exports`")
        .and_then(|n| urls::url(d, n, &f.path("output")));
    let projects = optional_strings(d, f.get("projects"), &f.path("projects"));
    let labels = optional_strings(d, f.get("labels"), &f.path("labels"));
    let drop_fields = optional_strings(d, f.get("dropFields"), &f.path("dropFields"));
    let time_window = match f.get("timeWindow") {
        None => Some(None),
        Some(n) => decode_window(d, n, &f.path("timeWindow")).map(Some),
    };
    let formats = match f.get("formats") {
        None => Some(vec!["jsonl".to_owned()]),
        Some(n) => decode_formats(d, n, &f.path("formats")),
    };
    let consensus = match f.get("consensus") {
        None => Some(Consensus::default()),
        Some(n) => decode_consensus(d, n, &f.path("consensus")),
    };
    let min_annotators = match f.get("minAnnotators") {
        None => Some(1),
        Some(n) => decode::u32_in(d, n, &f.path("minAnnotators"), 1, 1000),
    };
    let pseudonymize = match f.get("pseudonymize") {
        None => Some(KeySource::default()),
        Some(n) => decode_key_source(d, n, &f.path("pseudonymize")),
    };
    let shards = match f.get("shards") {
        None => Some(8),
        Some(n) => decode::u32_in(d, n, &f.path("shards"), 1, limits::EXPORT_SHARDS_MAX),
    };
    Some(AnnotationExportConfig {
        input: input?,
        output: output?,
        projects: projects?,
        time_window: time_window?,
        labels: labels?,
        formats: formats?,
        consensus: consensus?,
        min_annotators: min_annotators?,
        drop_fields: drop_fields?,
        pseudonymize: pseudonymize?,
        shards: shards?,
    })
}

/// An optional list of unique strings.
pub(super) fn optional_strings(
    d: &mut Diagnostics,
    node: Option<&Node>,
    path: &str,
) -> Option<Vec<String>> {
    let Some(node) = node else {
        return Some(Vec::new());
    };
    let items = decode::string_list(d, node, path, 10_000)?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, (item, span)) in items.into_iter().enumerate() {
        if out.contains(&item) {
            d.error(
                span,
                &decode::index(path, i),
                format!("`{item}` is listed twice"),
            );
            return None;
        }
        out.push(item);
    }
    Some(out)
}

fn decode_formats(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = decode::list(d, node, path)?;
    if items.is_empty() {
        d.error_hint(
            node.span,
            path,
            "no output format",
            "use one or more of coco, jsonl, parquet",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match decode::one_of(d, item, &decode::index(path, i), FORMATS) {
            Some(format) if out.iter().any(|f| f == format) => {
                d.error(
                    item.span,
                    &decode::index(path, i),
                    format!("`{format}` is listed twice"),
                );
                ok = false;
            }
            Some(format) => out.push(format.to_owned()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_consensus(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Consensus> {
    let f = decode::fields(d, node, path, CONSENSUS_FIELDS)?;
    let defaults = Consensus::default();
    let classes = match f.get("classes") {
        None => Some(defaults.classes),
        Some(n) => decode::one_of(d, n, &f.path("classes"), CLASS_METHODS).map(str::to_owned),
    };
    let boxes = match f.get("boxes") {
        None => Some(defaults.boxes),
        Some(n) => decode::one_of(d, n, &f.path("boxes"), BOX_METHODS).map(str::to_owned),
    };
    let iou_threshold = match f.get("iouThreshold") {
        None => Some(defaults.iou_threshold),
        Some(n) => decode::float(d, n, &f.path("iouThreshold"), 0.05, 0.95),
    };
    Some(Consensus {
        classes: classes?,
        boxes: boxes?,
        iou_threshold: iou_threshold?,
    })
}

fn decode_window(d: &mut Diagnostics, node: &Node, path: &str) -> Option<TimeWindow> {
    let f = decode::fields(d, node, path, TIME_WINDOW_FIELDS)?;
    let hint = "e.g. `{start: \"2026-01-01\", end: \"2026-02-01T00:00:00Z\"}`";
    let start_n = f.required(d, "start", hint);
    let end_n = f.required(d, "end", hint);
    let (start_n, end_n) = (start_n?, end_n?);
    let start = instant(d, start_n, &f.path("start"));
    let end = instant(d, end_n, &f.path("end"));
    let ((start, start_t), (end, end_t)) = (start?, end?);
    if start_t >= end_t {
        d.error_hint(
            start_n.span,
            &f.path("start"),
            format!("start {start} is not before end {end}"),
            "the window is [start, end): start must be earlier",
        );
        return None;
    }
    Some(TimeWindow { start, end })
}

/// An RFC 3339 instant or a date (midnight UTC).
fn instant(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let text = decode::string(d, node, path)?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
        return Some((text, t.with_timezone(&chrono::Utc)));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        && let Some(t) = date.and_hms_opt(0, 0, 0)
    {
        return Some((text, t.and_utc()));
    }
    d.error_hint(
        node.span,
        path,
        format!("`{}` is not a time", decode::truncate(&text, 40)),
        "write RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)",
    );
    None
}
