//! Per-attempt task logs on real processes: three coordinators sharing a
//! task log directory and workers that vanish. The log of a running
//! `command` attempt (its stdout and stderr lines) is readable through
//! `drover job logs` and the console of a follower while it runs; `--follow`
//! prints it until the attempt ends; after its worker is killed the log
//! stays readable up to the worker's last upload and says why it stops; the
//! next attempt's log is whole; and a mistaken attempt or task gets a clear
//! error.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Cluster, drover, http_get, json_body, spec_file, wait_for};
use serde_json::Value;

/// One `command` task: its first attempt prints, then hangs until its
/// worker is killed; later attempts print and finish.
const SPEC: &str = r#"apiVersion: drover/v1
kind: Job
metadata: {name: chatty}
spec:
  defaults:
    retries: {max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}
    timeout: 10m
  tasks:
    - name: talk
      kind: command
      config:
        argv: [sh, -c, 'echo "starting attempt $DROVER_ATTEMPT"; echo "a warning" >&2; if [ "$DROVER_ATTEMPT" = 1 ]; then sleep 600; fi; echo done']
"#;

fn logs(cluster: &Cluster, task: &str, extra: &[&str]) -> Value {
    let mut args = vec!["job", "logs", task, "--json"];
    args.extend_from_slice(extra);
    let out = cluster.cli(&args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_attempts_log_is_readable_while_it_runs_and_after_its_worker_vanished() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3);
    // Leases lapse 3 s after the last heartbeat and a silent worker is
    // lost after 6 s, so a killed worker's attempt moves on within seconds.
    cluster.lease_settings("6s");
    let mut first = cluster.worker("w-first", 1, &["--allow-command"]);
    let spec = spec_file(dir.path(), "chatty.yaml", SPEC);
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = format!("{job}/0/0");

    // While the attempt runs, its stdout and stderr are in its stored log
    // (the worker stores it every 5 s).
    let running = wait_for(Duration::from_secs(60), || {
        let l = logs(&cluster, &task, &[]);
        let text = l["text"].as_str().unwrap_or_default();
        (text.contains("stdout: starting attempt 1") && text.contains("stderr: a warning"))
            .then_some(l)
    });
    assert_eq!(running["found"], true, "{running:#}");
    assert_eq!(running["running"], true, "{running:#}");
    assert_eq!(running["attempt"], 1);
    assert_eq!(running["workerId"], "w-first");
    assert_eq!(running["workerState"], "alive");
    assert!(
        running["note"].as_str().unwrap().contains("running"),
        "{running:#}"
    );
    let text = running["text"].as_str().unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("drover: attempt 1 of task"),
        "{text}"
    );
    let first_token = running["fencingToken"].as_u64().unwrap();
    let location = running["location"].as_str().unwrap();
    assert_eq!(
        std::path::Path::new(location),
        cluster
            .task_logs()
            .join(format!("jobs/{job}/0/0/attempt-1-{first_token}.log")),
    );

    // The console of a follower answers the same, from the leader's state
    // and the shared store.
    let leader = cluster.status().unwrap()["leader"].as_u64().unwrap();
    let follower = &cluster.http[if leader == 1 { 1 } else { 0 }];
    let (code, response) = http_get(
        follower,
        &format!("/api/v1/task/log?id={task}&token={first_token}"),
    );
    let page = json_body(&response);
    assert_eq!(code, 200, "{response}");
    assert_eq!(page["running"], true, "{page:#}");
    assert_eq!(page["worker_id"], "w-first");
    assert!(
        page["text"]
            .as_str()
            .unwrap()
            .contains("stdout: starting attempt 1")
    );

    // `--follow` prints the log and keeps going until the attempt ends.
    let follow = drover()
        .arg("--coordinators")
        .arg(cluster.addresses())
        .args(["job", "logs", &task, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    // The worker vanishes mid-attempt.
    first.kill9();
    let started = Instant::now();
    let followed = follow.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "--follow did not end with the attempt"
    );
    let out = String::from_utf8_lossy(&followed.stdout);
    let err = String::from_utf8_lossy(&followed.stderr);
    assert_eq!(followed.status.code(), Some(0), "{err}");
    assert!(out.contains("stdout: starting attempt 1"), "{out}");
    assert!(
        err.contains("lease ran out without a heartbeat"),
        "--follow did not say why the log stops: {err}"
    );

    // Another worker runs the next attempt to its end.
    let _second = cluster.worker("w-second", 1, &["--allow-command"]);
    cluster.wait_job(&job, "succeeded", Duration::from_secs(90));
    let latest = logs(&cluster, &task, &[]);
    assert_eq!(latest["attempt"], 2, "{latest:#}");
    assert_eq!(latest["workerId"], "w-second");
    assert_eq!(latest["running"], false);
    assert_eq!(latest["note"], "", "{latest:#}");
    let text = latest["text"].as_str().unwrap();
    assert!(text.contains("stdout: starting attempt 2"), "{text}");
    assert!(text.contains("stdout: done"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("drover: attempt succeeded"),
        "the last store came after the end: {text}"
    );

    // The first attempt's log stays readable by its token, ends at its
    // worker's last upload, and says that worker is lost.
    let old = wait_for(Duration::from_secs(30), || {
        let l = logs(&cluster, &task, &["--token", &first_token.to_string()]);
        l["note"]
            .as_str()
            .unwrap_or_default()
            .contains("worker w-first is lost")
            .then_some(l)
    });
    assert_eq!(old["attempt"], 1);
    assert_eq!(old["found"], true);
    assert_eq!(old["running"], false);
    assert_eq!(old["workerState"], "lost");
    let text = old["text"].as_str().unwrap();
    assert!(text.contains("stdout: starting attempt 1"), "{text}");
    assert!(!text.contains("stdout: done"), "{text}");

    // Plain output: the log on stdout, which attempt it is on stderr.
    let plain = cluster.cli(&["job", "logs", &task]);
    assert!(plain.status.success());
    let stdout = String::from_utf8_lossy(&plain.stdout);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stdout.contains("stdout: done"), "{stdout}");
    assert!(
        stderr.starts_with(&format!("{task} attempt 2 (token ")),
        "{stderr}"
    );
    assert!(stderr.contains("on w-second (alive), ended"), "{stderr}");

    // Mistakes get clear errors, and exit 2.
    let wrong = cluster.cli(&["job", "logs", &task, "--token", "999999"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("had no attempt granted token 999999"));
    let unknown = cluster.cli(&["job", "logs", "j999/0/0"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("job j999 does not exist"));
}
