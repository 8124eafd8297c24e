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

mod support;

use std::collections::BTreeMap;

use drover_coordinator::state::{
    Command, Grant, JobState, LogEntry, Manifest, Outcome, StateMachine, SubmitJob, TaskKey,
    TaskProgress,
};
use proptest::prelude::*;
use support::T0;

const SPECS: &[&str] = &[
    // A diamond with partitions and quick retries.
    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: diamond, namespace: a}\nspec:\n  maxParallel: 4\n  defaults: {retries: {max: 2, backoff: constant, initialDelay: 1s, maxDelay: 1s}, timeout: 2m}\n  tasks:\n    - {name: src, kind: noop, partitions: {shards: 3}}\n    - {name: left, kind: noop, dependsOn: [src], partitions: {shards: 2}}\n    - {name: right, kind: noop, dependsOn: [src]}\n    - {name: sink, kind: noop, dependsOn: [left, right]}\n",
    // A wide single template in another namespace, with a template cap.
    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: wide, namespace: b}\nspec:\n  priority: 70\n  tasks:\n    - {name: w, kind: noop, partitions: {shards: 12}, maxParallel: 3, retries: {max: 1, backoff: exponential, initialDelay: 1s, maxDelay: 4s}}\n",
    // No retries: failures are final and fail downstream.
    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: brittle, namespace: a}\nspec:\n  tasks:\n    - {name: x, kind: noop, partitions: {shards: 2}, retries: {max: 0}}\n    - {name: y, kind: noop, dependsOn: [x]}\n",
    // A multi-stage kind.
    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: dedup, namespace: c}\nspec:\n  tasks:\n    - {name: d, kind: dedup, config: {input: \"file://i\", output: \"file://o\", shards: 2}}\n",
];

#[derive(Debug, Clone)]
enum Op {
    Submit(usize),
    Lease(u8, u8),
    Complete(u16),
    CompleteStale(u16),
    Fail(u16, bool),
    Heartbeat(u8),
    Release(u16),
    Advance(u32),
    Cancel(u8),
    Retry(u8),
    Deregister(u8),
    Register(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SPECS.len()).prop_map(Op::Submit),
        4 => (0u8..3, 1u8..6).prop_map(|(w, n)| Op::Lease(w, n)),
        5 => any::<u16>().prop_map(Op::Complete),
        1 => any::<u16>().prop_map(Op::CompleteStale),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(i, r)| Op::Fail(i, r)),
        2 => (0u8..3).prop_map(Op::Heartbeat),
        1 => any::<u16>().prop_map(Op::Release),
        3 => (0u32..70_000).prop_map(Op::Advance),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => any::<u8>().prop_map(Op::Retry),
        1 => (0u8..3).prop_map(Op::Deregister),
        1 => (0u8..3).prop_map(Op::Register),
    ]
}

/// What the test remembers about the run, to check history properties.
#[derive(Default)]
struct History {
    /// Grants not yet known to be finished, oldest first.
    outstanding: Vec<(String, Grant)>,
    /// Every token granted per task, in order.
    tokens: BTreeMap<TaskKey, Vec<u64>>,
    /// The accepted (non-duplicate) completion per task.
    accepted: BTreeMap<TaskKey, u64>,
}

struct Run {
    sm: StateMachine,
    now: i64,
    log: Vec<LogEntry>,
    history: History,
}

impl Run {
    fn new() -> Self {
        Self {
            sm: StateMachine::new(Default::default()),
            now: T0,
            log: Vec::new(),
            history: History::default(),
        }
    }

    fn apply(&mut self, command: Command) -> Result<Outcome, String> {
        let entry = LogEntry {
            now_ms: self.now,
            commands: vec![command],
        };
        let out = self.sm.apply(&entry).remove(0);
        self.log.push(entry);
        self.sm.check_invariants()?;
        Ok(out.unwrap_or(Outcome::Done))
    }

