//! The dedup's report: what was read, kept and removed, how clusters are
//! sized, what the pair stages counted, and example clusters with their
//! texts, as `_dedup/report.json` and a self-contained
//! `_dedup/report.html`.

use std::collections::HashMap;

use drover_jobspecs::kinds::dedup::DedupConfig;
use serde::{Deserialize, Serialize};

use super::DocRef;
use super::components::{Clusters, SizeCount};
use super::stats::PairStats;
use crate::dedup::lsh::candidate_probability;
use crate::html::{bars, escape};

/// Where the duplicate map and the report go in the output.
pub const DIR: &str = "_dedup";
/// The report as JSON.
pub const REPORT_JSON: &str = "_dedup/report.json";
/// The report as HTML.
pub const REPORT_HTML: &str = "_dedup/report.html";

/// Layout version of `report.json`.
const REPORT_FORMAT: u32 = 1;

/// One document of an example cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportMember {
    /// Its id.
    pub id: String,
    /// Whether it is the one kept.
    pub representative: bool,
    /// Similarity to the representative, when that pair was verified.
    pub similarity: Option<f32>,
    /// Its text, cut to a readable length.
    pub text: Option<String>,
}

/// An example cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportExample {
    /// Documents in it.
    pub size: u64,
    /// Some of them, the representative first.
    pub members: Vec<ReportMember>,
}

/// `_dedup/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DedupReport {
    /// Layout version.
    pub format: u32,
    /// `exact` or `minhash`.
    pub method: String,
    /// Jaccard threshold.
    pub threshold: f64,
    /// MinHash permutations.
    pub num_perm: u32,
    /// LSH bands.
    pub bands: u32,
    /// Rows per band.
    pub rows: u32,
    /// Shingling, e.g. `word 3-grams`.
    pub shingle: String,
    /// The keep policy.
    pub keep: String,
    /// The chance LSH makes a pair at exactly the threshold a candidate.
    pub candidate_probability_at_threshold: Option<f64>,
    /// Documents read.
    pub docs: u64,
    /// Documents written.
    pub kept: u64,
    /// Documents removed as duplicates.
    pub removed: u64,
    /// Clusters of two or more documents.
    pub clusters: u64,
    /// Documents in them.
    pub docs_in_clusters: u64,
    /// Clusters by size.
    pub sizes: Vec<SizeCount>,
    /// What the pair stages counted.
    pub pairs: PairStats,
    /// Example clusters: the largest, then some picked at random.
    pub examples: Vec<ReportExample>,
}

