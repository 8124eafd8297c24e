//! `dedup`: exact and MinHash-LSH near-duplicate detection.
//!
//! Stages, each split across tasks:
//! 1. `signatures` per input shard: normalise, shingle, MinHash and exact hash,
//!    emitting band keys partitioned for the next stage;
//! 2. `candidates` per bucket partition: pairs sharing a bucket (capped by
//!    `maxBucketSize` so one hot bucket cannot go quadratic);
//! 3. `verify` per bucket partition (MinHash only): keep pairs whose estimated
//!    Jaccard similarity reaches the threshold;
//! 4. `components`: union-find over verified pairs, one representative per
//!    cluster chosen by `keep`;
//! 5. `filter` per input shard: write the kept records;
//! 6. `publish`: gather the kept records, the duplicate map and the report
//!    into one committed dataset.

use serde::{Deserialize, Serialize};

use super::{Stage, urls};
use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::partitions::PartitionSet;
use crate::yaml::Node;

/// Keys of a `dedup` config.
pub const FIELDS: &[&str] = &[
    "input",
    "output",
    "format",
    "idField",
    "textField",
    "method",
    "threshold",
    "numPerm",
    "bands",
    "rows",
    "shingle",
    "shards",
    "bucketPartitions",
    "maxBucketSize",
    "keep",
    "keepField",
];

/// Keys of `shingle`.
pub const SHINGLE_FIELDS: &[&str] = &["unit", "size"];

/// Input formats.
pub const FORMATS: &[&str] = &["jsonl", "parquet"];

/// Detection methods.
pub const METHODS: &[&str] = &["exact", "minhash"];

/// Representative policies.
pub const KEEP: &[&str] = &["first", "longest", "field"];

/// Shingle units.
pub const SHINGLE_UNITS: &[&str] = &["word", "char"];

/// Config of `dedup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DedupConfig {
    /// Dataset URL of the documents.
    pub input: String,
    /// Dataset URL the kept records, duplicate map and report go under.
    pub output: String,
    /// `jsonl` or `parquet`.
    pub format: String,
    /// Field holding a document's unique id.
    pub id_field: String,
    /// Field holding the text compared.
    pub text_field: String,
    /// `exact` or `minhash`.
    pub method: String,
    /// Jaccard similarity at or above which two documents are duplicates.
    pub threshold: f64,
    /// MinHash permutations per signature.
    pub num_perm: u32,
    /// LSH bands; `bands * rows <= numPerm`.
    pub bands: u32,
    /// Rows (hash values) per band.
    pub rows: u32,
    /// How text is cut into shingles.
    pub shingle: Shingle,
    /// Input shards, for the `signatures` and `filter` stages.
    pub shards: u32,
    /// Bucket partitions, for the `candidates` and `verify` stages.
    pub bucket_partitions: u32,
    /// Documents considered per LSH bucket; larger buckets are sampled.
    pub max_bucket_size: u32,
    /// `first` (earliest in input order), `longest`, or `field` (highest
    /// `keepField`).
    pub keep: String,
    /// Field compared when `keep: field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_field: Option<String>,
}

/// Shingling settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shingle {
    /// `word` or `char` n-grams.
    pub unit: String,
    /// n.
    pub size: u32,
}

impl DedupConfig {
    /// The stage list. Every stage after `signatures` also reads the
    /// signatures' documents, and `publish` the components' duplicate map,
    /// so each depends on them directly and its lease lists them. `exact`
    /// needs no verification stage: equal hashes of normalised text are
    /// the answer.
    pub fn stages(&self) -> Vec<Stage> {
        let shards = PartitionSet::Shards {
            count: u64::from(self.shards),
        };
        let buckets = PartitionSet::Shards {
            count: u64::from(self.bucket_partitions),
        };
        let stage = |name, partitions, also_reads| Stage {
            name: Some(name),
            partitions,
            also_reads,
        };
        let mut stages = vec![
            stage("signatures", shards.clone(), &[]),
            stage("candidates", buckets.clone(), &[]),
        ];
        if self.method == "minhash" {
            stages.push(stage("verify", buckets, &["signatures"]));
        }
        stages.push(stage("components", PartitionSet::Single, &["signatures"]));
        stages.push(stage("filter", shards, &["signatures"]));
        stages.push(stage("publish", PartitionSet::Single, &["components"]));
        stages
    }
}

