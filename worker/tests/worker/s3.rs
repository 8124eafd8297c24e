//! The `s3://` path against a real S3-compatible server: the same Parquet
//! files and manifest written to `s3://` and to `file://` are byte for byte
//! the same, large files go up as multipart uploads and read back by byte
//! ranges, and a manifest written to S3 verifies against its objects.
//!
//! The annotation export run on `s3://` (input and output) writes the same
//! files, byte for byte, as the same export on `file://`, and publishes
//! its result at the output with S3's conditional writes: racing
//! publishers leave the highest fencing token's manifest.
//!
//! Needs an endpoint, so it is ignored by a plain `cargo test`;
//! `scripts/s3-interop.sh` (run by `.ci/run`) starts moto's server, creates
//! a bucket and runs it with `DROVER_S3_TEST_URL` and the `AWS_*`
//! variables set.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest::{self, DatasetManifest, ManifestFile, Writer};
use drover_worker::dataset::parquet::{ParquetSink, manifest_schema, read};
use futures::TryStreamExt;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]))
}

/// Rows whose text does not compress, so a few hundred thousand of them
/// make a file large enough to need a multipart upload.
fn batch(start: i64, rows: i64) -> RecordBatch {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ start as u64;
    let text = (0..rows).map(|_| {
        (0..6)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect::<String>()
    });
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + rows)),
            Arc::new(StringArray::from_iter_values(text)),
        ],
    )
    .unwrap()
}

async fn write_output(location: &Location) -> DatasetManifest {
    let mut files: Vec<ManifestFile> = Vec::new();
    for (name, rows) in [("part-0.parquet", 200_000i64), ("part-1.parquet", 1_000)] {
        let mut sink = ParquetSink::create(location, name, schema(), 50_000).unwrap();
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(20_000);
            sink.write(&batch(start, n)).await.unwrap();
            start += n;
        }
        files.push(sink.finish().await.unwrap());
    }
    let writer = Writer {
        task: "j1/0/0".into(),
        attempt: 1,
        fencing_token: 7,
        code_version: "test".into(),
        input_fingerprint: String::new(),
    };
    let m = DatasetManifest::new(files, manifest_schema(&schema()), &writer);
    manifest::write(location, &m).await.unwrap();
    m
}

#[tokio::test]
#[ignore = "needs an S3-compatible endpoint: scripts/s3-interop.sh runs it"]
async fn s3_and_file_outputs_are_the_same_and_verify() {
    let url = std::env::var("DROVER_S3_TEST_URL")
        .expect("DROVER_S3_TEST_URL=s3://bucket/prefix (see scripts/s3-interop.sh)");
    let s3 = Location::parse(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Location::parse(dir.path().to_str().unwrap()).unwrap();

    let on_s3 = write_output(&s3).await;
    let on_disk = write_output(&local).await;
    assert_eq!(on_s3, on_disk, "the same output on s3:// and file://");
    assert!(
        on_s3.files[0].bytes > 10 * 1024 * 1024,
        "part-0 is {} bytes: too small to need a multipart upload",
        on_s3.files[0].bytes
    );

    let back = manifest::read(&s3)
        .await
        .unwrap()
        .expect("a manifest on s3");
    assert_eq!(back, on_s3);
    manifest::verify(&s3, &back).await.unwrap();
    let (_, stream) = read(&s3, "part-0.parquet", 8192).await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 200_000);
    // Nothing committed elsewhere reads as nothing.
    assert!(manifest::read(&s3.child("absent")).await.unwrap().is_none());
}

/// Paths and SHA-256 of an output's files, its manifest left out (it
/// names the attempt and its config).
fn files_of(m: &crate::support::export::Committed) -> BTreeMap<String, (u64, String)> {
    m.dataset
        .files
        .iter()
        .map(|f| (f.path.clone(), (f.rows, f.sha256.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an S3-compatible endpoint: scripts/s3-interop.sh"]
async fn the_annotation_export_on_s3_writes_what_it_writes_on_file() {
    use drover_worker::datagen::annotations::{AnnotationsSpec, generate};
    let url = std::env::var("DROVER_S3_TEST_URL")
        .expect("DROVER_S3_TEST_URL=s3://bucket/prefix (see scripts/s3-interop.sh)");
    let dir = tempfile::tempdir().unwrap();
    let key = crate::support::export::key_file(dir.path(), 7);
    let spec = AnnotationsSpec {
        projects: 2,
        items: 600,
        seed: 21,
    };
    let mut runs = Vec::new();
    for root in [
        format!("{url}/export"),
        dir.path().join("file").display().to_string(),
    ] {
        let input = format!("{root}/annotations");
        generate(&Location::parse(&input).unwrap(), &spec, |_| {})
            .await
            .unwrap();
        let cfg = crate::support::export::config(
            &input,
            &format!("{root}/out"),
            &key,
            serde_json::json!({}),
        );
        let (merged, shards) = crate::support::export::run(&cfg, 3, dir.path(), 10)
            .await
            .unwrap();
        // The merge's manifest is in the store and verifies.
        let out = Location::parse(&format!("{root}/out/{}", merged.prefix())).unwrap();
        let m = manifest::read(&out).await.unwrap().unwrap();
        manifest::verify(&out, &m).await.unwrap();
        runs.push((merged, shards));
    }
    let (s3, file) = (&runs[0], &runs[1]);
    assert_eq!(files_of(&s3.0), files_of(&file.0));
    for (a, b) in s3.1.iter().zip(&file.1) {
        assert_eq!(files_of(a), files_of(b));
    }
    assert!(files_of(&s3.0).len() > 10);
    // Both published the same result at the output itself.
    let mut published = Vec::new();
    for root in [
        format!("{url}/export"),
        dir.path().join("file").display().to_string(),
    ] {
        let at = Location::parse(&format!("{root}/out")).unwrap();
        let m = manifest::read(&at)
            .await
            .unwrap()
            .expect("a published result");
        manifest::verify(&at, &m).await.unwrap();
        published.push(m.files);
    }
    assert_eq!(published[0], published[1]);
    println!(
        "annotation export: {} files on s3:// and file://, byte for byte the same, published at the output",
        files_of(&s3.0).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs an S3-compatible endpoint: scripts/s3-interop.sh"]
async fn racing_manifest_writers_on_s3_leave_the_highest_token() {
    let url = std::env::var("DROVER_S3_TEST_URL")
        .expect("DROVER_S3_TEST_URL=s3://bucket/prefix (see scripts/s3-interop.sh)");
    let at = Location::parse(&format!("{url}/race")).unwrap();
    let by = |token: u64| {
        DatasetManifest::new(
            Vec::new(),
            Vec::new(),
            &Writer {
                fencing_token: token,
                ..Writer::default()
            },
        )
    };
    let writers: Vec<_> = [5u64, 9, 2, 12, 7, 1, 11, 3]
        .into_iter()
        .map(|t| {
            let (at, m) = (at.clone(), by(t));
            tokio::spawn(async move { manifest::write_unless_newer(&at, &m).await.unwrap() })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        manifest::read(&at).await.unwrap().unwrap().fencing_token,
        12
    );
    assert_eq!(
        manifest::write_unless_newer(&at, &by(4)).await.unwrap(),
        manifest::Swapped::Newer(12)
    );
}
