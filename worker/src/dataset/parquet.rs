//! Parquet in and out, a row group at a time. A writer holds at most one
//! row group in memory and streams it to the store as a multipart upload;
//! a reader decodes one batch at a time. So a task's memory is bounded by
//! its row-group and batch sizes, not by the size of its data.

use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, RowFilter};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use super::DatasetError;
use super::location::Location;
use super::manifest::{ManifestColumn, ManifestFile, hex};
use super::reader::StoreReader;

/// Rows per row group unless a caller says otherwise: big enough for
/// efficient columnar reads, small enough that one group of a wide table
/// stays in the tens of megabytes.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per decoded batch when reading.
pub const READ_BATCH_ROWS: usize = 8 * 1024;

/// Bytes written so far and their running SHA-256.
#[derive(Default)]
struct Tally {
    sha: Sha256,
    bytes: u64,
}

/// Passes bytes on to the store, hashing them on the way, so the
/// manifest's checksum costs no second read.
struct HashingWriter<W> {
    inner: W,
    tally: Arc<Mutex<Tally>>,
}

impl<W: AsyncFileWriter> AsyncFileWriter for HashingWriter<W> {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        if let Ok(mut t) = self.tally.lock() {
            t.sha.update(&bs);
            t.bytes += bs.len() as u64;
        }
        self.inner.write(bs)
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.inner.complete()
    }
}

/// A Parquet file being written.
pub struct ParquetSink {
    writer: AsyncArrowWriter<HashingWriter<BufWriter>>,
    tally: Arc<Mutex<Tally>>,
    relative: String,
    rows: u64,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("path", &self.relative)
            .field("rows", &self.rows)
            .finish()
    }
}

impl ParquetSink {
    /// Starts `relative` (a slash-separated path) below `location`, with
    /// Snappy compression and row groups of `row_group_rows`.
    pub fn create(
        location: &Location,
        relative: &str,
        schema: SchemaRef,
        row_group_rows: usize,
    ) -> Result<Self, DatasetError> {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let inner = BufWriter::new(location.store.clone(), location.path(relative));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        let writer = AsyncArrowWriter::try_new(
            HashingWriter {
                inner,
                tally: tally.clone(),
            },
            schema,
            Some(props),
        )?;
        Ok(Self {
            writer,
            tally,
            relative: relative.to_owned(),
            rows: 0,
        })
    }

    /// Appends a batch; a full row group is encoded and uploaded.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        self.writer.write(batch).await?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the footer and completes the upload; returns the file's
    /// manifest entry. Until then the object does not exist.
    pub async fn finish(self) -> Result<ManifestFile, DatasetError> {
        self.writer.close().await?;
        let (sha, bytes) = match self.tally.lock() {
            Ok(t) => (hex(&t.sha.clone().finalize()), t.bytes),
            Err(_) => {
                return Err(DatasetError::Mismatch {
                    path: self.relative,
                    reason: "checksum state poisoned".into(),
                });
            }
        };
        Ok(ManifestFile {
            path: self.relative,
            rows: self.rows,
            bytes,
            sha256: sha,
        })
    }
}

/// The schema as a manifest lists it.
pub fn manifest_schema(schema: &SchemaRef) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Reads `relative` below `location` as a stream of batches of up to
/// `batch_rows` rows, with its schema.
pub async fn read(
    location: &Location,
    relative: &str,
    batch_rows: usize,
) -> Result<
    (
        SchemaRef,
        impl Stream<Item = Result<RecordBatch, DatasetError>> + Send + use<>,
    ),
    DatasetError,
> {
    let builder = open(location, relative).await?;
    let schema = builder.schema().clone();
    let stream = builder.with_batch_size(batch_rows.max(1)).build()?;
    Ok((schema, stream.map_err(DatasetError::from).boxed()))
}

/// The Arrow schema of `relative` below `location`, from its footer.
pub async fn schema(location: &Location, relative: &str) -> Result<SchemaRef, DatasetError> {
    Ok(open(location, relative).await?.schema().clone())
}

