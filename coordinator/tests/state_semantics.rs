//! One test (or a few) per scheduling semantic. Every command runs through
//! the harness, which checks all invariants after it.

mod support;

use drover_coordinator::state::events::{EventKind, ExpiryReason};
use drover_coordinator::state::explain::Why;
use drover_coordinator::state::{
    Command, Config, HeartbeatStatus, JobState, Manifest, Outcome, Rejection, Submitted, TaskState,
};
use support::{H, spec};

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

#[test]
fn release_and_deregister_requeue_without_counting_an_attempt() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "rel",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}, retries: {max: 0}}\n",
    ));
    h.worker("w", 3, &[]);
    let grants = h.lease("w", 3);
    let released = h
        .run(Command::Release {
            worker: "w".into(),
            tasks: vec![(grants[0].task, grants[0].token)],
        })
        .unwrap();
    assert_eq!(
        released,
        Outcome::Released {
            released: 1,
            not_held: vec![]
        }
    );
    assert_eq!(h.job(job).counts.ready, 1);
    assert_eq!(
        h.run(Command::DeregisterWorker { worker: "w".into() })
            .unwrap(),
        Outcome::Released {
            released: 2,
            not_held: vec![]
        }
    );
    h.worker("w2", 3, &[]);
    let again = h.lease("w2", 3);
    assert_eq!(again.len(), 3);
    assert!(
        again.iter().all(|g| g.attempt == 1),
        "releases do not use up retries"
    );
    assert!(matches!(
        h.run(Command::Lease {
            worker: "w".into(),
            max_tasks: 1
        }),
        Err(Rejection::UnknownWorker(_))
    ));
}

#[test]
fn draining_workers_get_no_new_tasks_and_are_told() {
    let mut h = H::new();
    h.submit(&spec(
        "drain",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}}\n",
    ));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1);
    h.run(Command::DrainWorker { worker: "w".into() }).unwrap();
    let again = h.run(Command::Lease {
        worker: "w".into(),
        max_tasks: 1,
    });
    assert_eq!(
        again,
        Ok(Outcome::Draining),
        "told in the lease's own answer"
    );
    match h.heartbeat("w", &g).unwrap() {
        Outcome::Heartbeat(reply) => assert!(reply.drain),
        other => panic!("{other:?}"),
    }
}

/// Registers `worker` and returns its session.
fn session(h: &mut H, worker: &str) -> u64 {
    match h
        .run(Command::RegisterWorker {
            worker: worker.into(),
            slots: 4,
            labels: Default::default(),
            kinds: Vec::new(),
        })
        .unwrap()
    {
        Outcome::Registered { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    }
}

fn lease_in(h: &mut H, worker: &str, epoch: u64) -> Result<Outcome, Rejection> {
    h.run(Command::LeaseInSession {
        worker: worker.into(),
        epoch,
        max_tasks: 1,
    })
}

#[test]
fn a_lease_names_the_workers_live_session_or_is_refused() {
    let mut h = H::new();
    h.submit(&spec(
        "sessions",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 4}}\n",
    ));
    let first = session(&mut h, "w");
    assert!(matches!(lease_in(&mut h, "w", first), Ok(Outcome::Leased(g)) if g.len() == 1));
    // Registering again starts a new session; the old one is over.
    let second = session(&mut h, "w");
    assert!(second > first);
    assert_eq!(
        lease_in(&mut h, "w", first),
        Err(Rejection::UnknownSession {
            worker: "w".into(),
            epoch: first
        })
    );
    assert!(matches!(
        lease_in(&mut h, "w", second),
        Ok(Outcome::Leased(_))
    ));
    // A session the cluster declared lost stays lost: the worker registers
    // again rather than carrying on in it.
    h.run(Command::WorkersLost {
        workers: vec![("w".into(), second)],
    })
    .unwrap();
    assert_eq!(
        h.sm.core().workers["w"].state,
        drover_coordinator::state::WorkerState::Lost
    );
    assert!(matches!(
        lease_in(&mut h, "w", second),
        Err(Rejection::UnknownSession { .. })
    ));
    let third = session(&mut h, "w");
    assert!(matches!(
        lease_in(&mut h, "w", third),
        Ok(Outcome::Leased(_))
    ));
    assert!(matches!(
        lease_in(&mut h, "nobody", third),
        Err(Rejection::UnknownWorker(_))
    ));
}

