//! The dedup job end to end in one process, every stage run as the
//! coordinator would lease it: quality against the generator's ground
//! truth, exact duplicates after normalisation, keep policies, Parquet in
//! and out, identical output from any attempts, and clear failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::support::stages::{Outputs, Staged};
use drover_jobspecs::kinds::dedup::{DedupConfig, Shingle, optimal_bands_rows};
use drover_proto::v1::TaskKind;
use drover_worker::datagen::texts::{self, TextsSpec};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest;
use drover_worker::dedup::normalize::normalize;
use drover_worker::dedup::shingle::{Unit, jaccard, shingles};
use drover_worker::executors::Executor;
use drover_worker::executors::dedup::Dedup;

fn config(input: &str, output: &str, method: &str) -> DedupConfig {
    let (bands, rows) = optimal_bands_rows(0.8, 128);
    DedupConfig {
        input: input.into(),
        output: output.into(),
        format: "jsonl".into(),
        id_field: "id".into(),
        text_field: "text".into(),
        method: method.into(),
        threshold: 0.8,
        num_perm: 128,
        bands,
        rows,
        shingle: Shingle {
            unit: "word".into(),
            size: 3,
        },
        shards: 3,
        bucket_partitions: 2,
        max_bucket_size: 1000,
        keep: "first".into(),
        keep_field: None,
    }
}

/// The stages of `cfg`, to run here.
fn staged<'a>(cfg: &DedupConfig, scratch: &'a Path) -> Staged<'a> {
    Staged {
        executor: &Dedup,
        kind: TaskKind::Dedup,
        name: "dedup",
        config_json: serde_json::to_string(cfg).unwrap(),
        stages: cfg.stages(),
        scratch,
    }
}

/// Runs every stage of `cfg` as attempt `attempt`.
async fn run(cfg: &DedupConfig, attempt: u32, scratch: &Path) -> Result<Outputs, String> {
    staged(cfg, scratch)
        .run_all(attempt)
        .await
        .map_err(|e| e.message)
}

/// The published dataset of a run.
struct Published {
    dir: std::path::PathBuf,
    manifest: manifest::DatasetManifest,
}

impl Published {
    async fn of(cfg: &DedupConfig, outputs: &Outputs) -> Self {
        let prefix = &outputs["publish"][0].output_prefix;
        let dir = Path::new(cfg.output.strip_prefix("file://").unwrap()).join(prefix);
        let loc = Location::parse(dir.to_str().unwrap()).unwrap();
        let manifest = manifest::read(&loc).await.unwrap().expect("published");
        manifest::verify(&loc, &manifest).await.unwrap();
        // The same files are published at the output itself, under names
        // tagged with the fencing token of the lease that published them.
        let root = Location::parse(&cfg.output).unwrap();
        let public = manifest::read(&root)
            .await
            .unwrap()
            .expect("a result at the output");
        manifest::verify(&root, &public).await.unwrap();
        let tagged = |m: &manifest::DatasetManifest| -> BTreeMap<String, String> {
            m.files
                .iter()
                .map(|f| (f.path.clone(), f.sha256.clone()))
                .collect()
        };
        let want: BTreeMap<String, String> = manifest
            .files
            .iter()
            .map(|f| {
                let name = drover_worker::dataset::publish::tagged(&f.path, public.fencing_token);
                (name, f.sha256.clone())
            })
            .collect();
        assert_eq!(tagged(&public), want);
        assert_eq!(public.rows, manifest.rows);
        Self { dir, manifest }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap()
    }

    /// The kept records' lines, in order.
    fn kept_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for f in self
            .manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with("part-"))
        {
            lines.extend(self.read(&f.path).lines().map(str::to_owned));
        }
        lines
    }

    /// removed id -> representative id.
    fn duplicates(&self) -> BTreeMap<String, String> {
        self.read("_dedup/duplicates.jsonl")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["representative"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("_dedup/report.json")).unwrap()
    }
}

fn id_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    match &v["id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_jsonl(dir: &Path, name: &str, docs: &[serde_json::Value]) {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
}