/// Decodes a `dedup` config.
pub fn decode(d: &mut Diagnostics, node: &Node, path: &str) -> Option<DedupConfig> {
    let f = decode::fields(d, node, path, FIELDS)?;
    let input = f
        .required(d, "input", "e.g. `input: file://./drover-data/texts`")
        .and_then(|n| urls::url(d, n, &f.path("input")));
    let output = f
        .required(d, "output", "e.g. `output: file://./drover-data/dedup`")
        .and_then(|n| urls::url(d, n, &f.path("output")));
    let format = choice(d, f.get("format"), &f.path("format"), FORMATS, "jsonl");
    let id_field = field_name(d, f.get("idField"), &f.path("idField"), "id");
    let text_field = field_name(d, f.get("textField"), &f.path("textField"), "text");
    let method = choice(d, f.get("method"), &f.path("method"), METHODS, "minhash");
    let threshold = match f.get("threshold") {
        None => Some(0.8),
        Some(n) => decode::float(d, n, &f.path("threshold"), 0.01, 1.0),
    };
    let num_perm = match f.get("numPerm") {
        None => Some(128),
        Some(n) => decode::u32_in(d, n, &f.path("numPerm"), 16, 1024),
    };
    let bands = f
        .get("bands")
        .map(|n| decode::u32_in(d, n, &f.path("bands"), 1, 1024));
    let rows = f
        .get("rows")
        .map(|n| decode::u32_in(d, n, &f.path("rows"), 1, 1024));
    let shingle = match f.get("shingle") {
        None => Some(Shingle {
            unit: "word".to_owned(),
            size: 3,
        }),
        Some(n) => decode_shingle(d, n, &f.path("shingle")),
    };
    let shards = match f.get("shards") {
        None => Some(8),
        Some(n) => decode::u32_in(d, n, &f.path("shards"), 1, limits::DEDUP_SHARDS_MAX),
    };
    let bucket_partitions = match f.get("bucketPartitions") {
        None => shards,
        Some(n) => decode::u32_in(
            d,
            n,
            &f.path("bucketPartitions"),
            1,
            limits::DEDUP_SHARDS_MAX,
        ),
    };
    let max_bucket_size = match f.get("maxBucketSize") {
        None => Some(1000),
        Some(n) => decode::u32_in(d, n, &f.path("maxBucketSize"), 2, 1_000_000),
    };
    let keep = choice(d, f.get("keep"), &f.path("keep"), KEEP, "first");
    let keep_field = f
        .get("keepField")
        .map(|n| decode::bounded_string(d, n, &f.path("keepField"), 256));

    // Cross-field rules, checked only when the fields involved are valid.
    let keep_field = match (keep, keep_field) {
        (Some("field"), None) => {
            d.error_hint(
                f.key_span("keep"),
                &f.path("keep"),
                "`keep: field` needs `keepField`",
                "name the field whose highest value wins, e.g. `keepField: quality`",
            );
            None
        }
        (Some("field"), Some(v)) => v.map(Some),
        (Some(other), Some(Some(_))) => {
            d.warning(
                f.key_span("keepField"),
                &f.path("keepField"),
                format!("`keepField` is ignored with `keep: {other}`"),
                Some("set `keep: field` to use it".to_owned()),
            );
            Some(None)
        }
        (_, Some(None)) => None,
        (None, Some(Some(_))) | (_, None) => Some(None),
    };
    let (bands, rows) = match (bands, rows, num_perm, threshold) {
        (Some(b), Some(r), Some(perm), _) => {
            let (b, r) = (b?, r?);
            if u64::from(b) * u64::from(r) > u64::from(perm) {
                d.error_hint(
                    f.key_span("bands"),
                    &f.path("bands"),
                    format!("bands × rows = {} exceeds numPerm = {perm}", u64::from(b) * u64::from(r)),
                    "lower bands or rows, raise numPerm, or leave both out to derive them from threshold",
                );
                (None, None)
            } else {
                (Some(b), Some(r))
            }
        }
        (None, None, Some(perm), Some(t)) => {
            let (b, r) = optimal_bands_rows(t, perm);
            (Some(b), Some(r))
        }
        (Some(_), None, ..) | (None, Some(_), ..) => {
            d.error_hint(
                node.span,
                path,
                "`bands` and `rows` go together",
                "set both, or neither to derive them from threshold",
            );
            (None, None)
        }
        _ => (None, None),
    };
    Some(DedupConfig {
        input: input?,
        output: output?,
        format: format?.to_owned(),
        id_field: id_field?,
        text_field: text_field?,
        method: method?.to_owned(),
        threshold: threshold?,
        num_perm: num_perm?,
        bands: bands?,
        rows: rows?,
        shingle: shingle?,
        shards: shards?,
        bucket_partitions: bucket_partitions?,
        max_bucket_size: max_bucket_size?,
        keep: keep?.to_owned(),
        keep_field: keep_field?,
    })
}

