//! Stage 4, one task: from every pair that stayed (verified, or exact),
//! which documents go. Documents are visited in `keep` order (highest
//! score, ties to the earliest in the input); one is removed when a
//! document already kept is similar to it, which becomes its
//! representative, and kept otherwise ([`crate::dedup::greedy`]). So
//! every removed document is at least `threshold` similar to the one kept
//! in its place, and no verified pair keeps both its documents. A cluster
//! is a kept document with those removed for it. Outputs:
//!
//! - `duplicates.jsonl`: one line per removed document, in input order:
//!   its id, its representative's id, their similarity when that pair was
//!   verified directly, and the cluster's size;
//! - `removed/part-S.bin`: the indices of shard S's removed documents,
//!   for its `filter` task;
//! - `clusters.json`: counts, cluster sizes and example clusters for the
//!   report.

use std::collections::BTreeMap;

use drover_proto::v1::{LeasedTask, OutputManifest};
use serde::{Deserialize, Serialize};

use super::records::{self, Pair};
use super::stats::{PairStats, STATS_JSON};
use super::{DocRef, Job, index_of, part, shard_of};
use crate::dataset::manifest::DatasetManifest;
use crate::dataset::text::TextSink;
use crate::dedup::greedy;
use crate::executors::data_attempt::{DataAttempt, dataset_error};
use crate::executors::{AttemptContext, TaskError};

/// The duplicate map.
pub const DUPLICATES: &str = "duplicates.jsonl";
/// Counts and examples for the report.
pub const CLUSTERS_JSON: &str = "clusters.json";

/// Largest clusters shown in the report, and as many more picked at
/// random among the rest.
const EXAMPLES_EACH: usize = 10;
/// Members shown per example, the representative first.
const EXAMPLE_MEMBERS: usize = 6;
/// Largest `stats.json` read.
const STATS_BYTES_MAX: usize = 1 << 20;

/// How many clusters have a size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeCount {
    /// Documents per cluster.
    pub size: u64,
    /// Clusters of that size.
    pub clusters: u64,
}

/// One document of an example cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its reference, for `filter` to find its text.
    pub doc: DocRef,
    /// Its id.
    pub id: String,
    /// Similarity to the representative, when verified directly.
    pub similarity: Option<f32>,
}

/// An example cluster, its representative first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Documents in the cluster.
    pub size: u64,
    /// Some of them.
    pub members: Vec<Member>,
}

/// What `components` found, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clusters {
    /// Documents in the input.
    pub docs: u64,
    /// Clusters of two or more.
    pub clusters: u64,
    /// Documents in them.
    pub docs_in_clusters: u64,
    /// Documents removed (all but each cluster's representative).
    pub removed: u64,
    /// Clusters by size.
    pub sizes: Vec<SizeCount>,
    /// The pair stages' counts.
    pub stats: PairStats,
    /// Example clusters.
    pub examples: Vec<Example>,
}

/// One line of the duplicate map.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Duplicate<'a> {
    id: &'a str,
    representative: &'a str,
    similarity: Option<f32>,
    cluster_size: u64,
}

