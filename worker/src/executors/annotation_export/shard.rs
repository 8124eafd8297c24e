//! A shard task: reads the annotations of the items it owns (by
//! [`input::shard_of`]), computes their consensus and the project's quality
//! sums, and writes under its attempt's prefix:
//!
//! ```text
//! labels/project=<p>/part.parquet   consensus labels (see `labels`)
//! annotations/part.parquet          the input rows of exported items, minus
//!                                   `dropFields`, annotator ids pseudonymised
//! stats.json                        per project, the sums of `ProjectStats`
//! _manifest.json                    written last
//! ```
//!
//! Classification items are labelled with the project's model from the
//! calibrate task when there is one (Dawid-Skene), so all shards agree on
//! how good each annotator is. It reads its input twice: once for the
//! votes, and once to pass the rows of exported items through. Memory is
//! its share of the votes; more shards, less each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};
use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use futures::StreamExt;

use super::calibrate::{self, ProjectModel};
use super::input::Filters;
use super::labels::{self, LabelRow};
use super::votes::{Gathered, ProjectVotes, class_votes, gather, wanted_files};
use super::{Export, STATS_NAME, dataset_error, project_dir};
use crate::annotation::boxes::{BoxXywh, DrawnBox, fuse};
use crate::annotation::consensus::{classify_with, dawid_skene, majority};
use crate::annotation::pseudonym::Pseudonymiser;
use crate::annotation::stats::{BBOX, CLASSIFICATION, ProjectStats};
use crate::dataset::manifest::{DatasetManifest, ManifestFile};
use crate::dataset::parquet::{self, ParquetSink, READ_BATCH_ROWS, ROW_GROUP_ROWS};
use crate::executors::{AttemptContext, TaskError};

/// One project's consensus.
struct ProjectResult {
    task_type: String,
    rows: Vec<LabelRow>,
    stats: ProjectStats,
    exported: Vec<String>,
}

fn classification(
    g: &Gathered,
    votes: &ProjectVotes,
    cfg: &AnnotationExportConfig,
    model: Option<&ProjectModel>,
) -> ProjectResult {
    let mut stats = ProjectStats::new(CLASSIFICATION);
    let cv = class_votes(g, votes, cfg, model.map(|m| m.classes.as_slice()));
    stats.items = cv.items;
    stats.excluded_items = cv.excluded;
    let v = &cv.votes;
    let shares = |labels: &[Option<u32>]| -> Vec<Option<f64>> {
        let counts = v.class_counts();
        labels
            .iter()
            .zip(&counts)
            .map(|(l, c)| {
                let n: u32 = c.iter().sum();
                l.map(|l| f64::from(c[l as usize]) / f64::from(n.max(1)))
            })
            .collect()
    };
    let (labels, confidence): (Vec<Option<u32>>, Vec<Option<f64>>) =
        match (cfg.consensus.classes.as_str(), model) {
            ("majority", _) => {
                let labels = majority(v);
                let conf = shares(&labels);
                (labels, conf)
            }
            (_, Some(model)) => {
                // The project's model, learnt on a sample of all shards'
                // items; an item none of whose annotators it knows falls
                // back to majority.
                let confusion: Vec<Option<Vec<Vec<f64>>>> = (0..v.annotators)
                    .map(|a| {
                        cv.pseudonym(g, a)
                            .and_then(|name| model.annotators.get(name).cloned())
                    })
                    .collect();
                let (posteriors, labels) = classify_with(v, &model.priors, &confusion);
                let fallback = majority(v);
                let fallback_conf = shares(&fallback);
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| match l {
                        Some(l) => (Some(*l), Some(posteriors[i][*l as usize])),
                        None => (fallback[i], fallback_conf[i]),
                    })
                    .unzip()
            }
            (_, None) => {
                let ds = dawid_skene(v);
                let conf = ds
                    .labels
                    .iter()
                    .zip(&ds.posteriors)
                    .map(|(l, p)| l.map(|l| p[l as usize]))
                    .collect();
                (ds.labels, conf)
            }
        };
    let mut rows = Vec::with_capacity(cv.kept.len());
    let mut exported = Vec::with_capacity(cv.kept.len());
    for (i, (id, item, answers)) in cv.kept.iter().enumerate() {
        let label = labels[i].map(|c| g.labels[cv.classes[c as usize] as usize].clone());
        let named: Vec<(&str, &str)> = answers
            .iter()
            .map(|(a, l)| {
                (
                    g.annotators[*a as usize].as_str(),
                    g.labels[*l as usize].as_str(),
                )
            })
            .collect();
        stats.add_classification(&named, label.as_deref());
        let support = named
            .iter()
            .filter(|(_, l)| Some(*l) == label.as_deref())
            .count();
        rows.push(LabelRow {
            item_id: (*id).clone(),
            width: item.width,
            height: item.height,
            confidence: confidence[i],
            label,
            bbox: None,
            annotators: answers.len() as i32,
            support: support as i32,
            votes: named
                .iter()
                .map(|(a, l)| ((*a).to_owned(), Some((*l).to_owned())))
                .collect(),
        });
        exported.push((*id).clone());
    }
    ProjectResult {
        task_type: CLASSIFICATION.to_owned(),
        rows,
        stats,
        exported,
    }
}

