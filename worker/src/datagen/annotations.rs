//! Annotation projects: what an annotation platform exports, with the truth
//! the annotators were trying to find written beside it.
//!
//! Even-numbered projects are **classification** (`scene-type-NNN`): each
//! image gets one of five scene classes from several annotators. Odd ones
//! are **bounding boxes** (`street-objects-NNN`): annotators draw boxes
//! around the objects of a street scene. Each project has its own pool of
//! annotators of three sorts:
//!
//! - careful ones, right most of the time, whose mistakes go to a
//!   neighbouring class (or who miss some objects and draw boxes a little
//!   off);
//! - biased ones, who fall back on a favourite class when unsure;
//! - spammers, who answer at random or always the same (or draw random
//!   boxes).
//!
//! Layout below `--out`:
//!
//! ```text
//! _manifest.json                        the annotations' files
//! project=<name>/part-NNNNN.parquet     one row per annotation (schema below)
//! _truth/_manifest.json
//! _truth/project=<name>/truth.parquet   project, item_id, label, bbox_*
//! _truth/annotators.json                each annotator's sort and accuracy
//! ```
//!
//! An annotation row: `project`, `task_type` (`classification` or `bbox`),
//! `item_id`, `image_width`, `image_height`, `annotator_id`,
//! `annotator_email` and `annotator_ip` (personal data, for the export to
//! drop), `label` (null for an annotator who looked at an image and drew
//! nothing), `bbox_x`, `bbox_y`, `bbox_w`, `bbox_h` (pixels, COCO's
//! top-left-width-height; null for classification), `created_at` (UTC
//! milliseconds) and `duration_ms`.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int32Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::ObjectStoreExt;
use serde::Serialize;
use sha2::Digest as _;

use super::rng::Rng;
use crate::dataset::DatasetError;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile};
use crate::dataset::parquet::{ParquetSink, ROW_GROUP_ROWS, manifest_schema};

/// Scene classes of classification projects, and how common each is.
pub const SCENE_CLASSES: &[(&str, f64)] = &[
    ("residential", 0.30),
    ("urban", 0.25),
    ("highway", 0.20),
    ("rural", 0.15),
    ("parking", 0.10),
];

/// Object categories of bounding-box projects, and how common each is.
pub const OBJECT_CATEGORIES: &[(&str, f64)] = &[
    ("car", 0.45),
    ("pedestrian", 0.25),
    ("cyclist", 0.10),
    ("traffic_light", 0.10),
    ("traffic_sign", 0.10),
];

/// Image sizes, as cameras produce them.
const IMAGE_SIZES: &[(i32, i32)] = &[(1920, 1080), (1280, 720), (1024, 768), (640, 480)];

/// Annotators in each project's pool.
const POOL: usize = 24;
/// Of which spammers, then biased; the rest are careful.
const SPAMMERS: usize = 5;
const BIASED: usize = 4;

/// Rows per Parquet file, about; files end at an item boundary.
const PART_ROWS: usize = 1_000_000;
/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 32 * 1024;

/// 2026-01-01T00:00:00Z: annotations are spread over the 90 days after.
const EPOCH_MS: i64 = 1_767_225_600_000;
const SPAN_MS: i64 = 90 * 86_400_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnotationsSpec {
    /// Projects, alternating classification and bounding boxes.
    pub projects: u32,
    /// Items (images) per project.
    pub items: u64,
    /// The seed.
    pub seed: u64,
}

/// What was generated, per project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedProject {
    /// Its name.
    pub name: String,
    /// `classification` or `bbox`.
    pub task_type: String,
    /// Items.
    pub items: u64,
    /// Annotation rows.
    pub annotations: u64,
    /// Truth rows (items, or objects).
    pub truth: u64,
}

/// The sort of annotator, as written to `_truth/annotators.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotatorTruth {
    /// Project.
    pub project: String,
    /// Raw annotator id.
    pub annotator_id: String,
    /// `careful`, `biased` or `spammer`.
    pub sort: &'static str,
    /// Chance of the right class (classification) or of drawing an object
    /// (boxes); 0 for spammers.
    pub accuracy: f64,
}

/// The schema of annotation rows.
pub fn annotation_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("project", DataType::Utf8, false),
        Field::new("task_type", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("image_width", DataType::Int32, true),
        Field::new("image_height", DataType::Int32, true),
        Field::new("annotator_id", DataType::Utf8, false),
        Field::new("annotator_email", DataType::Utf8, true),
        Field::new("annotator_ip", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("bbox_x", DataType::Float64, true),
        Field::new("bbox_y", DataType::Float64, true),
        Field::new("bbox_w", DataType::Float64, true),
        Field::new("bbox_h", DataType::Float64, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("duration_ms", DataType::Int32, true),
    ]))
}