    fn worker(i: u8) -> String {
        format!("w{i}")
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Submit(i) => {
                self.apply(Command::SubmitJob(SubmitJob {
                    file: "p.yaml".into(),
                    spec_yaml: SPECS[*i].into(),
                    params: vec![],
                    idempotency_key: None,
                }))?;
            }
            Op::Register(w) => {
                self.apply(Command::RegisterWorker {
                    worker: Self::worker(*w),
                    slots: 4,
                    labels: Default::default(),
                    kinds: vec![],
                })?;
            }
            Op::Lease(w, n) => {
                let worker = Self::worker(*w);
                if let Outcome::Leased(grants) = self.apply(Command::Lease {
                    worker: worker.clone(),
                    max_tasks: u32::from(*n),
                })? {
                    for g in grants {
                        self.check_grant(&g)?;
                        self.history.outstanding.push((worker.clone(), g));
                    }
                }
            }
            Op::Complete(i) | Op::CompleteStale(i) => {
                let Some((worker, g)) = self.pick(*i) else {
                    return Ok(());
                };
                let token = if matches!(op, Op::CompleteStale(_)) {
                    g.token.saturating_sub(1)
                } else {
                    g.token
                };
                let out = self.apply(Command::Complete {
                    worker,
                    task: g.task,
                    token,
                    manifest: Manifest::default(),
                    skipped: false,
                })?;
                if out == (Outcome::Completed { duplicate: false }) {
                    if let Some(previous) = self.history.accepted.insert(g.task, token) {
                        return Err(format!(
                            "{} accepted twice ({previous}, then {token})",
                            g.task
                        ));
                    }
                    let latest = self.history.tokens[&g.task].last().copied();
                    if latest != Some(token) {
                        return Err(format!(
                            "{} accepted token {token}, latest grant {latest:?}",
                            g.task
                        ));
                    }
                }
            }
            Op::Fail(i, retryable) => {
                let Some((worker, g)) = self.pick(*i) else {
                    return Ok(());
                };
                self.apply(Command::Fail {
                    worker,
                    task: g.task,
                    token: g.token,
                    retryable: *retryable,
                    message: "x".into(),
                })?;
            }
            Op::Heartbeat(w) => {
                let worker = Self::worker(*w);
                let tasks: Vec<TaskProgress> = self
                    .history
                    .outstanding
                    .iter()
                    .filter(|(owner, _)| *owner == worker)
                    .map(|(_, g)| TaskProgress {
                        task: g.task,
                        token: g.token,
                        progress_permille: 1,
                    })
                    .collect();
                self.apply(Command::Heartbeat { worker, tasks })?;
            }
            Op::Release(i) => {
                let Some((worker, g)) = self.pick(*i) else {
                    return Ok(());
                };
                self.apply(Command::Release {
                    worker,
                    tasks: vec![(g.task, g.token)],
                })?;
            }
            Op::Advance(ms) => {
                self.now += i64::from(*ms);
                self.apply(Command::Tick)?;
            }
            Op::Cancel(i) | Op::Retry(i) => {
                let ids: Vec<_> = self.sm.core().jobs.keys().copied().collect();
                if ids.is_empty() {
                    return Ok(());
                }
                let job = ids[*i as usize % ids.len()];
                let command = if matches!(op, Op::Cancel(_)) {
                    Command::CancelJob {
                        job,
                        reason: "prop".into(),
                    }
                } else {
                    Command::RetryJob { job }
                };
                self.apply(command)?;
            }
            Op::Deregister(w) => {
                self.apply(Command::DeregisterWorker {
                    worker: Self::worker(*w),
                })?;
            }
        }
        Ok(())
    }

    /// Removes and returns the n-th outstanding grant.
    fn pick(&mut self, i: u16) -> Option<(String, Grant)> {
        if self.history.outstanding.is_empty() {
            return None;
        }
        let n = i as usize % self.history.outstanding.len();
        Some(self.history.outstanding.remove(n))
    }

    /// A grant's token must exceed every earlier token of the task, and its
    /// template's upstream templates must all have succeeded.
    fn check_grant(&mut self, g: &Grant) -> Result<(), String> {
        let tokens = self.history.tokens.entry(g.task).or_default();
        if tokens.last().is_some_and(|t| *t >= g.token) {
            return Err(format!("{} token {} after {tokens:?}", g.task, g.token));
        }
        tokens.push(g.token);
        let job = self
            .sm
            .job(g.task.job)
            .ok_or("granted task of unknown job")?;
        let template = &job.templates[g.task.template as usize];
        for d in &template.def.depends_on {
            let up = &job.templates[*d as usize];
            if up.counts.succeeded + up.counts.skipped != up.def.count {
                return Err(format!(
                    "{} granted before upstream {} finished",
                    g.task, up.def.id
                ));
            }
        }
        Ok(())
    }

    /// Heals: a fresh worker completes everything while time passes. Every
    /// job must end.
    fn heal(&mut self) -> Result<(), String> {
        self.apply(Command::RegisterWorker {
            worker: "healer".into(),
            slots: 64,
            labels: Default::default(),
            kinds: vec![],
        })?;
        for _ in 0..200 {
            if self.sm.core().jobs.values().all(|j| j.state.is_terminal()) {
                return Ok(());
            }
            if let Outcome::Leased(grants) = self.apply(Command::Lease {
                worker: "healer".into(),
                max_tasks: 64,
            })? {
                for g in grants {
                    self.check_grant(&g)?;
                    self.apply(Command::Complete {
                        worker: "healer".into(),
                        task: g.task,
                        token: g.token,
                        manifest: Manifest::default(),
                        skipped: false,
                    })?;
                }
            }
            // Let leases held by vanished workers expire and backoffs end.
            self.now += 31_000;
            self.apply(Command::Tick)?;
        }
        let stuck: Vec<String> = self
            .sm
            .core()
            .jobs
            .values()
            .filter(|j| !j.state.is_terminal())
            .map(|j| format!("{} {:?} {:?}", j.id, j.state, j.counts))
            .collect();
        Err(format!("jobs never finished: {stuck:?}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

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