fn choice<'o>(
    d: &mut Diagnostics,
    node: Option<&Node>,
    path: &str,
    options: &[&'o str],
    default: &'o str,
) -> Option<&'o str> {
    match node {
        None => Some(default),
        Some(n) => decode::one_of(d, n, path, options),
    }
}

fn field_name(
    d: &mut Diagnostics,
    node: Option<&Node>,
    path: &str,
    default: &str,
) -> Option<String> {
    match node {
        None => Some(default.to_owned()),
        Some(n) => decode::bounded_string(d, n, path, 256),
    }
}

fn decode_shingle(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Shingle> {
    let f = decode::fields(d, node, path, SHINGLE_FIELDS)?;
    let unit = choice(d, f.get("unit"), &f.path("unit"), SHINGLE_UNITS, "word");
    let default_size = if unit == Some("char") { 5 } else { 3 };
    let size = match f.get("size") {
        None => Some(default_size),
        Some(n) => decode::u32_in(d, n, &f.path("size"), 1, limits::DEDUP_SHINGLE_SIZE_MAX),
    };
    Some(Shingle {
        unit: unit?.to_owned(),
        size: size?,
    })
}

/// Chooses LSH bands and rows for a Jaccard threshold by minimising the sum
/// of the false-positive and false-negative probability mass, the rule
/// datasketch uses, so results are comparable with it.
pub fn optimal_bands_rows(threshold: f64, num_perm: u32) -> (u32, u32) {
    // P(candidate | similarity s) = 1 - (1 - s^r)^b.
    let prob = |s: f64, b: u32, r: u32| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
    let integrate = |lo: f64, hi: f64, f: &dyn Fn(f64) -> f64| {
        const STEPS: u32 = 128;
        let h = (hi - lo) / f64::from(STEPS);
        let mut area = 0.5 * (f(lo) + f(hi));
        for i in 1..STEPS {
            area += f(lo + h * f64::from(i));
        }
        area * h
    };
    let mut best = (1, num_perm.max(1));
    let mut best_error = f64::INFINITY;
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let false_pos = integrate(0.0, threshold, &|s| prob(s, b, r));
            let false_neg = integrate(threshold, 1.0, &|s| 1.0 - prob(s, b, r));
            let error = 0.5 * false_pos + 0.5 * false_neg;
            if error < best_error {
                best_error = error;
                best = (b, r);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_bands_rows_fit_and_put_the_s_curve_near_the_threshold() {
        for threshold in [0.5, 0.7, 0.8, 0.9] {
            let (b, r) = optimal_bands_rows(threshold, 128);
            assert!(b * r <= 128, "{b}x{r}");
            // The S-curve's midpoint (1/b)^(1/r) sits close to the threshold.
            let midpoint = (1.0 / f64::from(b)).powf(1.0 / f64::from(r));
            assert!(
                (midpoint - threshold).abs() < 0.12,
                "threshold {threshold}: b={b} r={r} midpoint {midpoint}"
            );
        }
    }
}
