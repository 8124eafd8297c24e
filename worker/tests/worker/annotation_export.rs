//! The annotation export end to end on generated data: every format
//! written and consistent with the report, Dawid-Skene against majority
//! vote on the generator's truth, no raw annotator id or dropped field
//! anywhere in the output, pseudonyms per key, a shard that dies half-way
//! leaving nothing a reader would see, and a rerun writing the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::support::export;
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use drover_worker::datagen::annotations::{self, AnnotationsSpec};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest;
use drover_worker::dataset::parquet;
use drover_worker::executors::Executor;
use drover_worker::executors::annotation_export::AnnotationExport;
use futures::TryStreamExt;

async fn generate(dir: &Path, projects: u32, items: u64, seed: u64) -> String {
    let url = dir.join("data").display().to_string();
    let loc = Location::parse(&url).unwrap();
    annotations::generate(
        &loc,
        &AnnotationsSpec {
            projects,
            items,
            seed,
        },
        |_| {},
    )
    .await
    .unwrap();
    url
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

async fn batches(path: &Path) -> Vec<RecordBatch> {
    let loc = Location::parse(path.parent().unwrap().to_str().unwrap()).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let (_, stream) = parquet::read(&loc, name, 8192).await.unwrap();
    stream.try_collect().await.unwrap()
}

/// Every string in a batch, list values included.
fn strings(batch: &RecordBatch) -> Vec<String> {
    let mut out = Vec::new();
    for c in batch.columns() {
        let c = match c.data_type() {
            DataType::List(_) => c.as_list::<i32>().values().clone(),
            _ => c.clone(),
        };
        if let Some(s) = c.as_string_opt::<i32>() {
            out.extend(s.iter().flatten().map(str::to_owned));
        }
    }
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_writes_every_format_and_they_agree_with_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 800, 3).await;
    let out = dir.path().join("out");
    let key = export::key_file(dir.path(), 1);
    let cfg = export::config(&input, out.to_str().unwrap(), &key, serde_json::json!({}));
    let (merged, _) = export::run(&cfg, 3, dir.path(), 10).await.unwrap();
    let root = out.join(merged.prefix());
    let paths: Vec<&str> = merged
        .dataset
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    for expected in [
        "coco/street-objects-001.json",
        "jsonl/scene-type-000.jsonl",
        "jsonl/street-objects-001.jsonl",
        "parquet/annotations/part-00000.parquet",
        "parquet/labels/project=scene-type-000/part-00002.parquet",
        "quality/report.html",
        "quality/report.json",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    // No COCO for a classification project.
    assert!(!paths.contains(&"coco/scene-type-000.json"));
    // The manifest verifies against the files.
    let loc = Location::parse(root.to_str().unwrap()).unwrap();
    let m = manifest::read(&loc).await.unwrap().unwrap();
    manifest::verify(&loc, &m).await.unwrap();
    assert_eq!(m.task, "j1/2/0");

    let report = read_json(&root.join("quality/report.json"));
    let projects = report["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2);
    for p in projects {
        assert_eq!(p["items"], 800, "{p}");
        let exported = 800 - p["excludedItems"].as_u64().unwrap();
        let name = p["project"].as_str().unwrap();
        let lines = std::fs::read_to_string(root.join(format!("jsonl/{name}.jsonl"))).unwrap();
        assert_eq!(lines.lines().count() as u64, exported, "{name}");
        let alpha = p["krippendorffAlpha"].as_f64().unwrap();
        let kappa = p["fleissKappa"].as_f64().unwrap();
        println!("{name}: alpha {alpha:.3}, kappa {kappa:.3}");
        assert!(alpha > -1.0 && alpha < 1.0, "{name}: alpha {alpha}");
        // Five of each pool's 24 annotators are spammers; class agreement
        // stays well above chance, box-count agreement near it.
        if p["taskType"] == "classification" {
            assert!(alpha > 0.2, "{name}: alpha {alpha}");
        }
        let flagged = p["annotators"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["spammer"] == true)
            .count();
        assert!((4..=6).contains(&flagged), "{name}: {flagged} flagged");
        if p["taskType"] == "bbox" {
            let coco = read_json(&root.join(format!("coco/{name}.json")));
            assert_eq!(coco["images"].as_array().unwrap().len() as u64, exported);
            let objects: u64 = p["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["items"].as_u64().unwrap())
                .sum();
            assert_eq!(
                coco["annotations"].as_array().unwrap().len() as u64,
                objects
            );
            assert_eq!(coco["categories"].as_array().unwrap().len(), 5);
        }
    }
    let html = std::fs::read_to_string(root.join("quality/report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("scene-type-000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_annotator_id_or_dropped_field_appears_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 300, 5).await;
    let out = dir.path().join("out");
    let key = export::key_file(dir.path(), 2);
    let cfg = export::config(
        &input,
        out.to_str().unwrap(),
        &key,
        serde_json::json!({"shards": 2}),
    );
    export::run(&cfg, 2, dir.path(), 10).await.unwrap();
    let truth = read_json(&Path::new(&input).join("_truth/annotators.json"));
    let raw: BTreeSet<String> = truth
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["annotatorId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(raw.len(), 48);
    let mut parquet_files = 0;
    for path in files_under(&out) {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for id in &raw {
            assert!(!text.contains(id.as_str()), "{id} in {}", path.display());
        }
        assert!(!text.contains("labelvendor.example"), "{}", path.display());
        if path.extension().is_some_and(|e| e == "parquet") {
            parquet_files += 1;
            for b in batches(&path).await {
                let names: Vec<&String> =
                    b.schema_ref().fields().iter().map(|f| f.name()).collect();
                assert!(
                    !names
                        .iter()
                        .any(|n| *n == "annotator_email" || *n == "annotator_ip")
                );
                for s in strings(&b) {
                    assert!(!raw.contains(&s), "{s} in {}", path.display());
                }
            }
        }
    }
    assert!(parquet_files >= 6, "{parquet_files}");
}

/// Pseudonyms in the report of an export keyed with `key`.
async fn pseudonyms(dir: &Path, input: &str, key: u8, tag: &str) -> BTreeSet<String> {
    let out = dir.join(tag);
    let key = export::key_file(dir, key);
    let cfg = export::config(
        input,
        out.to_str().unwrap(),
        &key,
        serde_json::json!({"formats": ["jsonl"], "shards": 1}),
    );
    let (merged, _) = export::run(&cfg, 1, dir, 10).await.unwrap();
    let report = read_json(&out.join(merged.prefix()).join("quality/report.json"));
    report["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["annotators"].as_array().unwrap().clone())
        .map(|a| a["annotator"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_are_stable_for_a_key_and_differ_across_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1, 200, 9).await;
    let a = pseudonyms(dir.path(), &input, 1, "a").await;
    let again = pseudonyms(dir.path(), &input, 1, "b").await;
    let other = pseudonyms(dir.path(), &input, 2, "c").await;
    assert_eq!(a.len(), 24);
    assert_eq!(a, again);
    assert!(a.is_disjoint(&other));
    assert!(a.iter().all(|p| p.starts_with("a_") && p.len() == 34));
}

/// Accuracy of an export's class labels against the generator's truth.
async fn accuracy(dir: &Path, input: &str, method: &str, shards: u64) -> f64 {
    let out = dir.join(format!("{method}-{shards}"));
    let key = export::key_file(dir, 3);
    let cfg = export::config(
        input,
        out.to_str().unwrap(),
        &key,
        serde_json::json!({"formats": ["parquet"], "minAnnotators": 1, "shards": shards,
            "consensus": {"classes": method, "boxes": "iou_fusion", "iouThreshold": 0.5}}),
    );
    let (merged, _) = export::run(&cfg, shards, dir, 10).await.unwrap();
    let truth: HashMap<String, String> = {
        let mut t = HashMap::new();
        for b in
            batches(&Path::new(input).join("_truth/project=scene-type-000/truth.parquet")).await
        {
            let items = b.column(1).as_string::<i32>();
            let labels = b.column(2).as_string::<i32>();
            for i in 0..b.num_rows() {
                t.insert(items.value(i).to_owned(), labels.value(i).to_owned());
            }
        }
        t
    };
    let (mut right, mut total) = (0u64, 0u64);
    for f in &merged.dataset.files {
        if !f.path.starts_with("parquet/labels/project=scene-type-000/") {
            continue;
        }
        for b in batches(&out.join(merged.prefix()).join(&f.path)).await {
            let items = b.column(2).as_string::<i32>();
            let labels = b.column(5).as_string::<i32>();
            for i in 0..b.num_rows() {
                total += 1;
                right += u64::from(truth[items.value(i)] == labels.value(i));
            }
        }
    }
    assert_eq!(total, 3000, "every item has a label");
    right as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dawid_skene_beats_majority_vote_on_data_with_spammers() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1, 3000, 11).await;
    let mv = accuracy(dir.path(), &input, "majority", 3).await;
    let ds = accuracy(dir.path(), &input, "dawid_skene", 3).await;
    // Many small shards: each still labels with the one model the
    // calibration learnt from the whole project.
    let ds_many = accuracy(dir.path(), &input, "dawid_skene", 24).await;
    println!(
        "consensus accuracy on 3000 generated items (5 of 24 annotators spammers): majority {mv:.4}, dawid_skene {ds:.4} (3 shards), {ds_many:.4} (24 shards)"
    );
    assert!(ds > mv + 0.02, "dawid_skene {ds} vs majority {mv}");
    assert!(
        (ds - ds_many).abs() < 0.005,
        "{ds} with 3 shards, {ds_many} with 24"
    );
}

/// SHA-256 of each file of an output by path, the manifest left out (it
/// names the attempt).
fn hashes(m: &export::Committed) -> BTreeMap<String, String> {
    m.dataset
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_dies_half_way_leaves_nothing_visible_and_the_retry_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 400, 13).await;
    let out = dir.path().join("out");
    let key = export::key_file(dir.path(), 4);
    let cfg = export::config(&input, out.to_str().unwrap(), &key, serde_json::json!({}));

    let calibrate = export::task(&cfg, "export/calibrate", 0, 1, 40);
    let model = AnnotationExport
        .run(calibrate, export::context(dir.path()))
        .await
        .unwrap();
    // Attempts of shard 0 die at each write after the first: the place
    // their pass-through, their sums or (for a box project) their second
    // labels file go is taken, so that write fails. Each leaves what it
    // wrote before, and no manifest.
    let obstacles = [
        ("annotations", false),
        ("stats.json", true),
        ("labels/project=street-objects-001", false),
    ];
    for (n, (obstacle, as_dir)) in obstacles.iter().enumerate() {
        let token = 50 + n as u64;
        let mut dead = export::task(&cfg, "export/shard", 0, 1 + n as u32, token);
        dead.upstream_outputs = vec![export::calibration(&model)];
        let dead_dir = out.join(&dead.output_prefix);
        let blocked = dead_dir.join(obstacle);
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        if *as_dir {
            std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
        } else {
            std::fs::write(&blocked, b"in the way").unwrap();
        }
        let err = AnnotationExport
            .run(dead, export::context(dir.path()))
            .await
            .unwrap_err();
        assert!(err.retryable, "{obstacle}: {}", err.message);
        let left: Vec<PathBuf> = files_under(&dead_dir);
        assert!(
            left.iter().any(|p| p
                .to_string_lossy()
                .contains("project=scene-type-000/part.parquet")),
            "{obstacle}: it died after writing something: {left:?}"
        );
        assert!(
            !dead_dir.join("_manifest.json").exists(),
            "{obstacle}: a dead attempt committed its output"
        );
        let loc = Location::parse(dead_dir.to_str().unwrap()).unwrap();
        assert!(manifest::read(&loc).await.unwrap().is_none());
    }

    // The retries (new attempts, new prefixes) and the merge read only
    // accepted outputs; the whole export equals a clean run's, byte for
    // byte.
    let (retried, retried_shards) = export::run(&cfg, 3, dir.path(), 60).await.unwrap();
    let clean_out = dir.path().join("clean");
    let clean_cfg = export::config(
        &input,
        clean_out.to_str().unwrap(),
        &key,
        serde_json::json!({}),
    );
    let (clean, clean_shards) = export::run(&clean_cfg, 3, dir.path(), 90).await.unwrap();
    assert_eq!(hashes(&retried), hashes(&clean));
    for (r, c) in retried_shards.iter().zip(&clean_shards) {
        assert_eq!(hashes(r), hashes(c));
    }
    assert!(!hashes(&retried).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_time_and_label_filters_choose_what_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 400, 17).await;
    let out = dir.path().join("out");
    let key = export::key_file(dir.path(), 5);
    // The generator spreads items over 90 days from 2026-01-01: the first
    // 30 days hold about a third of them (annotations may come up to three
    // days after their item).
    let cfg = export::config(
        &input,
        out.to_str().unwrap(),
        &key,
        serde_json::json!({
            "projects": ["scene-type-000"],
            "timeWindow": {"start": "2026-01-01", "end": "2026-01-31"},
            "labels": ["urban", "rural"],
            "minAnnotators": 1,
            "formats": ["jsonl", "parquet"],
        }),
    );
    let (merged, _) = export::run(&cfg, 3, dir.path(), 10).await.unwrap();
    let root = out.join(merged.prefix());
    let report = read_json(&root.join("quality/report.json"));
    let projects = report["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{report:#}");
    let p = &projects[0];
    assert_eq!(p["project"], "scene-type-000");
    // Counted independently from the input: distinct items of the project
    // with a row in the window and the label set.
    let mut expected = BTreeSet::new();
    for path in files_under(&Path::new(&input).join("project=scene-type-000")) {
        for b in batches(&path).await {
            let items = b.column_by_name("item_id").unwrap().as_string::<i32>();
            let labels = b.column_by_name("label").unwrap().as_string::<i32>();
            let created = b
                .column_by_name("created_at")
                .unwrap()
                .as_primitive::<arrow_array::types::TimestampMillisecondType>();
            for i in 0..b.num_rows() {
                let t = created.value(i);
                if matches!(labels.value(i), "urban" | "rural")
                    && (1_767_225_600_000..1_769_817_600_000).contains(&t)
                {
                    expected.insert(items.value(i).to_owned());
                }
            }
        }
    }
    assert!(expected.len() > 50, "{}", expected.len());
    assert_eq!(p["items"].as_u64().unwrap(), expected.len() as u64);
    for line in std::fs::read_to_string(root.join("jsonl/scene-type-000.jsonl"))
        .unwrap()
        .lines()
    {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        for l in item["labels"].as_array().unwrap() {
            let label = l["label"].as_str().unwrap();
            assert!(label == "urban" || label == "rural", "{label}");
            for v in l["votes"].as_array().unwrap() {
                let vote = v["label"].as_str().unwrap();
                assert!(vote == "urban" || vote == "rural", "{vote}");
            }
        }
    }
    // The pass-through holds only rows in the window and label set.
    for f in merged
        .dataset
        .files
        .iter()
        .filter(|f| f.path.starts_with("parquet/annotations/"))
    {
        for b in batches(&root.join(&f.path)).await {
            let labels = b.column_by_name("label").unwrap().as_string::<i32>();
            let created = b
                .column_by_name("created_at")
                .unwrap()
                .as_primitive::<arrow_array::types::TimestampMillisecondType>();
            for i in 0..b.num_rows() {
                assert!(matches!(labels.value(i), "urban" | "rural"));
                let t = created.value(i);
                assert!((1_767_225_600_000..1_769_817_600_000).contains(&t), "{t}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_the_attempt_clearly_and_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let key = export::key_file(dir.path(), 8);
    let out = dir.path().join("out").display().to_string();
    let scratch = dir.path().to_owned();
    let run_shard = |cfg: String| {
        let t = export::task(&cfg, "export/shard", 0, 1, 5);
        let attempt = AnnotationExport.run(t, export::context(&scratch));
        async move { attempt.await.unwrap_err() }
    };
    // An empty directory: no data file to read.
    let empty = dir.path().join("empty").display().to_string();
    let err = run_shard(export::config(&empty, &out, &key, serde_json::json!({}))).await;
    assert!(
        !err.retryable
            && err
                .message
                .contains("has no .parquet/.pq, .jsonl/.ndjson, .csv files"),
        "{}",
        err.message
    );

    // A table without the annotator column.
    let table = dir.path().join("table");
    let loc = Location::parse(table.to_str().unwrap()).unwrap();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("project", DataType::Utf8, false),
        arrow_schema::Field::new("item_id", DataType::Utf8, false),
    ]));
    let mut sink =
        parquet::ParquetSink::create(&loc, "part.parquet", schema.clone(), 1000).unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow_array::StringArray::from(vec!["p"])),
            std::sync::Arc::new(arrow_array::StringArray::from(vec!["i"])),
        ],
    )
    .unwrap();
    sink.write(&batch).await.unwrap();
    let file = sink.finish().await.unwrap();
    manifest::write(
        &loc,
        &manifest::DatasetManifest::new(vec![file], vec![], &manifest::Writer::default()),
    )
    .await
    .unwrap();
    let err = run_shard(export::config(
        table.to_str().unwrap(),
        &out,
        &key,
        serde_json::json!({}),
    ))
    .await;
    assert!(!err.retryable, "{}", err.message);
    assert!(
        err.message.contains("`task_type`") || err.message.contains("`annotator_id`"),
        "{}",
        err.message
    );

    // A key that is not there, or too short to keep pseudonyms secret.
    let input = generate(dir.path(), 1, 50, 1).await;
    let missing = dir.path().join("no-such-key");
    let err = run_shard(export::config(
        &input,
        &out,
        &missing,
        serde_json::json!({}),
    ))
    .await;
    assert!(
        !err.retryable && err.message.contains("key"),
        "{}",
        err.message
    );
    let short = dir.path().join("short-key");
    std::fs::write(&short, b"tiny").unwrap();
    let err = run_shard(export::config(&input, &out, &short, serde_json::json!({}))).await;
    assert!(
        !err.retryable && err.message.contains("at least"),
        "{}",
        err.message
    );
}

/// The generated input's rows, every file in path order.
async fn input_rows(input: &str) -> Vec<RecordBatch> {
    let loc = Location::parse(input).unwrap();
    let m = manifest::read(&loc).await.unwrap().unwrap();
    let mut out = Vec::new();
    for f in m.files.iter().filter(|f| f.path.ends_with(".parquet")) {
        let (_, stream) = parquet::read(&loc, &f.path, 8192).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

/// The type a column is written as, by name; `None` leaves it.
type Encoding = dyn Fn(&str) -> Option<DataType>;

/// `batch` with each string column cast to the type `encode` gives for
/// its name (left as it is for `None`).
fn recoded(batch: &RecordBatch, encode: &Encoding) -> RecordBatch {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        match encode(f.name()).filter(|_| c.data_type() == &DataType::Utf8) {
            Some(t) => {
                columns.push(arrow_cast::cast(c, &t).unwrap());
                fields.push(arrow_schema::Field::new(f.name(), t, true));
            }
            None => {
                columns.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        columns,
    )
    .unwrap()
}

/// Asserts two runs' labels are equal, showing the first line that
/// differs rather than whole files.
fn assert_same_labels(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, tag: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{tag}"
    );
    for (path, text) in got {
        let want = &want[path];
        let first = text.lines().zip(want.lines()).position(|(a, b)| a != b);
        if let Some(i) = first {
            let cut = |s: &str| s.chars().take(600).collect::<String>();
            panic!(
                "{tag}: {path} line {i}:\n got  {}\n want {}",
                cut(text.lines().nth(i).unwrap()),
                cut(want.lines().nth(i).unwrap())
            );
        }
        assert_eq!(text.len(), want.len(), "{tag}: {path}");
    }
}

/// The exported labels of a run, by file: what users read.
async fn labels_of(input: &str, dir: &Path, tag: &str) -> BTreeMap<String, String> {
    let out = dir.join(format!("out-{tag}"));
    let key = export::key_file(dir, 1);
    let cfg = export::config(input, out.to_str().unwrap(), &key, serde_json::json!({}));
    let (merged, _) = export::run(&cfg, 3, dir, 10)
        .await
        .unwrap_or_else(|e| panic!("{tag}: {}", e.message));
    let root = out.join(merged.prefix());
    merged
        .dataset
        .files
        .iter()
        .filter(|f| f.path.starts_with("jsonl/") || f.path.starts_with("coco/"))
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f.path)).unwrap();
            (f.path.clone(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_without_a_manifest_in_any_format_and_string_encoding_export_the_same_labels() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 300, 5).await;
    let reference = labels_of(&input, dir.path(), "reference").await;
    assert!(reference.len() >= 3, "{:?}", reference.keys());
    let rows = input_rows(&input).await;

    let dictionary = |t: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(t));
    let encodings: [(&str, Box<Encoding>); 3] = [
        ("large_string", Box::new(|_| Some(DataType::LargeUtf8))),
        ("string_view", Box::new(|_| Some(DataType::Utf8View))),
        (
            "dictionary",
            Box::new(move |name| match name {
                "project" | "task_type" | "label" => Some(dictionary(DataType::Utf8)),
                "annotator_id" => Some(dictionary(DataType::LargeUtf8)),
                _ => None,
            }),
        ),
    ];
    for (tag, encode) in &encodings {
        // Two files in a Hive-style directory, plus what Spark leaves
        // beside them; no manifest.
        let at = dir.path().join(tag);
        let loc = Location::parse(at.to_str().unwrap()).unwrap();
        let halves = rows.split_at(rows.len() / 2);
        for (i, part) in [halves.0, halves.1].into_iter().enumerate() {
            let schema = recoded(&part[0], encode).schema();
            let rel = format!("batch={i}/part-{i}.parquet");
            let mut sink = parquet::ParquetSink::create(&loc, &rel, schema, 1000).unwrap();
            for b in part {
                sink.write(&recoded(b, encode)).await.unwrap();
            }
            sink.finish().await.unwrap();
        }
        std::fs::write(at.join("_SUCCESS"), b"").unwrap();
        let got = labels_of(at.to_str().unwrap(), dir.path(), tag).await;
        assert_same_labels(&got, &reference, tag);
    }

    // The same rows as CSV and as JSONL.
    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    let mut w = arrow_csv::Writer::new(std::fs::File::create(csv.join("rows.csv")).unwrap());
    for b in &rows {
        w.write(b).unwrap();
    }
    drop(w);
    let got = labels_of(csv.to_str().unwrap(), dir.path(), "csv").await;
    assert_same_labels(&got, &reference, "csv");
    let jsonl = dir.path().join("jsonl");
    std::fs::create_dir_all(&jsonl).unwrap();
    let mut w = arrow_json::LineDelimitedWriter::new(
        std::fs::File::create(jsonl.join("rows.jsonl")).unwrap(),
    );
    for b in &rows {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let got = labels_of(jsonl.to_str().unwrap(), dir.path(), "jsonl").await;
    assert_same_labels(&got, &reference, "jsonl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_column_is_named_with_its_file_type_and_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1, 50, 2).await;
    let rows = input_rows(&input).await;
    let at = dir.path().join("floats");
    let loc = Location::parse(at.to_str().unwrap()).unwrap();
    let bad = rows[0].clone();
    let bad = {
        let i = bad.schema().index_of("item_id").unwrap();
        let mut columns = bad.columns().to_vec();
        columns[i] =
            std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.5; bad.num_rows()]));
        let mut fields: Vec<arrow_schema::Field> = bad
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[i] = arrow_schema::Field::new("item_id", DataType::Float64, true);
        RecordBatch::try_new(
            std::sync::Arc::new(arrow_schema::Schema::new(fields)),
            columns,
        )
        .unwrap()
    };
    let mut sink =
        parquet::ParquetSink::create(&loc, "day/part.parquet", bad.schema(), 1000).unwrap();
    sink.write(&bad).await.unwrap();
    sink.finish().await.unwrap();
    let key = export::key_file(dir.path(), 1);
    let out = dir.path().join("out").display().to_string();
    let cfg = export::config(at.to_str().unwrap(), &out, &key, serde_json::json!({}));
    let t = export::task(&cfg, "export/calibrate", 0, 1, 5);
    let err = AnnotationExport
        .run(t, export::context(dir.path()))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "input day/part.parquet: column `item_id` is Float64; accepted: string, large_string, string_view, a dictionary of strings, or an integer"
    );
}

/// Every file below `dir` but the attempts' own directories, relative.
fn result_files(dir: &Path) -> BTreeSet<String> {
    files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.starts_with("jobs/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_is_published_at_the_output_and_a_new_run_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2, 200, 4).await;
    let out = dir.path().join("out");
    let key = export::key_file(dir.path(), 1);
    let cfg = export::config(&input, out.to_str().unwrap(), &key, serde_json::json!({}));
    let (first, _) = export::run(&cfg, 3, dir.path(), 10).await.unwrap();

    // The output holds the result: a manifest naming each file of the
    // merge's, tagged with the merge's fencing token (14), and nothing else.
    let at = Location::parse(out.to_str().unwrap()).unwrap();
    let published = manifest::read(&at)
        .await
        .unwrap()
        .expect("a published manifest");
    manifest::verify(&at, &published).await.unwrap();
    assert_eq!(published.fencing_token, 14);
    assert_eq!(published.rows, first.dataset.rows);
    let names: BTreeSet<String> = published.files.iter().map(|f| f.path.clone()).collect();
    let want: BTreeSet<String> = first
        .dataset
        .files
        .iter()
        .map(|f| drover_worker::dataset::publish::tagged(&f.path, 14))
        .collect();
    assert_eq!(names, want);
    assert!(names.contains("quality/report.r14.json"), "{names:?}");
    let mut on_disk = names.clone();
    on_disk.insert("_manifest.json".into());
    assert_eq!(result_files(&out), on_disk);
    // Same bytes as the attempt's own files.
    for f in &first.dataset.files {
        let staged = std::fs::read(out.join(first.prefix()).join(&f.path)).unwrap();
        let public =
            std::fs::read(out.join(drover_worker::dataset::publish::tagged(&f.path, 14))).unwrap();
        assert_eq!(staged, public, "{}", f.path);
    }

    // A new run over one project only replaces the result as a whole: the
    // other project's files go.
    let one = export::config(
        &input,
        out.to_str().unwrap(),
        &key,
        serde_json::json!({"projects": ["scene-type-000"]}),
    );
    export::run(&one, 3, dir.path(), 100).await.unwrap();
    let second = manifest::read(&at).await.unwrap().unwrap();
    assert_eq!(second.fencing_token, 104);
    manifest::verify(&at, &second).await.unwrap();
    let mut on_disk: BTreeSet<String> = second.files.iter().map(|f| f.path.clone()).collect();
    assert!(
        on_disk.iter().all(|p| !p.contains("street-objects")),
        "{on_disk:?}"
    );
    on_disk.insert("_manifest.json".into());
    assert_eq!(result_files(&out), on_disk);

    // A merge under an older lease that finishes late leaves the newer
    // result alone and its own copies do not linger.
    let (late, _) = export::run(&cfg, 3, dir.path(), 50).await.unwrap();
    assert_eq!(late.dataset.fencing_token, 54);
    assert_eq!(manifest::read(&at).await.unwrap().unwrap(), second);
    assert_eq!(result_files(&out), on_disk);
}
