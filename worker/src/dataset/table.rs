//! CSV and JSONL files as Arrow record batches, decoded by the `arrow-csv`
//! and `arrow-json` push decoders as the object's bytes stream in, so a
//! file of any size costs one batch of memory.
//!
//! A file's schema is inferred from its first records, then the columns a
//! job knows get the types it reads them as ([`infer_schema`]). CSV holds
//! no types, so every other CSV column stays a string, as written; JSON
//! says its own, so the other JSONL columns keep what inference found.

use std::io::Cursor;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use super::DatasetError;
use super::input::Format;
use super::location::Location;

/// Bytes read from the start of a file to infer its schema.
const INFER_BYTES: u64 = 1 << 20;

/// CSV records looked at to infer a header's columns.
const INFER_RECORDS: usize = 1_000;

/// The schema of the text table `relative` below `location`, from its
/// first records, with `known` columns given the types listed there.
pub async fn infer_schema(
    location: &Location,
    relative: &str,
    format: Format,
    known: &[(&str, DataType)],
) -> Result<Schema, DatasetError> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..INFER_BYTES)),
        ..GetOptions::default()
    };
    let path = location.path(relative);
    let head = match location.store.get_opts(&path, options).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => Bytes::new(),
        Err(e) => return Err(e.into()),
    };
    // Only whole records: the range may end inside one.
    let whole = match memchr::memrchr(b'\n', &head) {
        Some(end) if head.len() as u64 == INFER_BYTES => head.slice(..=end),
        _ => head,
    };
    let bad = |e: ArrowError| DatasetError::Decode {
        path: relative.to_owned(),
        reason: e.to_string(),
    };
    let inferred = match format {
        Format::Csv => {
            let (schema, _) = arrow_csv::reader::Format::default()
                .with_header(true)
                .infer_schema(Cursor::new(&whole[..]), Some(INFER_RECORDS))
                .map_err(bad)?;
            // Every column a string, as the file holds it.
            Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            )
        }
        Format::Jsonl => {
            let (schema, _) = arrow_json::reader::infer_json_schema(Cursor::new(&whole[..]), None)
                .map_err(bad)?;
            schema
        }
        Format::Parquet => {
            return Err(DatasetError::Decode {
                path: relative.to_owned(),
                reason: "is Parquet, not a text table".to_owned(),
            });
        }
    };
    let mut fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| match known.iter().find(|(name, _)| name == f.name()) {
            Some((_, t)) => Field::new(f.name(), t.clone(), true),
            None => f.as_ref().clone(),
        })
        .collect();
    // JSON objects name their fields, so a known one that the first
    // records leave out (boxes after a file's classification rows) is
    // still read where it appears. CSV columns are positional: the header
    // is the schema.
    if format == Format::Jsonl {
        for (name, t) in known {
            if inferred.field_with_name(name).is_err() {
                fields.push(Field::new(*name, t.clone(), true));
            }
        }
    }
    Ok(Schema::new(fields))
}

/// The decoder of one format.
enum Decoder {
    Csv(Box<arrow_csv::reader::Decoder>),
    Json(arrow_json::reader::Decoder),
}

impl Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(buf),
            Decoder::Json(d) => d.decode(buf),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
        }
    }
}

/// Where a read is.
struct Reading {
    body: BoxStream<'static, object_store::Result<Bytes>>,
    decoder: Decoder,
    pending: Bytes,
    ended: bool,
    path: String,
}

/// Reads the text table `relative` below `location` as batches of up to
/// `batch_rows` rows of `schema` (from [`infer_schema`]).
pub async fn read(
    location: &Location,
    relative: &str,
    format: Format,
    schema: SchemaRef,
    batch_rows: usize,
) -> Result<impl Stream<Item = Result<RecordBatch, DatasetError>> + Send + use<>, DatasetError> {
    let decoder = match format {
        Format::Csv => Decoder::Csv(Box::new(
            arrow_csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(batch_rows.max(1))
                .build_decoder(),
        )),
        Format::Jsonl => Decoder::Json(
            arrow_json::ReaderBuilder::new(schema)
                .with_batch_size(batch_rows.max(1))
                // An id written as a number reads into a string column.
                .with_coerce_primitive(true)
                .build_decoder()
                .map_err(|e| DatasetError::Decode {
                    path: relative.to_owned(),
                    reason: e.to_string(),
                })?,
        ),
        Format::Parquet => {
            return Err(DatasetError::Decode {
                path: relative.to_owned(),
                reason: "is Parquet, not a text table".to_owned(),
            });
        }
    };
    let body = location
        .store
        .get(&location.path(relative))
        .await?
        .into_stream();
    let reading = Reading {
        body,
        decoder,
        pending: Bytes::new(),
        ended: false,
        path: relative.to_owned(),
    };
    Ok(futures::stream::try_unfold(reading, next_batch).boxed())
}

