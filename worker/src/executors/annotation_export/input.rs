//! What the export reads: annotation rows (the layout `drover datagen
//! annotations` writes, or any table with the same columns) in Parquet,
//! JSONL or CSV files, found through the input's `_manifest.json` or by
//! listing the directory, filtered while decoding to the rows of this
//! shard's items, the chosen projects, labels and time window. String
//! columns may come in any encoding and ids may be integers: they are cast
//! to plain strings as they are read ([`normalise`]).

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Schema, TimeUnit};
use drover_jobspecs::kinds::annotation_export::{AnnotationExportConfig, TimeWindow};

use crate::dataset::DatasetError;
use crate::dataset::input::{self as dataset_input, Format, Input, InputFile};
use crate::dataset::location::Location;
use crate::dataset::parquet::Predicate;
use crate::dataset::strings::{self, Text};
use crate::executors::TaskError;
use crate::executors::data_attempt::dataset_error;

/// The input's files, with errors that say what a user can do.
pub async fn files(input: &Location, max: usize) -> Result<Input, TaskError> {
    dataset_input::resolve(input, &Format::ALL, max)
        .await
        .map_err(|e| match e {
            DatasetError::TooManyFiles { url, max } => TaskError::permanent(format!(
                "{url} holds more than {max} data files; combine them, or point `input` at a subdirectory"
            )),
            DatasetError::NoFiles { .. } => TaskError::permanent(format!(
                "{e} (an annotation export reads Parquet, JSONL or CSV files with the columns {})",
                REQUIRED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
            e => dataset_error(e),
        })
}

/// Rows in `file`: what its manifest says, a Parquet footer's count, or
/// a text file's line count (a CSV's header left out), read through.
pub async fn rows(input: &Location, file: &InputFile) -> Result<u64, TaskError> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;

    if let Some(rows) = file.rows {
        return Ok(rows);
    }
    if file.format == Format::Parquet {
        return crate::dataset::parquet::row_count(input, &file.path)
            .await
            .map_err(dataset_error);
    }
    let mut body = input
        .store
        .get(&input.path(&file.path))
        .await
        .map_err(|e| dataset_error(e.into()))?
        .into_stream();
    let (mut lines, mut last) = (0u64, b'\n');
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| dataset_error(e.into()))?;
        lines += memchr::memchr_iter(b'\n', &chunk).count() as u64;
        last = chunk.last().copied().unwrap_or(last);
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok(match file.format {
        Format::Csv => lines.saturating_sub(1),
        _ => lines,
    })
}

/// The types a JSONL or CSV input's known columns are read as.
pub fn known_types() -> Vec<(&'static str, DataType)> {
    let mut known: Vec<(&str, DataType)> = TEXT_COLUMNS
        .iter()
        .map(|(name, _)| (*name, DataType::Utf8))
        .collect();
    known.push((
        "created_at",
        DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
    ));
    known.extend(BBOX_COLUMNS.iter().map(|n| (*n, DataType::Float64)));
    known.push(("image_width", DataType::Int64));
    known.push(("image_height", DataType::Int64));
    known
}

