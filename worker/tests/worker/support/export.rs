//! Runs an annotation export the way the coordinator would have it run:
//! every shard task, then the merge, handed the shards' accepted output
//! prefixes, each attempt under its own prefix.

use std::path::Path;

use drover_proto::v1::{LeasedTask, OutputManifest, TaskKind, UpstreamOutput};
use drover_worker::dataset::location::Location;
use drover_worker::dataset::manifest::{self, DatasetManifest};
use drover_worker::executors::annotation_export::AnnotationExport;
use drover_worker::executors::{AttemptContext, Executor, Progress, TaskError};

/// Default export config over `input` into `output`, keyed from
/// `key_file`; `extra` overrides fields.
pub fn config(input: &str, output: &str, key_file: &Path, extra: serde_json::Value) -> String {
    let mut c = serde_json::json!({
        "input": input,
        "output": output,
        "projects": [],
        "labels": [],
        "formats": ["coco", "jsonl", "parquet"],
        "consensus": {"classes": "dawid_skene", "boxes": "iou_fusion", "iouThreshold": 0.5},
        "minAnnotators": 2,
        "dropFields": ["annotator_email", "annotator_ip"],
        "pseudonymize": {"keyFile": key_file.display().to_string()},
        "shards": 3,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c.to_string()
}

/// A key file of 32 bytes derived from `seed`.
pub fn key_file(dir: &Path, seed: u8) -> std::path::PathBuf {
    let path = dir.join(format!("key-{seed}"));
    std::fs::write(&path, [b'k', seed].repeat(16)).unwrap();
    path
}

/// One attempt of `template`'s partition `partition`.
pub fn task(
    config_json: &str,
    template: &str,
    partition: u64,
    attempt: u32,
    token: u64,
) -> LeasedTask {
    let t = match template.rsplit('/').next() {
        Some("calibrate") => 0,
        Some("shard") => 1,
        _ => 2,
    };
    LeasedTask {
        task_id: format!("j1/{t}/{partition}"),
        job_id: "j1".into(),
        template: template.into(),
        kind: TaskKind::AnnotationExport as i32,
        partition_index: partition,
        partition_key: partition.to_string(),
        config_json: config_json.into(),
        attempt,
        fencing_token: token,
        output_prefix: format!("jobs/j1/{t}/{partition}/attempt-{attempt}-{token}"),
        ..LeasedTask::default()
    }
}

/// A context that is never cancelled.
pub fn context(scratch: &Path) -> AttemptContext {
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Kept alive for the attempt: a dropped sender reads as "not
    // cancelled" anyway, but say so plainly.
    std::mem::forget(tx);
    AttemptContext {
        cancel: rx,
        progress: Progress::default(),
        reused: Default::default(),
        output_dir: scratch.join("unused-output"),
        scratch_dir: scratch.join("scratch"),
        log: Default::default(),
    }
}

/// The calibrate stage's output as a shard's lease lists it.
pub fn calibration(m: &OutputManifest) -> UpstreamOutput {
    UpstreamOutput {
        template: "export/calibrate".into(),
        partition_index: 0,
        partition_key: String::new(),
        output_prefix: m.output_prefix.clone(),
    }
}

/// An attempt's output: what its completion carries, and the
/// `_manifest.json` that names its files.
#[derive(Debug)]
pub struct Committed {
    /// The completion's manifest (the dataset manifest's path and hash).
    pub wire: OutputManifest,
    /// The dataset manifest.
    pub dataset: DatasetManifest,
}

impl Committed {
    /// Where the output is.
    pub fn prefix(&self) -> &str {
        &self.wire.output_prefix
    }
}

/// Reads the dataset manifest an attempt committed.
pub async fn committed(config_json: &str, wire: OutputManifest) -> Committed {
    let cfg: serde_json::Value = serde_json::from_str(config_json).unwrap();
    let root = cfg["output"].as_str().unwrap();
    let loc = Location::parse(&format!("{root}/{}", wire.output_prefix)).unwrap();
    let dataset = manifest::read(&loc)
        .await
        .unwrap()
        .expect("a committed manifest");
    assert_eq!(
        wire.files.len(),
        1,
        "the completion names the manifest alone"
    );
    assert_eq!(wire.files[0].path, manifest::MANIFEST_NAME);
    Committed { wire, dataset }
}

/// Runs the calibration, every shard and then the merge (tokens from
/// `token_base`); returns the merge's output and the shards'.
pub async fn run(
    config_json: &str,
    shards: u64,
    scratch: &Path,
    token_base: u64,
) -> Result<(Committed, Vec<Committed>), TaskError> {
    let calibrate = task(config_json, "export/calibrate", 0, 1, token_base);
    let model = AnnotationExport.run(calibrate, context(scratch)).await?;
    let mut shard_outputs = Vec::new();
    for s in 0..shards {
        let mut t = task(config_json, "export/shard", s, 1, token_base + 1 + s);
        t.upstream_outputs = vec![calibration(&model)];
        shard_outputs.push(AnnotationExport.run(t, context(scratch)).await?);
    }
    let mut merge = task(config_json, "export/merge", 0, 1, token_base + 1 + shards);
    merge.upstream_outputs = shard_outputs
        .iter()
        .enumerate()
        .map(|(i, m)| UpstreamOutput {
            template: "export/shard".into(),
            partition_index: i as u64,
            partition_key: i.to_string(),
            output_prefix: m.output_prefix.clone(),
        })
        .collect();
    let merged = AnnotationExport.run(merge, context(scratch)).await?;
    let mut shards = Vec::new();
    for s in shard_outputs {
        shards.push(committed(config_json, s).await);
    }
    Ok((committed(config_json, merged).await, shards))
}