#[test]
fn a_completion_must_name_its_attempts_own_prefix() {
    let mut h = H::new();
    h.submit(&spec(
        "prefixes",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}}\n",
    ));
    h.worker("w", 2, &[]);
    let grants = h.lease("w", 2);
    let (g, other) = (&grants[0], &grants[1]);
    assert_eq!(
        g.output_prefix,
        format!(
            "jobs/{}/0/{}/attempt-1-{}",
            g.task.job, g.task.partition, g.token
        )
    );
    let complete = |h: &mut H, prefix: &str| {
        h.run(Command::Complete {
            worker: "w".into(),
            task: g.task,
            token: g.token,
            manifest: Manifest {
                prefix: prefix.to_owned(),
                ..Manifest::default()
            },
            skipped: false,
        })
    };
    // Another attempt's prefix (where a zombie could write) is refused,
    // and the lease stays live for the right report.
    let refused = complete(&mut h, &other.output_prefix);
    assert!(
        matches!(&refused, Err(Rejection::ForeignPrefix { expected, .. }) if *expected == g.output_prefix),
        "{refused:?}"
    );
    assert_eq!(
        complete(&mut h, &g.output_prefix.clone()),
        Ok(Outcome::Completed { duplicate: false })
    );
}

#[test]
fn a_grant_carries_its_upstream_outputs() {
    let mut h = H::new();
    h.submit(&spec(
        "upstream",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ));
    h.worker("w", 4, &[]);
    let firsts = h.lease("w", 4);
    assert_eq!(firsts.len(), 2);
    assert!(firsts.iter().all(|g| g.upstream == Some(vec![])));
    for g in &firsts {
        h.run(Command::Complete {
            worker: "w".into(),
            task: g.task,
            token: g.token,
            manifest: Manifest {
                prefix: g.output_prefix.clone(),
                ..Manifest::default()
            },
            skipped: false,
        })
        .unwrap();
    }
    let merge = h.lease("w", 1).remove(0);
    let prefixes: Vec<String> = merge
        .upstream
        .expect("within the limit")
        .into_iter()
        .map(|u| u.prefix)
        .collect();
    assert_eq!(
        prefixes,
        firsts
            .iter()
            .map(|g| g.output_prefix.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn why_pending_names_dependencies_and_backoff() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "why",
        "",
        "    - {name: a, kind: noop, retries: {max: 1, backoff: constant, initialDelay: 1m, maxDelay: 1m}}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ));
    let b = drover_coordinator::state::TaskKey {
        job,
        template: 1,
        partition: 0,
    };
    assert_eq!(
        h.sm.why_pending(b).unwrap(),
        Why::Dependency {
            waiting_on: vec!["a".into()]
        }
    );
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    let a = g.task;
    assert_eq!(
        h.sm.why_pending(a).unwrap(),
        Why::NotPending(TaskState::Leased)
    );
    h.fail("w", &g, true).unwrap();
    assert_eq!(
        h.sm.why_pending(a).unwrap(),
        Why::Backoff {
            until_ms: h.now + 60_000,
            next_attempt: 2
        }
    );
}

#[test]
fn progress_counts_are_exact_for_a_million_partitions_without_records() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "big",
        "  maxParallel: 1000\n",
        "    - {name: a, kind: noop, partitions: {shards: 1000000}}\n",
    ));
    h.worker("w", 1000, &[]);
    let grants = h.lease("w", 1000);
    for g in grants.iter().take(400) {
        h.complete("w", g).unwrap();
    }
    let j = h.job(job);
    let t = &j.templates[0];
    assert_eq!(j.counts.succeeded, 400);
    assert_eq!(j.counts.leased, 600);
    assert_eq!(j.counts.ready, 1_000_000 - 1000);
    assert_eq!(t.tasks.len(), 600, "only running tasks have records");
    assert_eq!(t.task_state(10), Some(TaskState::Succeeded));
    assert_eq!(t.task_state(500), Some(TaskState::Leased));
    assert_eq!(t.task_state(999_999), Some(TaskState::Ready));
}

