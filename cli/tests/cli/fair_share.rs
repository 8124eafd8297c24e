//! Fair-share weights set by an operator: `drover cluster settings
//! --namespace-weight` validates them, stores them in the replicated state,
//! and the scheduler leases in their proportion.

use std::time::Duration;

use crate::support::{Cluster, spec_file, wait_for};

fn naps(namespace: &str) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: naps, namespace: {namespace}}}\nspec:\n  tasks:\n    - {{name: nap, kind: sleep, partitions: {{shards: 20}}, config: {{ms: 60000}}}}\n"
    )
}

#[test]
fn namespace_weights_are_validated_stored_and_lease_in_proportion() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);

    for (bad, wanted) in [
        ("team-a=0", "a weight is 1 to 1000"),
        ("team-a=1001", "a weight is 1 to 1000"),
        ("Team_A=2", "must be 1 to 63 lowercase"),
        ("team-a", "is not NAMESPACE=WEIGHT"),
    ] {
        let out = cluster.cli(&["cluster", "settings", "--namespace-weight", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(wanted), "{bad}: {stderr}");
    }
    let settings = cluster.json(&[
        "cluster",
        "settings",
        "--namespace-weight",
        "team-a=3,team-b=2",
        "--json",
    ]);
    assert_eq!(
        settings["namespaceWeights"],
        serde_json::json!({"team-a": 3, "team-b": 2}),
        "{settings:#}"
    );
    // An empty update reads them back unchanged.
    let settings = cluster.json(&["cluster", "settings", "--json"]);
    assert_eq!(settings["namespaceWeights"]["team-a"], 3, "{settings:#}");

    // Both namespaces have work waiting; five slots go 3 to 2.
    let a = cluster.json(&[
        "job",
        "submit",
        &spec_file(dir.path(), "a.yaml", &naps("team-a")),
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = cluster.json(&[
        "job",
        "submit",
        &spec_file(dir.path(), "b.yaml", &naps("team-b")),
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _worker = cluster.worker("w1", 5, &[]);
    let running = |job: &str| cluster.job(job)["counts"]["leased"].as_u64().unwrap_or(0);
    let split = wait_for(Duration::from_secs(30), || {
        let split = (running(&a), running(&b));
        (split.0 + split.1 == 5).then_some(split)
    });
    assert_eq!(split, (3, 2));
}
