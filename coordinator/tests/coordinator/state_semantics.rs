//! One test (or a few) per scheduling semantic. Every command runs through
//! the harness, which checks all invariants after it.

use crate::support::{H, spec};
use drover_coordinator::state::events::{EventKind, ExpiryReason};
use drover_coordinator::state::explain::Why;
use drover_coordinator::state::{
    Command, Config, HeartbeatStatus, JobState, Outcome, Rejection, Submitted,
};

const DAG: &str = "    - {name: a, kind: noop, partitions: {shards: 3}}\n    - {name: b, kind: noop, dependsOn: [a], partitions: {shards: 2}}\n    - {name: c, kind: noop, dependsOn: [b]}\n";

#[test]
fn dag_tasks_become_ready_only_after_every_upstream_partition() {
    let mut h = H::new();
    let job = h.submit(&spec("dag", "", DAG));
    h.worker("w", 10, &[]);
    assert_eq!(h.job(job).state, JobState::Pending);
    assert_eq!(h.job(job).counts.ready, 3);
    assert_eq!(h.job(job).counts.blocked, 3);

    let first = h.lease("w", 10);
    assert_eq!(first.len(), 3, "only template a is ready");
    assert!(first.iter().all(|g| g.task.template == 0));
    h.complete("w", &first[0]).unwrap();
    h.complete("w", &first[1]).unwrap();
    assert!(
        h.lease("w", 10).is_empty(),
        "b waits for the last partition of a"
    );
    h.complete("w", &first[2]).unwrap();

    let second = h.lease("w", 10);
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|g| g.template == "b"));
    for g in &second {
        h.complete("w", g).unwrap();
    }
    let third = h.lease("w", 10);
    assert_eq!(third.len(), 1);
    h.complete("w", &third[0]).unwrap();
    let j = h.job(job);
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(j.counts.succeeded, 6);
    assert!(j.finished_ms.is_some());
}

#[test]
fn tokens_strictly_increase_and_grants_carry_resolved_config() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "cfg",
        "",
        "    - name: x\n      kind: command\n      partitions: {daily: {start: \"2026-01-01\", end: \"2026-01-03\"}}\n      config: {argv: [echo, \"${partition.key}\"]}\n",
    ));
    h.worker_kinds("w", 10, &[], &["command"]);
    let grants = h.lease("w", 10);
    assert_eq!(grants.len(), 3);
    let tokens: Vec<u64> = grants.iter().map(|g| g.token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    assert_eq!(grants[1].partition_key, "2026-01-02");
    assert_eq!(
        grants[1].config_json,
        r#"{"argv":["echo","2026-01-02"],"env":{}}"#
    );
    assert_eq!(grants[0].attempt, 1);
    assert_eq!(h.job(job).state, JobState::Running);
}