#[test]
fn finished_jobs_are_collected_after_retention() {
    let mut h = H::with(Config {
        retention_ms: 3_600_000,
        ..Config::default()
    });
    let yaml = spec("gc", "", "    - {name: a, kind: noop}\n");
    let job = match h.submit_with_key(&yaml, Some("once")).unwrap() {
        Outcome::Submitted {
            id: Submitted::Job(id),
            ..
        } => id,
        other => panic!("{other:?}"),
    };
    h.worker("w", 1, &[]);
    h.drain_all("w");
    assert_eq!(h.job(job).state, JobState::Succeeded);
    assert_eq!(h.advance(3_599_000).collected, 0);
    assert_eq!(h.advance(1_000).collected, 1);
    assert!(h.sm.job(job).is_none());
    // Its idempotency key is free again.
    assert!(matches!(
        h.submit_with_key(&yaml, Some("once")).unwrap(),
        Outcome::Submitted { created: true, .. }
    ));
}

#[test]
fn silent_workers_are_marked_lost_and_come_back() {
    let mut h = H::new();
    h.worker("w", 1, &[]);
    let epoch = h.sm.core().workers["w"].epoch;
    // The leader's timer for an older session changes nothing.
    h.run(Command::WorkersLost {
        workers: vec![("w".into(), epoch - 1)],
    })
    .unwrap();
    assert_eq!(
        h.sm.core().workers["w"].state,
        drover_coordinator::state::WorkerState::Alive
    );
    h.run(Command::WorkersLost {
        workers: vec![("w".into(), epoch)],
    })
    .unwrap();
    assert_eq!(
        h.sm.core().workers["w"].state,
        drover_coordinator::state::WorkerState::Lost
    );
    h.lease("w", 1);
    assert_eq!(
        h.sm.core().workers["w"].state,
        drover_coordinator::state::WorkerState::Alive
    );
}

#[test]
fn time_never_goes_backwards() {
    let mut h = H::new();
    h.submit(&spec("clock", "", "    - {name: a, kind: noop}\n"));
    h.worker("w", 1, &[]);
    let g = h.lease("w", 1).remove(0);
    h.now += 40_000;
    h.run(Command::ExpireLeases {
        tasks: vec![(g.task, g.token)],
    })
    .unwrap();
    // A new leader with a slow clock proposes an older time: the lease that
    // already expired stays expired, and nothing un-expires.
    h.now -= 30_000;
    h.tick();
    assert!(h.sm.now_ms() >= support::T0 + 40_000);
    assert!(matches!(
        h.complete("w", &g),
        Err(Rejection::LeaseLost { .. })
    ));
}

#[test]
fn oversized_requests_are_refused() {
    let mut h = H::new();
    h.worker("w", 1, &[]);
    let tasks = vec![
        drover_coordinator::state::TaskProgress {
            task: drover_coordinator::state::TaskKey {
                job: drover_coordinator::state::JobId(1),
                template: 0,
                partition: 0
            },
            token: 1,
            progress_permille: 0,
        };
        10_001
    ];
    assert!(matches!(
        h.run(Command::Heartbeat {
            worker: "w".into(),
            tasks
        }),
        Err(Rejection::TooLarge(_))
    ));
    assert!(matches!(
        h.run(Command::RegisterWorker {
            worker: "x".repeat(300),
            slots: 1,
            labels: Default::default(),
            kinds: vec![]
        }),
        Err(Rejection::TooLarge(_))
    ));
}

