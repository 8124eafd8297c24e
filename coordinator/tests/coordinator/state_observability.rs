//! What the state machine offers observability: a job's trace context,
//! kept with the job and handed to every attempt, and the read-only
//! summary metrics are computed from (`StateMachine::stats`).

use crate::support::{H, T0, spec};
use drover_coordinator::state::{
    Command, Counts, Outcome, Rejection, StateMachine, Submitted, TaskState,
};

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn submitted_job(out: Result<Outcome, Rejection>) -> drover_coordinator::state::JobId {
    match out {
        Ok(Outcome::Submitted {
            id: Submitted::Job(id),
            ..
        }) => id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_job_keeps_its_traceparent_and_every_grant_carries_it() {
    let mut h = H::new();
    let traced = submitted_job(h.submit_traced(
        &spec(
            "traced",
            "",
            "    - {name: a, kind: noop, partitions: {shards: 2}}\n",
        ),
        None,
        Some(TRACE),
    ));
    let plain = h.submit(&spec("plain", "", "    - {name: a, kind: noop}\n"));
    assert_eq!(h.job(traced).trace_parent.as_deref(), Some(TRACE));
    h.worker("w", 10, &[]);
    let grants = h.lease("w", 10);
    assert_eq!(grants.len(), 3);
    for g in &grants {
        let want = (g.task.job == traced).then_some(TRACE);
        assert_eq!(g.trace_parent.as_deref(), want, "{}", g.task);
    }
    // Retries run in the same trace.
    let first = grants.iter().find(|g| g.task.job == traced).unwrap();
    for g in grants.iter().filter(|g| g.task != first.task) {
        h.complete("w", g).unwrap();
    }
    h.fail("w", first, true).unwrap();
    h.advance(10_000);
    let retry = h.lease("w", 10);
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].task, retry[0].attempt), (first.task, 2));
    assert_eq!(retry[0].trace_parent.as_deref(), Some(TRACE));
    // Snapshots carry it.
    let restored = StateMachine::restore(&h.sm.snapshot()).unwrap();
    assert_eq!(
        restored.job(traced).unwrap().trace_parent.as_deref(),
        Some(TRACE)
    );
    assert_eq!(restored.job(plain).unwrap().trace_parent, None);
}

#[test]
fn an_oversized_traceparent_is_refused() {
    let mut h = H::new();
    let long = format!("{TRACE}-0");
    let out = h.submit_traced(
        &spec("t", "", "    - {name: a, kind: noop}\n"),
        None,
        Some(&long),
    );
    assert!(matches!(out, Err(Rejection::TooLarge(_))), "{out:?}");
    assert!(h.sm.core().jobs.is_empty());
}

#[test]
fn runs_of_a_schedule_join_the_trace_of_its_submit() {
    let mut h = H::new();
    let yaml = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: nightly, namespace: maps}\nspec:\n  schedule: {cron: \"0 3 * * *\", timezone: UTC}\n  tasks:\n    - {name: a, kind: noop}\n";
    let schedule = match h.submit_traced(yaml, None, Some(TRACE)).unwrap() {
        Outcome::Submitted {
            id: Submitted::Schedule(id),
            ..
        } => id,
        other => panic!("{other:?}"),
    };
    // T0 is midnight UTC: the first fire is at 03:00.
    h.now = T0 + 3 * 3_600_000 + 500;
    assert_eq!(h.tick().fired, 1);
    let run =
        h.sm.core()
            .jobs
            .values()
            .find(|j| j.schedule == Some(schedule))
            .expect("a run");
    assert_eq!(run.trace_parent.as_deref(), Some(TRACE));
}

#[test]
fn stats_count_tasks_per_namespace_and_state() {
    let mut h = H::new();
    let dag = "    - {name: a, kind: noop, partitions: {shards: 3}}\n    - {name: b, kind: noop, dependsOn: [a], partitions: {shards: 2}}\n";
    h.submit(&spec("dag", "", dag));
    // Lower priority, so the lease below takes only `team` tasks.
    h.submit("apiVersion: drover/v1\nkind: Job\nmetadata: {name: other, namespace: ops}\nspec:\n  priority: 10\n  tasks:\n    - {name: x, kind: noop, partitions: {shards: 4}}\n");
    h.worker("w", 2, &[]);
    h.worker("idle", 2, &[]);
    h.run(Command::DrainWorker {
        worker: "idle".into(),
    })
    .unwrap();
    let grants = h.lease("w", 2);
    assert!(grants.iter().all(|g| g.namespace == "team"));
    h.complete("w", &grants[0]).unwrap();

    let stats = h.sm.stats();
    assert_eq!(stats.now_ms, T0);
    assert_eq!(
        stats.tasks["team"],
        Counts {
            blocked: 2,
            ready: 1,
            leased: 1,
            succeeded: 1,
            ..Counts::default()
        }
    );
    assert_eq!(
        stats.tasks["ops"],
        Counts {
            ready: 4,
            ..Counts::default()
        }
    );
    assert_eq!(stats.ready_tasks, 5);
    assert_eq!(stats.ready_jobs, 2);
    assert_eq!(
        (
            stats.workers_alive,
            stats.workers_draining,
            stats.workers_lost
        ),
        (1, 1, 0)
    );
    let by_state: Vec<(TaskState, u64)> = stats.tasks["ops"]
        .by_state()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(by_state, [(TaskState::Ready, 4)]);
}

#[test]
fn the_oldest_ready_task_waits_from_when_it_became_ready() {
    let mut h = H::new();
    let dag = "    - {name: a, kind: noop}\n    - {name: b, kind: noop, dependsOn: [a]}\n";
    h.submit(&spec("dag", "", dag));
    assert_eq!(h.sm.stats().oldest_ready_ms, Some(T0));
    h.advance(5_000);
    assert_eq!(h.sm.stats().oldest_ready_age_ms(), 5_000);

    h.worker("w", 1, &[]);
    let a = h.lease("w", 1).remove(0);
    let stats = h.sm.stats();
    assert_eq!(
        (stats.oldest_ready_ms, stats.oldest_ready_age_ms()),
        (None, 0)
    );

    // `b` opens when `a` completes: its wait starts then, not at submit.
    h.now += 1_000;
    h.complete("w", &a).unwrap();
    h.advance(2_000);
    assert_eq!(h.sm.stats().oldest_ready_ms, Some(T0 + 6_000));
    assert_eq!(h.sm.stats().oldest_ready_age_ms(), 2_000);

    // A released task waits from its release.
    let b = h.lease("w", 1).remove(0);
    h.now += 1_000;
    let released_at = h.now;
    h.run(Command::Release {
        worker: "w".into(),
        tasks: vec![(b.task, b.token)],
    })
    .unwrap();
    h.advance(4_000);
    let stats = h.sm.stats();
    assert_eq!(stats.oldest_ready_ms, Some(released_at));
    assert_eq!(stats.oldest_ready_age_ms(), 4_000);
    assert_eq!(stats.ready_tasks, 1);
}
