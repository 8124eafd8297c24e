//! Stage 6, one task: the dedup's result as one committed dataset under
//! this attempt's prefix. The filter shards' kept records are copied in
//! object to object (a server-side copy on S3, a hard link on a local
//! disk), with the duplicate map and the report beside them:
//!
//! ```text
//! _manifest.json
//! part-SSSSS.jsonl | part-SSSSS.parquet    the kept records, in input order
//! _dedup/duplicates.jsonl                  removed id -> representative id
//! _dedup/report.json, _dedup/report.html   clusters, sizes, examples
//! ```
//!
//! `_`-prefixed paths are metadata to a reader of the data, a dedup
//! included, so the output can be the input of another job as it is.

use std::collections::HashMap;

use drover_proto::v1::{LeasedTask, OutputManifest};
use object_store::ObjectStoreExt;

use super::components::{CLUSTERS_JSON, Clusters, DUPLICATES};
use super::filter::{EXAMPLES_JSON, ExampleText};
use super::report::{self, DedupReport};
use super::{DocRef, Job};
use crate::dataset::manifest::{DatasetManifest, ManifestFile};
use crate::executors::data_attempt::{DataAttempt, Upstream, dataset_error};
use crate::executors::{AttemptContext, TaskError};

/// Largest JSON file read from an upstream task.
const JSON_BYTES_MAX: usize = 64 << 20;

/// Runs the publish task.
pub async fn run(
    task: &LeasedTask,
    job: &Job,
    ctx: &AttemptContext,
    attempt: &DataAttempt,
) -> Result<OutputManifest, TaskError> {
    let filters = attempt.upstream(task, "filter", job.shards).await?;
    let components = attempt.upstream(task, "components", 1).await?;
    let components = &components[0];
    let mut out: Vec<ManifestFile> = Vec::new();
    let mut schema = Vec::new();
    let mut texts: HashMap<DocRef, String> = HashMap::new();
    let mut kept: u64 = 0;
    let mut inputs = Vec::new();
    for f in &filters {
        attempt.stopped(ctx)?;
        inputs.push(f.manifest.content_hash());
        for file in f
            .manifest
            .files
            .iter()
            .filter(|x| x.path.starts_with("part-"))
        {
            copy(attempt, f, &file.path, &file.path).await?;
            kept += file.rows;
            out.push(file.clone());
        }
        if schema.is_empty() {
            schema = f.manifest.schema.clone();
        }
        let examples: Vec<ExampleText> = attempt
            .read_json(&f.location, EXAMPLES_JSON, JSON_BYTES_MAX)
            .await?;
        texts.extend(examples.into_iter().map(|e| (e.doc, e.text)));
        ctx.progress.set(
            f.index as f64 / filters.len() as f64 * 0.8,
            format!("{} of {} shards gathered", f.index + 1, filters.len()),
        );
    }
    inputs.push(components.manifest.content_hash());
    let map = components
        .manifest
        .files
        .iter()
        .find(|f| f.path == DUPLICATES)
        .ok_or_else(|| {
            TaskError::permanent(format!("the components output has no {DUPLICATES}"))
        })?;
    let map_path = format!("{}/duplicates.jsonl", report::DIR);
    copy(attempt, components, DUPLICATES, &map_path).await?;
    out.push(ManifestFile {
        path: map_path,
        ..map.clone()
    });

    let clusters: Clusters = attempt
        .read_json(&components.location, CLUSTERS_JSON, JSON_BYTES_MAX)
        .await?;
    let report = DedupReport::new(&job.cfg, &clusters, kept, &texts);
    out.push(attempt.write_json(report::REPORT_JSON, &report, 0).await?);
    out.push(
        attempt
            .write_bytes(
                report::REPORT_HTML,
                report::render_html(&report).into_bytes(),
                0,
            )
            .await?,
    );
    ctx.progress
        .set(1.0, format!("{kept} kept, {} removed", clusters.removed));
    let fingerprint = attempt.fingerprint(task, &inputs);
    let mut m = DatasetManifest::new(out, schema, &attempt.writer(task, fingerprint));
    // The dataset's rows are its records; the map and report are beside
    // them.
    m.rows = kept;
    attempt.commit_and_publish(task, m).await
}

async fn copy(
    attempt: &DataAttempt,
    from: &Upstream,
    path: &str,
    to: &str,
) -> Result<(), TaskError> {
    attempt
        .output
        .store
        .copy(&from.location.path(path), &attempt.output.path(to))
        .await
        .map_err(|e| dataset_error(e.into()))
}