/// The next batch of a read, and the read to go on with.
async fn next_batch(mut r: Reading) -> Result<Option<(RecordBatch, Reading)>, DatasetError> {
    let bad = |path: &str, e: ArrowError| DatasetError::Decode {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    loop {
        if r.pending.is_empty() && !r.ended {
            match r.body.next().await {
                Some(chunk) => r.pending = chunk?,
                None => {
                    r.ended = true;
                    // An empty buffer tells the CSV decoder the input
                    // ended, which completes a last line without a line
                    // end.
                    r.decoder.decode(&[]).map_err(|e| bad(&r.path, e))?;
                }
            }
        }
        if r.pending.is_empty() {
            let batch = r.decoder.flush().map_err(|e| bad(&r.path, e))?;
            return Ok(batch.map(|b| (b, r)));
        }
        let n = r.decoder.decode(&r.pending).map_err(|e| bad(&r.path, e))?;
        r.pending.advance(n);
        // The decoder stops short when its batch is full.
        if !r.pending.is_empty()
            && let Some(batch) = r.decoder.flush().map_err(|e| bad(&r.path, e))?
        {
            return Ok(Some((batch, r)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMillisecondType};
    use arrow_schema::TimeUnit;
    use futures::TryStreamExt;

    use super::*;

    fn utc_ms() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
    }

    async fn table(
        body: &str,
        name: &str,
        format: Format,
        batch_rows: usize,
    ) -> Result<(Schema, Vec<RecordBatch>), DatasetError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), body).unwrap();
        let at = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let known = [("created_at", utc_ms()), ("x", DataType::Float64)];
        let schema = infer_schema(&at, name, format, &known).await?;
        let batches = read(&at, name, format, Arc::new(schema.clone()), batch_rows)
            .await?
            .try_collect()
            .await?;
        Ok((schema, batches))
    }

    #[tokio::test]
    async fn csv_columns_are_strings_but_the_known_ones() {
        let body = "id,created_at,x,note\n1,2026-01-02T03:04:05Z,1.5,\"a, b\"\n2,2026-01-02 03:04:06,2,c\n3,2026-01-02T03:04:07.5Z,,d";
        let (schema, batches) = table(body, "t.csv", Format::Csv, 2).await.unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &utc_ms());
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(batches[0].num_rows(), 2, "batches are cut at batch_rows");
        let note = batches[0].column(3).as_string::<i32>();
        assert_eq!(note.value(0), "a, b");
        let ts = batches[1]
            .column(1)
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(
            ts.value(0),
            1_767_323_047_500,
            "the last line has no line end"
        );
        let x = batches[1].column(2).as_primitive::<Float64Type>();
        assert!(x.is_null(0));
    }

    #[tokio::test]
    async fn jsonl_keeps_its_types_and_reads_numbers_into_strings() {
        let body =
            "{\"id\":\"a\",\"n\":1,\"created_at\":\"2026-01-02T03:04:05Z\"}\n{\"id\":7,\"n\":2}\n";
        let (schema, batches) = table(body, "t.jsonl", Format::Jsonl, 100).await.unwrap();
        assert_eq!(
            schema.field_with_name("n").unwrap().data_type(),
            &DataType::Int64
        );
        let ids = batches[0].column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "7"));
    }

    #[tokio::test]
    async fn a_bad_value_names_the_file() {
        let err = table("x\n1.5\nnot-a-number\n", "bad.csv", Format::Csv, 100)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.csv: "), "{err}");
        assert!(err.contains("not-a-number"), "{err}");
    }
}
