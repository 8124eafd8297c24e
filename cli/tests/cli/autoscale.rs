//! `drover autoscale` against a real coordinator: a backfill burst scales
//! workers out to the maximum, the quiet after it scales them back to zero
//! (they drain and exit), a second burst scales them out again, and every
//! task of both bursts succeeds exactly once.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Cluster, spec_file, wait_for};

fn burst(name: &str, days: u32) -> String {
    format!(
        "apiVersion: drover/v1
kind: Job
metadata: {{name: {name}, namespace: backfill}}
spec:
  tasks:
    - name: day
      kind: sleep
      partitions: {{daily: {{start: \"2026-01-01\", end: \"2026-01-{days:02}\"}}}}
      config: {{ms: 1500}}
"
    )
}

/// The worker counts `drover autoscale` moved between, in order.
fn moves(log: &str) -> Vec<(u32, u32)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("workers ")?;
            let (from, rest) = rest.split_once(" -> ")?;
            let to = rest.split(':').next()?;
            Some((from.parse().ok()?, to.parse().ok()?))
        })
        .collect()
}

/// Each task of the job completed exactly once: no task lost, none run
/// twice to completion.
fn succeeded_once(cluster: &Cluster, job: &str, tasks: u64) {
    let done = cluster.wait_job(job, "succeeded", Duration::from_secs(120));
    assert_eq!(done["counts"]["succeeded"], tasks, "{done:#}");
    let events = cluster.events(job);
    let mut completed = std::collections::BTreeMap::new();
    for e in &events {
        if e["kind"] == "task_succeeded" {
            *completed.entry(e["task"].to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(completed.len() as u64, tasks, "{events:#?}");
    assert!(completed.values().all(|n| *n == 1), "{completed:?}");
}

#[test]
fn workers_follow_two_bursts_out_and_back_in_with_no_task_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let log_path = dir.path().join("autoscale.log");
    let workers = dir.path().join("autoscaled");
    let mut autoscale = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["--coordinators", &cluster.addresses(), "autoscale"])
        .args(["--min", "0", "--max", "4", "--http", &cluster.http[0]])
        .args(["--interval", "300ms"])
        .args(["--scale-out-cooldown", "1s", "--scale-in-cooldown", "2s"])
        .arg("--")
        .args(["--slots", "1", "--drain-timeout", "5"])
        .arg("--data-root")
        .arg(workers.join("outputs"))
        .arg("--work-dir")
        .arg(workers.join("scratch"))
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Burst one: 8 days of backfill at one slot a worker asks for 8, capped at 4.
    let first = cluster.json(&[
        "job",
        "submit",
        &spec_file(dir.path(), "one.yaml", &burst("one", 8)),
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    succeeded_once(&cluster, &first, 8);
    assert!(moves(&log()).iter().any(|(_, to)| *to == 4), "{}", log());

    // Quiet: back to zero once the cooldowns allow, the workers drained.
    wait_for(Duration::from_secs(60), || {
        moves(&log())
            .last()
            .is_some_and(|(_, to)| *to == 0)
            .then_some(())
    });
    wait_for(Duration::from_secs(60), || {
        (log().matches("drained and exited").count() >= 4).then_some(())
    });

    // Burst two scales out again.
    let second = cluster.json(&[
        "job",
        "submit",
        &spec_file(dir.path(), "two.yaml", &burst("two", 6)),
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    succeeded_once(&cluster, &second, 6);
    let moves = moves(&log());
    let down = moves.iter().position(|(_, to)| *to == 0).unwrap();
    assert!(
        moves[down..].iter().any(|(from, to)| to > from),
        "no second scale-out in {moves:?}"
    );

    // Stopped, it drains its workers and exits cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &autoscale.id().to_string()])
        .status();
    let status = wait_for(Duration::from_secs(60), || autoscale.try_wait().unwrap());
    assert!(status.success(), "{status:?}\n{}", log());
    eprintln!("{}", log());
}