/// A generated corpus below `dir` and the MinHash config over it.
async fn generated(dir: &Path, spec: &TextsSpec) -> (std::path::PathBuf, DedupConfig) {
    let data = dir.join("texts");
    texts::generate(
        &Location::parse(data.to_str().unwrap()).unwrap(),
        spec,
        |_| {},
    )
    .await
    .unwrap();
    let cfg = config(
        &format!("file://{}", data.display()),
        &format!("file://{}/out", dir.display()),
        "minhash",
    );
    (data, cfg)
}

/// Pairwise precision and recall of the job's clusters against the true
/// Jaccard similarity of every pair the generator made alike and every
/// pair the job joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_duplicates_are_found_with_the_target_precision_and_recall() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TextsSpec {
        docs: 20_000,
        dup_rate: 0.1,
        near_dup_rate: 0.15,
        seed: 11,
    };
    let (data, cfg) = generated(tmp.path(), &spec).await;
    let outputs = run(&cfg, 1, tmp.path()).await.unwrap();
    let published = Published::of(&cfg, &outputs).await;

    // Every document's shingles.
    let mut text_of: HashMap<String, String> = HashMap::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                text_of.insert(
                    v["id"].as_str().unwrap().into(),
                    v["text"].as_str().unwrap().into(),
                );
            }
        }
    }
    assert_eq!(text_of.len() as u64, spec.docs);
    let sh: HashMap<&str, Vec<u32>> = text_of
        .iter()
        .map(|(id, t)| (id.as_str(), shingles(&normalize(t), Unit::Word, 3)))
        .collect();
    let sim = |a: &str, b: &str| jaccard(&sh[a], &sh[b]);
    let pair = |a: &str, b: &str| {
        if a < b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        }
    };

    // The job's clusters and pairs.
    let dups = published.duplicates();
    let mut clusters: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (d, r) in &dups {
        clusters
            .entry(r.as_str())
            .or_insert_with(|| vec![r.as_str()])
            .push(d.as_str());
    }
    let mut predicted: HashSet<(String, String)> = HashSet::new();
    for members in clusters.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                predicted.insert(pair(a, b));
            }
        }
    }
    // True pairs: within the generator's clusters, and any the job found.
    let truth_text = std::fs::read_to_string(data.join("_truth/clusters.jsonl")).unwrap();
    let mut true_clusters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in truth_text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        true_clusters
            .entry(v["cluster"].as_str().unwrap().into())
            .or_default()
            .push(v["id"].as_str().unwrap().into());
    }
    let mut truth: HashSet<(String, String)> = HashSet::new();
    for members in true_clusters.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if sim(a, b) >= cfg.threshold {
                    truth.insert(pair(a, b));
                }
            }
        }
    }
    let mut right = 0usize;
    for (a, b) in &predicted {
        if sim(a, b) >= cfg.threshold {
            right += 1;
            truth.insert((a.clone(), b.clone()));
        }
    }
    // Removals against their representative, what a user of the kept set
    // cares about: was each removed document a duplicate of one kept?
    let removed_right = dups
        .iter()
        .filter(|(d, r)| sim(d, r) >= cfg.threshold)
        .count();
    let precision = right as f64 / predicted.len().max(1) as f64;
    let recall = right as f64 / truth.len().max(1) as f64;
    eprintln!(
        "dedup quality on {} docs: {} true pairs (Jaccard >= {}), {} predicted, precision {precision:.4}, recall {recall:.4}; removals matching their representative {}/{}",
        spec.docs,
        truth.len(),
        cfg.threshold,
        predicted.len(),
        removed_right,
        dups.len()
    );
    assert!(truth.len() > 1000, "the corpus has duplicates to find");
    assert!(recall >= 0.95, "recall {recall}");
    assert!(precision >= 0.99, "precision {precision}");

    // The kept set is the input minus the removed, in input order.
    let kept: Vec<String> = published.kept_lines().iter().map(|l| id_of(l)).collect();
    assert_eq!(kept.len() + dups.len(), text_of.len());
    let kept_set: HashSet<&String> = kept.iter().collect();
    for (d, r) in &dups {
        assert!(!kept_set.contains(d), "{d} removed and kept");
        assert!(kept_set.contains(r), "representative {r} kept");
    }
    let mut sorted = kept.clone();
    sorted.sort();
    assert_eq!(kept, sorted, "input order (ids are sequential)");
    let report = published.report();
    assert_eq!(report["docs"], spec.docs);
    assert_eq!(report["removed"], dups.len() as u64);
    assert_eq!(published.manifest.rows, kept.len() as u64);
}

