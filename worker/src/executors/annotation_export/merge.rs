//! The merge task: finds every shard's accepted output through the
//! manifests the coordinator hands it (never by listing), and writes under
//! its own attempt's prefix the export users read:
//!
//! ```text
//! parquet/labels/project=<p>/part-NNNNN.parquet   (format parquet) one per shard
//! parquet/annotations/part-NNNNN.parquet          (format parquet) one per shard
//! jsonl/<p>.jsonl                                 (format jsonl) one line per item
//! coco/<p>.json                                   (format coco, box projects)
//! quality/report.json, quality/report.html        always
//! _manifest.json                                  written last
//! ```
//!
//! Parquet parts are copied object to object (a server-side copy on S3);
//! JSONL and COCO are streamed a batch at a time, so memory does not grow
//! with the project.

use std::collections::BTreeMap;

use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::labels::{self, LabelRow};
use super::{CODE_VERSION, Export, STATS_NAME, dataset_error, project_dir};
use crate::annotation::report::{ProjectQuality, render_html};
use crate::annotation::stats::{BBOX, ProjectStats};
use crate::dataset::manifest::{DatasetManifest, ManifestFile};
use crate::dataset::parquet::{self, READ_BATCH_ROWS};
use crate::dataset::text::TextSink;
use crate::executors::data_attempt::Upstream;
use crate::executors::{AttemptContext, TaskError};

/// Largest `stats.json` read from a shard.
const STATS_BYTES_MAX: usize = 256 * 1024 * 1024;

/// One shard's committed output.
type ShardOutput = Upstream;

/// The shard's labels file for `project`, if it wrote one.
fn labels_of(shard: &ShardOutput, project: &str) -> Option<String> {
    let rel = format!("labels/project={}/part.parquet", project_dir(project));
    shard
        .manifest
        .files
        .iter()
        .any(|f| f.path == rel)
        .then_some(rel)
}

/// The report as written to `quality/report.json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    /// Layout version of this file.
    format: u32,
    consensus: &'a drover_jobspecs::kinds::annotation_export::Consensus,
    min_annotators: u32,
    shards: u32,
    dropped_fields: &'a [String],
    projects: &'a [ProjectQuality],
}

/// Runs the merge.
pub async fn run(
    task: &LeasedTask,
    cfg: &AnnotationExportConfig,
    ctx: &AttemptContext,
    export: &Export,
) -> Result<OutputManifest, TaskError> {
    let shards = export
        .upstream(task, "shard", u64::from(cfg.shards))
        .await?;
    let mut stats: BTreeMap<String, ProjectStats> = BTreeMap::new();
    for s in &shards {
        let got = export
            .read_small(&s.location, STATS_NAME, STATS_BYTES_MAX)
            .await?;
        let theirs: BTreeMap<String, ProjectStats> = serde_json::from_slice(&got)
            .map_err(|e| TaskError::permanent(format!("shard {}'s {STATS_NAME}: {e}", s.index)))?;
        for (project, st) in theirs {
            stats.entry(project).or_default().merge(&st);
        }
    }
    let mut written: Vec<ManifestFile> = Vec::new();
    let formats = |f: &str| cfg.formats.iter().any(|x| x == f);
    if formats("parquet") {
        for s in &shards {
            export.stopped(ctx)?;
            for f in &s.manifest.files {
                let Some(dest) = parquet_destination(&f.path, s.index) else {
                    continue;
                };
                export
                    .output
                    .store
                    .copy(&s.location.path(&f.path), &export.output.path(&dest))
                    .await
                    .map_err(|e| dataset_error(e.into()))?;
                written.push(ManifestFile {
                    path: dest,
                    ..f.clone()
                });
            }
        }
    }
    let steps = stats.len().max(1) as f64;
    for (n, (project, st)) in stats.iter().enumerate() {
        ctx.progress
            .set(n as f64 / steps, format!("writing project {project}"));
        if formats("jsonl") {
            written.push(jsonl(export, ctx, &shards, project, st).await?);
        }
        if formats("coco") && st.task_type == BBOX {
            written.push(coco(export, ctx, cfg, &shards, project, st).await?);
        }
    }
    let method = |st: &ProjectStats| {
        if st.task_type == BBOX {
            cfg.consensus.boxes.clone()
        } else {
            cfg.consensus.classes.clone()
        }
    };
    let quality: Vec<ProjectQuality> = stats
        .iter()
        .map(|(p, st)| st.quality(p, &method(st)))
        .collect();
    let report = Report {
        format: 1,
        consensus: &cfg.consensus,
        min_annotators: cfg.min_annotators,
        shards: cfg.shards,
        dropped_fields: &cfg.drop_fields,
        projects: &quality,
    };
    written.push(
        export
            .write_json("quality/report.json", &report, quality.len() as u64)
            .await?,
    );
    let html = render_html("Annotation export quality", &quality);
    written.push(
        export
            .write_bytes(
                "quality/report.html",
                html.into_bytes(),
                quality.len() as u64,
            )
            .await?,
    );
    let hashes: Vec<String> = shards.iter().map(|s| s.manifest.content_hash()).collect();
    let fingerprint = export.fingerprint(task, &hashes);
    let m = DatasetManifest::new(
        written,
        parquet::manifest_schema(&labels::schema()),
        &export.writer(task, fingerprint),
    );
    export.commit_and_publish(task, m).await
}

