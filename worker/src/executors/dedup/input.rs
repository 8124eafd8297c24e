//! The documents a dedup reads, and how they are split. The input's files
//! come from its `_manifest.json`, or, for a directory some other tool
//! wrote, from listing it (files and directories whose names start with
//! `_` or `.` are metadata and skipped). Sorted by path, the files are
//! treated as one byte sequence cut into `shards` equal ranges; a record
//! (a JSONL line, a Parquet row group) belongs to the range its first byte
//! is in. Ranges are contiguous, so a document's (shard, index) order is
//! its order in the input, and the `filter` stage, reading the same range
//! again, meets the same documents in the same order.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::dataset::DatasetError;
use crate::dataset::input::{self as dataset_input, Format};
use crate::dataset::jsonl::{self, LineBatch};
use crate::dataset::location::Location;
use crate::dataset::parquet::{READ_BATCH_ROWS, read_row_groups_starting_in};
use crate::dataset::strings::{self, Text as TextKind};
use crate::executors::TaskError;
use crate::executors::data_attempt::dataset_error;

/// Lines handed on at a time.
const LINES_PER_CHUNK: usize = 8192;

/// Files listed from a directory without a manifest.
const LISTED_FILES_MAX: usize = 100_000;

/// One input file as the job saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputFile {
    /// Path below the input.
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// SHA-256 from the manifest; a listing has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The input's data files in `format` (`jsonl` or `parquet`), sorted by
/// path.
pub async fn files(input: &Location, format: &str) -> Result<Vec<InputFile>, TaskError> {
    let wanted = Format::parse(format).ok_or_else(|| {
        TaskError::permanent(format!(
            "format `{format}` is not one a dedup reads (jsonl, parquet)"
        ))
    })?;
    let input = dataset_input::resolve(input, &[wanted], LISTED_FILES_MAX)
        .await
        .map_err(|e| match e {
            DatasetError::TooManyFiles { url, max } => TaskError::permanent(format!(
                "{url} holds more than {max} {format} files; write a manifest or combine them"
            )),
            DatasetError::NoFiles { .. } => TaskError::permanent(format!("{e} (format: {format})")),
            e => dataset_error(e),
        })?;
    Ok(input
        .files
        .into_iter()
        .map(|f| InputFile {
            path: f.path,
            bytes: f.bytes,
            sha256: f.sha256,
        })
        .collect())
}

/// The byte range of each file that shard `shard` of `shards` owns:
/// (file index, start, end), empty ranges left out.
pub fn ranges(files: &[InputFile], shard: u64, shards: u64) -> Vec<(usize, u64, u64)> {
    let total: u128 = files.iter().map(|f| u128::from(f.bytes)).sum();
    let cut = |i: u64| (total * u128::from(i) / u128::from(shards.max(1))) as u64;
    let (lo, hi) = (cut(shard), cut(shard + 1));
    let mut out = Vec::new();
    let mut at = 0u64;
    for (i, f) in files.iter().enumerate() {
        let (start, end) = (lo.max(at), hi.min(at + f.bytes));
        if start < end {
            out.push((i, start - at, end - at));
        }
        at += f.bytes;
    }
    out
}

/// Where the compared values are.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The id field.
    pub id: String,
    /// The text field.
    pub text: String,
    /// The field `keep: field` compares.
    pub keep: Option<String>,
}

/// One document as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc<'a> {
    /// Its id, as text.
    pub id: Cow<'a, str>,
    /// Its text.
    pub text: Cow<'a, str>,
    /// The keep field's value; `None` when absent or null.
    pub keep: Option<f64>,
}

/// Some records of the input, in order.
pub enum Chunk {
    /// JSONL lines, each with the offset it starts at.
    Lines {
        /// The file.
        path: Arc<str>,
        /// The lines.
        lines: LineBatch,
    },
    /// A Parquet batch.
    Batch {
        /// The file.
        path: Arc<str>,
        /// The rows, as the file holds them (the filter writes these).
        batch: RecordBatch,
        /// The same rows with the id and text columns in a plain string
        /// type, whatever their encoding in the file (the documents come
        /// from these).
        compared: RecordBatch,
    },
}

impl Chunk {
    /// Records in it.
    pub fn len(&self) -> usize {
        match self {
            Chunk::Lines { lines, .. } => lines.len(),
            Chunk::Batch { batch, .. } => batch.num_rows(),
        }
    }

    /// The documents in it, in order.
    pub fn docs(&self, fields: &Fields) -> Result<Vec<Doc<'_>>, TaskError> {
        match self {
            Chunk::Lines { path, lines } => lines
                .iter()
                .map(|(offset, line)| parse_at(path, offset, line, fields))
                .collect(),
            Chunk::Batch { path, compared, .. } => batch_docs(compared, fields)
                .map_err(|e| TaskError::permanent(format!("{path}: {e}"))),
        }
    }

    /// The `k`th document in it alone, for a reader that needs few.
    pub fn doc(&self, k: usize, fields: &Fields) -> Result<Option<Doc<'_>>, TaskError> {
        match self {
            Chunk::Lines { path, lines } => lines
                .get(k)
                .map(|(offset, line)| parse_at(path, offset, line, fields))
                .transpose(),
            Chunk::Batch { path, compared, .. } => {
                if k >= compared.num_rows() {
                    return Ok(None);
                }
                let row = compared.slice(k, 1);
                let docs = batch_docs(&row, fields)
                    .map_err(|e| TaskError::permanent(format!("{path}: {e}")))?;
                // Owned: the row is a view that ends here.
                Ok(docs.into_iter().next().map(|d| Doc {
                    id: Cow::Owned(d.id.into_owned()),
                    text: Cow::Owned(d.text.into_owned()),
                    keep: d.keep,
                }))
            }
        }
    }
}

