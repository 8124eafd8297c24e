//! Property tests over random command sequences.
//!
//! Operations are generated abstractly (pick the n-th outstanding grant, let
//! some time pass) and turned into commands against the live state, so the
//! same sequence always yields the same commands. Checked:
//! - all structural invariants after every command (the harness);
//! - tokens strictly increase per task;
//! - no task is granted before every upstream template succeeded;
//! - at most one accepted completion per task, carrying the latest token;
//! - with a healthy worker and time passing, every job ends;
//! - two replicas fed the same log produce byte-identical snapshots, and a
//!   snapshot restored mid-way continues identically.

use crate::support::T0;
use crate::support::random::{Op, Run, SPECS, op};
use drover_coordinator::state::{Command, JobState, LogEntry, StateMachine, SubmitJob};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::support::cases(96)))]

    #[test]
    fn random_histories_keep_every_invariant_and_every_job_ends(
        ops in proptest::collection::vec(op(), 1..160)
    ) {
        let mut run = Run::new();
        for w in 0..3 {
            run.step(&Op::Register(w)).map_err(TestCaseError::fail)?;
        }
        run.step(&Op::Submit(0)).map_err(TestCaseError::fail)?;
        for op in &ops {
            run.step(op).map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
        }
        run.heal().map_err(TestCaseError::fail)?;
        for job in run.sm.core().jobs.values() {
            if job.state == JobState::Succeeded {
                prop_assert_eq!(job.counts.succeeded + job.counts.skipped, job.counts.total());
            }
        }
    }

    #[test]
    fn replicas_and_restored_snapshots_stay_byte_identical(
        ops in proptest::collection::vec(op(), 1..120),
        split in 0usize..120,
    ) {
        let mut run = Run::new();
        for w in 0..3 {
            run.step(&Op::Register(w)).map_err(TestCaseError::fail)?;
        }
        for op in &ops {
            run.step(op).map_err(TestCaseError::fail)?;
        }
        // A second replica applies the same log.
        let mut replica = StateMachine::new(Default::default());
        for entry in &run.log {
            replica.apply(entry);
        }
        prop_assert_eq!(run.sm.snapshot(), replica.snapshot());

        // Restore from a snapshot taken part-way, then apply the rest.
        let split = split.min(run.log.len());
        let mut prefix = StateMachine::new(Default::default());
        for entry in &run.log[..split] {
            prefix.apply(entry);
        }
        let snapshot = prefix.snapshot();
        let mut restored = StateMachine::restore(&snapshot).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(restored.snapshot(), snapshot, "restore then snapshot is the identity");
        restored.check_invariants().map_err(TestCaseError::fail)?;
        for entry in &run.log[split..] {
            restored.apply(entry);
        }
        prop_assert_eq!(restored.snapshot(), run.sm.snapshot());
    }
}

#[test]
fn the_invariant_checker_catches_corruption() {
    let mut run = Run::new();
    run.step(&Op::Register(0)).unwrap();
    run.step(&Op::Submit(1)).unwrap();
    run.step(&Op::Lease(0, 3)).unwrap();
    let healthy = run.sm.core().clone();
    assert!(
        StateMachine::from_core(healthy.clone())
            .check_invariants()
            .is_ok()
    );

    // Two tasks holding the same fencing token.
    let mut twin = healthy.clone();
    let job = twin.jobs.values_mut().next().unwrap();
    let tasks = &mut job.templates[0].tasks;
    let first_token = tasks.values().next().unwrap().token;
    tasks.values_mut().nth(1).unwrap().token = first_token;
    let err = StateMachine::from_core(twin)
        .check_invariants()
        .unwrap_err();
    assert!(err.contains("token"), "{err}");

    // A count that disagrees with the records.
    let mut miscount = healthy.clone();
    let job = miscount.jobs.values_mut().next().unwrap();
    job.templates[0].counts.leased += 1;
    job.templates[0].counts.ready -= 1;
    let err = StateMachine::from_core(miscount)
        .check_invariants()
        .unwrap_err();
    assert!(err.contains("leased"), "{err}");

    // A downstream template open before its upstream finished.
    let mut early = StateMachine::new(Default::default());
    early.apply(&LogEntry {
        now_ms: T0,
        commands: vec![Command::SubmitJob(SubmitJob {
            file: "p.yaml".into(),
            spec_yaml: SPECS[0].into(),
            params: vec![],
            idempotency_key: None,
            trace_parent: None,
        })],
    });
    let mut core = early.core().clone();
    let job = core.jobs.values_mut().next().unwrap();
    job.templates[1].status = drover_coordinator::state::TemplateStatus::Open;
    let err = StateMachine::from_core(core)
        .check_invariants()
        .unwrap_err();
    assert!(err.contains("open"), "{err}");
}

#[test]
fn snapshots_refuse_unknown_versions_and_garbage() {
    let sm = StateMachine::new(Default::default());
    let mut bytes = sm.snapshot();
    assert!(StateMachine::restore(&bytes).is_ok());
    bytes[8] = 99;
    let err = StateMachine::restore(&bytes).unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
    assert!(StateMachine::restore(b"not a snapshot").is_err());
    let mut truncated = sm.snapshot();
    truncated.truncate(14);
    assert!(StateMachine::restore(&truncated).is_err());
}