#[test]
fn heartbeats_extend_leases_and_expiry_retries_with_backoff() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "hb",
        "",
        "    - {name: a, kind: noop, retries: {max: 2, backoff: constant, initialDelay: 10s, maxDelay: 10s}}\n",
    ));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    // Heartbeat every 20 s for 2 minutes: the 30 s lease never expires.
    for _ in 0..6 {
        h.advance(20_000);
        match h.heartbeat("w", std::slice::from_ref(&g)).unwrap() {
            Outcome::Heartbeat(reply) => {
                assert!(matches!(reply.tasks[0].1, HeartbeatStatus::Ok { .. }))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.job(job).counts.leased, 1);
    // Silence: the leader's timer runs out and it proposes the expiry. One
    // for an older token of the same task would change nothing.
    let stale = h.run(Command::ExpireLeases {
        tasks: vec![(g.task, g.token - 1)],
    });
    assert_eq!(stale, Ok(Outcome::LeasesExpired(vec![])));
    let expired = h.run(Command::ExpireLeases {
        tasks: vec![(g.task, g.token)],
    });
    assert_eq!(expired, Ok(Outcome::LeasesExpired(vec![g.task])));
    assert_eq!(h.job(job).counts.backoff, 1);
    assert!(h.lease("w", 1).is_empty(), "still backing off");
    h.advance(10_000);
    let again = h.lease("w", 1).remove(0);
    assert_eq!(again.attempt, 2);
    assert!(again.token > g.token);
    // The old holder is fenced everywhere.
    assert!(matches!(
        h.complete("w", &g),
        Err(Rejection::StaleToken { .. })
    ));
    match h.heartbeat("w", std::slice::from_ref(&g)).unwrap() {
        Outcome::Heartbeat(reply) => assert_eq!(reply.tasks[0].1, HeartbeatStatus::LeaseLost),
        other => panic!("{other:?}"),
    }
    h.complete("w", &again).unwrap();
    let names = h.event_names(job);
    assert!(names.contains(&"Expired".to_owned()));
    assert_eq!(names.iter().filter(|n| *n == "StaleRejected").count(), 2);
    assert_eq!(h.job(job).state, JobState::Succeeded);
}

#[test]
fn stale_and_late_requests_are_rejected_and_recorded() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "stale",
        "",
        "    - {name: a, kind: noop, retries: {max: 0}}\n",
    ));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    // A token that was never issued for this task.
    let mut forged = g.clone();
    forged.token += 1000;
    assert!(matches!(
        h.complete("w", &forged),
        Err(Rejection::StaleToken { .. })
    ));
    assert!(matches!(
        h.fail("w", &forged, true),
        Err(Rejection::StaleToken { .. })
    ));
    h.complete("w", &g).unwrap();
    // The same completion again is a duplicate, not a second effect.
    assert_eq!(
        h.complete("w", &g).unwrap(),
        Outcome::Completed { duplicate: true }
    );
    assert_eq!(h.job(job).counts.succeeded, 1);
    let stale: Vec<_> = h
        .job(job)
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StaleRejected { action, token, .. } => Some((action.clone(), *token)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stale,
        [
            ("complete".to_owned(), forged.token),
            ("fail".to_owned(), forged.token)
        ]
    );
}

#[test]
fn exponential_backoff_then_permanent_failure_fails_downstream_and_job() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "retry",
        "",
        "    - {name: a, kind: noop, retries: {max: 2, backoff: exponential, initialDelay: 1s, maxDelay: 1m}}\n    - {name: b, kind: noop, dependsOn: [a]}\n    - {name: c, kind: noop, dependsOn: [b]}\n    - {name: side, kind: noop}\n",
    ));
    h.worker("w", 1, &[]);
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let grants = h.lease("w", 1);
        let g = grants
            .iter()
            .find(|g| g.template == "a")
            .cloned()
            .unwrap_or_else(|| {
                // `side` may come first in FIFO order; finish it and lease again.
                h.complete("w", &grants[0]).unwrap();
                h.lease("w", 1).remove(0)
            });
        assert_eq!(g.attempt, attempt);
        match h.fail("w", &g, true).unwrap() {
            Outcome::FailRecorded {
                retry_at_ms: Some(at),
            } => {
                delays.push(at - h.now);
                h.now = at;
                h.tick();
            }
            Outcome::FailRecorded { retry_at_ms: None } => assert_eq!(attempt, 3),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [1_000, 2_000], "1 s then 2 s");
    let j = h.job(job);
    assert_eq!(j.templates[0].counts.failed, 1);
    assert_eq!(j.templates[1].counts.failed, 1, "b will never run");
    assert_eq!(j.templates[2].counts.failed, 1, "nor will c");
    // `side` is independent and still runs; the job ends failed after it.
    if !j.state.is_terminal() {
        let g = h.lease("w", 1).remove(0);
        assert_eq!(g.template, "side");
        h.complete("w", &g).unwrap();
    }
    assert_eq!(h.job(job).state, JobState::Failed);
    assert!(h.event_names(job).contains(&"UpstreamFailed".to_owned()));
}

#[test]
fn permanent_failures_are_not_retried() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "perm",
        "",
        "    - {name: a, kind: noop, retries: {max: 5}}\n",
    ));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    assert_eq!(
        h.fail("w", &g, false).unwrap(),
        Outcome::FailRecorded { retry_at_ms: None }
    );
    assert_eq!(h.job(job).state, JobState::Failed);
}

