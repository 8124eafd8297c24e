//! What an engineer does every day, through the real binary against a
//! `drover coordinator` process: submit a schedule and see it (`schedule
//! list`, `schedule status`, `job status`), filter `job list`, and follow a
//! job's events as they happen.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{Cluster, spec_file};
use serde_json::Value;

fn spec(name: &str, labels: &str, extra: &str, n: u32, ms: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n{extra}  tasks:\n    - name: nap\n      kind: sleep\n      partitions: {{shards: {n}}}\n      config: {{ms: {ms}}}\n"
    )
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn schedules_have_their_own_view_and_job_list_lists_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    // 04:15, which no Berlin transition touches (they move 02:00-03:00):
    // the next run is at :15 whatever day the test runs.
    let nightly = spec_file(
        dir.path(),
        "nightly.yaml",
        &spec(
            "nightly-export",
            "team: vision",
            "  schedule: {cron: \"15 4 * * *\", timezone: Europe/Berlin, catchup: latest}\n",
            1,
            1,
        ),
    );
    let out = cluster.cli(&["job", "submit", &nightly]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let schedule = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        said.contains(&format!(
            "as schedule {schedule}: `15 4 * * *` in Europe/Berlin, next run 20"
        )) && said.contains(":15 CE")
            && said.contains(&format!("drover schedule status {schedule}")),
        "{said}"
    );
    // `--once` runs the same spec as a job now: no schedule is named.
    let once = cluster.cli(&["job", "submit", &nightly, "--once"]);
    let said = String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "{said}");
    assert!(
        said.contains("(1 tasks") && !said.contains("schedule"),
        "{said}"
    );
    let vision = spec_file(
        dir.path(),
        "a.yaml",
        &spec("export-a", "team: vision", "", 1, 1),
    );
    let maps = spec_file(
        dir.path(),
        "b.yaml",
        &spec("backfill-b", "team: maps", "", 1, 1),
    );
    let once = String::from_utf8_lossy(&once.stdout).trim().to_owned();
    let a = stdout(&cluster.cli(&["job", "submit", &vision]));
    let b = stdout(&cluster.cli(&["job", "submit", &maps]));
    let (a, b) = (a.trim(), b.trim());

    // `job list` lists jobs; schedules only when asked.
    assert_eq!(
        ids(&cluster.json(&["job", "list", "--json"]), "jobs"),
        [b, a, once.as_str()]
    );
    assert_eq!(
        ids(&cluster.json(&["job", "list", "--all", "--json"]), "jobs"),
        [b, a, once.as_str(), schedule.as_str()]
    );
    assert_eq!(
        ids(
            &cluster.json(&["job", "list", "--label", "team=vision", "--json"]),
            "jobs"
        ),
        [a, once.as_str()]
    );
    assert_eq!(
        ids(
            &cluster.json(&["job", "list", "--name", "backfill", "--json"]),
            "jobs"
        ),
        [b]
    );
    // A schedule carries its spec's labels.
    assert_eq!(
        ids(
            &cluster.json(&["job", "list", "--all", "--label", "team=vision", "--json"]),
            "jobs"
        ),
        [a, once.as_str(), schedule.as_str()]
    );
    let bad = cluster.cli(&["job", "list", "--label", "team"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("write key=value"));

    // The schedule's own views.
    let listed = cluster.json(&["schedule", "list", "--json"]);
    assert_eq!(ids(&listed, "schedules"), [schedule.as_str()]);
    let s = &listed["schedules"][0];
    assert_eq!(s["cron"], "15 4 * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    assert_eq!(s["catchup"], "latest");
    assert_eq!(s["state"], "active");
    assert!(
        s["nextFireAt"][0]
            .as_str()
            .unwrap()
            .ends_with(":15:00+00:00"),
        "{s}"
    );
    let table = stdout(&cluster.cli(&["schedule", "list"]));
    assert!(
        table.contains("15 4 * * *") && table.contains("Europe/Berlin"),
        "{table}"
    );
    for view in [
        cluster.cli(&["schedule", "status", &schedule]),
        cluster.cli(&["job", "status", &schedule]),
    ] {
        let text = stdout(&view);
        for needle in [
            "cron:       15 4 * * *  in Europe/Berlin",
            "catch-up:   latest",
            "overlap:",
            "last fire:  -",
            "next fire:  20",
            "runs:       0 started, 0 skipped",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
    let not = cluster.cli(&["schedule", "status", a]);
    assert_eq!(not.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not.stderr).contains("is a job, not a schedule"));

    // A cancelled schedule leaves the list unless asked for.
    stdout(&cluster.cli(&["job", "cancel", &schedule]));
    assert!(ids(&cluster.json(&["schedule", "list", "--json"]), "schedules").is_empty());
    let all = cluster.json(&["schedule", "list", "--all", "--json"]);
    assert_eq!(all["schedules"][0]["state"], "cancelled");
}

#[test]
fn events_follow_prints_each_event_once_as_it_happens_and_exits_with_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let job = spec_file(dir.path(), "naps.yaml", &spec("naps", "a: b", "", 4, 400));
    let id = stdout(&cluster.cli(&["job", "submit", &job]));
    let id = id.trim();
    // Followed from before any worker exists, so every lease and
    // completion arrives while following.
    let follower = crate::support::drover()
        .arg("--coordinators")
        .arg(cluster.addresses())
        .args(["job", "events", id, "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _worker = cluster.worker("w1", 2, &[]);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "task_succeeded").count(),
        4,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"job_succeeded"), "{kinds:?}");
    // The same history as `job events` prints afterwards.
    let history = cluster.json(&["job", "events", id, "--json"]);
    let all: Vec<u64> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, all);

    // Following a finished job prints its history and ends at once; a
    // task filter keeps that task's events.
    let task = format!("{id}/0/0");
    let again = crate::support::drover()
        .arg("--coordinators")
        .arg(cluster.addresses())
        .args(["job", "events", id, "--follow", "--task", &task])
        .output()
        .unwrap();
    let text = stdout(&again);
    assert!(text.lines().count() >= 2, "{text}");
    assert!(text.lines().all(|l| l.contains(&task)), "{text}");
}