#[test]
fn lease_settings_change_only_together_and_apply_to_new_leases() {
    let mut h = H::new();
    let set = |ttl, hb, lost| Command::SetLeaseSettings {
        lease_ttl_ms: ttl,
        heartbeat_interval_ms: hb,
        worker_timeout_ms: lost,
    };
    // A heartbeat over half the TTL, a TTL out of range, and workers
    // declared lost before their leases end are refused, changing nothing.
    for bad in [
        set(Some(4_000), None, None),
        set(Some(500), Some(100), Some(10_000)),
        set(Some(10_000), Some(6_000), None),
        set(None, None, Some(20_000)),
    ] {
        assert!(
            matches!(h.run(bad.clone()), Err(Rejection::InvalidSettings(_))),
            "{bad:?}"
        );
    }
    assert_eq!(h.sm.core().config, Config::default());

    let job = h.submit(&spec(
        "ttl",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}}\n",
    ));
    h.worker("w", 2, &[]);
    let before = h.lease("w", 1).remove(0);
    h.run(set(Some(4_000), Some(1_000), Some(8_000))).unwrap();
    let after = h.lease("w", 1).remove(0);
    let now = h.sm.now_ms();
    assert_eq!(after.lease_deadline_ms, now + 4_000);
    assert_eq!(
        before.lease_deadline_ms,
        now + 30_000,
        "granted leases keep theirs"
    );
    // Ticks no longer end leases (the leader's timers do, with the TTL in
    // force); both stay leased however much time passes.
    h.advance(60_000);
    assert_eq!(h.job(job).counts.leased, 2);
}

#[test]
fn a_worker_that_leaves_hands_its_leases_back_in_the_audit_trail() {
    let mut h = H::new();
    let job = h.submit(&spec(
        "leave",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}}\n",
    ));
    h.worker("w", 2, &[]);
    let grants = h.lease("w", 2);
    assert_eq!(grants.len(), 2);
    h.run(Command::DeregisterWorker { worker: "w".into() })
        .unwrap();
    // Every lease the worker held ends with a Released event carrying its
    // token, so the next grant of the task never looks like a second live
    // lease (the chaos suite's exclusive-lease check reads this trail).
    let released: Vec<(u64, u64)> = h
        .job(job)
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Released { task, token } => Some((task.partition, *token)),
            _ => None,
        })
        .collect();
    let held: Vec<(u64, u64)> = grants.iter().map(|g| (g.task.partition, g.token)).collect();
    assert_eq!(released, held);
}

/// A downstream task is told where each upstream partition's accepted
/// output is, in template then partition order, and a fan-in wider than
/// the limit is refused as a whole rather than listed in part.
#[test]
fn downstream_tasks_see_their_upstream_outputs_in_order() {
    let mut h = H::new();
    let id = h.submit(&spec(
        "fanin",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ));
    h.worker("w1", 8, &[]);
    let grants = h.lease("w1", 8);
    assert_eq!(grants.len(), 3);
    // Completed out of order; listed by partition.
    for g in grants.iter().rev() {
        let prefix = format!(
            "jobs/{}/{}/{}/attempt-{}-{}",
            g.task.job, g.task.template, g.task.partition, g.attempt, g.token
        );
        h.run(Command::Complete {
            worker: "w1".into(),
            task: g.task,
            token: g.token,
            manifest: Manifest {
                prefix,
                ..Manifest::default()
            },
            skipped: false,
        })
        .unwrap();
    }
    let merge = h.lease("w1", 8);
    assert_eq!(merge.len(), 1);
    let up = h
        .job(id)
        .upstream_outputs(merge[0].task.template, 100)
        .unwrap();
    let seen: Vec<(String, u64, String)> = up
        .iter()
        .map(|u| (u.template.clone(), u.partition_index, u.prefix.clone()))
        .collect();
    let expected: Vec<(String, u64, String)> = (0..3u64)
        .map(|p| {
            let g = grants.iter().find(|g| g.task.partition == p).unwrap();
            (
                "a".to_owned(),
                p,
                format!("jobs/{id}/0/{p}/attempt-1-{}", g.token),
            )
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(up[1].partition_key, "1");
    // The first template has no upstream; a limit below the fan-in is None.
    assert_eq!(h.job(id).upstream_outputs(0, 100), Some(vec![]));
    assert_eq!(h.job(id).upstream_outputs(merge[0].task.template, 2), None);
}

#[test]
fn a_restored_backup_hands_leases_back_and_fences_every_token_the_old_cluster_could_issue() {
    use drover_coordinator::state::StateMachine;
    use drover_coordinator::state::restore::RESTORE_COUNTER_GAP;

    let mut h = H::new();
    let job = h.submit(&spec(
        "restore",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 3}, retries: {max: 0}}\n",
    ));
    h.worker("w", 3, &[]);
    let grants = h.lease("w", 3);
    h.complete("w", &grants[0]).unwrap();
    let backup = h.sm.snapshot();

    // Two nodes restoring the same backup start from identical state.
    let mut restored = StateMachine::restore(&backup).unwrap();
    let report = restored.prepare_for_restore();
    let mut twin = StateMachine::restore(&backup).unwrap();
    twin.prepare_for_restore();
    assert_eq!(restored.snapshot(), twin.snapshot());
    restored.check_invariants().unwrap();
    assert_eq!(report.released, 2);
    assert_eq!(report.live_jobs, 1);

    let mut h = H {
        sm: restored,
        now: h.now + 1000,
    };
    let j = h.job(job);
    assert_eq!(
        (j.counts.succeeded, j.counts.leased, j.counts.ready),
        (1, 0, 2)
    );
    assert_eq!(
        h.event_names(job)
            .iter()
            .filter(|e| *e == "Released")
            .count(),
        2,
        "{:?}",
        h.event_names(job)
    );
    // The old holder's report is refused: its lease ended.
    assert!(matches!(
        h.complete("w", &grants[1]),
        Err(Rejection::LeaseLost { .. })
    ));
    // A token the old cluster handed out after the backup (the next ones
    // its counter would give) never matches a new grant.
    let regranted = h.lease("w", 3);
    assert_eq!(regranted.len(), 2);
    for g in &regranted {
        assert!(
            g.token >= grants[2].token + RESTORE_COUNTER_GAP,
            "{}",
            g.token
        );
        assert_eq!(g.attempt, 1, "a handed-back lease is not a spent attempt");
    }
    for g in &regranted {
        h.complete("w", g).unwrap();
    }
    assert_eq!(h.job(job).state, JobState::Succeeded);
}

