//! A coordinator whose data directory fills up (a small tmpfs) is a clear
//! fail-stop: the request that hit the full disk is answered at once with
//! an error naming the node and "no space", `/readyz` says why, the
//! process exits non-zero and frees its ports, and nothing acknowledged is
//! lost. In a cluster the other members keep serving, and the node, given
//! space and restarted, catches up.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN); CI runs as root, and the
//! test fails there rather than skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Cluster, drover, free_port, http_get, wait_for};

/// A tmpfs mounted at a directory for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` (`6m`) at `at`; `None` when this process may not
    /// mount and is not in CI.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var_os("CI").is_none(),
                "mounting a tmpfs failed in CI: {why}"
            );
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return None;
        }
        Some(Tmpfs(at.to_owned()))
    }

    /// Gives the filesystem `size` in all, as an operator freeing space.
    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A spec of about 150 KiB that compresses poorly (the log compresses
/// entries), so a few dozen submits fill a few MiB.
fn padded_spec(dir: &Path) -> String {
    let mut noise = vec![0u8; 110_000];
    getrandom::fill(&mut noise).unwrap();
    let mut yaml = String::from(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: filler}\nspec:\n  tasks:\n    - name: nap\n      kind: sleep\n      config: {ms: 1}\n",
    );
    for chunk in noise.chunks(60) {
        yaml.push_str("# ");
        for b in chunk {
            yaml.push_str(&format!("{b:02x}"));
        }
        yaml.push('\n');
    }
    crate::support::spec_file(dir, "padded.yaml", &yaml)
}

#[test]
fn a_full_disk_stops_a_single_coordinator_with_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "6m") else {
        return;
    };
    let data = dir.path().join("disk/node-1");
    let (grpc, http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let start = |log: &str| {
        drover()
            .args(["coordinator", "--node-id", "1"])
            .args(["--listen", &grpc, "--http", &http])
            .arg("--data-dir")
            .arg(&data)
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut node = start("first.log");
    wait_for(Duration::from_secs(20), || {
        (http_get(&http, "/readyz").0 == 200).then_some(())
    });
    let spec = padded_spec(dir.path());
    let submit = |key: &str| {
        drover()
            .args(["--coordinators", &grpc, "job", "submit", &spec])
            .args(["--idempotency-key", key])
            .output()
            .unwrap()
    };

    // Submit until the disk is full: every submit before is acknowledged.
    let mut acknowledged = Vec::new();
    let (refused, took) = loop {
        assert!(acknowledged.len() < 200, "6 MiB never filled");
        let asked = Instant::now();
        let out = submit(&format!("k{}", acknowledged.len()));
        if !out.status.success() {
            break (out, asked.elapsed());
        }
        acknowledged.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    };
    let err = String::from_utf8_lossy(&refused.stderr);
    eprintln!("after {} jobs, in {took:?}: {err}", acknowledged.len());
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("node 1 has no space left on device for its data directory"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // `/readyz` says why while the node lingers.
    let (code, body) = http_get(&http, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no space left on device"), "{body}");

    // The process exits non-zero by itself, saying why, and frees its
    // ports.
    let exited = wait_for(Duration::from_secs(20), || node.try_wait().unwrap());
    assert_eq!(exited.code(), Some(2));
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(
        log.contains("error: raft node: storage: node 1 has no space left on device"),
        "{log}"
    );

    // Restarted on the still-full disk, it refuses to start, clearly.
    let out = drover()
        .args(["coordinator", "--node-id", "1"])
        .args(["--listen", &grpc, "--http", &http])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");

    // Given space, it starts on the same ports with every acknowledged job.
    disk.grow("64m");
    let mut node = start("second.log");
    wait_for(Duration::from_secs(20), || {
        (http_get(&http, "/readyz").0 == 200).then_some(())
    });
    let out = drover()
        .args([
            "--coordinators",
            &grpc,
            "job",
            "list",
            "--json",
            "--limit",
            "1000",
        ])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    acknowledged.sort();
    assert_eq!(ids, acknowledged);
    assert!(submit("after").status.success());
    let _ = node.kill();
    let _ = node.wait();
}

#[test]
fn a_full_disk_on_the_leader_of_three_hands_the_cluster_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    // Member 1's data directory, as `Cluster::start` names it.
    let Some(disk) = Tmpfs::mount(&dir.path().join("try-0/n1"), "8m") else {
        return;
    };
    let mut cluster = Cluster::start(dir.path(), 3);
    assert_eq!(cluster.data_dir(0), dir.path().join("try-0/n1"));
    wait_for(Duration::from_secs(20), || {
        cluster.cli(&["cluster", "transfer-leader", "1"]);
        (cluster.status()?["leader"].as_u64()? == 1).then_some(())
    });
    let spec = padded_spec(dir.path());
    // Every submit succeeds: the one that meets the full disk is retried
    // by the CLI (with its idempotency key) on the others once they elect.
    let mut acknowledged = Vec::new();
    loop {
        assert!(acknowledged.len() < 300, "8 MiB never filled");
        let key = format!("k{}", acknowledged.len());
        let out = cluster.cli(&["job", "submit", &spec, "--idempotency-key", &key]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        acknowledged.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        let first = cluster.procs[0].as_mut().unwrap();
        if let Some(status) = first.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(2));
            break;
        }
    }
    let log = cluster.log("coordinator-1");
    assert!(log.contains("node 1 has no space left on device"), "{log}");
    // The others lead (an election, when the disk filled between submits).
    wait_for(Duration::from_secs(30), || {
        let leader = cluster.status()?["leader"].as_u64()?;
        (leader == 2 || leader == 3).then_some(())
    });
    let listed = cluster.json(&["job", "list", "--json", "--limit", "1000"]);
    let mut ids: Vec<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    acknowledged.sort();
    acknowledged.dedup();
    assert_eq!(ids, acknowledged);

    // Given space and restarted, member 1 catches up with the others.
    disk.grow("64m");
    cluster.procs[0] = None;
    cluster.restart(0);
    let digest = |address: &str| -> Option<serde_json::Value> {
        let out = drover()
            .args(["--coordinators", address, "cluster", "digest", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).ok()
    };
    wait_for(Duration::from_secs(30), || {
        let mine = digest(&cluster.grpc[0])?;
        let theirs = digest(&cluster.grpc[1])?;
        (mine["appliedIndex"] == theirs["appliedIndex"] && mine["sha256"] == theirs["sha256"])
            .then_some(())
    });
}
