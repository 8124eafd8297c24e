//! Workers against a real single-node coordinator over gRPC: running a DAG
//! to success, and draining (SIGTERM) with tasks handed back at once.

use std::time::Duration;

use drover_coordinator::raft::node::NodeHandle;
use drover_coordinator::server::{self, ServerConfig, Started};
use drover_coordinator::state::{Command, JobId, JobState, Outcome, SubmitJob, Submitted};
use drover_worker::runner::{self, WorkerConfig, WorkerReport};
use tokio::sync::watch;

async fn coordinator(dir: &std::path::Path) -> (Started, String, watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = ServerConfig::new(1, dir);
    config.peers.insert(1, addr.clone());
    let (tx, mut rx) = watch::channel(false);
    let (started, serve) = server::start(config, listener, async move {
        let _ = rx.wait_for(|s| *s).await;
    })
    .unwrap();
    tokio::spawn(serve);
    for _ in 0..200 {
        if started.node.status().is_leader {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (started, addr, tx)
}

fn worker(id: &str, addr: &str, dir: &std::path::Path, slots: u32) -> WorkerConfig {
    let mut w = WorkerConfig::new(id, vec![addr.to_owned()]);
    w.slots = slots;
    w.data_root = dir.join("outputs");
    w.work_dir = dir.join("scratch");
    w.lease_wait = Duration::from_millis(500);
    w
}

async fn submit(node: &NodeHandle, yaml: &str) -> JobId {
    let out = node
        .propose(vec![Command::SubmitJob(SubmitJob {
            file: "t.yaml".into(),
            spec_yaml: yaml.into(),
            params: vec![],
            idempotency_key: None,
            trace_parent: None,
        })])
        .await
        .unwrap();
    match out.into_iter().next() {
        Some(Ok(Outcome::Submitted {
            id: Submitted::Job(id),
            ..
        })) => id,
        other => panic!("{other:?}"),
    }
}

async fn wait_state(node: &NodeHandle, job: JobId, want: JobState, limit: Duration) {
    let start = std::time::Instant::now();
    loop {
        let state = node
            .read_local(move |sm| sm.job(job).map(|j| j.state))
            .await
            .unwrap();
        if state == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "job {job} is {state:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_the_example_dag_to_success() {
    let dir = tempfile::tempdir().unwrap();
    let (started, addr, stop) = coordinator(&dir.path().join("c")).await;
    let job = submit(
        &started.node,
        include_str!("../../../jobspecs/examples/dag-sleep.yaml"),
    )
    .await;
    let (wstop, _) = watch::channel(false);
    let mut handles = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..2 {
        let mut rx = wstop.subscribe();
        let cfg = worker(
            &format!("w{i}"),
            &addr,
            &dir.path().join(format!("w{i}")),
            3,
        );
        metrics.push(cfg.metrics.clone());
        handles.push(tokio::spawn(runner::run(cfg, async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
    }
    wait_state(
        &started.node,
        job,
        JobState::Succeeded,
        Duration::from_secs(60),
    )
    .await;
    wstop.send(true).unwrap();
    let mut total = WorkerReport::default();
    for h in handles {
        let r = h.await.unwrap();
        total.completed += r.completed;
        total.failed += r.failed;
    }
    // Nine tasks, one of which fails once by design.
    assert_eq!((total.completed, total.failed), (9, 1));
    // The metrics count what the reports do.
    let finished = |outcome: &str| -> u64 {
        let series = format!("drover_worker_attempts_finished_total{{outcome=\"{outcome}\"}} ");
        metrics
            .iter()
            .map(|m| {
                m.render()
                    .lines()
                    .find_map(|l| l.strip_prefix(&series)?.parse().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!((finished("completed"), finished("failed")), (9, 1));
    for m in &metrics {
        let text = m.render();
        assert!(text.contains("drover_worker_tasks_running 0\n"), "{text}");
        assert!(
            text.contains("drover_worker_attempt_duration_seconds_count{kind=\"sleep\"}"),
            "{text}"
        );
        assert!(
            text.contains("drover_worker_lease_call_duration_seconds_count"),
            "{text}"
        );
    }
    let events = started
        .node
        .read_local(move |sm| {
            sm.job(job)
                .unwrap()
                .events
                .iter()
                .map(|e| format!("{:?}", e.kind))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Completed")).count(),
        9,
        "each completion accepted once"
    );
    let _ = stop.send(true);
    started.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_hands_its_tasks_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (started, addr, stop) = coordinator(&dir.path().join("c")).await;
    let job = submit(
        &started.node,
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: slow}\nspec:\n  tasks:\n    - {name: s, kind: sleep, config: {ms: 3000}, retries: {max: 0}}\n",
    )
    .await;
    let (first_stop, mut rx) = watch::channel(false);
    let mut cfg = worker("leaving", &addr, &dir.path().join("a"), 1);
    cfg.drain_timeout = Duration::from_millis(200);
    let metrics = cfg.metrics.clone();
    let leaving = tokio::spawn(runner::run(cfg, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    // Wait until it holds the task, then shut it down (SIGTERM).
    for _ in 0..200 {
        let leased = started
            .node
            .read_local(move |sm| sm.job(job).unwrap().counts.leased)
            .await
            .unwrap();
        if leased == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_stop.send(true).unwrap();
    let report = leaving.await.unwrap();
    assert_eq!(report.released, 1);
    let text = metrics.render();
    assert!(
        text.contains("drover_worker_attempts_finished_total{outcome=\"released\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("drover_worker_tasks_running 0\n"), "{text}");
    assert!(
        !text.contains("outcome=\"stopped\""),
        "counted once: {text}"
    );
    // The task is ready again at once, with its attempt not counted: a
    // second worker finishes it although the task allows no retries.
    let counts = started
        .node
        .read_local(move |sm| sm.job(job).unwrap().counts)
        .await
        .unwrap();
    assert_eq!(counts.ready, 1, "{counts:?}");
    let (second_stop, mut rx2) = watch::channel(false);
    let staying = tokio::spawn(runner::run(
        worker("staying", &addr, &dir.path().join("b"), 1),
        async move {
            let _ = rx2.wait_for(|s| *s).await;
        },
    ));
    wait_state(
        &started.node,
        job,
        JobState::Succeeded,
        Duration::from_secs(30),
    )
    .await;
    second_stop.send(true).unwrap();
    staying.await.unwrap();
    let _ = stop.send(true);
    started.stop().await;
}