#[test]
fn timeouts_end_attempts_even_with_heartbeats() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "to",
        "",
        "    - {name: a, kind: noop, timeout: 45s, retries: {max: 0}}\n",
    ));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    h.advance(20_000);
    h.heartbeat("w", std::slice::from_ref(&g)).unwrap();
    h.advance(20_000);
    h.heartbeat("w", std::slice::from_ref(&g)).unwrap();
    let report = h.advance(6_000);
    assert_eq!(report.timed_out, 1);
    assert_eq!(h.job(job).state, JobState::Failed);
    let reason = h.job(job).events.iter().find_map(|e| match e.kind {
        EventKind::Expired { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reason, Some(ExpiryReason::Timeout));
}

#[test]
fn cancellation_reaches_running_tasks_on_their_next_heartbeat() {
    let mut h = H::new();
    let job = h.submit(&spec("cancel", "", DAG));
    h.worker("w", 2, &[]);
    let grants = h.lease("w", 2);
    h.run(Command::CancelJob {
        job,
        reason: "wrong params".into(),
    })
    .unwrap();
    let j = h.job(job);
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(j.counts.cancelled, 6);
    match h.heartbeat("w", &grants).unwrap() {
        Outcome::Heartbeat(reply) => {
            assert!(
                reply
                    .tasks
                    .iter()
                    .all(|(_, s)| *s == HeartbeatStatus::JobCancelled)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.complete("w", &grants[0]),
        Err(Rejection::LeaseLost { .. })
    ));
    assert!(h.lease("w", 2).is_empty());
    assert!(matches!(
        h.run(Command::CancelJob {
            job,
            reason: "again".into()
        }),
        Err(Rejection::JobFinished { .. })
    ));
}

#[test]
fn idempotent_submit_same_key_same_spec_and_conflict() {
    let mut h = H::new();
    let yaml = spec("idem", "", "    - {name: a, kind: noop}\n");
    let first = h.submit_with_key(&yaml, Some("k1")).unwrap();
    let Outcome::Submitted {
        id: Submitted::Job(id),
        created: true,
    } = first
    else {
        panic!("{first:?}")
    };
    // Same spec, reformatted: still the same job.
    let reformatted = yaml.replace("{name: a, kind: noop}", "{kind: noop,   name: a}");
    assert_eq!(
        h.submit_with_key(&reformatted, Some("k1")).unwrap(),
        Outcome::Submitted {
            id: Submitted::Job(id),
            created: false
        }
    );
    let other = spec("idem", "", "    - {name: b, kind: noop}\n");
    assert!(matches!(
        h.submit_with_key(&other, Some("k1")),
        Err(Rejection::IdempotencyConflict { .. })
    ));
    // Another key makes another job.
    assert!(matches!(
        h.submit_with_key(&yaml, Some("k2")).unwrap(),
        Outcome::Submitted { created: true, .. }
    ));
}

#[test]
fn invalid_specs_are_rejected_with_diagnostics() {
    let mut h = H::new();
    let out = h.submit_with_key("apiVersion: drover/v1\nkind: Job\n", None);
    let Err(Rejection::InvalidSpec(diags)) = out else {
        panic!("{out:?}")
    };
    assert!(!diags.is_empty());
    assert!(h.sm.core().jobs.is_empty());
}

#[test]
fn retry_job_resets_failed_and_upstream_failed_tasks() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "again",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}, retries: {max: 0}}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ));
    h.worker("w", 2, &[]);
    let grants = h.lease("w", 2);
    h.complete("w", &grants[0]).unwrap();
    h.fail("w", &grants[1], true).unwrap();
    assert_eq!(h.job(job).state, JobState::Failed);
    assert_eq!(
        h.run(Command::RetryJob { job }).unwrap(),
        Outcome::Retried { tasks: 2 }
    );
    assert_eq!(h.job(job).state, JobState::Running);
    let g = h.lease("w", 2);
    assert_eq!(g.len(), 1, "only the failed partition reruns");
    // Attempt numbers go on across the retry.
    assert_eq!((g[0].task.partition, g[0].attempt), (1, 2));
    h.complete("w", &g[0]).unwrap();
    assert_eq!(h.drain_all("w"), 1);
    assert_eq!(h.job(job).state, JobState::Succeeded);
    assert!(matches!(
        h.run(Command::RetryJob { job }),
        Err(Rejection::JobFinished { .. })
    ));
}

