//! Scheduling semantics, continued: workers coming and going (sessions,
//! drains, releases, loss), outputs, limits, settings, collection,
//! restores and task history. Every command runs through the harness,
//! which checks all invariants after it.

use crate::support::{H, spec};
use drover_coordinator::state::events::EventKind;
use drover_coordinator::state::explain::Why;
use drover_coordinator::state::{
    Command, Config, JobState, Manifest, Outcome, Rejection, Submitted, TaskState,
};

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
    assert!(h.sm.now_ms() >= crate::support::T0 + 40_000);
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
