//! The lease protocol end to end over real processes on loopback: three
//! `drover coordinator` processes, `drover worker` processes, and the CLI.
//! Workers are killed (SIGKILL), paused (SIGSTOP) and drained (SIGTERM);
//! the leader is killed mid-job. Each test checks the job's event history:
//! every task's completion is accepted exactly once, and fenced attempts are
//! recorded as rejected.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Cluster, leased_by, of_kind, spec_file, wait_for};
use serde_json::Value;

const DAG_SLEEP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../jobspecs/examples/dag-sleep.yaml"
);

/// A job of `n` sleep tasks of `ms` each, retried up to 3 times.
fn sleeps(name: &str, n: u32, ms: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  defaults:\n    retries: {{max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    timeout: 5m\n  tasks:\n    - name: nap\n      kind: sleep\n      partitions: {{shards: {n}}}\n      config: {{ms: {ms}}}\n"
    )
}

/// Accepted completions per task id.
fn completions(events: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut out: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in of_kind(events, "task_succeeded") {
        out.entry(e["task"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    out
}

fn task_ids(status: &Value) -> Vec<String> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts each task of the job has exactly one accepted completion.
fn exactly_once(cluster: &Cluster, job: &str) -> (Value, Vec<Value>) {
    let status = cluster.job(job);
    let events = cluster.events(job);
    let done = completions(&events);
    for id in task_ids(&status) {
        let n = done.get(&id).map_or(0, Vec::len);
        assert_eq!(n, 1, "task {id} has {n} accepted completions: {events:#?}");
    }
    (status, events)
}

/// Tasks of a job currently leased, by worker.

#[test]
fn a_dag_runs_to_success_across_a_leader_kill_and_resubmits_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    cluster.short_leases();
    let mut a = cluster.worker("wa", 4, &[]);
    let mut b = cluster.worker("wb", 4, &[]);

    let submit = |key: &str| {
        cluster.json(&[
            "job",
            "submit",
            DAG_SLEEP,
            "--param",
            "sleepMs=1200",
            "--idempotency-key",
            key,
            "--json",
        ])
    };
    let first = submit("e2e-dag");
    assert_eq!(first["created"], true);
    let job = first["id"].as_str().unwrap().to_owned();
    // The same key returns the same job and starts nothing new.
    let again = submit("e2e-dag");
    assert_eq!(again["id"], job.as_str());
    assert_eq!(again["created"], false);
    assert_eq!(
        cluster.json(&["job", "list", "--json"])["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Kill the leader while the first stage runs.
    wait_for(Duration::from_secs(30), || {
        (cluster.job(&job)["counts"]["leased"].as_u64()? > 0).then_some(())
    });
    let leader = cluster.status().unwrap()["leader"].as_u64().unwrap() as usize;
    cluster.procs[leader - 1].as_mut().unwrap().kill9();

    let status = cluster.wait_job(&job, "succeeded", Duration::from_secs(120));
    assert_eq!(status["counts"]["succeeded"], 9);
    let (_, events) = exactly_once(&cluster, &job);
    // The planned failure was retried, not lost.
    assert!(
        of_kind(&events, "task_failed")
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("planned failure")),
        "{events:#?}"
    );

    // `job watch` on a finished job exits with its outcome at once.
    let watch = cluster.cli(&["job", "watch", &job]);
    assert_eq!(watch.status.code(), Some(0));
    let workers = cluster.json(&["worker", "list", "--json"]);
    let alive: Vec<&Value> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "alive")
        .collect();
    assert_eq!(alive.len(), 2, "{workers:#}");

    // SIGTERM: both workers drain and exit 0, and the cluster sees them go.
    a.signal("TERM");
    b.signal("TERM");
    assert_eq!(
        a.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        cluster.log("wa")
    );
    assert_eq!(
        b.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        cluster.log("wb")
    );
    wait_for(Duration::from_secs(20), || {
        let w = cluster.json(&["worker", "list", "--json"]);
        w["workers"]
            .as_array()?
            .iter()
            .all(|w| w["state"] != "alive")
            .then_some(())
    });
}

#[test]
fn a_killed_workers_tasks_are_leased_again_after_the_ttl_and_complete_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3);
    cluster.short_leases();
    let mut a = cluster.worker("doomed", 4, &[]);
    // Naps long enough that all four are still running when the test,
    // polling, sees them leased and kills the worker.
    let spec = spec_file(dir.path(), "naps.yaml", &sleeps("naps", 4, 10_000));
    // Submitted from inside a caller's trace: the job joins it.
    let out = cluster.cli_env(
        &["job", "submit", &spec, "--json"],
        &[(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(submitted["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let job = submitted["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(30), || {
        (leased_by(&cluster.job(&job), "doomed") == 4).then_some(())
    });
    a.kill9();
    let _b = cluster.worker("rescuer", 4, &[]);
    cluster.wait_job(&job, "succeeded", Duration::from_secs(60));

    let (_, events) = exactly_once(&cluster, &job);
    // Each of the dead worker's leases ran out; nothing was released, since
    // a SIGKILLed worker says nothing.
    let expired = of_kind(&events, "task_lease_expired");
    assert_eq!(expired.len(), 4, "{events:#?}");
    assert!(of_kind(&events, "task_released").is_empty());
    for done in of_kind(&events, "task_succeeded") {
        assert_eq!(done["worker"], "rescuer");
        assert_eq!(done["attempt"], 2);
    }
}

#[test]
fn a_paused_worker_is_fenced_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3);
    cluster.short_leases();
    let sleeper = cluster.worker("sleeper", 1, &[]);
    // A nap long enough to be still running when the test, polling, sees
    // it leased and pauses the worker.
    let spec = spec_file(dir.path(), "nap.yaml", &sleeps("nap", 1, 10_000));
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), || {
        (leased_by(&cluster.job(&job), "sleeper") == 1).then_some(())
    });
    sleeper.signal("STOP");
    let _b = cluster.worker("awake", 1, &[]);
    // The paused worker's lease runs out; the other worker takes the task
    // and finishes it while the first is still paused.
    cluster.wait_job(&job, "succeeded", Duration::from_secs(60));
    sleeper.signal("CONT");
    // On waking, the first worker's attempt is over too. Whichever of its
    // reports reaches the coordinator first (usually the completion, as the
    // heartbeat's verdict needs a round trip) carries the old token and is
    // refused.
    let rejected = wait_for(Duration::from_secs(30), || {
        let events = cluster.events(&job);
        let mine: Vec<Value> = of_kind(&events, "task_stale_token_rejected")
            .into_iter()
            .filter(|e| e["worker"] == "sleeper")
            .cloned()
            .collect();
        (!mine.is_empty()).then_some(mine)
    });
    assert!(
        rejected.iter().all(|e| e["fencingToken"] != 0),
        "{rejected:#?}"
    );
    let (_, events) = exactly_once(&cluster, &job);
    let done = of_kind(&events, "task_succeeded");
    assert_eq!(done[0]["worker"], "awake", "{events:#?}");
    // The accepted completion's token is the newest grant's.
    let last_lease = of_kind(&events, "task_leased").last().unwrap()["fencingToken"].clone();
    assert_eq!(done[0]["fencingToken"], last_lease);
}

#[test]
fn sigterm_hands_running_tasks_back_at_once_and_cancel_stops_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3);
    // Long leases: a handed-back task must be leased again at once, not
    // after its TTL.
    cluster.json(&["cluster", "settings", "--lease-ttl", "60s", "--json"]);
    let mut leaving = cluster.worker("leaving", 2, &["--drain-timeout", "1"]);
    let spec = spec_file(dir.path(), "long.yaml", &sleeps("long", 2, 4000));
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), || {
        (leased_by(&cluster.job(&job), "leaving") == 2).then_some(())
    });
    leaving.signal("TERM");
    assert_eq!(
        leaving.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        cluster.log("leaving")
    );
    let _staying = cluster.worker("staying", 2, &[]);
    // Well under the 60 s TTL: the tasks were released, not expired.
    cluster.wait_job(&job, "succeeded", Duration::from_secs(40));
    let (_, events) = exactly_once(&cluster, &job);
    assert_eq!(of_kind(&events, "task_released").len(), 2, "{events:#?}");
    assert!(of_kind(&events, "task_lease_expired").is_empty());

    // Cancelling a running job stops its tasks on the worker.
    let spec = spec_file(dir.path(), "endless.yaml", &sleeps("endless", 2, 600_000));
    let endless = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), || {
        (leased_by(&cluster.job(&endless), "staying") == 2).then_some(())
    });
    let out = cluster.json(&["job", "cancel", &endless, "--json"]);
    assert_eq!(out["changed"], true);
    assert_eq!(cluster.job(&endless)["state"], "cancelled");
    // The worker hears of it on its next heartbeat and stops both attempts
    // (each is a ten-minute sleep, so only a stop ends them).
    wait_for(Duration::from_secs(20), || {
        let log = cluster.log("staying");
        (log.matches("outcome=\"stopped\"").count() + log.matches("outcome=stopped").count() >= 2)
            .then_some(())
    });
    // A cancelled job's watch exits 3.
    assert_eq!(
        cluster.cli(&["job", "watch", &endless]).status.code(),
        Some(3)
    );
}

