//! `drover bench` end to end: it starts a real 3-coordinator cluster of this
//! binary, drains it with real `drover worker` processes (and the raw-client
//! reference beside them), and its figures say every task was completed
//! exactly once. The failover scenario SIGKILLs the leader under load and
//! leases flow again.
//!
//! Small sizes: these check behaviour, not speed (debug build, shared CI
//! machine); the speed figures come from release runs (docs/development.md, Performance).

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = crate::support::drover()
        .arg("bench")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path().join("cluster"))
        .arg("--json")
        .arg(&json)
        .env_remove("DROVER_COORDINATORS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn throughput_completes_every_task_exactly_once_with_real_workers_and_the_reference() {
    let v = bench(&[
        "--scenario",
        "throughput",
        "--tasks",
        "3000",
        "--jobs",
        "3",
        "--workers",
        "2",
        "--slots",
        "16",
        "--raw-workers",
        "4",
        "--batch",
        "100",
    ]);
    assert_eq!(v["workerKind"], "real", "{v:#}");
    let t = &v["throughput"];
    // Real workers: every task succeeded once, and the workers counted one
    // accepted completion per task.
    assert_eq!(t["succeeded"], 3000, "{v:#}");
    assert_eq!(t["workersCompleted"], 3000.0, "{v:#}");
    assert!(t["workerCpuUsPerTask"].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(
        t["coordinatorCpuUsPerTask"].as_f64().unwrap() > 0.0,
        "{v:#}"
    );
    assert!(t["ratioToRaw"].as_f64().unwrap() > 0.0, "{v:#}");
    // The raw-client reference in the same run.
    let raw = &t["raw"];
    assert_eq!(raw["completedOnce"], 3000, "{v:#}");
    assert_eq!(raw["repeats"], 0, "{v:#}");
    assert_eq!(raw["jobsSucceeded"], 3, "{v:#}");
    assert!(v["tasks_per_second"].as_f64().unwrap() > 0.0);
    let nodes = t["coordinators"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{v:#}");
    assert_eq!(
        nodes.iter().filter(|n| n["leader"] == true).count(),
        1,
        "{v:#}"
    );
    let leader = nodes.iter().find(|n| n["leader"] == true).unwrap();
    assert!(leader["commandsPerEntry"].as_f64().unwrap() >= 1.0, "{v:#}");
    assert!(leader["rssBytes"].as_u64().unwrap() > 0, "{v:#}");
}

#[test]
fn a_killed_leader_is_replaced_and_leases_flow_again_to_real_workers() {
    let v = bench(&[
        "--scenario",
        "failover",
        "--kills",
        "1",
        "--workers",
        "2",
        "--slots",
        "16",
    ]);
    let f = &v["failover"];
    let recovery = f["recoveryMs"].as_array().unwrap();
    assert_eq!(recovery.len(), 1, "{v:#}");
    assert!(recovery[0].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(f["workersCompleted"].as_f64().unwrap() > 0.0, "{v:#}");
}

#[test]
fn the_raw_client_failover_still_answers_a_cut_off_completion_as_a_repeat() {
    let v = bench(&[
        "--scenario",
        "failover",
        "--worker-kind",
        "raw",
        "--kills",
        "1",
        "--raw-workers",
        "4",
        "--batch",
        "50",
    ]);
    let f = &v["failover"];
    assert_eq!(f["recoveryMs"].as_array().unwrap().len(), 1, "{v:#}");
    // A completion whose answer the kill cut off is sent again and
    // answered as a repeat, never accepted twice.
    assert!(f["completedOnce"].as_u64().unwrap() > 0, "{v:#}");
}