/// Where a shard's Parquet file goes in the export, if it is one.
fn parquet_destination(path: &str, shard: u64) -> Option<String> {
    let part = format!("part-{shard:05}.parquet");
    if let Some(dir) = path
        .strip_prefix("labels/")
        .and_then(|p| p.strip_suffix("/part.parquet"))
    {
        return Some(format!("parquet/labels/{dir}/{part}"));
    }
    (path == "annotations/part.parquet").then(|| format!("parquet/annotations/{part}"))
}

/// Calls `each` with every item's label rows of `project`, shard by shard,
/// and the sink's buffer to append to; the sink uploads after each batch
/// once it has a chunk's worth, so memory stays a batch and a chunk.
async fn for_each_item(
    export: &Export,
    ctx: &AttemptContext,
    shards: &[ShardOutput],
    project: &str,
    sink: &mut TextSink,
    mut each: impl FnMut(&[LabelRow], &mut Vec<u8>) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    for s in shards {
        let Some(rel) = labels_of(s, project) else {
            continue;
        };
        let (_, mut stream) = parquet::read(&s.location, &rel, READ_BATCH_ROWS)
            .await
            .map_err(dataset_error)?;
        let mut pending: Vec<LabelRow> = Vec::new();
        while let Some(batch) = stream.next().await {
            export.stopped(ctx)?;
            let rows = labels::rows(&batch.map_err(dataset_error)?)
                .map_err(|e| TaskError::permanent(e.to_string()))?;
            for row in rows {
                if pending.first().is_some_and(|p| p.item_id != row.item_id) {
                    each(&pending, sink.buf())?;
                    pending.clear();
                }
                pending.push(row);
            }
            sink.flush_if_full().await.map_err(dataset_error)?;
        }
        if !pending.is_empty() {
            each(&pending, sink.buf())?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonImage {
    width: i32,
    height: i32,
}

#[derive(Serialize)]
struct JsonVote<'a> {
    annotator: &'a str,
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    label: &'a str,
    confidence: Option<f64>,
    support: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 4]>,
    votes: Vec<JsonVote<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonItem<'a> {
    project: &'a str,
    task_type: &'a str,
    item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<JsonImage>,
    annotators: i32,
    labels: Vec<JsonLabel<'a>>,
}

/// `jsonl/<p>.jsonl`: one line per exported item.
async fn jsonl(
    export: &Export,
    ctx: &AttemptContext,
    shards: &[ShardOutput],
    project: &str,
    st: &ProjectStats,
) -> Result<ManifestFile, TaskError> {
    let rel = format!("jsonl/{}.jsonl", project_dir(project));
    let mut sink = TextSink::create(&export.output, &rel);
    let mut count = 0u64;
    for_each_item(export, ctx, shards, project, &mut sink, |rows, buf| {
        let first = &rows[0];
        let item = JsonItem {
            project,
            task_type: &st.task_type,
            item_id: &first.item_id,
            image: first
                .width
                .zip(first.height)
                .map(|(width, height)| JsonImage { width, height }),
            annotators: first.annotators,
            labels: rows
                .iter()
                .filter_map(|r| {
                    r.label.as_deref().map(|label| JsonLabel {
                        label,
                        confidence: r.confidence,
                        support: r.support,
                        bbox: r.bbox,
                        votes: r
                            .votes
                            .iter()
                            .map(|(a, l)| JsonVote {
                                annotator: a,
                                label: l.as_deref(),
                            })
                            .collect(),
                    })
                })
                .collect(),
        };
        serde_json::to_writer(&mut *buf, &item).map_err(|e| TaskError::permanent(e.to_string()))?;
        buf.push(b'\n');
        count += 1;
        Ok(())
    })
    .await?;
    sink.count_rows(count);
    sink.finish().await.map_err(dataset_error)
}

/// `coco/<p>.json`: images, fused boxes and categories in COCO's object
/// detection format, images numbered from 1 in export order.
async fn coco(
    export: &Export,
    ctx: &AttemptContext,
    cfg: &AnnotationExportConfig,
    shards: &[ShardOutput],
    project: &str,
    st: &ProjectStats,
) -> Result<ManifestFile, TaskError> {
    let categories: Vec<String> = if cfg.labels.is_empty() {
        st.seen_labels.iter().cloned().collect()
    } else {
        cfg.labels.clone()
    };
    let category_id: BTreeMap<&str, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i + 1))
        .collect();
    let rel = format!("coco/{}.json", project_dir(project));
    let mut sink = TextSink::create(&export.output, &rel);
    let encode = |buf: &mut Vec<u8>, v: &serde_json::Value| {
        serde_json::to_writer(buf, v).map_err(|e| TaskError::permanent(e.to_string()))
    };
    let info = serde_json::json!({
        "description": format!(
            "{project}: consensus boxes ({}, IoU {})",
            cfg.consensus.boxes, cfg.consensus.iou_threshold
        ),
        "version": CODE_VERSION,
        "contributor": "drover annotation_export",
    });
    let cats: Vec<serde_json::Value> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"id": i + 1, "name": c, "supercategory": "object"}))
        .collect();
    sink.buf().extend_from_slice(b"{\"info\":");
    encode(sink.buf(), &info)?;
    sink.buf()
        .extend_from_slice(b",\"licenses\":[],\"categories\":");
    encode(sink.buf(), &serde_json::Value::Array(cats))?;
    sink.buf().extend_from_slice(b",\"images\":[");
    // Pass one: the images.
    let mut image_id = 0u64;
    for_each_item(export, ctx, shards, project, &mut sink, |rows, buf| {
        image_id += 1;
        if image_id > 1 {
            buf.push(b',');
        }
        let r = &rows[0];
        encode(
            buf,
            &serde_json::json!({
                "id": image_id,
                "file_name": r.item_id,
                "width": r.width.unwrap_or(0),
                "height": r.height.unwrap_or(0),
            }),
        )
    })
    .await?;
    sink.buf().extend_from_slice(b"],\"annotations\":[");
    // Pass two: the boxes, numbering the images the same way.
    let mut image_id = 0u64;
    let mut annotation_id = 0u64;
    for_each_item(export, ctx, shards, project, &mut sink, |rows, buf| {
        image_id += 1;
        for r in rows {
            let (Some(label), Some([x, y, w, h])) = (r.label.as_deref(), r.bbox) else {
                continue;
            };
            let Some(category) = category_id.get(label) else {
                continue;
            };
            annotation_id += 1;
            if annotation_id > 1 {
                buf.push(b',');
            }
            encode(
                buf,
                &serde_json::json!({
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "score": r.confidence,
                    "num_annotators": r.support,
                }),
            )?;
        }
        Ok(())
    })
    .await?;
    sink.buf().extend_from_slice(b"]}\n");
    sink.count_rows(annotation_id);
    sink.finish().await.map_err(dataset_error)
}