#[test]
fn cli_errors_are_one_line_and_rejected_specs_point_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let one_line = |args: &[&str], code: i32, needle: &str| {
        let out = cluster.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    };
    one_line(&["job", "status", "j999"], 2, "unknown job j999");
    one_line(&["job", "events", "nonsense"], 2, "nonsense");
    one_line(&["worker", "drain", "ghost"], 2, "unknown worker `ghost`");
    one_line(
        &[
            "cluster",
            "settings",
            "--lease-ttl",
            "2s",
            "--heartbeat-interval",
            "5s",
        ],
        2,
        "at most half the lease TTL",
    );
    // Nothing listening: told within seconds, naming the address and
    // where the CLI takes the cluster from.
    let nobody = crate::support::loopback();
    let asked = std::time::Instant::now();
    let unreachable = crate::support::drover()
        .args(["--coordinators", &nobody, "job", "list"])
        .output()
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(unreachable.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach a coordinator ({nobody}: "))
            && err.contains("DROVER_COORDINATORS"),
        "{err}"
    );
    assert_eq!(err.matches("tcp connect error").count(), 1, "{err}");
    // About 3 s of retries; the bound leaves room for a slow machine.
    assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");

    // The cluster's verdict on a bad spec, rendered against the local file.
    let spec = spec_file(
        dir.path(),
        "bad.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  tasks:\n    - name: a\n      kind: sleep\n      dependsOn: [missing]\n      config: {ms: 1}\n",
    );
    let out = cluster.cli(&["job", "submit", &spec]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.yaml:8:"), "{err}");
    assert!(err.contains("missing"), "{err}");
    assert!(
        cluster.json(&["job", "list", "--json"])["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A reader that goes away (`drover job list | head -1`) ends the CLI
    // quietly, with no panic. The pipe is closed before the CLI has
    // dialled, so its first line already meets a closed pipe.
    let spec = spec_file(dir.path(), "piped.yaml", &sleeps("piped", 3, 1));
    assert!(cluster.cli(&["job", "submit", &spec]).status.success());
    let listed = cluster.json(&["job", "list", "--json"]);
    let id = listed["jobs"][0]["id"].as_str().unwrap().to_owned();
    for args in [
        &["job", "list"][..],
        &["job", "list", "--json"],
        &["job", "status", &id],
        &["job", "events", &id],
    ] {
        let mut child = crate::support::drover()
            .arg("--coordinators")
            .arg(cluster.addresses())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}
