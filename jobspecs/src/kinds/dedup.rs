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

/// The least chance that a pair exactly at the threshold becomes a
/// candidate under the default bands and rows.
pub const RECALL_AT_THRESHOLD: f64 = 0.99;

/// The most chance that a pair at half the threshold becomes a (false)
/// candidate, among the defaults that meet [`RECALL_AT_THRESHOLD`] with
/// the fewest bands. Band keys (written, sorted and joined per document)
/// cost more than verifying the false candidates this lets through:
/// measured on three corpora, 9 × 4 at 0.8 ran faster than 12 × 5 (at
/// most 0.15) and than datasketch's 9 × 13.
pub const FALSE_CANDIDATE_AT_HALF: f64 = 0.25;

/// Chooses LSH bands and rows for a Jaccard threshold, recall first. The
/// verify stage computes every candidate pair's exact similarity, so a
/// false candidate costs a little time and a missed pair is lost for good:
///
/// 1. only (b, r) with b·r ≤ `num_perm` that make a pair exactly at the
///    threshold a candidate with probability at least
///    [`RECALL_AT_THRESHOLD`] (P(s) = 1 − (1 − s^r)^b);
/// 2. of those, the fewest bands (each band is a key per document to
///    write, sort and join) among those that make a pair at half the
///    threshold a candidate at most [`FALSE_CANDIDATE_AT_HALF`] of the
///    time, and for that many bands the most rows;
/// 3. with no such (b, r) (low thresholds), the one of step 1 with the
///    fewest false candidates at half the threshold; with none at all,
///    the one with the best recall at the threshold.
///
/// At 0.8 that is 9 bands of 4 rows. datasketch instead weighs false
/// positives and negatives equally, which at 0.8 and 128 permutations
/// gives 9 × 13 and finds a pair at exactly 0.8 only 42% of the time.
pub fn optimal_bands_rows(threshold: f64, num_perm: u32) -> (u32, u32) {
    let prob = |s: f64, b: u32, r: u32| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
    let n = num_perm.max(1);
    let all = || (1..=n).flat_map(move |b| (1..=n / b).map(move |r| (b, r)));
    let recalled: Vec<(u32, u32)> = all()
        .filter(|&(b, r)| prob(threshold, b, r) >= RECALL_AT_THRESHOLD)
        .collect();
    if recalled.is_empty() {
        return all()
            .max_by(|x, y| prob(threshold, x.0, x.1).total_cmp(&prob(threshold, y.0, y.1)))
            .unwrap_or((1, n));
    }
    let half = threshold / 2.0;
    let selective = recalled
        .iter()
        .copied()
        .filter(|&(b, r)| prob(half, b, r) <= FALSE_CANDIDATE_AT_HALF)
        .min_by_key(|&(b, r)| (b, std::cmp::Reverse(r)));
    selective.unwrap_or_else(|| {
        recalled
            .iter()
            .copied()
            .min_by(|x, y| {
                prob(half, x.0, x.1)
                    .total_cmp(&prob(half, y.0, y.1))
                    .then((x.0 * x.1).cmp(&(y.0 * y.1)))
            })
            .unwrap_or((1, n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bands_rows_find_pairs_at_the_threshold() {
        let prob = |s: f64, b: u32, r: u32| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
        // Pinned: what specs without `bands` and `rows` get.
        for (t, n, want) in [
            (0.5, 128, (35, 3)),
            (0.7, 128, (17, 4)),
            (0.8, 128, (9, 4)),
            (0.85, 128, (7, 4)),
            (0.9, 128, (5, 4)),
            (0.95, 128, (3, 4)),
            (0.5, 64, (17, 2)),
            (0.7, 64, (11, 3)),
            (0.8, 64, (9, 4)),
        ] {
            let (b, r) = optimal_bands_rows(t, n);
            assert_eq!((b, r), want, "threshold {t}, {n} permutations");
            assert!(b * r <= n);
            assert!(prob(t, b, r) >= RECALL_AT_THRESHOLD, "{t}: {b}x{r}");
        }
        // Too few permutations to reach the recall target: the best there is.
        let (b, r) = optimal_bands_rows(0.3, 2);
        assert_eq!((b, r), (2, 1));
    }
}
