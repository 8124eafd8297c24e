//! The web console's page and JSON API on real `drover coordinator`
//! processes: asked of a follower, every read and change is forwarded to
//! the leader; changes refuse anything but a JSON body (so another site's
//! form cannot post them); unknown jobs and bad filters get clear errors.
//! The browser test (`scripts/console-browser-test.py`) drives the page
//! itself in Chromium.

use std::time::Duration;

use crate::support::{Cluster, http_get, http_request, json_body, wait_for};

const DAG_SLEEP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../jobspecs/examples/dag-sleep.yaml"
);

/// The first coordinator that is not the leader.
fn follower_http(cluster: &Cluster) -> String {
    let leader = cluster.status().unwrap()["leader"].as_u64().unwrap();
    let i = (0..cluster.http.len())
        .find(|i| (*i as u64) + 1 != leader)
        .unwrap();
    cluster.http[i].clone()
}

fn get_json(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, response) = http_get(addr, path);
    (code, json_body(&response))
}

fn post_json(addr: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (code, response) = http_request(addr, "POST", path, Some(("application/json", body)));
    (code, json_body(&response))
}

#[test]
fn the_console_on_a_follower_reads_and_changes_the_leaders_state() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3);
    let _worker = cluster.worker("w1", 4, &[]);
    let http = follower_http(&cluster);

    // The page: built into the binary, with a policy that lets no other
    // script run.
    let (code, page) = http_get(&http, "/ui/");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<title>Drover</title>"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'")
    );
    assert_eq!(http_get(&http, "/ui/console.js").0, 200);
    assert_eq!(http_get(&http, "/ui/console.css").0, 200);
    assert_eq!(http_get(&http, "/ui/no-such-file.js").0, 404);

    let (_, node) = get_json(&http, "/api/v1/node");
    assert_eq!(node["is_leader"], false, "{node}");
    assert!(node["leader_id"].as_u64().unwrap() > 0, "{node}");

    let job = cluster.json(&[
        "job",
        "submit",
        DAG_SLEEP,
        "--param",
        "sleepMs=120000",
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Running once the worker leased a task: the refused cancel below must
    // leave it so.
    cluster.wait_job(&job, "running", Duration::from_secs(30));

    // Listed among jobs, not among schedules.
    let (code, jobs) = get_json(&http, "/api/v1/jobs?kind=jobs");
    assert_eq!(code, 200, "{jobs}");
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job.as_str())
    );
    let (_, schedules) = get_json(&http, "/api/v1/jobs?kind=schedules");
    assert!(
        schedules["jobs"].as_array().unwrap().is_empty(),
        "{schedules}"
    );

    // The job with its DAG laid out: a box per template, a curve per
    // dependency, columns by stage.
    let (code, detail) = get_json(&http, &format!("/api/v1/jobs/{job}"));
    assert_eq!(code, 200, "{detail}");
    let graph = &detail["graph"];
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 4, "{graph}");
    assert_eq!(graph["edges"].as_array().unwrap().len(), 4, "{graph}");
    let x = |name: &str| {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()["x"]
            .as_f64()
            .unwrap()
    };
    assert!(x("extract") < x("transform") && x("transform") < x("load"));

    // Why a downstream task waits, and why it has no output yet.
    let task = format!("{job}/1/0");
    let (code, why) = get_json(&http, &format!("/api/v1/task?id={task}"));
    assert_eq!(code, 200, "{why}");
    assert_eq!(why["reason"], "dependency", "{why}");
    assert_eq!(
        why["details"]["blocking"][0]["template"], "extract",
        "{why}"
    );
    let (code, none) = get_json(&http, &format!("/api/v1/task/output?id={task}"));
    assert_eq!(code, 409, "{none}");
    assert!(
        none["error"].as_str().unwrap().contains("no output"),
        "{none}"
    );

    // A change without a JSON body (what a cross-site form can send) is
    // refused and changes nothing.
    let (code, _) = http_request(
        &http,
        "POST",
        &format!("/api/v1/jobs/{job}/cancel"),
        Some(("application/x-www-form-urlencoded", "reason=forged")),
    );
    assert_eq!(code, 415);
    assert_eq!(cluster.job(&job)["state"], "running");

    let (code, cancelled) = post_json(
        &http,
        &format!("/api/v1/jobs/{job}/cancel"),
        r#"{"reason":"stopped from the console test"}"#,
    );
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["changed"], true);
    cluster.wait_job(&job, "cancelled", Duration::from_secs(30));
    let (_, events) = get_json(&http, &format!("/api/v1/jobs/{job}/events"));
    assert!(
        events["events"].as_array().unwrap().iter().any(
            |e| e["kind"] == "job_cancelled" && e["message"] == "stopped from the console test"
        ),
        "{events}"
    );

    // Clear errors for what does not exist or does not parse.
    let (code, missing) = get_json(&http, "/api/v1/jobs/j999999");
    assert_eq!(code, 404, "{missing}");
    let (code, bad) = get_json(&http, "/api/v1/jobs?state=sleeping");
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("sleeping"), "{bad}");
    let (code, too_long) = post_json(
        &http,
        &format!("/api/v1/jobs/{job}/retry"),
        &format!(r#"{{"reason":"{}"}}"#, "x".repeat(5000)),
    );
    assert_eq!(code, 400, "{too_long}");

    // A finished task's accepted output.
    let quick = cluster.json(&[
        "job",
        "submit",
        DAG_SLEEP,
        "--param",
        "sleepMs=10",
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster.wait_job(&quick, "succeeded", Duration::from_secs(60));
    let (code, output) = get_json(&http, &format!("/api/v1/task/output?id={quick}/0/0"));
    assert_eq!(code, 200, "{output}");
    assert!(output["fencing_token"].as_u64().unwrap() > 0, "{output}");
    assert_eq!(output["task"]["state"], "succeeded", "{output}");

    // Workers, and draining one from the console.
    let (_, workers) = get_json(&http, "/api/v1/workers");
    assert_eq!(workers["workers"][0]["id"], "w1", "{workers}");
    assert_eq!(workers["workers"][0]["state"], "alive", "{workers}");
    let (code, drained) = post_json(&http, "/api/v1/workers/w1/drain", "{}");
    assert_eq!(code, 200, "{drained}");
    assert_eq!(drained["worker"]["state"], "draining", "{drained}");

    // Every member answers for itself; the leader reports replication.
    let cluster_view = wait_for(Duration::from_secs(30), || {
        let (code, c) = get_json(&http, "/api/v1/cluster");
        let answered = c["nodes"].as_array().is_some_and(|n| {
            n.len() == 3 && n.iter().all(|n| n["status"]["term"].as_u64() > Some(0))
        });
        (code == 200 && answered && c["leader"].is_object()).then_some(c)
    });
    assert_eq!(
        cluster_view["leader"]["members"].as_array().unwrap().len(),
        3,
        "{cluster_view}"
    );
}
