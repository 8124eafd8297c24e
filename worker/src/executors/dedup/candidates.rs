//! Stage 2, per bucket partition: one part of every shard's keys,
//! grouped. Documents with one exact key are joined to the group's first
//! (similarity 1, nothing to verify). Documents sharing a band key become
//! candidate pairs; a bucket larger than `maxBucketSize` keeps all pairs
//! among a sample of that many members, chosen by a hash of the document
//! so every run samples alike, and joins each other member to the bucket's
//! best document by `keep` (the one `components` keeps first, so the
//! others can be removed for it), so a hot bucket costs
//! `maxBucketSize²/2 + n` pairs, not `n²/2`. Pairs are cut into parts by a hash of the pair and each part
//! written sorted and distinct, so a pair found in several bands is
//! verified once.

use std::collections::HashMap;

use drover_proto::v1::{LeasedTask, OutputManifest};

use super::records::{self, BandEntry, ExactEntry, Pair};
use super::stats::{PairStats, STATS_JSON};
use super::{DocRef, Job, index_of, part, shard_of};
use crate::dataset::manifest::DatasetManifest;
use crate::executors::data_attempt::{DataAttempt, Upstream};
use crate::executors::{AttemptContext, TaskError};

/// The keep scores of the documents in buckets larger than `cap`, read
/// from their signatures records (few: hot buckets are rare), so each such
/// bucket's members can join the one `keep` prefers.
async fn hot_scores(
    bands: &[BandEntry],
    cap: usize,
    shards: &[Upstream],
) -> Result<HashMap<DocRef, f64>, TaskError> {
    let mut hot: Vec<DocRef> = bands
        .chunk_by(|x, y| x.key == y.key)
        .filter(|g| g.len() > cap)
        .flat_map(|g| g.iter().map(|e| e.doc))
        .collect();
    hot.sort_unstable();
    hot.dedup();
    let mut scores = HashMap::with_capacity(hot.len());
    for group in hot.chunk_by(|x, y| shard_of(*x) == shard_of(*y)) {
        let shard = shard_of(group[0]);
        let s = shards.get(shard as usize).ok_or_else(|| {
            TaskError::permanent(format!(
                "a band key names shard {shard}, which does not exist"
            ))
        })?;
        let indices: Vec<u32> = group.iter().map(|d| index_of(*d)).collect();
        for (d, r) in group
            .iter()
            .zip(records::read_docs(&s.location, &indices).await?)
        {
            scores.insert(*d, r.keep);
        }
    }
    Ok(scores)
}

/// Runs one bucket partition.
pub async fn run(
    task: &LeasedTask,
    job: &Job,
    ctx: &AttemptContext,
    attempt: &DataAttempt,
) -> Result<OutputManifest, TaskError> {
    let p = task.partition_index;
    let shards = attempt.upstream(task, "signatures", job.shards).await?;
    let (exact_name, band_name) = (part("exact", p), part("bands", p));
    let mut exact: Vec<ExactEntry> =
        records::gather(attempt, ctx, &shards, |f| f == exact_name).await?;
    let mut bands: Vec<BandEntry> =
        records::gather(attempt, ctx, &shards, |f| f == band_name).await?;
    let inputs = records::content_hashes(&shards);
    ctx.progress
        .set(0.3, format!("{} keys read", exact.len() + bands.len()));
    let mut stats = PairStats::default();
    let mut pairs: Vec<Vec<Pair>> = vec![Vec::new(); job.partitions as usize];
    let mut emit = |pair: Pair| {
        let q = pair_partition(&pair, job.partitions);
        pairs[q].push(pair);
    };

    exact.sort_unstable();
    for group in exact
        .chunk_by(|x, y| x.key == y.key)
        .filter(|g| g.len() > 1)
    {
        stats.exact_groups += 1;
        stats.exact_pairs += (group.len() - 1) as u64;
        for other in &group[1..] {
            emit(Pair::new(group[0].doc, other.doc, 1.0));
        }
    }
    drop(exact);

    // By key alone, which is cheaper than by (key, document): a bucket's
    // few documents are put in order afterwards, so every run emits alike.
    bands.sort_unstable_by_key(|e| e.key);
    let cap = job.cfg.max_bucket_size as usize;
    let scores = hot_scores(&bands, cap, &shards).await?;
    for group in bands
        .chunk_by(|x, y| x.key == y.key)
        .filter(|g| g.len() > 1)
    {
        stats.shared_buckets += 1;
        let mut docs: Vec<DocRef> = group.iter().map(|e| e.doc).collect();
        docs.sort_unstable();
        if docs.len() > cap {
            stats.hot_buckets += 1;
            stats.hot_bucket_docs += (docs.len() - cap) as u64;
            // The hub: the highest keep score, ties to the earliest.
            let score = |d: &DocRef| scores.get(d).copied().unwrap_or(f64::NEG_INFINITY);
            let hub = docs
                .iter()
                .copied()
                .min_by(|x, y| score(y).total_cmp(&score(x)).then(x.cmp(y)))
                .unwrap_or(docs[0]);
            docs.sort_by_key(|d| {
                (
                    *d != hub,
                    twox_hash::XxHash3_64::oneshot(&d.to_le_bytes()),
                    *d,
                )
            });
            for &d in &docs[cap..] {
                emit(Pair::new(hub, d, Pair::UNKNOWN));
            }
            docs.truncate(cap);
        }
        for (i, &a) in docs.iter().enumerate() {
            for &b in &docs[i + 1..] {
                emit(Pair::new(a, b, Pair::UNKNOWN));
            }
        }
    }
    drop(bands);

    let mut out = Vec::new();
    for (q, mut list) in pairs.into_iter().enumerate() {
        attempt.stopped(ctx)?;
        if list.is_empty() {
            continue;
        }
        let list = distinct(&mut list);
        stats.candidate_pairs += list.iter().filter(|p| p.similarity < 0.0).count() as u64;
        let rows = list.len() as u64;
        out.push(
            attempt
                .write_bytes(&part("pairs", q as u64), records::encode(&list), rows)
                .await?,
        );
    }
    out.push(attempt.write_json(STATS_JSON, &stats, 0).await?);
    ctx.progress
        .set(1.0, format!("{} candidate pairs", stats.candidate_pairs));
    let fingerprint = attempt.fingerprint(task, &inputs);
    let m = DatasetManifest::new(out, Vec::new(), &attempt.writer(task, fingerprint));
    attempt.commit(task, m).await
}

/// The verify partition a pair goes to.
fn pair_partition(pair: &Pair, partitions: u64) -> usize {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&pair.a.to_le_bytes());
    bytes[8..].copy_from_slice(&pair.b.to_le_bytes());
    (twox_hash::XxHash3_64::oneshot(&bytes) % partitions.max(1)) as usize
}

/// `pairs` sorted and distinct; of two records of one pair the one with
/// the known (higher) similarity stays.
pub fn distinct(pairs: &mut [Pair]) -> Vec<Pair> {
    pairs.sort_unstable_by(|x, y| {
        (x.a, x.b)
            .cmp(&(y.a, y.b))
            .then(y.similarity.total_cmp(&x.similarity))
    });
    let mut out: Vec<Pair> = Vec::with_capacity(pairs.len());
    for p in pairs.iter() {
        if out.last().is_none_or(|l| (l.a, l.b) != (p.a, p.b)) {
            out.push(*p);
        }
    }
    out
}
