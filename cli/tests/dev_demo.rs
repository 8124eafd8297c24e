//! `drover dev --demo`, the README's first command: it runs the example DAG
//! on the embedded single-node coordinator with in-process workers and
//! exits 0 when every job succeeded.

use std::net::TcpListener;
use std::process::Command;

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn dev_demo_runs_the_examples_to_success() {
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
    assert!(
        stderr.contains("submitted dag-sleep.yaml as j1"),
        "{stderr}"
    );
    assert!(stderr.contains("succeeded 9/9 done"), "{stderr}");
    assert!(
        stderr.contains("demo finished: every job succeeded"),
        "{stderr}"
    );
    // The state is durable: the job is in the coordinator's data directory.
    assert!(dir.path().join("dev-coordinator/raft").exists());
}