#[test]
fn a_task_log_request_names_the_attempt_its_worker_and_how_it_ended() {
    use drover_coordinator::service::task_log::find_attempt;
    use drover_coordinator::state::TaskKey;
    use tonic::Code;

    let mut h = H::new();
    let job = h.submit(&spec(
        "logs",
        "",
        "    - {name: a, kind: noop, retries: {max: 2, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n",
    ));
    let key = TaskKey {
        job,
        template: 0,
        partition: 0,
    };
    // Not run yet: there is no attempt, hence no log.
    let err = find_attempt(&h.sm, key, 0).unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("has not run yet"),
        "{}",
        err.message()
    );

    h.worker("w1", 1, &[]);
    let first = h.lease("w1", 1).remove(0);
    let running = find_attempt(&h.sm, key, 0).unwrap();
    assert_eq!(
        (running.attempt, running.token, running.worker.as_str()),
        (1, first.token, "w1")
    );
    assert!(running.running && !running.lease_lapsed);
    assert_eq!(running.worker_state, "alive");

    // The lease lapses: the attempt ended without its worker.
    h.run(Command::ExpireLeases {
        tasks: vec![(first.task, first.token)],
    })
    .unwrap();
    h.advance(1_000);
    h.worker("w2", 1, &[]);
    let second = h.lease("w2", 1).remove(0);
    assert_eq!(second.attempt, 2);
    let lapsed = find_attempt(&h.sm, key, first.token).unwrap();
    assert_eq!((lapsed.attempt, lapsed.worker.as_str()), (1, "w1"));
    assert!(!lapsed.running && lapsed.lease_lapsed);

    // The latest attempt by default; it ends normally.
    let latest = find_attempt(&h.sm, key, 0).unwrap();
    assert_eq!((latest.attempt, latest.token), (2, second.token));
    h.complete("w2", &second).unwrap();
    let done = find_attempt(&h.sm, key, second.token).unwrap();
    assert!(!done.running && !done.lease_lapsed);
    assert_eq!(done.worker, "w2");

    // No such attempt, task or job.
    let err = find_attempt(&h.sm, key, second.token + 100).unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let no_task = TaskKey {
        partition: 5,
        ..key
    };
    assert_eq!(
        find_attempt(&h.sm, no_task, 0).unwrap_err().code(),
        Code::NotFound
    );
    let no_job = TaskKey {
        job: drover_coordinator::state::JobId(job.0 + 1),
        ..key
    };
    assert_eq!(
        find_attempt(&h.sm, no_job, 0).unwrap_err().code(),
        Code::NotFound
    );
}

