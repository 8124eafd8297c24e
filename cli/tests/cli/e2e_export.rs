//! The annotation export over real processes: three coordinators, `drover
//! worker` processes, data from `drover datagen`. A worker is SIGKILLed
//! while it runs export shards; another finishes the job, every task's
//! completion is accepted once, nothing the dead worker wrote is part of
//! the export, and the export is byte for byte the one a second, undisturbed
//! run of the same spec writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::{Cluster, drover, of_kind, spec_file, wait_for};
use serde_json::Value;

fn spec(data: &Path, out: &str, key: &Path) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: export, namespace: labeling}}\nspec:\n  defaults:\n    retries: {{max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    timeout: 5m\n  tasks:\n    - name: export\n      kind: annotation_export\n      config:\n        input: \"file://{}\"\n        output: \"file://{out}\"\n        formats: [coco, jsonl, parquet]\n        minAnnotators: 2\n        dropFields: [annotator_email, annotator_ip]\n        pseudonymize: {{keyFile: \"{}\"}}\n        shards: 4\n",
        data.display(),
        key.display()
    )
}

/// The merge's accepted output: its directory and (path -> SHA-256) of
/// the files its manifest names.
fn export_files(status: &Value, out: &Path) -> (std::path::PathBuf, BTreeMap<String, String>) {
    let merge = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template"].as_str().unwrap().ends_with("/merge"))
        .unwrap();
    let dir = out.join(merge["outputPrefix"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    let files = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (dir, files)
}

#[test]
fn an_export_survives_a_worker_killed_mid_shard_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("annotations");
    let generated = drover()
        .args([
            "datagen",
            "annotations",
            "--projects",
            "2",
            "--items",
            "20000",
            "--seed",
            "4",
        ])
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let out = dir.path().join("exports");
    let out_url = out.display().to_string();

    let cluster = Cluster::start(dir.path(), 3);
    cluster.short_leases();
    let mut doomed = cluster.worker("doomed", 4, &[]);
    let file = spec_file(dir.path(), "export.yaml", &spec(&data, &out_url, &key));
    let submitted = cluster.json(&["job", "submit", &file, "--json"]);
    let job = submitted["id"].as_str().unwrap().to_owned();
    // Kill the worker while it holds shard leases.
    wait_for(Duration::from_secs(60), || {
        let status = cluster.job(&job);
        let shards = status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["state"] == "leased"
                    && t["worker"] == "doomed"
                    && t["template"].as_str().unwrap().ends_with("/shard")
            })
            .count();
        (shards > 0).then_some(())
    });
    doomed.kill9();
    let _rescuer = cluster.worker("rescuer", 4, &[]);
    let status = cluster.wait_job(&job, "succeeded", Duration::from_secs(180));
    let events = cluster.events(&job);
    let mut accepted: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in of_kind(&events, "task_succeeded") {
        accepted
            .entry(e["task"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    assert_eq!(accepted.len(), 6, "calibrate, 4 shards, merge: {events:#?}");
    assert!(accepted.values().all(|d| d.len() == 1), "{accepted:?}");
    // The dead worker's shard leases ran out and the rescuer redid them.
    let expired = of_kind(&events, "task_lease_expired");
    assert!(
        expired.iter().any(|e| e["template"] == "export/shard"),
        "{events:#?}"
    );
    for e in expired {
        let done = accepted[e["task"].as_str().unwrap()][0];
        assert_eq!(done["worker"], "rescuer", "{done}");
        assert!(done["attempt"].as_u64().unwrap() >= 2, "{done}");
    }
    let (first_dir, first) = export_files(&status, &out);
    assert!(
        first.contains_key("coco/street-objects-001.json"),
        "{first:?}"
    );

    // The same spec again, with no one killed: the same bytes.
    let again = cluster.json(&[
        "job",
        "submit",
        &file,
        "--json",
        "--idempotency-key",
        "second",
    ]);
    let again_id = again["id"].as_str().unwrap().to_owned();
    assert_ne!(again_id, job);
    let again_status = cluster.wait_job(&again_id, "succeeded", Duration::from_secs(180));
    let (second_dir, second) = export_files(&again_status, &out);
    assert_ne!(first_dir, second_dir);
    assert_eq!(first, second);

    // The result is at the spec's output itself, as `job status` says: the
    // second run's files, each named with its merge's fencing token.
    let text = cluster.cli(&["job", "status", &again_id]);
    let text = String::from_utf8_lossy(&text.stdout);
    let at = format!("file://{}/", out.display());
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("export ") && l.contains(&at))
        .unwrap_or_else(|| panic!("no result line in:\n{text}"));
    assert!(
        line.contains("ready: _manifest.json names its files"),
        "{line}"
    );
    let published: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let token = published["fencingToken"].as_u64().unwrap();
    let named: BTreeMap<String, String> = published["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_owned();
            assert!(out.join(&path).is_file(), "{path}");
            (path, f["sha256"].as_str().unwrap().to_owned())
        })
        .collect();
    let want: BTreeMap<String, String> = second
        .into_iter()
        .map(|(p, sha)| (drover_worker::dataset::publish::tagged(&p, token), sha))
        .collect();
    assert_eq!(named, want);
}
