//! The scaling signal on a real coordinator process: `GET /v1/scaling`
//! and the `drover_scaling_*` gauges follow ready, running and held-back
//! work per pool as a worker joins and the work goes away.

use std::time::Duration;

use crate::support::{Cluster, http_get, json_body, spec_file, wait_for};

const SPEC: &str = "apiVersion: drover/v1
kind: Job
metadata: {name: burst, namespace: team-a}
spec:
  maxParallel: 8
  tasks:
    - {name: nap, kind: sleep, partitions: {shards: 12}, config: {ms: 60000}}
    - {name: render, kind: noop, partitions: {shards: 3}, constraints: {labels: {pool: gpu}}}
";

fn scaling(cluster: &Cluster, query: &str) -> serde_json::Value {
    let (code, response) = http_get(&cluster.http[0], &format!("/v1/scaling{query}"));
    assert_eq!(code, 200, "{response}");
    json_body(&response)
}

fn pool<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == name)
        .unwrap_or_else(|| panic!("no pool {name} in {report:#}"))
}

#[test]
fn the_signal_follows_work_and_workers_per_pool() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let spec = spec_file(dir.path(), "burst.yaml", SPEC);
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // No worker yet: the default 4 slots; the job's cap of 8 holds back
    // the rest of the 15 tasks, which ask for nothing.
    let report = scaling(&cluster, "");
    let default = pool(&report, "default");
    assert_eq!(default["readyTasks"], 8, "{report:#}");
    assert_eq!(default["heldBackTasks"], 4, "{report:#}");
    assert_eq!(default["desiredWorkers"], 2, "{report:#}");
    let gpu = pool(&report, "pool=gpu");
    assert_eq!(gpu["heldBackTasks"], 3, "{report:#}");
    assert_eq!(gpu["desiredWorkers"], 0, "{report:#}");
    assert!(
        default["reasons"][1].as_str().unwrap().contains(&format!(
            "held back by maxParallel ({job}: cap 8, 0 running)"
        )),
        "{report:#}"
    );

    // A worker with two slots takes two: 6 ready and 2 running at 2 slots
    // per worker is 4 workers.
    let _worker = cluster.worker("w1", 2, &[]);
    let default = wait_for(Duration::from_secs(30), || {
        let report = scaling(&cluster, "?pool=default");
        let default = report["pools"][0].clone();
        (default["runningTasks"] == 2).then_some(default)
    });
    assert_eq!(default["slotsPerWorker"], 2, "{default:#}");
    assert_eq!(default["aliveWorkers"], 1, "{default:#}");
    assert_eq!(default["readyTasks"], 6, "{default:#}");
    assert_eq!(default["desiredWorkers"], 4, "{default:#}");
    assert_eq!(default["loadPerWorker"], 4.0, "{default:#}");
    let reasons = default["reasons"].to_string();
    assert!(reasons.contains("scale out to 4"), "{reasons}");
    let (_, metrics) = http_get(&cluster.http[0], "/metrics");
    assert!(
        metrics.contains("drover_scaling_desired_workers{pool=\"default\"} 4"),
        "{metrics}"
    );

    // Cancelled, the work asks for nothing, and the pool reads 0 instead
    // of disappearing; a pool asked for by name is reported even unknown.
    let out = cluster.cli(&["job", "cancel", &job]);
    assert!(out.status.success());
    wait_for(Duration::from_secs(30), || {
        let report = scaling(&cluster, "");
        let gpu = pool(&report, "pool=gpu");
        (pool(&report, "default")["desiredWorkers"] == 0 && gpu["desiredWorkers"] == 0)
            .then_some(())
    });
    let spot = scaling(&cluster, "?pool=pool=spot");
    assert_eq!(spot["pools"][0]["desiredWorkers"], 0, "{spot:#}");
    let (code, _) = http_get(&cluster.http[0], "/v1/scaling?pool=nonsense");
    assert_eq!(code, 400);
    // A name merely asked for is answered but not kept: the gauges carry
    // pools that had work (gpu) and not ones anyone can make up.
    let (_, metrics) = http_get(&cluster.http[0], "/metrics");
    assert!(
        metrics.contains("drover_scaling_desired_workers{pool=\"pool=gpu\"} 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("pool=spot"), "{metrics}");
}
