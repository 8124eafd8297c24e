//! Operating a cluster of real processes: a backup restored into a new
//! cluster, and a rolling restart under load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{Cluster, drover, of_kind, spec_file, wait_for};
use serde_json::Value;

/// A job of `n` sleep tasks of `ms` each, retried up to 3 times.
fn sleeps(name: &str, n: u32, ms: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  defaults:\n    retries: {{max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    timeout: 5m\n  tasks:\n    - name: nap\n      kind: sleep\n      partitions: {{shards: {n}}}\n      config: {{ms: {ms}}}\n"
    )
}

/// Submits a spec and returns the job id.
fn submit(cluster: &Cluster, spec: &str, key: &str) -> String {
    let out = cluster.json(&["job", "submit", spec, "--idempotency-key", key, "--json"]);
    out["id"].as_str().unwrap().to_owned()
}

/// Accepted completions per task id.
fn completions(events: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in of_kind(events, "task_succeeded") {
        *out.entry(e["task"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

/// Every task of the job has exactly one accepted completion.
fn assert_exactly_once(cluster: &Cluster, job: &str) -> Vec<Value> {
    let status = cluster.job(job);
    let events = cluster.events(job);
    let done = completions(&events);
    for task in status["tasks"].as_array().unwrap() {
        let id = task["id"].as_str().unwrap();
        let n = done.get(id).copied().unwrap_or(0);
        assert_eq!(n, 1, "task {id} of {job} has {n} accepted completions");
    }
    events
}

/// Each member's (applied index, state digest), asked of each directly.
fn digests(cluster: &Cluster) -> Vec<(u64, String)> {
    cluster
        .grpc
        .iter()
        .map(|address| {
            let out = drover()
                .args(["--coordinators", address, "cluster", "digest", "--json"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "digest from {address}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            (
                v["appliedIndex"].as_u64().unwrap(),
                v["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls every member until all have reported a state at one common log
/// index, and fails at once if two report different states at the same
/// index. (An idle leader still commits a tick a second, so members are
/// rarely asked at the same index in one round.)
fn assert_replicas_converge(cluster: &Cluster) {
    let mut seen: BTreeMap<u64, BTreeMap<usize, String>> = BTreeMap::new();
    wait_for(Duration::from_secs(60), || {
        for (member, (index, sha)) in digests(cluster).into_iter().enumerate() {
            let at = seen.entry(index).or_default();
            if let Some(other) = at.values().find(|other| **other != sha) {
                panic!("replicas diverged at index {index}: {other} and {sha}");
            }
            at.insert(member, sha);
        }
        seen.values()
            .any(|at| at.len() == cluster.grpc.len())
            .then_some(())
    });
}

#[test]
fn a_backup_restores_into_a_new_cluster_that_finishes_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let old = Cluster::start(&dir.path().join("old"), 3);
    old.short_leases();
    let _worker = old.worker("old-w", 2, &[]);
    let quick = spec_file(dir.path(), "quick.yaml", &sleeps("quick", 4, 50));
    let slow = spec_file(dir.path(), "slow.yaml", &sleeps("slow", 6, 4000));
    let done = submit(&old, &quick, "quick");
    old.wait_job(&done, "succeeded", Duration::from_secs(60));
    let running = submit(&old, &slow, "slow");
    wait_for(Duration::from_secs(30), || {
        (old.job(&running)["counts"]["leased"].as_u64()? > 0).then_some(())
    });
    let old_tokens: Vec<u64> = old
        .events(&running)
        .iter()
        .filter_map(|e| e["fencingToken"].as_u64())
        .collect();

    let file = dir.path().join("cluster.backup");
    let file_arg = file.to_str().unwrap();
    let taken = old.json(&["cluster", "backup", "--out", file_arg, "--json"]);
    assert_eq!(taken["jobs"], 2, "{taken:#}");
    assert!(taken["appliedIndex"].as_u64().unwrap() > 1);
    assert!(!dir.path().join("cluster.backup.partial").exists());
    // A second backup does not replace the first unless asked to.
    let again = old.cli(&["cluster", "backup", "--out", file_arg]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("pass --force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    drop(old);

    // A damaged copy is refused before anything is written.
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let damaged_file = dir.path().join("damaged.backup");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let target = dir.path().join("never-written");
    let out = drover()
        .args(["cluster", "restore"])
        .arg(&damaged_file)
        .arg("--data-dir")
        .arg(&target)
        .args(["--peers", "1=127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum does not match"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
    let dry = drover()
        .args(["cluster", "restore", file_arg, "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success());
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("verified; a restore would hand back"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );

    // The new cluster: new directories, new ports, the same jobs.
    let new = Cluster::start_from(&dir.path().join("new"), 3, Some(&file));
    // Restoring over a member's data is refused.
    let over = drover()
        .args(["cluster", "restore", file_arg, "--peers", &new.peers])
        .arg("--data-dir")
        .arg(new.data_dir(0))
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&over.stderr).contains("is not empty"));

    let finished = new.job(&done);
    assert_eq!(finished["state"], "succeeded");
    assert_eq!(finished["counts"]["succeeded"], 4);
    let events = new.events(&running);
    let released = of_kind(&events, "task_released");
    assert!(
        !released.is_empty(),
        "the backup's leases were not handed back"
    );
    assert_eq!(new.job(&running)["counts"]["leased"], 0);

    new.short_leases();
    let _worker = new.worker("new-w", 6, &[]);
    new.wait_job(&running, "succeeded", Duration::from_secs(120));
    let events = assert_exactly_once(&new, &running);
    // Every token the new cluster handed out is past every token the old
    // one could have handed out after the backup.
    let newest_old = old_tokens.iter().copied().max().unwrap();
    for e in of_kind(&events, "task_leased") {
        let token = e["fencingToken"].as_u64().unwrap();
        if !old_tokens.contains(&token) {
            assert!(
                token > newest_old + (1 << 39),
                "token {token} after restore"
            );
        }
    }
    assert_exactly_once(&new, &done);
    assert_replicas_converge(&new);
}

#[test]
fn a_rolling_restart_under_load_fails_no_job_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    let _a = cluster.worker("wa", 4, &[]);
    let _b = cluster.worker("wb", 4, &[]);
    let spec = spec_file(dir.path(), "load.yaml", &sleeps("load", 30, 300));

    // Load before, during and after the restarts: a job every step.
    let mut jobs = vec![submit(&cluster, &spec, "load-0")];
    for i in 0..3 {
        let status = cluster.status().expect("cluster status");
        let leader = status["leader"].as_u64().unwrap() as usize;
        if leader == i + 1 {
            let out = cluster.cli(&["cluster", "transfer-leader"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        jobs.push(submit(&cluster, &spec, &format!("load-{}a", i + 1)));
        let proc = cluster.procs[i].as_mut().unwrap();
        proc.signal("TERM");
        assert_eq!(
            proc.wait_exit(Duration::from_secs(30)),
            Some(0),
            "coordinator {} did not stop cleanly: {}",
            i + 1,
            cluster.log(&format!("coordinator-{}", i + 1))
        );
        // Submitted while a member is down: two of three still commit.
        jobs.push(submit(&cluster, &spec, &format!("load-{}b", i + 1)));
        cluster.restart(i);
        let started = Instant::now();
        let out = cluster.cli(&["cluster", "wait-healthy", "--timeout", "90s"]);
        assert!(
            out.status.success(),
            "after restarting node {}: {}{}",
            i + 1,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(90));
    }
    jobs.push(submit(&cluster, &spec, "load-after"));

    for job in &jobs {
        let status = cluster.wait_job(job, "succeeded", Duration::from_secs(180));
        assert_eq!(status["counts"]["succeeded"], 30);
        let events = assert_exactly_once(&cluster, job);
        for kind in ["task_failed", "task_lease_expired", "task_timed_out"] {
            let seen = of_kind(&events, kind);
            assert!(seen.is_empty(), "job {job} has {kind} events: {seen:#?}");
        }
    }
    // Each acknowledged submission is a job, once.
    let listed = cluster.json(&["job", "list", "--json", "--limit", "100"]);
    assert_eq!(listed["jobs"].as_array().unwrap().len(), jobs.len());
    assert_replicas_converge(&cluster);
}

#[test]
fn a_coordinator_refuses_a_data_directory_from_a_newer_release() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node-1");
    std::fs::create_dir_all(&data).unwrap();
    let marker = r#"{"format": 2, "writtenBy": "9.4.0"}"#;
    std::fs::write(data.join("format.json"), marker).unwrap();
    let out = drover()
        .args(["coordinator", "--node-id", "1"])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is in on-disk format 2, last opened by drover 9.4.0")
            && err.contains("Run drover 9.4.0 or newer on it"),
        "{err}"
    );
    // Nothing was created or changed.
    assert_eq!(
        std::fs::read_to_string(data.join("format.json")).unwrap(),
        marker
    );
    assert!(!data.join("raft").exists() && !data.join("state").exists());
}
