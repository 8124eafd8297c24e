//! Stage 1, per input shard: every document of the shard's byte range is
//! normalised, shingled and hashed. Outputs:
//!
//! - `docs.bin` and `docs.idx`: each document's record (shingles, keep
//!   score, id), in input order;
//! - `exact/part-P.bin`: (exact key, document) for every document;
//! - `bands/part-P.bin` (`minhash` only): (band key, document) for each
//!   band of each document, except a document whose exact key an earlier
//!   document of the shard has: exact copies meet through their exact key
//!   and would only crowd the LSH buckets;
//! - `shard.json`: the input files as seen and the document count, which
//!   `filter` checks before reading the range again.

use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::input::{self, InputFile};
use super::records::{self, BandEntry, DocRecord, ExactEntry, Fixed};
use super::{Job, doc_ref, part};
use crate::dataset::manifest::{DatasetManifest, ManifestFile};
use crate::dataset::text::TextSink;
use crate::dedup::lsh::band_keys_into;
use crate::dedup::minhash::MinHasher;
use crate::dedup::normalize::{exact_key, normalize_into};
use crate::dedup::shingle::{Unit, shingles_into};
use crate::executors::data_attempt::{DataAttempt, dataset_error};
use crate::executors::{AttemptContext, TaskError};

/// What a shard saw.
pub const SHARD_JSON: &str = "shard.json";

/// What a shard saw, for the stages after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardInfo {
    /// The shard.
    pub shard: u64,
    /// Documents in it.
    pub docs: u64,
    /// The input's files when it read them.
    pub inputs: Vec<InputFile>,
}

/// The score `keep` ranks a document by.
pub fn keep_score(policy: &str, text: &str, field: Option<f64>) -> f64 {
    match policy {
        "longest" => text.chars().count() as f64,
        "field" => field.unwrap_or(f64::NEG_INFINITY),
        _ => 0.0,
    }
}

/// Runs one shard.
pub async fn run(
    task: &LeasedTask,
    job: &Job,
    ctx: &AttemptContext,
    attempt: &DataAttempt,
) -> Result<OutputManifest, TaskError> {
    let shard = task.partition_index;
    let shard32 = u32::try_from(shard).map_err(|_| TaskError::permanent("shard out of range"))?;
    let files = input::files(&attempt.input, &job.cfg.format).await?;
    let total_bytes: u64 = files.iter().map(|f| f.bytes).sum();
    let mut signer = Signer::new(job);
    let parts = job.partitions;

    let mut docs = TextSink::create(&attempt.output, records::DOCS);
    let mut offsets: Vec<u64> = vec![0];
    let mut band_parts: Vec<Vec<u8>> = vec![Vec::new(); parts as usize];
    let mut exact_parts: Vec<Vec<u8>> = vec![Vec::new(); parts as usize];
    // Exact keys are already hashes: their low half is a good table hash.
    let mut seen: rustc_hash::FxHashSet<u128> = Default::default();
    let mut written: u64 = 0;
    let mut chunks = job.chunks(attempt, &files, shard, false);
    while let Some(chunk) = chunks.next().await {
        attempt.stopped(ctx)?;
        let chunk = chunk?;
        for doc in chunk.docs(&job.fields)? {
            let index = u32::try_from(offsets.len() - 1).map_err(|_| {
                TaskError::permanent("a shard holds more than 2^32 documents; use more shards")
            })?;
            let doc_id = doc_ref(shard32, index);
            let key = signer.read(&doc.text);
            let score = keep_score(&job.cfg.keep, &doc.text, doc.keep);
            ExactEntry { key, doc: doc_id }.put(&mut exact_parts[(key as u64 % parts) as usize]);
            if job.minhash && seen.insert(key) {
                for &k in signer.band_keys() {
                    BandEntry {
                        key: k,
                        doc: doc_id,
                    }
                    .put(&mut band_parts[(k % parts) as usize]);
                }
            }
            let buf = docs.buf();
            let before = buf.len();
            DocRecord::put(&signer.shingles, score, &doc.id, buf);
            written += (buf.len() - before) as u64;
            offsets.push(written);
        }
        docs.count_rows(chunk.len() as u64);
        docs.flush_if_full().await.map_err(dataset_error)?;
        ctx.progress.set(
            0.0,
            format!("{} documents of shard {shard} read", offsets.len() - 1),
        );
    }
    let count = (offsets.len() - 1) as u64;
    let mut out: Vec<ManifestFile> = vec![docs.finish().await.map_err(dataset_error)?];
    out.push(
        attempt
            .write_bytes(records::DOCS_INDEX, records::encode(&offsets), count)
            .await?,
    );
    for (p, bytes) in exact_parts.into_iter().enumerate() {
        if !bytes.is_empty() {
            let rows = (bytes.len() / ExactEntry::SIZE) as u64;
            out.push(
                attempt
                    .write_bytes(&part("exact", p as u64), bytes, rows)
                    .await?,
            );
        }
    }
    for (p, bytes) in band_parts.into_iter().enumerate() {
        if !bytes.is_empty() {
            let rows = (bytes.len() / BandEntry::SIZE) as u64;
            out.push(
                attempt
                    .write_bytes(&part("bands", p as u64), bytes, rows)
                    .await?,
            );
        }
    }
    let info = ShardInfo {
        shard,
        docs: count,
        inputs: files.clone(),
    };
    out.push(attempt.write_json(SHARD_JSON, &info, 0).await?);
    ctx.progress.set(1.0, format!("{count} documents signed"));
    let fingerprint = attempt.fingerprint(task, &input_names(&files, total_bytes));
    let mut m = DatasetManifest::new(out, Vec::new(), &attempt.writer(task, fingerprint));
    m.rows = count;
    attempt.commit(task, m).await
}

/// One document at a time: its normal form, exact key, shingles and band
/// keys, in buffers kept from one document to the next.
struct Signer {
    hasher: MinHasher,
    unit: Unit,
    size: usize,
    bands: usize,
    rows: usize,
    normalized: Vec<u8>,
    shingles: Vec<u32>,
    signature: Vec<u32>,
    band_bytes: Vec<u8>,
    keys: Vec<u64>,
}

impl Signer {
    fn new(job: &Job) -> Self {
        Self {
            hasher: job.hasher(),
            unit: job.unit,
            size: job.cfg.shingle.size as usize,
            bands: job.cfg.bands as usize,
            rows: job.cfg.rows as usize,
            normalized: Vec::new(),
            shingles: Vec::new(),
            signature: Vec::new(),
            band_bytes: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Normalises and shingles `text` (into `self.shingles`); its exact key.
    fn read(&mut self, text: &str) -> u128 {
        normalize_into(text, &mut self.normalized);
        shingles_into(&self.normalized, self.unit, self.size, &mut self.shingles);
        exact_key(&self.normalized)
    }

    /// The LSH band keys of the text last read.
    fn band_keys(&mut self) -> &[u64] {
        self.hasher
            .signature_into(&self.shingles, &mut self.signature);
        band_keys_into(
            &self.signature,
            self.bands,
            self.rows,
            &mut self.band_bytes,
            &mut self.keys,
        );
        &self.keys
    }
}

/// What the input fingerprint folds in: each file's path and hash (or
/// size, for a listed file).
fn input_names(files: &[InputFile], total: u64) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f.path,
                f.sha256.clone().unwrap_or_else(|| f.bytes.to_string())
            )
        })
        .collect();
    names.push(total.to_string());
    names
}