#[test]
fn max_parallel_caps_jobs_and_templates() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "cap",
        "  maxParallel: 3\n",
        "    - {name: a, kind: noop, partitions: {shards: 10}, maxParallel: 2}\n    - {name: b, kind: noop, partitions: {shards: 10}}\n",
    ));
    h.worker("w", 100, &[]);
    let grants = h.lease("w", 100);
    assert_eq!(grants.len(), 3);
    assert_eq!(grants.iter().filter(|g| g.template == "a").count(), 2);
    let a_ready = h.sm.why_pending(drover_coordinator::state::TaskKey {
        job,
        template: 0,
        partition: 5,
    });
    assert_eq!(a_ready.unwrap(), Why::JobMaxParallel { limit: 3 });
    h.complete("w", &grants[2]).unwrap();
    let why =
        h.sm.why_pending(drover_coordinator::state::TaskKey {
            job,
            template: 0,
            partition: 5,
        })
        .unwrap();
    assert_eq!(why, Why::TemplateMaxParallel { limit: 2 });
    assert_eq!(h.lease("w", 100).len(), 1);
}

#[test]
fn label_constraints_and_command_kind_gate_placement() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "labels",
        "",
        "    - {name: gpu, kind: noop, constraints: {labels: {pool: gpu}}}\n    - name: cmd\n      kind: command\n      config: {argv: [\"true\"]}\n",
    ));
    h.worker("cpu", 10, &[("pool", "cpu")]);
    assert!(
        h.lease("cpu", 10).is_empty(),
        "no gpu label, no command permission"
    );
    let key = drover_coordinator::state::TaskKey {
        job,
        template: 0,
        partition: 0,
    };
    assert!(matches!(
        h.sm.why_pending(key).unwrap(),
        Why::NoMatchingWorker { .. }
    ));
    h.worker("gpu", 10, &[("pool", "gpu"), ("zone", "a")]);
    let g = h.lease("gpu", 10);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].template, "gpu");
    h.worker_kinds("runner", 1, &[], &["command"]);
    assert_eq!(h.lease("runner", 10)[0].kind, "command");
}

#[test]
fn priority_orders_leases_across_jobs() {
    let mut h = H::new();
    let low = h.submit(&spec(
        "low",
        "  priority: 10\n",
        "    - {name: a, kind: noop, partitions: {shards: 5}}\n",
    ));
    let high = h.submit(&spec(
        "high",
        "  priority: 90\n",
        "    - {name: a, kind: noop, partitions: {shards: 5}}\n",
    ));
    h.worker("w", 5, &[]);
    let grants = h.lease("w", 5);
    assert!(grants.iter().all(|g| g.task.job == high), "{grants:?}");
    let _ = low;
}

#[test]
fn fifo_within_a_namespace_and_priority() {
    let mut h = H::new();
    let first = h.submit(&spec(
        "first",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}}\n",
    ));
    let _second = h.submit(&spec(
        "second",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}}\n",
    ));
    h.worker("w", 3, &[]);
    assert!(h.lease("w", 3).iter().all(|g| g.task.job == first));
}

#[test]
fn fair_share_splits_workers_between_namespaces_by_weight() {
    let mut config = Config::default();
    config.namespace_weights.insert("maps".into(), 3);
    let mut h = H::with(config);
    let backfill = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: backfill, namespace: maps}\nspec:\n  maxParallel: 1000\n  tasks:\n    - {name: a, kind: noop, partitions: {shards: 100000}}\n";
    let cron = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: nightly, namespace: labeling}\nspec:\n  tasks:\n    - {name: a, kind: noop, partitions: {shards: 50}}\n";
    // The backfill is submitted first and is huge; FIFO alone would starve
    // the other team.
    let big = h.submit(backfill);
    let small = h.submit(cron);
    h.worker("w", 40, &[]);
    let grants = h.lease("w", 40);
    let per = |job| grants.iter().filter(|g| g.task.job == job).count();
    assert_eq!((per(big), per(small)), (30, 10), "3:1 by weight");
    // As tasks complete and slots free, the split holds.
    for g in grants.iter().filter(|g| g.task.job == small).take(5) {
        h.complete("w", g).unwrap();
    }
    let more = h.lease("w", 5);
    assert!(
        more.iter().all(|g| g.task.job == small),
        "the share below its weight refills first"
    );
}

#[test]
fn idle_namespaces_lend_their_share() {
    let mut h = H::new();
    let only = h.submit(&spec(
        "solo",
        "  maxParallel: 100\n",
        "    - {name: a, kind: noop, partitions: {shards: 100}}\n",
    ));
    h.worker("w", 64, &[]);
    assert_eq!(h.lease("w", 64).len(), 64);
    assert_eq!(h.job(only).counts.leased, 64);
}