/// Rows of `relative` below `location`, from its footer alone.
pub async fn row_count(location: &Location, relative: &str) -> Result<u64, DatasetError> {
    let builder = open(location, relative).await?;
    Ok(u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// A reader of `relative` below `location`, its footer read.
async fn open(
    location: &Location,
    relative: &str,
) -> Result<ParquetRecordBatchStreamBuilder<StoreReader>, DatasetError> {
    let reader = StoreReader::new(location.store.clone(), location.path(relative));
    Ok(ParquetRecordBatchStreamBuilder::new(reader).await?)
}

/// Reads the row groups of `relative` whose data starts in the byte range
/// `start..end`, with only the top-level `columns` (all when `None`), as
/// batches of up to `batch_rows` rows, with their schema. A row group
/// belongs to the range its first byte is in, so ranges that tile a file
/// read each row group exactly once and only the footers of the files a
/// range touches are fetched.
pub async fn read_row_groups_starting_in(
    location: &Location,
    relative: &str,
    start: u64,
    end: u64,
    columns: Option<&[&str]>,
    batch_rows: usize,
) -> Result<
    (
        SchemaRef,
        impl Stream<Item = Result<RecordBatch, DatasetError>> + Send + use<>,
    ),
    DatasetError,
> {
    let builder = open(location, relative).await?;
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            let first = g.columns().first().map_or(0, |c| {
                c.dictionary_page_offset()
                    .unwrap_or_else(|| c.data_page_offset())
            });
            (start..end).contains(&u64::try_from(first).unwrap_or(0))
        })
        .map(|(i, _)| i)
        .collect();
    let mask = match columns {
        None => ProjectionMask::all(),
        Some(names) => {
            let mut roots = Vec::with_capacity(names.len());
            for name in names {
                roots.push(builder.schema().index_of(name).map_err(|_| {
                    DatasetError::Mismatch {
                        path: relative.to_owned(),
                        reason: format!("has no column `{name}`"),
                    }
                })?);
            }
            ProjectionMask::roots(builder.parquet_schema(), roots)
        }
    };
    let stream = builder
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()?;
    let schema = stream.schema().clone();
    Ok((schema, stream.map_err(DatasetError::from).boxed()))
}

/// A row predicate evaluated while reading: it sees only the columns it
/// names and says which rows to keep.
pub type Predicate = Box<
    dyn FnMut(RecordBatch) -> Result<arrow_array::BooleanArray, arrow_schema::ArrowError> + Send,
>;

/// Reads `relative` like [`read`], but decodes the columns `filter_columns`
/// first and everything else only for the rows `predicate` keeps: a shard
/// that owns one row in eight decodes the rest of the row for that one.
/// The predicate sees its columns in file order.
pub async fn read_where(
    location: &Location,
    relative: &str,
    batch_rows: usize,
    filter_columns: &[&str],
    predicate: Predicate,
) -> Result<
    (
        SchemaRef,
        impl Stream<Item = Result<RecordBatch, DatasetError>> + Send + use<>,
    ),
    DatasetError,
> {
    let builder = open(location, relative).await?;
    let schema = builder.schema().clone();
    let leaves: Vec<usize> = builder
        .parquet_schema()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| filter_columns.contains(&c.path().string().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
    let filter = RowFilter::new(vec![Box::new(ArrowPredicateFn::new(mask, predicate))]);
    let stream = builder
        .with_batch_size(batch_rows.max(1))
        .with_row_filter(filter)
        .build()?;
    Ok((schema, stream.map_err(DatasetError::from).boxed()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::dataset::manifest::{self, DatasetManifest, Writer};

    fn batch(schema: &SchemaRef, start: i64, rows: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(start..start + rows)),
                Arc::new(StringArray::from_iter_values(
                    (start..start + rows).map(|i| format!("item-{i}")),
                )),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn row_groups_stream_out_and_back_and_the_manifest_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let mut sink =
            ParquetSink::create(&location, "part/0.parquet", schema.clone(), 1000).unwrap();
        for chunk in 0..5 {
            sink.write(&batch(&schema, chunk * 700, 700)).await.unwrap();
        }
        // Nothing is visible before the footer is written.
        assert!(
            !dir.path().join("part/0.parquet").exists(),
            "a half-written file is visible"
        );
        let file = sink.finish().await.unwrap();
        assert_eq!(file.rows, 3500);
        let on_disk = std::fs::read(dir.path().join("part/0.parquet")).unwrap();
        assert_eq!(file.bytes, on_disk.len() as u64);
        assert_eq!(file.sha256, hex(&Sha256::digest(&on_disk)));

        let (read_schema, stream) = read(&location, "part/0.parquet", 512).await.unwrap();
        assert_eq!(read_schema.fields().len(), 2);
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        assert!(batches.iter().all(|b| b.num_rows() <= 512));
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, (0..3500).collect::<Vec<_>>());

        let m = DatasetManifest::new(vec![file], manifest_schema(&schema), &Writer::default());
        manifest::write(&location, &m).await.unwrap();
        let back = manifest::read(&location).await.unwrap().unwrap();
        assert_eq!(back, m);
        manifest::verify(&location, &back).await.unwrap();
        // A changed byte is caught.
        let mut corrupt = on_disk.clone();
        corrupt[10] ^= 1;
        std::fs::write(dir.path().join("part/0.parquet"), corrupt).unwrap();
        let err = manifest::verify(&location, &back).await.unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
        // And no manifest means nothing was committed.
        assert!(
            manifest::read(&location.child("elsewhere"))
                .await
                .unwrap()
                .is_none()
        );
    }
}