/// A corpus over two files whose first three documents are one text
/// once normalised (case, spacing, full-width letters).
fn small_corpus(dir: &Path) -> Vec<String> {
    let docs = [
        serde_json::json!({"id": "a", "text": "The  Cat sat on the mat", "n": 1}),
        serde_json::json!({"id": "b", "text": "the cat SAT on the mat   ", "n": 2}),
        serde_json::json!({"meta": {"x": [1, 2]}, "id": "c", "text": "ＴＨＥ cat sat on the mat", "n": 3}),
        serde_json::json!({"id": "d", "text": "a different text entirely", "n": null}),
        serde_json::json!({"id": "e", "text": "the cat sat on the mat today", "n": 9}),
    ];
    write_jsonl(&dir.join("x"), "part-1.jsonl", &docs[..2]);
    write_jsonl(&dir.join("x"), "part-2.jsonl", &docs[2..]);
    docs.iter().map(|d| d.to_string()).collect()
}

#[tokio::test]
async fn exact_duplicates_after_normalisation_keep_the_policys_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = small_corpus(tmp.path());
    for (keep, field, kept) in [
        ("first", None, "a"),
        ("longest", None, "b"),
        ("field", Some("n"), "c"),
    ] {
        let mut cfg = config(
            &format!("file://{}/x", tmp.path().display()),
            &format!("file://{}/out-{keep}", tmp.path().display()),
            "exact",
        );
        cfg.keep = keep.into();
        cfg.keep_field = field.map(str::to_owned);
        let outputs = run(&cfg, 1, tmp.path()).await.unwrap();
        let published = Published::of(&cfg, &outputs).await;
        let dups = published.duplicates();
        let removed: Vec<&str> = ["a", "b", "c"].into_iter().filter(|i| *i != kept).collect();
        assert_eq!(
            dups.keys().map(String::as_str).collect::<Vec<_>>(),
            removed,
            "keep {keep}"
        );
        assert!(dups.values().all(|r| r == kept), "keep {keep}: {dups:?}");
        // Kept records are the input's lines, byte for byte, in order;
        // "e" is near the others but not the same text.
        let want: Vec<&String> = lines
            .iter()
            .filter(|l| !removed.contains(&id_of(l).as_str()))
            .collect();
        let got = published.kept_lines();
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "keep {keep}");
        assert_eq!(published.report()["pairs"]["exactGroups"], 1);
    }
}

#[tokio::test]
async fn a_second_job_reads_the_first_ones_output_through_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = small_corpus(tmp.path());
    let first = config(
        &format!("file://{}/x", tmp.path().display()),
        &format!("file://{}/first", tmp.path().display()),
        "exact",
    );
    run(&first, 1, tmp.path()).await.unwrap();
    // The next job's input is the first one's `output`, where attempts'
    // directories and the duplicate map sit beside the kept records: the
    // manifest there names what it reads.
    let mut second = config(
        &first.output,
        &format!("file://{}/second", tmp.path().display()),
        "exact",
    );
    second.keep = "longest".into();
    let outputs = run(&second, 1, tmp.path()).await.unwrap();
    let published = Published::of(&second, &outputs).await;
    assert!(
        published.duplicates().is_empty(),
        "the first job removed them"
    );
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| !["b", "c"].contains(&id_of(l).as_str()))
        .cloned()
        .collect();
    assert_eq!(published.kept_lines(), kept);
    assert_eq!(published.report()["docs"], 3, "{}", published.report());
}