/// The schema of truth rows.
pub fn truth_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("project", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("bbox_x", DataType::Float64, true),
        Field::new("bbox_y", DataType::Float64, true),
        Field::new("bbox_w", DataType::Float64, true),
        Field::new("bbox_h", DataType::Float64, true),
    ]))
}

/// The name of project `index`.
pub fn project_name(index: u32) -> String {
    if index.is_multiple_of(2) {
        format!("scene-type-{index:03}")
    } else {
        format!("street-objects-{index:03}")
    }
}

/// One annotator of a pool.
#[derive(Debug, Clone)]
struct Annotator {
    id: String,
    email: String,
    ip: String,
    sort: Sort,
}

#[derive(Debug, Clone, Copy)]
enum Sort {
    /// Right with this probability (classification) or drawing each object
    /// with it (boxes).
    Careful(f64),
    /// Right with this probability, else the favourite class.
    Biased(f64, usize),
    /// Random answers; `Some(c)`: always class `c`.
    Spammer(Option<usize>),
}

fn pool(rng: &mut Rng, project: u32, classes: usize) -> Vec<Annotator> {
    (0..POOL)
        .map(|j| {
            let n = u64::from(project) * 1000 + j as u64 + 1;
            let sort = if j < SPAMMERS {
                // Every other spammer always answers the same thing.
                Sort::Spammer((j % 2 == 1).then(|| rng.below(classes as u64) as usize))
            } else if j < SPAMMERS + BIASED {
                Sort::Biased(rng.range(0.55, 0.75), rng.below(classes as u64) as usize)
            } else {
                Sort::Careful(rng.range(0.65, 0.95))
            };
            Annotator {
                id: format!("u{n:06}"),
                email: format!("u{n:06}@labelvendor.example"),
                ip: format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    1 + rng.below(254)
                ),
                sort,
            }
        })
        .collect()
}

/// `k` distinct annotators of the pool.
fn choose(rng: &mut Rng, k: usize) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(k);
    while chosen.len() < k.min(POOL) {
        let a = rng.below(POOL as u64) as usize;
        if !chosen.contains(&a) {
            chosen.push(a);
        }
    }
    chosen
}