/// The chunks of the records shard `shard` owns, in input order. With
/// `all_columns` false, Parquet is read with only the compared columns.
pub fn chunks(
    input: &Location,
    files: &[InputFile],
    format: &str,
    shard: u64,
    shards: u64,
    fields: &Fields,
    all_columns: bool,
) -> BoxStream<'static, Result<Chunk, TaskError>> {
    let location = input.clone();
    let parquet = format == "parquet";
    let mut columns = vec![fields.id.clone(), fields.text.clone()];
    columns.extend(fields.keep.clone());
    columns.dedup();
    let work: Vec<(Arc<str>, u64, u64, u64)> = ranges(files, shard, shards)
        .into_iter()
        .map(|(i, a, b)| (Arc::from(files[i].path.as_str()), files[i].bytes, a, b))
        .collect();
    let (id, text) = (fields.id.clone(), fields.text.clone());
    futures::stream::iter(work)
        .then(move |(path, size, start, end)| {
            let location = location.clone();
            let columns = columns.clone();
            let (id, text) = (id.clone(), text.clone());
            async move {
                if parquet {
                    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
                    let (_, batches) = read_row_groups_starting_in(
                        &location,
                        &path,
                        start,
                        end,
                        (!all_columns).then_some(&names[..]),
                        READ_BATCH_ROWS,
                    )
                    .await
                    .map_err(dataset_error)?;
                    let path = path.clone();
                    let text = [(id.clone(), TextKind::Id), (text.clone(), TextKind::Plain)];
                    Ok::<_, TaskError>(
                        batches
                            .map_err(dataset_error)
                            .and_then(move |batch| {
                                let columns = text.each_ref().map(|(n, t)| (n.as_str(), *t));
                                let compared = strings::with_plain_columns(&batch, &columns)
                                    .map_err(|e| TaskError::permanent(format!("{path}: {e}")));
                                let path = path.clone();
                                async move {
                                    Ok(Chunk::Batch {
                                        path,
                                        batch,
                                        compared: compared?,
                                    })
                                }
                            })
                            .boxed(),
                    )
                } else {
                    let lines = jsonl::line_batches_starting_in(
                        &location,
                        &path,
                        size,
                        start,
                        end,
                        LINES_PER_CHUNK,
                    );
                    Ok(lines
                        .map_ok(move |lines| Chunk::Lines {
                            path: path.clone(),
                            lines,
                        })
                        .map_err(dataset_error)
                        .boxed())
                }
            }
        })
        .try_flatten()
        .boxed()
}

/// [`parse_line`], its error naming the file and the line's offset.
fn parse_at<'a>(
    path: &str,
    offset: u64,
    line: &'a [u8],
    fields: &Fields,
) -> Result<Doc<'a>, TaskError> {
    parse_line(line, fields)
        .map_err(|e| TaskError::permanent(format!("{path}: the line at byte {offset}: {e}")))
}

/// Reads the compared fields of one JSON object, skipping the rest
/// without building it.
pub fn parse_line<'a>(line: &'a [u8], fields: &Fields) -> Result<Doc<'a>, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let doc = LineSeed(fields)
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let id = doc
        .id
        .ok_or_else(|| format!("no `{}` (the id field)", fields.id))?;
    let text = doc
        .text
        .ok_or_else(|| format!("no `{}` (the text field)", fields.text))?;
    Ok(Doc {
        id,
        text,
        keep: doc.keep,
    })
}

struct LineSeed<'f>(&'f Fields);

#[derive(Default)]
struct LineDoc<'a> {
    id: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    keep: Option<f64>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = LineDoc<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = LineDoc<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut doc = LineDoc::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let key = key.0;
            if key == self.0.id.as_str() {
                doc.id = Some(map.next_value::<IdValue<'de>>()?.0);
            } else if key == self.0.text.as_str() {
                doc.text = Some(map.next_value::<Text<'de>>()?.0);
            } else if self.0.keep.as_deref() == Some(&*key) {
                doc.keep = map.next_value::<KeepValue>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(doc)
    }
}

/// A string, borrowed from the line when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An id: a string, or an integer taken as its decimal text.
struct IdValue<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for IdValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The keep field: a number, or null for none.
struct KeepValue(Option<f64>);

impl<'de> Deserialize<'de> for KeepValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeepValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or null (the keep field)")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(KeepValue(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(KeepValue(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(KeepValue(Some(v as f64)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(KeepValue(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(KeepValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The documents of a Parquet batch.
fn batch_docs<'a>(batch: &'a RecordBatch, fields: &Fields) -> Result<Vec<Doc<'a>>, String> {
    let column = |name: &str, what: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("has no column `{name}` (the {what} field)"))
    };
    let ids = strings(column(&fields.id, "id")?, &fields.id, true)?;
    let texts = strings(column(&fields.text, "text")?, &fields.text, false)?;
    let keep = match &fields.keep {
        Some(k) => Some(numbers(column(k, "keep")?, k)?),
        None => None,
    };
    Ok((0..batch.num_rows())
        .map(|i| Doc {
            id: ids[i].clone(),
            text: texts[i].clone(),
            keep: keep.as_ref().and_then(|k| k[i]),
        })
        .collect())
}

