//! Stage 5, per input shard: the shard's byte range read again, in the
//! same order as `signatures` read it, and every document `components`
//! did not remove written out as it came in: JSONL lines byte for byte,
//! Parquet rows with the input's schema. Before reading, the input's files
//! are checked against what `signatures` saw, and after, the document
//! count: if the input changed while the job ran, indices would name
//! other documents, so the task fails rather than write a wrong answer.
//! It also keeps the text of the report's example documents in its range.

use std::collections::BTreeSet;

use arrow_array::BooleanArray;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::components::{CLUSTERS_JSON, Clusters, removed_part};
use super::input::{self, Chunk};
use super::records::{self, truncated};
use super::signatures::{SHARD_JSON, ShardInfo};
use super::{DocRef, Job, doc_ref, index_of, shard_of};
use crate::dataset::manifest::{DatasetManifest, ManifestFile};
use crate::dataset::parquet::{self, ParquetSink, ROW_GROUP_ROWS};
use crate::dataset::text::TextSink;
use crate::executors::data_attempt::{DataAttempt, dataset_error};
use crate::executors::{AttemptContext, TaskError};

/// The example documents' texts found in a shard.
pub const EXAMPLES_JSON: &str = "examples.json";

/// Characters of an example's text kept for the report.
const EXAMPLE_CHARS_MAX: usize = 2000;
/// Largest `clusters.json` or `shard.json` read.
const JSON_BYTES_MAX: usize = 64 << 20;

/// An example document's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleText {
    /// The document.
    pub doc: DocRef,
    /// Its text, cut to a readable length.
    pub text: String,
}

/// The kept records' file of shard `shard`.
pub fn kept_part(shard: u64, format: &str) -> String {
    format!(
        "part-{shard:05}.{}",
        if format == "parquet" {
            "parquet"
        } else {
            "jsonl"
        }
    )
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
    let components = attempt.upstream(task, "components", 1).await?;
    let components = &components[0];
    // Only this shard's signatures output: the others' manifests are not
    // read.
    let signed = attempt
        .upstream_where(task, "signatures", job.shards, |i| i == shard)
        .await?;
    let signed = &signed[0];
    let info: ShardInfo = attempt
        .read_json(&signed.location, SHARD_JSON, JSON_BYTES_MAX)
        .await?;
    let files = input::files(&attempt.input, &job.cfg.format).await?;
    if files != info.inputs {
        return Err(TaskError::permanent(format!(
            "{} changed while the job ran (its files differ from what the signatures stage read); run the job again on a stable input",
            attempt.input.url
        )));
    }
    let docs = usize::try_from(info.docs).unwrap_or(usize::MAX);
    let mut removed = vec![false; docs];
    let name = removed_part(shard);
    if components.has(&name) {
        for i in records::read_all::<u32>(&components.location, &name).await? {
            if let Some(r) = removed.get_mut(i as usize) {
                *r = true;
            }
        }
    }
    let clusters: Clusters = attempt
        .read_json(&components.location, CLUSTERS_JSON, JSON_BYTES_MAX)
        .await?;
    let wanted: BTreeSet<u32> = clusters
        .examples
        .iter()
        .flat_map(|e| &e.members)
        .filter(|m| u64::from(shard_of(m.doc)) == shard)
        .map(|m| index_of(m.doc))
        .collect();

    let kept_name = kept_part(shard, &job.cfg.format);
    let mut jsonl: Option<TextSink> = None;
    let mut table: Option<ParquetSink> = None;
    let mut table_schema = None;
    let mut examples: Vec<ExampleText> = Vec::new();
    let mut at: usize = 0;
    let mut chunks = job.chunks(attempt, &files, shard, true);
    while let Some(chunk) = chunks.next().await {
        attempt.stopped(ctx)?;
        let chunk = chunk?;
        let n = chunk.len();
        if at + n > docs {
            return Err(changed(attempt, info.docs));
        }
        for &i in wanted.range(at as u32..(at + n) as u32) {
            if let Some(doc) = chunk.doc(i as usize - at, &job.fields)? {
                examples.push(ExampleText {
                    doc: doc_ref(shard32, i),
                    text: truncated(&doc.text, EXAMPLE_CHARS_MAX * 4)
                        .chars()
                        .take(EXAMPLE_CHARS_MAX)
                        .collect(),
                });
            }
        }
        let keep = &removed[at..at + n];
        match &chunk {
            Chunk::Lines { lines, .. } => {
                let sink =
                    jsonl.get_or_insert_with(|| TextSink::create(&attempt.output, &kept_name));
                let mut kept = 0;
                for ((_, line), gone) in lines.iter().zip(keep) {
                    if !gone {
                        sink.buf().extend_from_slice(line);
                        sink.buf().push(b'\n');
                        kept += 1;
                    }
                }
                sink.count_rows(kept);
                sink.flush_if_full().await.map_err(dataset_error)?;
            }
            Chunk::Batch { batch, path, .. } => {
                let sink = match &mut table {
                    Some(s) => s,
                    None => table.insert({
                        table_schema = Some(batch.schema());
                        ParquetSink::create(
                            &attempt.output,
                            &kept_name,
                            batch.schema(),
                            ROW_GROUP_ROWS,
                        )
                        .map_err(dataset_error)?
                    }),
                };
                let mask: BooleanArray = keep.iter().map(|gone| Some(!gone)).collect();
                let kept = arrow_select::filter::filter_record_batch(batch, &mask)
                    .map_err(|e| TaskError::permanent(format!("{path}: {e}")))?;
                sink.write(&kept).await.map_err(|e| match e {
                    crate::dataset::DatasetError::Parquet(p) => TaskError::permanent(format!(
                        "{path}: {p} (do the input files share one schema?)"
                    )),
                    other => dataset_error(other),
                })?;
            }
        }
        at += n;
        ctx.progress.set(
            at as f64 / docs.max(1) as f64,
            format!("{at} of {docs} documents filtered"),
        );
    }
    if at != docs {
        return Err(changed(attempt, info.docs));
    }
    let mut out: Vec<ManifestFile> = Vec::new();
    let mut schema = Vec::new();
    if let Some(s) = jsonl {
        out.push(s.finish().await.map_err(dataset_error)?);
    }
    if let Some(s) = table {
        out.push(s.finish().await.map_err(dataset_error)?);
    }
    if let Some(s) = &table_schema {
        schema = parquet::manifest_schema(s);
    }
    out.push(attempt.write_json(EXAMPLES_JSON, &examples, 0).await?);
    let fingerprint = attempt.fingerprint(
        task,
        &[
            signed.manifest.content_hash(),
            components.manifest.content_hash(),
        ],
    );
    let m = DatasetManifest::new(out, schema, &attempt.writer(task, fingerprint));
    attempt.commit(task, m).await
}

fn changed(attempt: &DataAttempt, docs: u64) -> TaskError {
    TaskError::permanent(format!(
        "{}: the shard no longer holds the {docs} documents the signatures stage read; the input changed while the job ran",
        attempt.input.url
    ))
}