fn boxes(g: &Gathered, votes: &ProjectVotes, cfg: &AnnotationExportConfig) -> ProjectResult {
    let mut stats = ProjectStats::new(BBOX);
    let mut ids: Vec<&String> = votes.items.keys().collect();
    ids.sort_unstable();
    stats.items = ids.len() as u64;
    let mut rows = Vec::new();
    let mut exported = Vec::new();
    for id in ids {
        let item = &votes.items[id];
        let mut annotators: Vec<u32> = item.votes.iter().map(|v| v.annotator).collect();
        annotators.sort_unstable();
        annotators.dedup();
        if annotators.len() < cfg.min_annotators as usize {
            stats.excluded_items += 1;
            continue;
        }
        let n = annotators.len();
        // An object must be drawn by a majority of the image's annotators.
        let needed = n / 2 + 1;
        let mut by_category: BTreeMap<&str, Vec<DrawnBox>> = BTreeMap::new();
        for v in &item.votes {
            if let (Some(l), Some([x, y, w, h])) = (v.label, v.bbox) {
                by_category
                    .entry(g.labels[l as usize].as_str())
                    .or_default()
                    .push(DrawnBox {
                        annotator: v.annotator,
                        bbox: BoxXywh { x, y, w, h },
                    });
            }
        }
        let mut clusters = Vec::new();
        let mut item_rows = Vec::new();
        for drawn in by_category.values() {
            let counts: Vec<u32> = annotators
                .iter()
                .map(|a| drawn.iter().filter(|d| d.annotator == *a).count() as u32)
                .collect();
            stats.add_box_counts(&counts);
        }
        for (category, drawn) in &by_category {
            for f in fuse(drawn, cfg.consensus.iou_threshold, 1) {
                let members: Vec<&str> = f
                    .annotators
                    .iter()
                    .map(|a| g.annotators[*a as usize].as_str())
                    .collect();
                let accepted = f.annotators.len() >= needed;
                if accepted {
                    item_rows.push(LabelRow {
                        item_id: id.clone(),
                        width: item.width,
                        height: item.height,
                        label: Some((*category).to_owned()),
                        confidence: Some(f.annotators.len() as f64 / n as f64),
                        bbox: Some([f.bbox.x, f.bbox.y, f.bbox.w, f.bbox.h]),
                        annotators: n as i32,
                        support: f.annotators.len() as i32,
                        votes: members
                            .iter()
                            .map(|a| ((*a).to_owned(), Some((*category).to_owned())))
                            .collect(),
                    });
                }
                clusters.push((*category, members, accepted));
            }
        }
        let names: Vec<&str> = annotators
            .iter()
            .map(|a| g.annotators[*a as usize].as_str())
            .collect();
        stats.add_boxes(&names, &clusters);
        if item_rows.is_empty() {
            item_rows.push(LabelRow {
                item_id: id.clone(),
                width: item.width,
                height: item.height,
                label: None,
                confidence: None,
                bbox: None,
                annotators: n as i32,
                support: 0,
                votes: Vec::new(),
            });
        }
        rows.extend(item_rows);
        exported.push(id.clone());
    }
    ProjectResult {
        task_type: BBOX.to_owned(),
        rows,
        stats,
        exported,
    }
}