/// A column as text per row, in one of the plain string types (the
/// reader casts the others). A null text is empty; a null id is an error,
/// since the duplicate map could not name that document.
fn strings<'a>(
    array: &'a Arc<dyn Array>,
    name: &str,
    id: bool,
) -> Result<Vec<Cow<'a, str>>, String> {
    let n = array.len();
    let text = |i: usize, s: &'a str| {
        if !array.is_null(i) {
            Ok(Cow::Borrowed(s))
        } else if id {
            Err(format!(
                "row {i} of a batch has a null `{name}` (the id field); every document needs an id"
            ))
        } else {
            Ok(Cow::Borrowed(""))
        }
    };
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            (0..n).map(|i| text(i, a.value(i))).collect()
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            (0..n).map(|i| text(i, a.value(i))).collect()
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            (0..n).map(|i| text(i, a.value(i))).collect()
        }
        other => Err(strings::Unusable {
            column: name.to_owned(),
            data_type: other.to_string(),
            accepted: if id { TextKind::Id } else { TextKind::Plain }.accepted(),
        }
        .to_string()),
    }
}

/// A numeric column as `f64` per row; null is `None`.
fn numbers(array: &Arc<dyn Array>, name: &str) -> Result<Vec<Option<f64>>, String> {
    let n = array.len();
    macro_rules! each {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            (0..n)
                .map(|i| (!a.is_null(i)).then(|| a.value(i) as f64))
                .collect()
        }};
    }
    Ok(match array.data_type() {
        DataType::Float64 => each!(Float64Type),
        DataType::Float32 => each!(Float32Type),
        DataType::Int64 => each!(Int64Type),
        DataType::Int32 => each!(Int32Type),
        DataType::UInt64 => each!(UInt64Type),
        DataType::UInt32 => each!(UInt32Type),
        other => {
            return Err(format!(
                "column `{name}` is {other}; `keepField` must be numeric"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(keep: Option<&str>) -> Fields {
        Fields {
            id: "id".into(),
            text: "text".into(),
            keep: keep.map(str::to_owned),
        }
    }

    #[test]
    fn a_line_gives_its_fields_and_skips_the_rest() {
        let doc = parse_line(
            br#"{"meta":{"a":[1,2]},"text":"a \"cat\"","id":7,"q":0.5}"#,
            &fields(Some("q")),
        )
        .unwrap();
        assert_eq!(doc.id, "7");
        assert_eq!(doc.text, "a \"cat\"");
        assert_eq!(doc.keep, Some(0.5));
        let doc = parse_line(br#"{"id":"x","text":"t","q":null}"#, &fields(Some("q"))).unwrap();
        assert_eq!(doc.keep, None);
        assert!(
            matches!(doc.text, Cow::Borrowed(_)),
            "plain strings are not copied"
        );
        let err = parse_line(br#"{"id":"x"}"#, &fields(None)).unwrap_err();
        assert!(err.contains("no `text`"), "{err}");
        let err =
            parse_line(br#"{"id":"x","text":"t","q":"high"}"#, &fields(Some("q"))).unwrap_err();
        assert!(err.contains("number"), "{err}");
        assert!(parse_line(br#"{"id":"x","text":"t"} trailing"#, &fields(None)).is_err());
        assert!(parse_line(br#"[1]"#, &fields(None)).is_err());
    }

    #[test]
    fn ranges_tile_the_files_in_order() {
        let files: Vec<InputFile> = [10u64, 0, 25, 5]
            .iter()
            .enumerate()
            .map(|(i, &bytes)| InputFile {
                path: format!("f{i}"),
                bytes,
                sha256: None,
            })
            .collect();
        for shards in [1u64, 2, 3, 7, 40, 100] {
            let mut covered = Vec::new();
            for s in 0..shards {
                for (f, a, b) in ranges(&files, s, shards) {
                    covered.push((f, a, b));
                }
            }
            // Per file, the ranges are contiguous and cover it exactly.
            for (i, f) in files.iter().enumerate() {
                let mut at = 0;
                for &(_, a, b) in covered.iter().filter(|(g, ..)| *g == i) {
                    assert_eq!(a, at, "{shards} shards, file {i}");
                    at = b;
                }
                assert_eq!(at, f.bytes, "{shards} shards, file {i}");
            }
        }
    }
}