/// Columns of annotation rows being gathered into a batch.
struct Rows {
    project: StringBuilder,
    task_type: StringBuilder,
    item_id: StringBuilder,
    width: Int32Builder,
    height: Int32Builder,
    annotator: StringBuilder,
    email: StringBuilder,
    ip: StringBuilder,
    label: StringBuilder,
    bbox: [Float64Builder; 4],
    created: TimestampMillisecondBuilder,
    duration: Int32Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Self {
            project: StringBuilder::new(),
            task_type: StringBuilder::new(),
            item_id: StringBuilder::new(),
            width: Int32Builder::new(),
            height: Int32Builder::new(),
            annotator: StringBuilder::new(),
            email: StringBuilder::new(),
            ip: StringBuilder::new(),
            label: StringBuilder::new(),
            bbox: std::array::from_fn(|_| Float64Builder::new()),
            created: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            duration: Int32Builder::new(),
            len: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        project: &str,
        task_type: &str,
        item: &str,
        size: Option<(i32, i32)>,
        who: &Annotator,
        label: Option<&str>,
        bbox: Option<[f64; 4]>,
        created_ms: i64,
        duration_ms: i32,
    ) {
        self.project.append_value(project);
        self.task_type.append_value(task_type);
        self.item_id.append_value(item);
        self.width.append_option(size.map(|s| s.0));
        self.height.append_option(size.map(|s| s.1));
        self.annotator.append_value(&who.id);
        self.email.append_value(&who.email);
        self.ip.append_value(&who.ip);
        self.label.append_option(label);
        for (b, v) in self
            .bbox
            .iter_mut()
            .zip(bbox.map_or([None; 4], |b| b.map(Some)))
        {
            b.append_option(v);
        }
        self.created.append_value(created_ms);
        self.duration.append_value(duration_ms);
        self.len += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, DatasetError> {
        let [x, y, w, h] = &mut self.bbox;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.project.finish()),
            Arc::new(self.task_type.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
            Arc::new(self.annotator.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.ip.finish()),
            Arc::new(self.label.finish()),
            Arc::new(x.finish()),
            Arc::new(y.finish()),
            Arc::new(w.finish()),
            Arc::new(h.finish()),
            Arc::new(self.created.finish()),
            Arc::new(self.duration.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
    }
}

/// Truth rows being gathered.
struct Truth {
    project: StringBuilder,
    item_id: StringBuilder,
    label: StringBuilder,
    bbox: [Float64Builder; 4],
    len: usize,
}

impl Truth {
    fn new() -> Self {
        Self {
            project: StringBuilder::new(),
            item_id: StringBuilder::new(),
            label: StringBuilder::new(),
            bbox: std::array::from_fn(|_| Float64Builder::new()),
            len: 0,
        }
    }

    fn push(&mut self, project: &str, item: &str, label: &str, bbox: Option<[f64; 4]>) {
        self.project.append_value(project);
        self.item_id.append_value(item);
        self.label.append_value(label);
        for (b, v) in self
            .bbox
            .iter_mut()
            .zip(bbox.map_or([None; 4], |b| b.map(Some)))
        {
            b.append_option(v);
        }
        self.len += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, DatasetError> {
        let [x, y, w, h] = &mut self.bbox;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.project.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.label.finish()),
            Arc::new(x.finish()),
            Arc::new(y.finish()),
            Arc::new(w.finish()),
            Arc::new(h.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
    }
}

fn arrow_error(e: arrow_schema::ArrowError) -> DatasetError {
    DatasetError::Parquet(parquet::errors::ParquetError::ArrowError(e.to_string()))
}

/// Writes one project's annotations (in parts) and truth.
struct ProjectWriter<'a> {
    out: &'a Location,
    name: String,
    schema: SchemaRef,
    truth_schema: SchemaRef,
    rows: Rows,
    truth: Truth,
    part: Option<ParquetSink>,
    part_rows: usize,
    parts: usize,
    truth_sink: ParquetSink,
    files: Vec<ManifestFile>,
    written: u64,
}

impl<'a> ProjectWriter<'a> {
    fn new(out: &'a Location, name: String) -> Result<Self, DatasetError> {
        let truth_schema = truth_schema();
        let truth_sink = ParquetSink::create(
            out,
            &format!("_truth/project={name}/truth.parquet"),
            truth_schema.clone(),
            ROW_GROUP_ROWS,
        )?;
        Ok(Self {
            out,
            name,
            schema: annotation_schema(),
            truth_schema,
            rows: Rows::new(),
            truth: Truth::new(),
            part: None,
            part_rows: 0,
            parts: 0,
            truth_sink,
            files: Vec::new(),
            written: 0,
        })
    }

    /// Called after each item: flushes full batches, and ends a part file
    /// once it is big enough.
    async fn item_done(&mut self) -> Result<(), DatasetError> {
        if self.rows.len >= BATCH_ROWS {
            self.flush_rows().await?;
        }
        if self.truth.len >= BATCH_ROWS {
            let batch = self.truth.finish(&self.truth_schema)?;
            self.truth_sink.write(&batch).await?;
        }
        if self.part_rows >= PART_ROWS {
            self.end_part().await?;
        }
        Ok(())
    }

    async fn flush_rows(&mut self) -> Result<(), DatasetError> {
        if self.rows.len == 0 {
            return Ok(());
        }
        let n = self.rows.len;
        let batch = self.rows.finish(&self.schema)?;
        if self.part.is_none() {
            let rel = format!("project={}/part-{:05}.parquet", self.name, self.parts);
            self.part = Some(ParquetSink::create(
                self.out,
                &rel,
                self.schema.clone(),
                ROW_GROUP_ROWS,
            )?);
            self.parts += 1;
        }
        if let Some(part) = self.part.as_mut() {
            part.write(&batch).await?;
        }
        self.part_rows += n;
        self.written += n as u64;
        Ok(())
    }

    async fn end_part(&mut self) -> Result<(), DatasetError> {
        self.flush_rows().await?;
        if let Some(part) = self.part.take() {
            self.files.push(part.finish().await?);
        }
        self.part_rows = 0;
        Ok(())
    }

    /// Ends the project: its annotation files, and its truth file.
    async fn finish(mut self) -> Result<(Vec<ManifestFile>, ManifestFile, u64), DatasetError> {
        self.end_part().await?;
        if self.truth.len > 0 {
            let batch = self.truth.finish(&self.truth_schema)?;
            self.truth_sink.write(&batch).await?;
        }
        let truth = self.truth_sink.finish().await?;
        Ok((self.files, truth, self.written))
    }
}

/// Generates `spec` under `out`; `progress` hears of every 10,000 items.
pub async fn generate(
    out: &Location,
    spec: &AnnotationsSpec,
    progress: impl Fn(u64),
) -> Result<Vec<GeneratedProject>, DatasetError> {
    let mut files = Vec::new();
    let mut truth_files = Vec::new();
    let mut annotators = Vec::new();
    let mut projects = Vec::new();
    let mut done = 0u64;
    for p in 0..spec.projects {
        let name = project_name(p);
        let mut rng = Rng::new(spec.seed, u64::from(p));
        let classification = p.is_multiple_of(2);
        let classes = if classification {
            SCENE_CLASSES.len()
        } else {
            OBJECT_CATEGORIES.len()
        };
        let pool = pool(&mut rng, p, classes);
        for a in &pool {
            let (sort, accuracy) = match a.sort {
                Sort::Careful(acc) => ("careful", acc),
                Sort::Biased(acc, _) => ("biased", acc),
                Sort::Spammer(_) => ("spammer", 0.0),
            };
            annotators.push(AnnotatorTruth {
                project: name.clone(),
                annotator_id: a.id.clone(),
                sort,
                accuracy,
            });
        }
        let mut w = ProjectWriter::new(out, name.clone())?;
        let mut truth_rows = 0u64;
        for i in 0..spec.items {
            let item = format!("img-{i:08}");
            let created = EPOCH_MS + (i as i64 * SPAN_MS) / spec.items.max(1) as i64;
            truth_rows += if classification {
                classification_item(&mut rng, &mut w, &pool, &name, &item, created)
            } else {
                bbox_item(&mut rng, &mut w, &pool, &name, &item, created)
            };
            w.item_done().await?;
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(done);
            }
        }
        let (project_files, truth, written) = w.finish().await?;
        files.extend(project_files);
        truth_files.push(truth);
        projects.push(GeneratedProject {
            name,
            task_type: if classification {
                "classification"
            } else {
                "bbox"
            }
            .to_owned(),
            items: spec.items,
            annotations: written,
            truth: truth_rows,
        });
    }
    let writer = super::writer(
        "annotations",
        format!(
            "projects={} items={} seed={}",
            spec.projects, spec.items, spec.seed
        ),
    );
    let truth_dir = out.child("_truth");
    let json = serde_json::to_vec_pretty(&annotators).map_err(|e| DatasetError::Manifest {
        path: "_truth/annotators.json".into(),
        reason: e.to_string(),
    })?;
    let annotators_file = ManifestFile {
        path: "annotators.json".to_owned(),
        rows: annotators.len() as u64,
        bytes: json.len() as u64,
        sha256: manifest::hex(&sha2::Sha256::digest(&json)),
    };
    truth_dir
        .store
        .put(&truth_dir.path("annotators.json"), json.into())
        .await?;
    let mut truth_entries: Vec<ManifestFile> = truth_files
        .into_iter()
        .map(|mut f| {
            f.path = f.path.trim_start_matches("_truth/").to_owned();
            f
        })
        .collect();
    truth_entries.push(annotators_file);
    manifest::write(
        &truth_dir,
        &DatasetManifest::new(truth_entries, manifest_schema(&truth_schema()), &writer),
    )
    .await?;
    // The data's manifest last: until it exists, there is no dataset.
    manifest::write(
        out,
        &DatasetManifest::new(files, manifest_schema(&annotation_schema()), &writer),
    )
    .await?;
    Ok(projects)
}

fn classification_item(
    rng: &mut Rng,
    w: &mut ProjectWriter<'_>,
    pool: &[Annotator],
    project: &str,
    item: &str,
    created: i64,
) -> u64 {
    let weights: Vec<f64> = SCENE_CLASSES.iter().map(|c| c.1).collect();
    let k = SCENE_CLASSES.len();
    let truth = rng.weighted(&weights);
    let size = IMAGE_SIZES[rng.below(IMAGE_SIZES.len() as u64) as usize];
    // Mostly three to five annotators; a few items got only one.
    let n = [1, 3, 4, 5][rng.weighted(&[0.05, 0.25, 0.25, 0.45])];
    for a in choose(rng, n) {
        let who = &pool[a];
        let answer = match who.sort {
            Sort::Careful(acc) if rng.chance(acc) => truth,
            // Mistakes go mostly to a neighbouring (confusable) class.
            Sort::Careful(_) => {
                if rng.chance(0.6) {
                    if rng.chance(0.5) {
                        (truth + 1) % k
                    } else {
                        (truth + k - 1) % k
                    }
                } else {
                    (truth + 1 + rng.below(k as u64 - 1) as usize) % k
                }
            }
            Sort::Biased(acc, _) if rng.chance(acc) => truth,
            Sort::Biased(_, favourite) => favourite,
            Sort::Spammer(Some(always)) => always,
            Sort::Spammer(None) => rng.below(k as u64) as usize,
        };
        let at = created + rng.below(3 * 86_400_000) as i64;
        let duration = 1_500 + rng.below(20_000) as i32;
        w.rows.push(
            project,
            "classification",
            item,
            Some(size),
            who,
            Some(SCENE_CLASSES[answer].0),
            None,
            at,
            duration,
        );
    }
    w.truth.push(project, item, SCENE_CLASSES[truth].0, None);
    1
}

fn bbox_item(
    rng: &mut Rng,
    w: &mut ProjectWriter<'_>,
    pool: &[Annotator],
    project: &str,
    item: &str,
    created: i64,
) -> u64 {
    let weights: Vec<f64> = OBJECT_CATEGORIES.iter().map(|c| c.1).collect();
    let size = IMAGE_SIZES[rng.below(IMAGE_SIZES.len() as u64) as usize];
    let (iw, ih) = (f64::from(size.0), f64::from(size.1));
    let objects = rng.weighted(&[0.08, 0.2, 0.22, 0.2, 0.15, 0.1, 0.05]);
    let mut truth = Vec::with_capacity(objects);
    for _ in 0..objects {
        let category = rng.weighted(&weights);
        let bw = rng.range(0.04, 0.3) * iw;
        // Pedestrians and lights are tall, cars wide.
        let aspect = match OBJECT_CATEGORIES[category].0 {
            "pedestrian" | "traffic_light" => rng.range(1.8, 3.0),
            "car" => rng.range(0.45, 0.8),
            _ => rng.range(0.8, 1.4),
        };
        let bh = (bw * aspect).min(ih * 0.9);
        let x = rng.range(0.0, iw - bw);
        let y = rng.range(0.0, ih - bh);
        truth.push((category, [x, y, bw, bh]));
        w.truth.push(
            project,
            item,
            OBJECT_CATEGORIES[category].0,
            Some([x, y, bw, bh]),
        );
    }
    let n = [1, 3, 4][rng.weighted(&[0.08, 0.62, 0.3])];
    for a in choose(rng, n) {
        let who = &pool[a];
        let mut drawn: Vec<(usize, [f64; 4])> = Vec::new();
        match who.sort {
            Sort::Spammer(_) => {
                for _ in 0..rng.below(4) {
                    let bw = rng.range(0.05, 0.4) * iw;
                    let bh = rng.range(0.05, 0.4) * ih;
                    drawn.push((
                        rng.below(OBJECT_CATEGORIES.len() as u64) as usize,
                        [rng.range(0.0, iw - bw), rng.range(0.0, ih - bh), bw, bh],
                    ));
                }
            }
            Sort::Careful(recall) | Sort::Biased(recall, _) => {
                for &(category, [x, y, bw, bh]) in &truth {
                    if !rng.chance(recall) {
                        continue;
                    }
                    // Each edge a little off, in proportion to the box.
                    let left = (x + rng.normal() * 0.04 * bw).clamp(0.0, iw - 1.0);
                    let top = (y + rng.normal() * 0.04 * bh).clamp(0.0, ih - 1.0);
                    let right = (x + bw + rng.normal() * 0.04 * bw).clamp(left + 1.0, iw);
                    let bottom = (y + bh + rng.normal() * 0.04 * bh).clamp(top + 1.0, ih);
                    let label = match who.sort {
                        Sort::Biased(_, favourite) if rng.chance(0.15) => favourite,
                        _ if rng.chance(0.03) => rng.below(OBJECT_CATEGORIES.len() as u64) as usize,
                        _ => category,
                    };
                    drawn.push((label, [left, top, right - left, bottom - top]));
                }
                // Now and then a box around nothing.
                if rng.chance(0.08) {
                    let bw = rng.range(0.03, 0.15) * iw;
                    let bh = rng.range(0.03, 0.15) * ih;
                    drawn.push((
                        rng.weighted(&weights),
                        [rng.range(0.0, iw - bw), rng.range(0.0, ih - bh), bw, bh],
                    ));
                }
            }
        }
        let at = created + rng.below(3 * 86_400_000) as i64;
        let duration = 5_000 + rng.below(90_000) as i32;
        if drawn.is_empty() {
            // Looked, found nothing: the annotator still counts.
            w.rows.push(
                project,
                "bbox",
                item,
                Some(size),
                who,
                None,
                None,
                at,
                duration,
            );
        }
        for (label, bbox) in drawn {
            let bbox = bbox.map(|v| (v * 100.0).round() / 100.0);
            w.rows.push(
                project,
                "bbox",
                item,
                Some(size),
                who,
                Some(OBJECT_CATEGORIES[label].0),
                Some(bbox),
                at,
                duration,
            );
        }
    }
    objects as u64
}
