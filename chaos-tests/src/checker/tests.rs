//! Each checker passes a clean history and catches the corruption it is
//! for: the tests of the tests.

use super::*;
use crate::history::{Op, OpType};
use crate::observation::{JobRecord, ProbeRecord, ReplicaDigest, TemplateRecord};

fn event(seq: u64, kind: EventType, task: &str, token: u64, worker: &str) -> EventRecord {
    let template = if task.contains("/0/") { "a" } else { "b" };
    EventRecord {
        seq,
        kind,
        task_id: task.to_owned(),
        template: template.to_owned(),
        partition: 0,
        token,
        worker: worker.to_owned(),
        at_unix_ms: seq as i64,
    }
}

fn probe(event: &str, task: &str, token: u64, unix_us: i64) -> ProbeRecord {
    ProbeRecord {
        event: event.to_owned(),
        job_id: "j1".to_owned(),
        task_id: task.to_owned(),
        attempt: 1,
        token,
        worker_id: "w1".to_owned(),
        unix_us,
    }
}

/// Job j1: template a (one partition) then b (one partition) after it.
/// Task a's first lease expired (worker w1 paused) and w2 finished it.
fn clean() -> Observation {
    use EventType::*;
    Observation {
        ops: vec![
            Op::new("client-1", OpType::Invoke, "submit").key("k1"),
            Op::new("client-1", OpType::Info, "submit").key("k1"),
            Op::new("client-1", OpType::Invoke, "submit").key("k1"),
            Op::new("client-1", OpType::Ok, "submit")
                .key("k1")
                .job("j1"),
        ],
        jobs: vec![JobRecord {
            id: "j1".into(),
            name: "k1".into(),
            state: "succeeded".into(),
            templates: vec![
                TemplateRecord {
                    name: "a".into(),
                    depends_on: vec![],
                    partitions: 1,
                },
                TemplateRecord {
                    name: "b".into(),
                    depends_on: vec!["a".into()],
                    partitions: 1,
                },
            ],
            events: vec![
                event(1, Leased, "j1/0/0", 1, "w1"),
                event(2, Expired, "j1/0/0", 1, ""),
                event(3, Leased, "j1/0/0", 2, "w2"),
                event(4, StaleRejected, "j1/0/0", 1, "w1"),
                event(5, Succeeded, "j1/0/0", 2, "w2"),
                event(6, Leased, "j1/1/0", 3, "w1"),
                event(7, Succeeded, "j1/1/0", 3, "w1"),
            ],
            events_complete: true,
        }],
        probes: vec![
            probe("start", "j1/0/0", 1, 10),
            probe("start", "j1/0/0", 2, 20),
            probe("ok", "j1/0/0", 2, 30),
            probe("ok", "j1/0/0", 1, 35),
            probe("start", "j1/1/0", 3, 40),
            probe("ok", "j1/1/0", 3, 50),
        ],
        replicas: (1..=3)
            .map(|n| ReplicaDigest {
                node_id: n,
                applied_index: 9,
                sha256: "abc".into(),
                error: String::new(),
            })
            .collect(),
        replicas_settled: true,
        unfinished_after_heal: vec![],
        heal_bound_s: 60,
        ..Observation::default()
    }
}

fn caught(o: &Observation, invariant: &str) -> bool {
    let report = check(o);
    !report.of(invariant).is_empty()
}

#[test]
fn a_clean_history_passes_every_invariant() {
    let report = check(&clean());
    assert!(report.ok(), "{:#?}", report.violations);
    assert_eq!(report.checked.len(), INVARIANTS.len());
}

#[test]
fn each_checker_catches_its_corruption() {
    // A lost acknowledged job.
    let mut o = clean();
    o.jobs[0].id = "j9".into();
    assert!(caught(&o, lost_submissions::NAME));

    // One key, two jobs.
    let mut o = clean();
    let mut twin = o.jobs[0].clone();
    twin.id = "j2".into();
    o.jobs.push(twin);
    assert!(caught(&o, idempotency::NAME));

    // The stale attempt's completion accepted (fencing skipped).
    let mut o = clean();
    o.jobs[0].events[3].kind = EventType::Succeeded;
    assert!(caught(&o, single_completion::NAME));
    assert!(caught(&o, stale_completion::NAME));

    // A completion after the lease expired.
    let mut o = clean();
    o.jobs[0].events.remove(2);
    o.jobs[0].events[3].token = 1;
    assert!(caught(&o, stale_completion::NAME));

    // b granted before a succeeded.
    let mut o = clean();
    o.jobs[0].events[5].seq = 4;
    assert!(caught(&o, dependencies::NAME));
    // b started (per its probe) before a's accepted attempt finished.
    let mut o = clean();
    o.probes[4].unix_us = 25;
    assert!(caught(&o, dependencies::NAME));

    // Tokens going backwards, and a token reused across tasks.
    let mut o = clean();
    o.jobs[0].events[2].token = 1;
    assert!(caught(&o, token_order::NAME));
    let mut o = clean();
    o.jobs[0].events[5].token = 2;
    o.jobs[0].events[6].token = 2;
    assert!(caught(&o, token_order::NAME));

    // A second grant while the first lease is live.
    let mut o = clean();
    o.jobs[0].events.remove(1);
    assert!(caught(&o, exclusive_lease::NAME));

    // A completion nobody produced; an attempt nobody granted.
    let mut o = clean();
    o.probes.retain(|p| !(p.event == "ok" && p.token == 3));
    assert!(caught(&o, witness::NAME));
    let mut o = clean();
    o.probes.push(probe("start", "j1/1/0", 99, 60));
    assert!(caught(&o, witness::NAME));

    // A job that never ended; diverged or silent replicas; a pruned trail.
    let mut o = clean();
    o.unfinished_after_heal.push("j1".into());
    assert!(caught(&o, termination::NAME));
    let mut o = clean();
    o.replicas[2].sha256 = "abd".into();
    assert!(caught(&o, replicas::NAME));
    let mut o = clean();
    o.replicas[1].error = "unavailable".into();
    assert!(caught(&o, replicas::NAME));
    let mut o = clean();
    o.replicas_settled = false;
    assert!(caught(&o, replicas::NAME));
    let mut o = clean();
    o.jobs[0].events_complete = false;
    assert!(caught(&o, trail::NAME));
}

#[test]
fn a_crash_or_a_cluster_that_never_recovered_is_a_violation() {
    let mut o = clean();
    o.crashes
        .push("node-2.log: thread 'raft-2' panicked at ...".into());
    assert!(caught(&o, termination::NAME));
    let mut o = clean();
    o.failure = "timed out: no leader was elected".into();
    assert!(caught(&o, termination::NAME));
}
