//! The dedup job end to end in one process, every stage run as the
//! coordinator would lease it: quality against the generator's ground
//! truth, exact duplicates after normalisation, keep policies, Parquet in
//! and out, identical output from any attempts, and clear failures.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use drover_jobspecs::kinds::dedup::{DedupConfig, Shingle, optimal_bands_rows};
use drover_proto::v1::TaskKind;
use drover_worker::datagen::texts::{self, TextsSpec};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest;
use drover_worker::dedup::normalize::normalize;
use drover_worker::dedup::shingle::{Unit, jaccard, shingles};
use drover_worker::executors::dedup::Dedup;
use support::stages::{Outputs, Staged};

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

/// Runs every stage of `cfg` as attempt `attempt`.
async fn run(cfg: &DedupConfig, attempt: u32, scratch: &Path) -> Result<Outputs, String> {
    let json = serde_json::to_string(cfg).unwrap();
    stages::run_all(
        &Dedup,
        TaskKind::Dedup,
        "dedup",
        &json,
        &cfg.stages(),
        attempt,
        scratch,
    )
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

/// Pairwise precision and recall of the job's clusters against the true
/// Jaccard similarity of every pair the generator made alike and every
/// pair the job joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_duplicates_are_found_with_the_target_precision_and_recall() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("texts");
    let spec = TextsSpec {
        docs: 20_000,
        dup_rate: 0.1,
        near_dup_rate: 0.15,
        seed: 11,
    };
    texts::generate(
        &Location::parse(data.to_str().unwrap()).unwrap(),
        &spec,
        |_| {},
    )
    .await
    .unwrap();
    let cfg = config(
        &format!("file://{}", data.display()),
        &format!("file://{}/out", tmp.path().display()),
        "minhash",
    );
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