#[tokio::test]
async fn parquet_in_parquet_out_with_the_inputs_schema_in_every_string_encoding() {
    use arrow_schema::DataType;

    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    for (tag, body) in [
        ("string", DataType::Utf8),
        ("large_string", DataType::LargeUtf8),
        ("string_view", DataType::Utf8View),
        ("dictionary", dictionary),
    ] {
        parquet_in_parquet_out(tag, body).await;
    }
}

/// A dedup of Parquet whose ids are integers and whose text column is of
/// type `body`, without a manifest.
async fn parquet_in_parquet_out(tag: &str, body: arrow_schema::DataType) {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use drover_worker::dataset::parquet::{self, ParquetSink};
    use futures::TryStreamExt;

    let tmp = tempfile::tempdir().unwrap();
    let input = Location::parse(tmp.path().join("pq").to_str().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc", DataType::Int64, false),
        Field::new("body", body.clone(), false),
        Field::new("quality", DataType::Float64, true),
        Field::new("source", DataType::Utf8, false),
    ]));
    // Document i is a near copy of document i - 1 when i is odd: one of
    // its 40 words differs, so the pair's Jaccard similarity is over 0.8.
    let words =
        |seed: i64| -> Vec<String> { (0..40).map(|w| format!("w{}", seed * 100 + w)).collect() };
    let n = 400i64;
    let texts: Vec<String> = (0..n)
        .map(|i| {
            let mut w = words(i - i % 2);
            if i % 2 == 1 {
                w[39] = "changed".into();
            }
            w.join(" ")
        })
        .collect();
    // Two files of several row groups each.
    for (f, range) in [(0, 0..250), (1, 250..n)] {
        let mut sink =
            ParquetSink::create(&input, &format!("part-{f}.parquet"), schema.clone(), 60).unwrap();
        let r = range.clone();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(r.clone())),
                arrow_cast::cast(
                    &StringArray::from_iter_values(r.clone().map(|i| texts[i as usize].clone())),
                    &body,
                )
                .unwrap(),
                Arc::new(Float64Array::from_iter(r.clone().map(|i| Some(i as f64)))),
                Arc::new(StringArray::from_iter_values(r.map(|i| format!("s{i}")))),
            ],
        )
        .unwrap();
        sink.write(&batch).await.unwrap();
        sink.finish().await.unwrap();
    }
    let mut cfg = config(
        &format!("file://{}/pq", tmp.path().display()),
        &format!("file://{}/out", tmp.path().display()),
        "minhash",
    );
    cfg.format = "parquet".into();
    cfg.id_field = "doc".into();
    cfg.text_field = "body".into();
    cfg.keep = "field".into();
    cfg.keep_field = Some("quality".into());
    cfg.shards = 4;
    let outputs = run(&cfg, 1, tmp.path())
        .await
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let published = Published::of(&cfg, &outputs).await;
    // Each pair keeps its higher-quality (odd) document.
    let dups = published.duplicates();
    assert_eq!(dups.len(), (n / 2) as usize, "{tag}");
    for (d, r) in &dups {
        let (d, r): (i64, i64) = (d.parse().unwrap(), r.parse().unwrap());
        assert_eq!((d % 2, r), (0, d + 1));
    }
    let out = Location::parse(published.dir.to_str().unwrap()).unwrap();
    let mut kept = Vec::new();
    for f in published
        .manifest
        .files
        .iter()
        .filter(|f| f.path.ends_with(".parquet"))
    {
        let (s, batches) = parquet::read(&out, &f.path, 1000).await.unwrap();
        assert_eq!(s.fields(), schema.fields(), "the input's schema");
        let batches: Vec<RecordBatch> = batches.try_collect().await.unwrap();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            kept.extend(ids.values().iter().copied());
        }
    }
    assert_eq!(kept, (0..n).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    assert_eq!(published.manifest.rows, (n / 2) as u64);
    assert_eq!(
        published
            .manifest
            .schema
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["doc", "body", "quality", "source"]
    );
}