/// Runs shard `task.partition_index`.
pub async fn run(
    task: &LeasedTask,
    cfg: &AnnotationExportConfig,
    ctx: &AttemptContext,
    export: &Export,
) -> Result<OutputManifest, TaskError> {
    let pseudo = Pseudonymiser::from_source(&cfg.pseudonymize)
        .map_err(|e| TaskError::permanent(e.to_string()))?;
    let input = super::input_files(export).await?;
    let models = calibrate::read(task, export).await?;
    let filters = Filters::new(cfg, task.partition_index)?;
    let files = wanted_files(&input.files, &filters);
    let steps = (files.len() * 2).max(1) as f64;
    let g = gather(export, ctx, &files, &filters, &pseudo, |n, path| {
        ctx.progress
            .set(n as f64 / steps, format!("read votes from {path}"));
    })
    .await?;

    // Consensus, per project.
    let mut results: BTreeMap<String, ProjectResult> = BTreeMap::new();
    for (project, votes) in &g.projects {
        export.stopped(ctx)?;
        let r = if votes.task_type == BBOX {
            boxes(&g, votes, cfg)
        } else {
            classification(&g, votes, cfg, models.get(project))
        };
        results.insert(project.clone(), r);
    }

    let out = &export.output;
    let mut written: Vec<ManifestFile> = Vec::new();
    let schema = labels::schema();
    for (project, r) in &results {
        if r.rows.is_empty() {
            continue;
        }
        let rel = format!("labels/project={}/part.parquet", project_dir(project));
        let mut sink = ParquetSink::create(out, &rel, schema.clone(), ROW_GROUP_ROWS)
            .map_err(dataset_error)?;
        for chunk in r.rows.chunks(READ_BATCH_ROWS) {
            export.stopped(ctx)?;
            let batch = labels::batch(&schema, project, &r.task_type, chunk)
                .map_err(|e| TaskError::permanent(e.to_string()))?;
            sink.write(&batch).await.map_err(dataset_error)?;
        }
        written.push(sink.finish().await.map_err(dataset_error)?);
    }

    // Pass two: the exported items' rows, passed through.
    let exported: HashSet<(String, String)> = results
        .iter()
        .flat_map(|(p, r)| r.exported.iter().map(move |i| (p.clone(), i.clone())))
        .collect();
    if !exported.is_empty() {
        let only = filters.with_items(Arc::new(exported));
        let mut sink: Option<(ParquetSink, SchemaRef)> = None;
        for (n, f) in files.iter().enumerate() {
            let (schema, mut stream) = super::read_input(export, f, &only).await?;
            let kept = kept_columns(&schema, &cfg.drop_fields);
            let out_schema: SchemaRef = Arc::new(
                schema
                    .project(&kept)
                    .map_err(|e| TaskError::permanent(e.to_string()))?,
            );
            let (s, sink_schema) = match &mut sink {
                Some(s) => (&mut s.0, s.1.clone()),
                None => {
                    let s = ParquetSink::create(
                        out,
                        "annotations/part.parquet",
                        out_schema.clone(),
                        ROW_GROUP_ROWS,
                    )
                    .map_err(dataset_error)?;
                    let created = sink.insert((s, out_schema.clone()));
                    (&mut created.0, out_schema.clone())
                }
            };
            if sink_schema.fields() != out_schema.fields() {
                return Err(TaskError::permanent(format!(
                    "input {} has columns that differ from the input's other files",
                    f.path
                )));
            }
            while let Some(batch) = stream.next().await {
                export.stopped(ctx)?;
                let batch = batch?;
                let batch = pass_through(&batch, &kept, &sink_schema, &pseudo)?;
                s.write(&batch).await.map_err(dataset_error)?;
            }
            ctx.progress.set(
                (files.len() + n) as f64 / steps,
                format!("passed through rows of {}", f.path),
            );
        }
        if let Some((s, _)) = sink {
            written.push(s.finish().await.map_err(dataset_error)?);
        }
    }

    let stats: BTreeMap<&String, &ProjectStats> =
        results.iter().map(|(p, r)| (p, &r.stats)).collect();
    written.push(
        export
            .write_json(STATS_NAME, &stats, results.len() as u64)
            .await?,
    );
    let fingerprint = export.fingerprint(task, std::slice::from_ref(&input.content_hash));
    let manifest = DatasetManifest::new(
        written,
        parquet::manifest_schema(&labels::schema()),
        &export.writer(task, fingerprint),
    );
    export.commit(task, manifest).await
}

/// Indices of the input's columns kept in the pass-through.
fn kept_columns(schema: &Schema, drop: &[String]) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !drop.iter().any(|d| d == f.name()))
        .map(|(i, _)| i)
        .collect()
}

/// A batch of input rows as exported: kept columns only, annotator ids
/// replaced by pseudonyms.
fn pass_through(
    batch: &RecordBatch,
    kept: &[usize],
    schema: &SchemaRef,
    pseudo: &Pseudonymiser,
) -> Result<RecordBatch, TaskError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(kept.len());
    for &i in kept {
        let field = batch.schema_ref().field(i).clone();
        let column = batch.column(i);
        if field.name() == "annotator_id" {
            let raw = column.as_string::<i32>();
            let mut cache: HashMap<&str, String> = HashMap::new();
            let replaced: StringArray = raw
                .iter()
                .map(|v| {
                    v.map(|id| {
                        cache
                            .entry(id)
                            .or_insert_with(|| pseudo.pseudonym(id))
                            .clone()
                    })
                })
                .collect();
            columns.push(Arc::new(replaced));
        } else {
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| TaskError::permanent(e.to_string()))
}