/// `batch` with its string columns as `Utf8` and its boxes as 64-bit
/// floats.
pub fn normalise(batch: &RecordBatch) -> Result<RecordBatch, String> {
    let batch = strings::with_utf8_columns(batch, TEXT_COLUMNS).map_err(|e| e.to_string())?;
    if BBOX_COLUMNS.iter().all(|n| {
        batch
            .schema()
            .field_with_name(n)
            .ok()
            .is_none_or(|f| f.data_type() == &DataType::Float64)
    }) {
        return Ok(batch);
    }
    let schema = Arc::new(normal_schema(&batch.schema()));
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if BBOX_COLUMNS.contains(&f.name().as_str()) && c.data_type() != &DataType::Float64 {
            columns.push(
                arrow_cast::cast(c, &DataType::Float64)
                    .map_err(|e| format!("column `{}`: {e}", f.name()))?,
            );
        } else {
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// `schema` as [`normalise`] leaves it.
pub fn normal_schema(schema: &Schema) -> Schema {
    let s = strings::utf8_schema(schema, TEXT_COLUMNS);
    let fields: Vec<arrow_schema::Field> = s
        .fields()
        .iter()
        .map(|f| {
            if BBOX_COLUMNS.contains(&f.name().as_str()) {
                arrow_schema::Field::new(f.name(), DataType::Float64, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Schema::new_with_metadata(fields, s.metadata().clone())
}

/// `predicate` seeing its string columns as `Utf8`, whatever the file's
/// encoding.
pub fn normalising(mut predicate: Predicate) -> Predicate {
    Box::new(move |batch: RecordBatch| {
        let batch = strings::with_utf8_columns(&batch, TEXT_COLUMNS)
            .map_err(|e| ArrowError::SchemaError(e.to_string()))?;
        predicate(batch)
    })
}

/// Columns every input must have, as (name, what it holds).
pub const REQUIRED: &[(&str, &str)] = &[
    ("project", "string"),
    ("task_type", "string: classification or bbox"),
    ("item_id", "string"),
    ("annotator_id", "string"),
    ("label", "string, null for an image with nothing drawn"),
    ("created_at", "timestamp"),
];

/// How each string column is read.
const TEXT_COLUMNS: &[(&str, Text)] = &[
    ("project", Text::Plain),
    ("task_type", Text::Plain),
    ("item_id", Text::Id),
    ("annotator_id", Text::Id),
    ("label", Text::Plain),
];

/// Bounding-box columns: any number, read as 64-bit floats.
const BBOX_COLUMNS: [&str; 4] = ["bbox_x", "bbox_y", "bbox_w", "bbox_h"];

/// Columns the filter decodes before the rest of the row.
pub const FILTER_COLUMNS: &[&str] = &["project", "item_id", "label", "created_at"];

/// Which items a task reads.
#[derive(Debug, Clone, Copy)]
enum Select {
    /// Those of one shard.
    Shard { shards: u64, shard: u64 },
    /// A sample of about this many per million, by the same hash.
    Sample { per_million: u64 },
}

/// Buckets the sample is drawn from.
const SAMPLE_BUCKETS: u64 = 1_000_000;

/// Which rows a task reads.
#[derive(Debug, Clone)]
pub struct Filters {
    select: Select,
    projects: Option<HashSet<String>>,
    labels: Option<HashSet<String>>,
    /// `[start, end)` in UTC milliseconds.
    window: Option<(i64, i64)>,
    /// Only these (project, item) pairs, when set.
    items: Option<Arc<HashSet<(String, String)>>>,
}

impl Filters {
    /// The rows of shard `shard` under `cfg`.
    pub fn new(cfg: &AnnotationExportConfig, shard: u64) -> Result<Self, TaskError> {
        let set = |v: &Vec<String>| (!v.is_empty()).then(|| v.iter().cloned().collect());
        Ok(Self {
            select: Select::Shard {
                shards: u64::from(cfg.shards.max(1)),
                shard,
            },
            projects: set(&cfg.projects),
            labels: set(&cfg.labels),
            window: cfg.time_window.as_ref().map(window_ms).transpose()?,
            items: None,
        })
    }

    /// The same rows, of a sample of about `per_million` items in a
    /// million instead of one shard's.
    pub fn sample(&self, per_million: u64) -> Self {
        Self {
            select: Select::Sample { per_million },
            ..self.clone()
        }
    }

    /// The same rows, of these items only.
    pub fn with_items(&self, items: Arc<HashSet<(String, String)>>) -> Self {
        Self {
            items: Some(items),
            ..self.clone()
        }
    }

    /// Whether a project is wanted at all (to skip a `project=` file).
    pub fn wants_project(&self, project: &str) -> bool {
        self.projects.as_ref().is_none_or(|p| p.contains(project))
    }

    /// The predicate for the Parquet reader.
    pub fn predicate(self) -> Predicate {
        Box::new(move |batch: RecordBatch| self.keep(&batch))
    }

    fn keep(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let project = string_column(batch, "project")?;
        let item = string_column(batch, "item_id")?;
        let label = string_column(batch, "label")?;
        let created = batch
            .column_by_name("created_at")
            .ok_or_else(|| ArrowError::SchemaError("no created_at column".into()))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let p = project.value(i);
            let id = item.value(i);
            let selected = match self.select {
                Select::Shard { shards, shard } => shard_of(p, id, shards) == shard,
                Select::Sample { per_million } => shard_of(p, id, SAMPLE_BUCKETS) < per_million,
            };
            let mut ok =
                !project.is_null(i) && !item.is_null(i) && selected && self.wants_project(p);
            if ok && let Some(labels) = &self.labels {
                ok = label.is_null(i) || labels.contains(label.value(i));
            }
            if ok && let Some((start, end)) = self.window {
                ok = timestamp_ms(created.as_ref(), i).is_some_and(|t| t >= start && t < end);
            }
            if ok && let Some(items) = &self.items {
                ok = items.contains(&(p.to_owned(), id.to_owned()));
            }
            keep.push(ok);
        }
        Ok(BooleanArray::from(keep))
    }
}

/// The shard an item belongs to: FNV-1a (64-bit) of `project`, a zero
/// byte and `item`, modulo `shards`. Fixed forever, so a re-run splits
/// items the same way; FNV because it is fast on short ids and needs no
/// key.
pub fn shard_of(project: &str, item: &str, shards: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes().chain([0]).chain(item.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % shards.max(1)
}

/// Checks an input file's schema has what the export reads, naming the
/// file, the column, its type and what is accepted when it does not.
pub fn check_schema(path: &str, schema: &Schema) -> Result<(), TaskError> {
    for (name, what) in REQUIRED {
        let Ok(field) = schema.field_with_name(name) else {
            return Err(TaskError::permanent(format!(
                "input {path} has no `{name}` column ({what}); an annotation export reads {}",
                REQUIRED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if *name == "created_at" && !matches!(field.data_type(), DataType::Timestamp(_, _)) {
            return Err(TaskError::permanent(format!(
                "input {path}: column `created_at` is {}; accepted: a timestamp (in CSV and JSONL, RFC 3339 text such as 2026-01-02T03:04:05Z)",
                field.data_type()
            )));
        }
    }
    for (name, text) in TEXT_COLUMNS {
        strings::check(schema, name, *text)
            .map_err(|e| TaskError::permanent(format!("input {path}: {e}")))?;
    }
    for name in BBOX_COLUMNS {
        if let Ok(f) = schema.field_with_name(name)
            && !f.data_type().is_numeric()
        {
            return Err(TaskError::permanent(format!(
                "input {path}: column `{name}` is {}; accepted: a number (read as a 64-bit float)",
                f.data_type()
            )));
        }
    }
    Ok(())
}

/// A string column by name.
pub fn string_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a StringArray, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ArrowError::SchemaError(format!("no string column `{name}`")))
}

/// A float column by name, if there is one.
pub fn float_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Option<&'a arrow_array::PrimitiveArray<Float64Type>> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
}

/// Row `i` of an integer column (32 or 64 bits), if set.
pub fn int_value(column: Option<&Arc<dyn Array>>, i: usize) -> Option<i64> {
    let c = column?;
    if c.is_null(i) {
        return None;
    }
    if let Some(a) = c.as_primitive_opt::<Int32Type>() {
        return Some(i64::from(a.value(i)));
    }
    c.as_primitive_opt::<Int64Type>().map(|a| a.value(i))
}

/// Row `i` of a timestamp column in UTC milliseconds.
fn timestamp_ms(column: &dyn Array, i: usize) -> Option<i64> {
    if column.is_null(i) {
        return None;
    }
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Some(column.as_primitive::<TimestampMillisecondType>().value(i))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Some(column.as_primitive::<TimestampMicrosecondType>().value(i) / 1_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Some(column.as_primitive::<TimestampNanosecondType>().value(i) / 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Second, _) => Some(
            column
                .as_primitive::<TimestampSecondType>()
                .value(i)
                .saturating_mul(1_000),
        ),
        _ => None,
    }
}

/// The window as UTC milliseconds; the spec was validated, so a bad
/// instant here means the coordinator and worker disagree on versions.
fn window_ms(w: &TimeWindow) -> Result<(i64, i64), TaskError> {
    Ok((instant_ms(&w.start)?, instant_ms(&w.end)?))
}

fn instant_ms(text: &str) -> Result<i64, TaskError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| TaskError::permanent(format!("`{text}` is not a time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_spread_over_shards_the_same_way_every_time() {
        let mut counts = [0u32; 8];
        for i in 0..80_000 {
            counts[shard_of("p", &format!("img-{i:08}"), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        // Pinned: changing the hash would move every item of a re-run.
        assert_eq!(shard_of("scene-type-000", "img-00000042", 1000), 381);
        assert_eq!(instant_ms("2026-01-01").unwrap(), 1_767_225_600_000);
    }
}