impl DedupReport {
    /// The report of a run.
    pub fn new(
        cfg: &DedupConfig,
        clusters: &Clusters,
        kept: u64,
        texts: &HashMap<DocRef, String>,
    ) -> Self {
        let minhash = cfg.method == "minhash";
        Self {
            format: REPORT_FORMAT,
            method: cfg.method.clone(),
            threshold: cfg.threshold,
            num_perm: cfg.num_perm,
            bands: cfg.bands,
            rows: cfg.rows,
            shingle: format!("{} {}-grams", cfg.shingle.unit, cfg.shingle.size),
            keep: match &cfg.keep_field {
                Some(f) if cfg.keep == "field" => format!("highest {f}"),
                _ => cfg.keep.clone(),
            },
            candidate_probability_at_threshold: minhash
                .then(|| candidate_probability(cfg.threshold, cfg.bands, cfg.rows)),
            docs: clusters.docs,
            kept,
            removed: clusters.removed,
            clusters: clusters.clusters,
            docs_in_clusters: clusters.docs_in_clusters,
            sizes: clusters.sizes.clone(),
            pairs: clusters.stats.clone(),
            examples: clusters
                .examples
                .iter()
                .map(|e| ReportExample {
                    size: e.size,
                    members: e
                        .members
                        .iter()
                        .enumerate()
                        .map(|(i, m)| ReportMember {
                            id: m.id.clone(),
                            representative: i == 0,
                            similarity: m.similarity,
                            text: texts.get(&m.doc).cloned(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Cluster sizes in a few readable ranges.
fn size_ranges(sizes: &[SizeCount]) -> Vec<(String, f64, bool)> {
    const RANGES: &[(u64, u64, &str)] = &[
        (2, 2, "2"),
        (3, 3, "3"),
        (4, 4, "4"),
        (5, 9, "5–9"),
        (10, 99, "10–99"),
        (100, u64::MAX, "100 or more"),
    ];
    RANGES
        .iter()
        .map(|&(lo, hi, name)| {
            let n: u64 = sizes
                .iter()
                .filter(|s| (lo..=hi).contains(&s.size))
                .map(|s| s.clusters)
                .sum();
            (format!("{name} documents"), n as f64, lo >= 100)
        })
        .collect()
}

/// The report as one HTML page.
pub fn render_html(r: &DedupReport) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Dedup report</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}\
         table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}\
         .doc{font-family:ui-monospace,monospace;font-size:.85em;white-space:pre-wrap}\
         .kept{background:#eaf5ea}</style></head><body><h1>Dedup report</h1>",
    );
    let share = |n: u64| {
        if r.docs == 0 {
            0.0
        } else {
            100.0 * n as f64 / r.docs as f64
        }
    };
    h.push_str("<table>");
    let mut row = |k: &str, v: String| {
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        ));
    };
    row("Method", r.method.clone());
    if r.method == "minhash" {
        row(
            "Threshold",
            format!(
                "Jaccard ≥ {} over {}; {} permutations, {} bands × {} rows",
                r.threshold, r.shingle, r.num_perm, r.bands, r.rows
            ),
        );
        if let Some(p) = r.candidate_probability_at_threshold {
            row(
                "LSH catch rate at the threshold",
                format!("{:.1}% (higher above it)", 100.0 * p),
            );
        }
    }
    row("Keep", r.keep.clone());
    row("Documents read", r.docs.to_string());
    row("Kept", format!("{} ({:.2}%)", r.kept, share(r.kept)));
    row(
        "Removed",
        format!("{} ({:.2}%)", r.removed, share(r.removed)),
    );
    row(
        "Clusters",
        format!("{} holding {} documents", r.clusters, r.docs_in_clusters),
    );
    row("Exact-duplicate groups", r.pairs.exact_groups.to_string());
    if r.method == "minhash" {
        row(
            "Candidate pairs",
            format!(
                "{} from {} shared buckets; {} verified similar",
                r.pairs.candidate_pairs, r.pairs.shared_buckets, r.pairs.similar_pairs
            ),
        );
        row(
            "Hot buckets (sampled)",
            format!(
                "{} ({} documents compared with one member only)",
                r.pairs.hot_buckets, r.pairs.hot_bucket_docs
            ),
        );
    }
    h.push_str("</table><h2>Cluster sizes</h2>");
    let sizes = size_ranges(&r.sizes);
    let max = sizes.iter().map(|s| s.1).fold(0.0, f64::max);
    h.push_str(&bars(&sizes, max.max(1.0)));
    if !r.pairs.similarity.is_empty() {
        h.push_str("<h2>Similarity of verified candidate pairs</h2>");
        let n = r.pairs.similarity.len();
        let rows: Vec<(String, f64, bool)> = r
            .pairs
            .similarity
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let lo = i as f64 / n as f64;
                (
                    format!("{lo:.2}–{:.2}", lo + 1.0 / n as f64),
                    c as f64,
                    lo + 1e-9 < r.threshold,
                )
            })
            .collect();
        let max = rows.iter().map(|s| s.1).fold(0.0, f64::max);
        h.push_str(&bars(&rows, max.max(1.0)));
        h.push_str("<p>Red: below the threshold, so not duplicates.</p>");
    }
    h.push_str("<h2>Example clusters</h2>");
    for e in &r.examples {
        h.push_str(&format!("<h3>{} documents</h3><table>", e.size));
        for m in &e.members {
            h.push_str(&format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td class=\"doc\">{}</td></tr>",
                if m.representative { "kept" } else { "" },
                escape(&m.id),
                if m.representative {
                    "kept".to_owned()
                } else {
                    m.similarity
                        .map_or_else(|| "removed".to_owned(), |s| format!("removed, {s:.2}"))
                },
                escape(m.text.as_deref().unwrap_or("")),
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>");
    h
}