#[tokio::test]
async fn a_hot_bucket_is_sampled_not_quadratic_and_still_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    // 600 documents of 40 words sharing the first 38: every pair's
    // similarity is 36/40 = 0.9, and most bands put them all in one bucket.
    let docs: Vec<serde_json::Value> = (0..600)
        .map(|i| {
            let mut w: Vec<String> = (0..38).map(|k| format!("common{k}")).collect();
            w.push(format!("own{i}"));
            w.push(format!("tail{i}"));
            serde_json::json!({"id": format!("d{i:04}"), "text": w.join(" ")})
        })
        .collect();
    write_jsonl(&tmp.path().join("hot"), "part-0.jsonl", &docs);
    let mut cfg = config(
        &format!("file://{}/hot", tmp.path().display()),
        &format!("file://{}/out", tmp.path().display()),
        "minhash",
    );
    cfg.max_bucket_size = 50;
    let outputs = run(&cfg, 1, tmp.path()).await.unwrap();
    let published = Published::of(&cfg, &outputs).await;
    let report = published.report();
    let pairs = &report["pairs"];
    eprintln!("hot bucket: {pairs}");
    assert!(pairs["hotBuckets"].as_u64().unwrap() > 0);
    // All pairs would be 179,700 per band; sampling costs at most
    // 50·49/2 + 550 per band.
    let bound = u64::from(cfg.bands) * (50 * 49 / 2 + 550);
    assert!(
        pairs["candidatePairs"].as_u64().unwrap() <= bound,
        "{pairs}"
    );
    // One cluster, less the few documents LSH misses: a document whose
    // 13 minima per band are not all shared ones in any of 9 bands, a
    // chance of about (1 - (36/38)^13)^9 = 0.2% each.
    let dups = published.duplicates();
    assert!(dups.len() >= 590, "{} joined", dups.len());
    assert!(dups.values().all(|r| r == "d0000"));

    // Keeping the longest, the bucket's members join its longest document,
    // which stays, wherever it is in the input.
    let mut docs = docs;
    let text = docs[300]["text"].as_str().unwrap().to_owned();
    docs[300]["text"] = serde_json::Value::String(format!("{text} end"));
    write_jsonl(&tmp.path().join("hot-longest"), "part-0.jsonl", &docs);
    let mut cfg = config(
        &format!("file://{}/hot-longest", tmp.path().display()),
        &format!("file://{}/out-longest", tmp.path().display()),
        "minhash",
    );
    cfg.max_bucket_size = 50;
    cfg.keep = "longest".into();
    let outputs = run(&cfg, 1, tmp.path()).await.unwrap();
    let dups = Published::of(&cfg, &outputs).await.duplicates();
    assert!(dups.len() >= 590, "{} joined", dups.len());
    assert!(dups.values().all(|r| r == "d0300"), "{dups:?}");
}

#[tokio::test]
async fn any_attempts_give_byte_identical_outputs_and_a_stopped_attempt_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TextsSpec {
        docs: 3000,
        dup_rate: 0.1,
        near_dup_rate: 0.1,
        seed: 5,
    };
    let (_, cfg) = generated(tmp.path(), &spec).await;
    let staged = staged(&cfg, tmp.path());
    let first = staged.run_all(1).await.unwrap();

    // A second run, every task on attempt 2 after a stopped attempt 3 of
    // the first filter shard.
    let mut done = Outputs::new();
    for index in 0..staged.stages.len() {
        if staged.stages[index].name == Some("filter") {
            let t = staged.lease(index, 0, 3, Staged::token(index, 0, 3), &done);
            let prefix = t.output_prefix.clone();
            let (tx, rx) = tokio::sync::watch::channel(true);
            let mut ctx = crate::support::export::context(tmp.path());
            ctx.cancel = rx;
            let err = Dedup.run(t, ctx).await.unwrap_err();
            drop(tx);
            assert!(err.retryable, "{err:?}");
            let stopped =
                Location::parse(tmp.path().join("out").join(&prefix).to_str().unwrap()).unwrap();
            assert!(
                manifest::read(&stopped).await.unwrap().is_none(),
                "nothing committed"
            );
        }
        staged.run_stage(index, 2, &mut done).await.unwrap();
    }
    let a = Published::of(&cfg, &first).await;
    let b = Published::of(&cfg, &done).await;
    assert_ne!(a.dir, b.dir);
    let files = |p: &Published| -> Vec<(String, String)> {
        p.manifest
            .files
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect()
    };
    assert_eq!(files(&a), files(&b), "same files, same bytes");
    assert!(a.duplicates().len() > 100);
}

