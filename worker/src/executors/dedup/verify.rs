//! Stage 3 (`minhash` only), per bucket partition: the candidate pairs
//! the candidates tasks cut to this partition, each checked by the exact
//! Jaccard similarity of the two documents' shingle sets. The sets come
//! from the signatures shards' document records, only those this
//! partition's pairs name, with ranged reads. A pair at or above
//! `threshold` stays, with its similarity. Exact pairs pass as they are.
//!
//! Checking the shingle sets rather than estimating from the signatures
//! means no pair below the threshold is kept (precision is exact for the
//! chosen shingling) and none above it is lost to the estimate's noise;
//! LSH's own miss rate is all that is left of the approximation.

use std::collections::{BTreeMap, HashMap};

use drover_proto::v1::{LeasedTask, OutputManifest};

use super::candidates::distinct;
use super::records::{self, Pair};
use super::stats::{PairStats, STATS_JSON};
use super::{Job, index_of, part, shard_of};
use crate::dataset::manifest::DatasetManifest;
use crate::dedup::shingle::{as_set, jaccard};
use crate::executors::data_attempt::DataAttempt;
use crate::executors::{AttemptContext, TaskError};

/// The verified pairs of a partition.
pub const VERIFIED: &str = "pairs/verified.bin";

/// Largest `stats.json` read.
const STATS_BYTES_MAX: usize = 1 << 20;

/// Runs one partition.
pub async fn run(
    task: &LeasedTask,
    job: &Job,
    ctx: &AttemptContext,
    attempt: &DataAttempt,
) -> Result<OutputManifest, TaskError> {
    let q = task.partition_index;
    let candidates = attempt.upstream(task, "candidates", job.partitions).await?;
    let shards = attempt.upstream(task, "signatures", job.shards).await?;
    let name = part("pairs", q);
    let mut pairs: Vec<Pair> = records::gather(attempt, ctx, &candidates, |f| f == name).await?;
    let inputs = records::content_hashes(&candidates);
    let pairs = distinct(&mut pairs);
    // The candidates task of the same index passes its counts on through
    // this one, so each is counted once.
    let mut stats: PairStats = attempt
        .read_json(
            &candidates[q as usize].location,
            STATS_JSON,
            STATS_BYTES_MAX,
        )
        .await?;

    // The documents to fetch, by shard.
    let mut wanted: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in pairs.iter().filter(|p| p.similarity < 0.0) {
        for d in [p.a, p.b] {
            wanted.entry(shard_of(d)).or_default().push(index_of(d));
        }
    }
    let mut shingles: HashMap<u64, Vec<u32>> = HashMap::new();
    for (shard, mut indices) in wanted {
        attempt.stopped(ctx)?;
        let s = shards.get(shard as usize).ok_or_else(|| {
            TaskError::permanent(format!("a pair names shard {shard}, which does not exist"))
        })?;
        indices.sort_unstable();
        indices.dedup();
        let docs = records::read_docs(&s.location, &indices).await?;
        for (i, mut d) in indices.into_iter().zip(docs) {
            as_set(&mut d.shingles);
            shingles.insert(super::doc_ref(shard, i), d.shingles);
        }
    }
    ctx.progress
        .set(0.5, format!("{} pairs to verify", pairs.len()));

    let mut kept: Vec<Pair> = Vec::with_capacity(pairs.len());
    for p in pairs {
        if p.similarity >= 0.0 {
            kept.push(p);
            continue;
        }
        let (Some(a), Some(b)) = (shingles.get(&p.a), shingles.get(&p.b)) else {
            continue;
        };
        let s = jaccard(a, b);
        stats.verified_pairs += 1;
        stats.count_similarity(s);
        if s >= job.cfg.threshold {
            stats.similar_pairs += 1;
            kept.push(Pair {
                similarity: s as f32,
                ..p
            });
        }
    }
    let out = vec![
        attempt
            .write_bytes(VERIFIED, records::encode(&kept), kept.len() as u64)
            .await?,
        attempt.write_json(STATS_JSON, &stats, 0).await?,
    ];
    ctx.progress.set(1.0, format!("{} pairs kept", kept.len()));
    let fingerprint = attempt.fingerprint(task, &inputs);
    let m = DatasetManifest::new(out, Vec::new(), &attempt.writer(task, fingerprint));
    attempt.commit(task, m).await
}