#[test]
fn job_status_shows_each_tasks_attempts_worker_and_times_across_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    // `flaky` fails its first two attempts and has one retry, so the job
    // fails and `after` never runs; `job retry` runs it a third time.
    let job = spec_file(
        dir.path(),
        "flaky.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: flaky}\nspec:\n  tasks:\n    - name: flaky\n      kind: sleep\n      retries: {max: 1, backoff: constant, initialDelay: 1s, maxDelay: 1s}\n      config: {ms: 50, failTimes: 2}\n    - name: after\n      kind: noop\n      partitions: {shards: 2}\n      dependsOn: [flaky]\n",
    );
    let id = stdout(&cluster.cli(&["job", "submit", &job]));
    let id = id.trim();
    let _worker = cluster.worker("w1", 2, &[]);
    cluster.wait_job(id, "failed", Duration::from_secs(60));
    let status = cluster.job(id);
    let tasks = status["tasks"].as_array().unwrap();
    let flaky = &tasks[0];
    assert_eq!(flaky["state"], "failed");
    assert_eq!(flaky["attempt"], 2, "{flaky}");
    assert_eq!(flaky["maxAttempts"], 2);
    assert_eq!(flaky["worker"], "w1");
    assert!(
        flaky["startedAt"].is_string() && flaky["finishedAt"].is_string(),
        "{flaky}"
    );
    for after in &tasks[1..] {
        assert_eq!(after["state"], "upstream_failed", "{after}");
        assert_eq!(after["attempt"], 0);
        assert!(after["startedAt"].is_null());
    }
    assert_eq!(status["counts"]["failed"], 1);
    assert_eq!(status["counts"]["upstreamFailed"], 2);
    let templates = status["templates"].as_array().unwrap();
    assert!(templates[0]["startedAt"].is_string() && templates[0]["finishedAt"].is_string());
    assert!(templates[1]["startedAt"].is_null());
    let text = stdout(&cluster.cli(&["job", "status", id]));
    assert!(text.contains("1 failed, 2 upstream failed"), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{id}/0/0 ")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("failed") && row.contains("2/2") && row.contains("w1"),
        "{row}"
    );

    // Retried: a fresh budget, and the attempt numbers go on: 3rd of 4.
    stdout(&cluster.cli(&["job", "retry", id]));
    let done = cluster.wait_job(id, "succeeded", Duration::from_secs(60));
    let tasks = done["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["attempt"], 3, "{}", tasks[0]);
    assert_eq!(tasks[0]["maxAttempts"], 4);
    assert_eq!(
        tasks[0]["startedAt"], flaky["startedAt"],
        "the first start stays"
    );
    for after in &tasks[1..] {
        assert_eq!(
            (after["state"].as_str(), after["attempt"].as_u64()),
            (Some("succeeded"), Some(1))
        );
        assert_eq!(after["worker"], "w1");
    }
}