#[tokio::test]
async fn an_input_that_changes_during_the_job_fails_the_filter() {
    let tmp = tempfile::tempdir().unwrap();
    small_corpus(tmp.path());
    let cfg = config(
        &format!("file://{}/x", tmp.path().display()),
        &format!("file://{}/out", tmp.path().display()),
        "minhash",
    );
    let staged = staged(&cfg, tmp.path());
    let mut done = Outputs::new();
    let filter = staged
        .stages
        .iter()
        .position(|s| s.name == Some("filter"))
        .unwrap();
    for index in 0..filter {
        staged.run_stage(index, 1, &mut done).await.unwrap();
    }
    // The input has no manifest, so it was listed; a file grows.
    let path = tmp.path().join("x/part-2.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"id\":\"z\",\"text\":\"late arrival\"}\n");
    std::fs::write(&path, text).unwrap();
    let err = staged.run_stage(filter, 1, &mut done).await.unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message.contains("changed while the job ran"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn bad_input_fails_permanently_naming_the_place() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{\"id\":\"a\",\"text\":\"fine\"}\n{\"id\":\"b\",\"text\":\n",
            "part-0.jsonl: the line at byte 25",
        ),
        (
            "{\"id\":\"a\",\"body\":\"x\"}\n",
            "no `text` (the text field)",
        ),
        (
            "{\"id\":\"a\",\"text\":\"x\",\"q\":\"high\"}\n",
            "a number or null",
        ),
    ];
    for (i, (content, want)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("bad{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-0.jsonl"), content).unwrap();
        let mut cfg = config(
            &format!("file://{}", dir.display()),
            &format!("file://{}/out", tmp.path().display()),
            "minhash",
        );
        if i == 2 {
            cfg.keep = "field".into();
            cfg.keep_field = Some("q".into());
        }
        let err = run(&cfg, 1, tmp.path()).await.unwrap_err();
        assert!(err.contains(want), "case {i}: {err}");
    }
    // An input with no data files.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cfg = config(
        &format!("file://{}", empty.display()),
        &format!("file://{}/out", tmp.path().display()),
        "exact",
    );
    let err = run(&cfg, 1, tmp.path()).await.unwrap_err();
    assert!(err.contains("has no .jsonl/.ndjson files"), "{err}");

    // Parquet ids that are null, or text that is not a string.
    use std::sync::Arc;

    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use drover_worker::dataset::parquet::ParquetSink;
    for (i, (ids, texts, want)) in [
        (
            Arc::new(StringArray::from(vec![Some("a"), None])) as arrow_array::ArrayRef,
            Arc::new(StringArray::from(vec!["x y z", "x y z"])) as arrow_array::ArrayRef,
            "part.parquet: row 1 of a batch has a null `id` (the id field)",
        ),
        (
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
            "part.parquet: column `text` is Float64; accepted: string, large_string, string_view, or a dictionary of strings",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("pq{i}"));
        let at = Location::parse(dir.to_str().unwrap()).unwrap();
        let batch = RecordBatch::try_from_iter([("id", ids), ("text", texts)]).unwrap();
        let mut sink = ParquetSink::create(&at, "part.parquet", batch.schema(), 10).unwrap();
        sink.write(&batch).await.unwrap();
        sink.finish().await.unwrap();
        let mut cfg = config(
            &format!("file://{}", dir.display()),
            &format!("file://{}/out", tmp.path().display()),
            "minhash",
        );
        cfg.format = "parquet".into();
        let err = run(&cfg, 1, tmp.path()).await.unwrap_err();
        assert!(err.contains(want), "{err}");
    }
}