/// Runs the components task.
pub async fn run(
    task: &LeasedTask,
    job: &Job,
    ctx: &AttemptContext,
    attempt: &DataAttempt,
) -> Result<OutputManifest, TaskError> {
    let stage = job.pairs_stage();
    let ups = attempt.upstream(task, stage, job.partitions).await?;
    let shards = attempt.upstream(task, "signatures", job.shards).await?;
    let mut pairs: Vec<Pair> =
        records::gather(attempt, ctx, &ups, |f| f.starts_with("pairs/")).await?;
    let inputs = records::content_hashes(&ups);
    let mut stats = PairStats::default();
    for u in &ups {
        let s: PairStats = attempt
            .read_json(&u.location, STATS_JSON, STATS_BYTES_MAX)
            .await?;
        stats.add(&s);
    }
    let pairs = super::candidates::distinct(&mut pairs);
    ctx.progress.set(0.2, format!("{} pairs read", pairs.len()));

    // Dense indices over the documents the pairs name, in input order.
    let mut docs: Vec<DocRef> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    docs.sort_unstable();
    docs.dedup();
    let dense = |d: DocRef| docs.binary_search(&d).map(|i| i as u32).unwrap_or(0);
    let mut similarity: rustc_hash::FxHashMap<(DocRef, DocRef), f32> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(pairs.len(), Default::default());
    for p in &pairs {
        similarity.insert((p.a, p.b), p.similarity);
    }
    // Pairs of equal shingle sets (exact duplicates, joined to their
    // group's first, or a similarity of 1) make groups that act as one
    // document; the rest are near pairs.
    let (same, near): (Vec<&Pair>, Vec<&Pair>) = pairs.iter().partition(|p| p.similarity >= 1.0);
    let edges =
        |ps: &[&Pair]| -> Vec<(u32, u32)> { ps.iter().map(|p| (dense(p.a), dense(p.b))).collect() };
    let (same, near) = (edges(&same), edges(&near));

    // Each document's id and keep score.
    let mut ids: Vec<String> = Vec::with_capacity(docs.len());
    let mut scores: Vec<f64> = Vec::with_capacity(docs.len());
    for group in docs.chunk_by(|x, y| shard_of(*x) == shard_of(*y)) {
        attempt.stopped(ctx)?;
        let shard = shard_of(group[0]);
        let s = shards.get(shard as usize).ok_or_else(|| {
            TaskError::permanent(format!("a pair names shard {shard}, which does not exist"))
        })?;
        let indices: Vec<u32> = group.iter().map(|d| index_of(*d)).collect();
        for r in records::read_docs(&s.location, &indices).await? {
            ids.push(r.id);
            scores.push(r.keep);
        }
    }
    ctx.progress
        .set(0.6, format!("{} documents in clusters", docs.len()));

    let rank = keep_ranks(&scores);
    let representative = greedy::representatives(docs.len(), &near, &same, &rank);
    let clusters = clusters_of(&representative);
    let sim = |x: DocRef, y: DocRef| similarity.get(&(x.min(y), x.max(y))).copied();

    // The duplicate map and each shard's removed documents.
    let mut removed: Vec<(u32, u32, u64)> = Vec::new(); // (member, representative, size)
    for c in &clusters {
        for &m in &c[1..] {
            removed.push((m, c[0], c.len() as u64));
        }
    }
    removed.sort_unstable();
    let mut map = TextSink::create(&attempt.output, DUPLICATES);
    for &(m, r, size) in &removed {
        let line = Duplicate {
            id: &ids[m as usize],
            representative: &ids[r as usize],
            similarity: sim(docs[m as usize], docs[r as usize]),
            cluster_size: size,
        };
        serde_json::to_writer(&mut *map.buf(), &line)
            .map_err(|e| TaskError::permanent(format!("{DUPLICATES}: {e}")))?;
        map.buf().push(b'\n');
        map.flush_if_full().await.map_err(dataset_error)?;
    }
    map.count_rows(removed.len() as u64);
    let mut out = vec![map.finish().await.map_err(dataset_error)?];
    let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(m, ..) in &removed {
        let d = docs[m as usize];
        by_shard.entry(shard_of(d)).or_default().push(index_of(d));
    }
    for (shard, indices) in by_shard {
        let rows = indices.len() as u64;
        out.push(
            attempt
                .write_bytes(
                    &part("removed", u64::from(shard)),
                    records::encode(&indices),
                    rows,
                )
                .await?,
        );
    }

    // The report's share.
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for c in &clusters {
        *sizes.entry(c.len() as u64).or_default() += 1;
    }
    let examples = examples(&clusters, &docs, &ids, sim);
    let summary = Clusters {
        docs: shards.iter().map(|s| s.manifest.rows).sum(),
        clusters: clusters.len() as u64,
        docs_in_clusters: clusters.iter().map(|c| c.len() as u64).sum(),
        removed: removed.len() as u64,
        sizes: sizes
            .into_iter()
            .map(|(size, clusters)| SizeCount { size, clusters })
            .collect(),
        stats,
        examples,
    };
    out.push(attempt.write_json(CLUSTERS_JSON, &summary, 0).await?);
    ctx.progress.set(
        1.0,
        format!("{} clusters, {} removed", summary.clusters, summary.removed),
    );
    let fingerprint = attempt.fingerprint(task, &inputs);
    let mut m = DatasetManifest::new(out, Vec::new(), &attempt.writer(task, fingerprint));
    m.rows = summary.removed;
    attempt.commit(task, m).await
}

/// Each document's place in keep order: the highest score first, ties in
/// input order (dense indices follow it).
fn keep_ranks(scores: &[f64]) -> Vec<u32> {
    let mut by_rank: Vec<u32> = (0..scores.len() as u32).collect();
    by_rank.sort_by(|&x, &y| {
        scores[y as usize]
            .total_cmp(&scores[x as usize])
            .then(x.cmp(&y))
    });
    let mut rank = vec![0u32; scores.len()];
    for (i, &d) in by_rank.iter().enumerate() {
        rank[d as usize] = i as u32;
    }
    rank
}

/// Clusters from each document's representative: the representative,
/// then those removed for it in input order.
fn clusters_of(representative: &[Option<u32>]) -> Vec<Vec<u32>> {
    let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (m, r) in representative.iter().enumerate() {
        if let Some(r) = r {
            members.entry(*r).or_default().push(m as u32);
        }
    }
    members
        .into_iter()
        .map(|(r, mut removed)| {
            removed.sort_unstable();
            std::iter::once(r).chain(removed).collect()
        })
        .collect()
}

/// The report's example clusters: the largest, then as many picked by a
/// hash of their representative (a sample that does not favour any input
/// order).
fn examples(
    clusters: &[Vec<u32>],
    docs: &[DocRef],
    ids: &[String],
    sim: impl Fn(DocRef, DocRef) -> Option<f32>,
) -> Vec<Example> {
    let example = |c: &Vec<u32>| Example {
        size: c.len() as u64,
        members: c
            .iter()
            .take(EXAMPLE_MEMBERS)
            .map(|&m| Member {
                doc: docs[m as usize],
                id: ids[m as usize].clone(),
                similarity: (m != c[0])
                    .then(|| sim(docs[m as usize], docs[c[0] as usize]))
                    .flatten(),
            })
            .collect(),
    };
    let mut order: Vec<usize> = (0..clusters.len()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(clusters[i].len()),
            docs[clusters[i][0] as usize],
        )
    });
    let mut examples: Vec<Example> = order
        .iter()
        .take(EXAMPLES_EACH)
        .map(|&i| example(&clusters[i]))
        .collect();
    let mut rest: Vec<usize> = order.iter().skip(EXAMPLES_EACH).copied().collect();
    rest.sort_by_key(|&i| {
        twox_hash::XxHash3_64::oneshot(&docs[clusters[i][0] as usize].to_le_bytes())
    });
    examples.extend(
        rest.iter()
            .take(EXAMPLES_EACH)
            .map(|&i| example(&clusters[i])),
    );
    examples
}

/// The removed-documents file of shard `shard`.
pub fn removed_part(shard: u64) -> String {
    part("removed", shard)
}