#[test]
fn tasks_keep_attempts_last_worker_first_start_and_final_finish() {
    use drover_coordinator::state::TaskKey;
    let mut h = H::new();
    let job = h.submit(&spec(
        "history",
        "",
        "    - {name: a, kind: noop, partitions: {shards: 2}, retries: {max: 2, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ));
    let key = |template, partition| TaskKey {
        job,
        template,
        partition,
    };
    h.worker("w1", 2, &[]);
    h.worker("w2", 2, &[]);
    let t0 = h.now;
    let first = h.lease("w1", 2);
    h.complete("w1", &first[0]).unwrap();
    // Partition 1 fails on w1, then on w2, then succeeds on w2: three
    // attempts, the last on w2, from its first lease to its completion.
    h.advance(500);
    h.fail("w1", &first[1], true).unwrap();
    h.advance(1_000);
    let second = h.lease("w2", 1);
    assert_eq!(second[0].attempt, 2);
    h.fail("w2", &second[0], true).unwrap();
    h.advance(1_000);
    let third = h.lease("w2", 1);
    h.advance(250);
    h.complete("w2", &third[0]).unwrap();
    let done = h.sm.task_history_of(key(0, 1)).unwrap();
    assert_eq!(done.attempts, 3);
    assert_eq!(done.worker.as_deref(), Some("w2"));
    assert_eq!(done.started_ms, t0);
    assert_eq!(done.finished_ms, Some(h.now));
    let once = h.sm.task_history_of(key(0, 0)).unwrap();
    assert_eq!((once.attempts, once.finished_ms), (1, Some(t0)));
    assert_eq!(h.sm.template_times(job, 0), (Some(t0), Some(h.now)));
    // A task that never ran has no history; template b has not started.
    assert_eq!(h.sm.template_times(job, 1), (None, None));
    assert_eq!(h.sm.task_history_of(key(1, 0)), None);
}

#[test]
fn upstream_failed_tasks_are_told_apart_and_retry_budgets_restart_while_attempts_go_on() {
    use drover_coordinator::state::{TaskKey, TaskState};
    let mut h = H::new();
    let job = h.submit(&spec(
        "upstream",
        "",
        "    - {name: a, kind: noop, retries: {max: 1, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    - {name: b, kind: noop, partitions: {shards: 3}, dependsOn: [a]}\n",
    ));
    h.worker("w", 4, &[]);
    for _ in 0..2 {
        let g = h.lease("w", 1);
        h.fail("w", &g[0], true).unwrap();
        h.advance(1_000);
        h.tick();
    }
    assert_eq!(h.job(job).state, JobState::Failed);
    let a = TaskKey {
        job,
        template: 0,
        partition: 0,
    };
    let b = &h.job(job).templates[1];
    assert_eq!(
        h.job(job).templates[0].task_state(0),
        Some(TaskState::Failed)
    );
    assert_eq!(b.task_state(2), Some(TaskState::UpstreamFailed));
    assert_eq!(b.upstream_failed(), 3);
    assert_eq!(h.job(job).templates[0].upstream_failed(), 0);
    assert_eq!(h.sm.task_history_of(a).unwrap().attempts, 2);

    // After `job retry` the task gets its 2 attempts again (max 1 retry),
    // numbered 3 and 4; then it fails for good with 4 attempts in all.
    h.run(Command::RetryJob { job }).unwrap();
    assert_eq!(
        h.job(job).templates[1].task_state(2),
        Some(TaskState::Blocked)
    );
    let mut numbers = Vec::new();
    for _ in 0..2 {
        let g = h.lease("w", 1);
        numbers.push(g[0].attempt);
        h.fail("w", &g[0], true).unwrap();
        h.advance(1_000);
        h.tick();
    }
    assert_eq!(numbers, [3, 4]);
    assert_eq!(h.job(job).state, JobState::Failed);
    assert_eq!(h.sm.task_history_of(a).unwrap().attempts, 4);
    assert!(h.lease("w", 1).is_empty());
}
