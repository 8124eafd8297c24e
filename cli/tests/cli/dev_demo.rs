//! `drover dev --demo`, the README's first command: it runs the example DAG
//! on the embedded single-node coordinator with in-process workers and
//! exits 0 when every job succeeded.

use std::net::TcpListener;
use std::process::Command;

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The manifest at `root` and the paths it lists, as published: each
/// path a result's (`coco/x.json`) tagged with the publishing lease's
/// fencing token (`coco/x.r29.json`), so the untagged name is asked for
/// with [`at`].
fn manifest_files(root: &std::path::Path) -> (serde_json::Value, Vec<String>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("_manifest.json")).unwrap()).unwrap();
    let files = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    (manifest, files)
}

/// The published path of a result's `name`, if the manifest names it.
fn at(manifest: &serde_json::Value, files: &[String], name: &str) -> Option<String> {
    let token = manifest["fencingToken"].as_u64()?;
    let tagged = drover_worker::dataset::publish::tagged(name, token);
    files.iter().find(|f| **f == tagged).cloned()
}

/// Today in the sensor example's time zone: the demo's sensor days end on
/// the day before.
fn los_angeles_today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Los_Angeles)
        .date_naive()
}

#[test]
fn dev_demo_runs_the_examples_to_success() {
    let day = los_angeles_today();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "dev",
            "--demo",
            "--listen",
            &free_addr(),
            "--http",
            &free_addr(),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Each job as the demo named it when submitting.
    let id_of = |label: &str| -> String {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("submitted {label} as ")))
            .unwrap_or_else(|| panic!("{label} not submitted: {stderr}"))
            .trim()
            .to_owned()
    };
    let dag = id_of("dag-sleep.yaml");
    assert_eq!(uuid::Uuid::parse_str(&dag).unwrap().get_version_num(), 7);
    for (label, done) in [
        ("dag-sleep.yaml", "9/9"),
        ("annotation-export.yaml", "10/10"),
        ("dedup.yaml", "19/19"),
    ] {
        let line = format!("{label} {}: succeeded {done} done", id_of(label));
        assert!(stderr.contains(&line), "{line}: {stderr}");
    }
    assert!(
        stderr.contains("demo finished: every job succeeded"),
        "{stderr}"
    );
    // The state is durable: the job is in the coordinator's data directory.
    assert!(dir.path().join("dev-coordinator/raft").exists());
    // The export's merged output, where the demo says it is, with its
    // report and a manifest naming every file.
    let place = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("annotation-export.yaml: output in "))
        .unwrap_or_else(|| panic!("no output line: {stderr}"));
    let root = std::path::Path::new(place);
    let (manifest, files) = manifest_files(root);
    for f in [
        "coco/street-objects-001.json",
        "quality/report.html",
        "jsonl/scene-type-000.jsonl",
    ] {
        let path = at(&manifest, &files, f).unwrap_or_else(|| panic!("{f} not in {files:?}"));
        assert!(root.join(path).is_file(), "{f}");
    }
    // The dedup's dataset: kept records, the duplicate map and the
    // report, every file in its manifest, the kept rows fewer than the
    // generated documents.
    let place = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("dedup.yaml: output in "))
        .unwrap_or_else(|| panic!("no dedup output line: {stderr}"));
    let root = std::path::Path::new(place);
    let (manifest, files) = manifest_files(root);
    for f in [
        "_dedup/duplicates.jsonl",
        "_dedup/report.html",
        "part-00000.jsonl",
    ] {
        let path = at(&manifest, &files, f).unwrap_or_else(|| panic!("{f} not in {files:?}"));
        assert!(root.join(path).is_file(), "{f}");
    }
    let report = at(&manifest, &files, "_dedup/report.json").unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(report)).unwrap()).unwrap();
    let (docs, kept) = (
        report["docs"].as_u64().unwrap(),
        report["kept"].as_u64().unwrap(),
    );
    assert_eq!(docs, 20_000);
    assert!(kept < docs && kept > docs / 2, "{report}");
    assert_eq!(manifest["rows"].as_u64().unwrap(), kept);

    // The sensor backfill: three dates computed, each published with a
    // manifest naming its one features file; the nightly run for the last
    // date, started after it, finds that date unchanged and skips it.
    let schedule = stderr
        .lines()
        .find_map(|l| l.strip_prefix("registered sensor-backfill.yaml as schedule "))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no schedule: {stderr}"))
        .to_owned();
    let submitted_as = |prefix: &str| -> String {
        stderr
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(" as ").next())
            .unwrap_or_else(|| panic!("{prefix}: {stderr}"))
            .trim()
            .to_owned()
    };
    let backfill = submitted_as("submitted sensor-backfill.yaml backfill");
    let nightly = submitted_as("submitted sensor-backfill.yaml nightly run");
    assert!(
        stderr.contains(&format!("{backfill}: succeeded 4/4 done")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{nightly}: succeeded 2/2 done (1 skipped)")),
        "{stderr}"
    );
    let features = dir.path().join("features");
    let dates: Vec<_> = std::fs::read_dir(&features)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("date="))
        .collect();
    assert_eq!(dates.len(), 3, "{dates:?}");
    for d in dates {
        let (manifest, files) = manifest_files(&features.join(&d));
        assert_eq!(files.len(), 1, "{d}: {files:?}");
        assert!(features.join(&d).join(&files[0]).is_file());
        assert!(manifest["rows"].as_u64().unwrap() > 0, "{d}: {manifest}");
    }

    // The keys were generated for the demo, readable by their owner only.
    use std::os::unix::fs::PermissionsExt;
    for key in ["secrets/annotator-key", "secrets/device-key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key}: {mode:o}");
    }

    // A second demo on the same data directory finds what the first
    // submitted: no second nightly schedule, no job run twice.
    let again = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "dev",
            "--demo",
            "--listen",
            &free_addr(),
            "--http",
            &free_addr(),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    if los_angeles_today() != day {
        // Past midnight there, the second demo rightly plans a new day.
        eprintln!("skipped the rerun's checks: the demos straddled midnight in Los Angeles");
        return;
    }
    for line in [
        format!("sensor-backfill.yaml was registered by an earlier demo as schedule {schedule}"),
        format!("dag-sleep.yaml was submitted by an earlier demo as {dag}"),
        format!("was submitted by an earlier demo as {nightly}"),
        "demo finished: every job succeeded".to_owned(),
    ] {
        assert!(stderr.contains(&line), "{line}: {stderr}");
    }
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("registered ") || l.starts_with("submitted ")),
        "{stderr}"
    );
}
