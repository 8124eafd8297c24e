//! `dedup`: exact and MinHash-LSH near-duplicate detection, split into
//! stages that each run as many tasks:
//!
//! 1. [`signatures`], per input shard (a contiguous byte range of the
//!    input): normalise, shingle, hash. Writes each document's record
//!    (shingles, keep score, id), its exact key and its LSH band keys, the
//!    keys cut into `bucketPartitions` parts by key.
//! 2. [`candidates`], per bucket partition: groups one part of every
//!    shard's keys. Equal exact keys are duplicates outright; documents
//!    sharing a band key are candidate pairs, a bucket larger than
//!    `maxBucketSize` sampled so it cannot go quadratic. Pairs are cut into
//!    parts again, by pair, so each pair is checked once.
//! 3. [`verify`] (`minhash` only), per bucket partition: the exact Jaccard
//!    similarity of each candidate pair's shingle sets, fetched from the
//!    shards with ranged reads; pairs at or above `threshold` stay.
//! 4. [`components`], one task: union-find over the pairs, a representative
//!    per cluster by `keep`, the duplicate map, and each shard's removed
//!    documents.
//! 5. [`filter`], per input shard: the shard's range read again, kept
//!    records written as they were (JSONL lines verbatim, Parquet rows with
//!    their schema).
//! 6. [`publish`], one task: the kept records, the duplicate map and the
//!    report gathered into one committed dataset.
//!
//! A document is named between stages by its [`DocRef`]: its shard and
//! its index there, which in that order is its order in the input.

mod candidates;
mod components;
mod filter;
mod input;
mod publish;
mod records;
mod report;
mod signatures;
mod stats;
mod verify;

use drover_jobspecs::kinds::dedup::DedupConfig;
use drover_proto::v1::LeasedTask;

use super::data_attempt::DataAttempt;
use super::{Attempt, AttemptContext, Executor, TaskError, config};
use crate::dedup::minhash::MinHasher;
use crate::dedup::shingle::Unit;

pub use input::{Fields, parse_line};
pub use report::{DedupReport, REPORT_JSON};

/// A document: its signatures shard in the high 32 bits, its index in the
/// shard in the low 32.
pub type DocRef = u64;

/// The reference of document `index` of shard `shard`.
pub fn doc_ref(shard: u32, index: u32) -> DocRef {
    (u64::from(shard) << 32) | u64::from(index)
}

/// The shard of `doc`.
pub fn shard_of(doc: DocRef) -> u32 {
    (doc >> 32) as u32
}

/// The index of `doc` in its shard.
pub fn index_of(doc: DocRef) -> u32 {
    doc as u32
}

/// The seed of the MinHash permutations: one for every task of every job,
/// so signatures agree across tasks and runs.
const MINHASH_SEED: u64 = 0x6472_6f76_6572;

/// The file of partition `p` in directory `dir`.
fn part(dir: &str, p: u64) -> String {
    format!("{dir}/part-{p:05}.bin")
}

/// The `dedup` executor.
#[derive(Debug, Default)]
pub struct Dedup;

impl Executor for Dedup {
    fn kind(&self) -> &'static str {
        "dedup"
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        Box::pin(async move {
            let cfg: DedupConfig = config(&task)?;
            let attempt = DataAttempt::open(&cfg.input, &cfg.output, &task)?;
            let job = Job::new(&cfg)?;
            match task.template.rsplit('/').next() {
                Some("signatures") => signatures::run(&task, &job, &ctx, &attempt).await,
                Some("candidates") => candidates::run(&task, &job, &ctx, &attempt).await,
                Some("verify") => verify::run(&task, &job, &ctx, &attempt).await,
                Some("components") => components::run(&task, &job, &ctx, &attempt).await,
                Some("filter") => filter::run(&task, &job, &ctx, &attempt).await,
                Some("publish") => publish::run(&task, &job, &ctx, &attempt).await,
                _ => Err(TaskError::permanent(format!(
                    "template `{}` is not one of the dedup's stages (signatures, candidates, verify, components, filter, publish)",
                    task.template
                ))),
            }
        })
    }
}

/// The config, with what every stage derives from it.
#[derive(Debug)]
struct Job {
    cfg: DedupConfig,
    fields: Fields,
    unit: Unit,
    minhash: bool,
    shards: u64,
    partitions: u64,
}

impl Job {
    fn new(cfg: &DedupConfig) -> Result<Self, TaskError> {
        let unit = match cfg.shingle.unit.as_str() {
            "word" => Unit::Word,
            "char" => Unit::Char,
            other => {
                return Err(TaskError::permanent(format!(
                    "shingle unit `{other}` is not word or char"
                )));
            }
        };
        if u64::from(cfg.bands) * u64::from(cfg.rows) > u64::from(cfg.num_perm) {
            return Err(TaskError::permanent("bands × rows exceeds numPerm"));
        }
        Ok(Self {
            fields: Fields {
                id: cfg.id_field.clone(),
                text: cfg.text_field.clone(),
                keep: (cfg.keep == "field")
                    .then(|| cfg.keep_field.clone())
                    .flatten(),
            },
            unit,
            minhash: cfg.method == "minhash",
            shards: u64::from(cfg.shards),
            partitions: u64::from(cfg.bucket_partitions),
            cfg: cfg.clone(),
        })
    }

    fn hasher(&self) -> MinHasher {
        MinHasher::new(self.cfg.num_perm as usize, MINHASH_SEED)
            .first((self.cfg.bands * self.cfg.rows) as usize)
    }

    /// The documents of shard `shard`, in input order (see
    /// [`input::chunks`]).
    fn chunks(
        &self,
        attempt: &DataAttempt,
        files: &[input::InputFile],
        shard: u64,
        all_columns: bool,
    ) -> futures::stream::BoxStream<'static, Result<input::Chunk, TaskError>> {
        input::chunks(
            &attempt.input,
            files,
            &self.cfg.format,
            shard,
            self.shards,
            &self.fields,
            all_columns,
        )
    }

    /// The stage whose pairs `components` reads.
    fn pairs_stage(&self) -> &'static str {
        if self.minhash { "verify" } else { "candidates" }
    }
}

/// Files `drover job plan --check-input` reads the first records of.
const CHECKED_FILES_MAX: usize = 100;

/// Checks a dedup's input before it is submitted: its files are found as
/// the job would find them, and the first records of each (up to
/// [`CHECKED_FILES_MAX`]) decode into documents the way the job decodes
/// them.
pub async fn check_input(
    cfg: &DedupConfig,
) -> Result<crate::executors::input_check::InputCheck, TaskError> {
    use futures::StreamExt;

    use crate::dataset::location::Location;
    use crate::executors::data_attempt::dataset_error;
    use crate::executors::input_check::InputCheck;

    let job = Job::new(cfg)?;
    let location = Location::parse(&cfg.input).map_err(dataset_error)?;
    let files = input::files(&location, &cfg.format).await?;
    let listed = crate::dataset::manifest::read(&location)
        .await
        .map_err(dataset_error)?
        .is_none();
    let mut check = InputCheck::new(&cfg.input, !listed);
    for f in &files {
        check.add_file(&cfg.format, f.bytes);
    }
    for f in files.iter().take(CHECKED_FILES_MAX) {
        let one = std::slice::from_ref(f);
        let mut chunks = input::chunks(&location, one, &cfg.format, 0, 1, &job.fields, false);
        let first = match chunks.next().await {
            None => continue,
            Some(chunk) => chunk.and_then(|c| c.docs(&job.fields).map(|d| d.len())),
        };
        check.checked(first.err().map(|e| e.message));
    }
    Ok(check)
}
