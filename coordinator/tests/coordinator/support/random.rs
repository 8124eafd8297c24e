//! Random histories for property tests: abstract operations turned into
//! commands against the live state, so a sequence always yields the same
//! log.

use std::collections::BTreeMap;

use drover_coordinator::state::{
    Command, Grant, LogEntry, Manifest, Outcome, StateMachine, SubmitJob, TaskKey, TaskProgress,
};
use proptest::prelude::*;

use super::T0;

pub const SPECS: &[&str] = &[
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
pub enum Op {
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
    CreateToken(u8, bool),
    RevokeToken(u8),
    SetPolicy(u8),
    BindCertificate(u8),
}

pub fn op() -> impl Strategy<Value = Op> {
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
        1 => (0u8..4, any::<bool>()).prop_map(|(i, b)| Op::CreateToken(i, b)),
        1 => (0u8..4).prop_map(Op::RevokeToken),
        1 => (0u8..5).prop_map(Op::SetPolicy),
        1 => (0u8..4).prop_map(Op::BindCertificate),
    ]
}

/// What the test remembers about the run, to check history properties.
#[derive(Default)]
pub struct History {
    /// Grants not yet known to be finished, oldest first.
    pub outstanding: Vec<(String, Grant)>,
    /// Every token granted per task, in order.
    pub tokens: BTreeMap<TaskKey, Vec<u64>>,
    /// The accepted (non-duplicate) completion per task.
    pub accepted: BTreeMap<TaskKey, u64>,
}

pub struct Run {
    pub sm: StateMachine,
    pub now: i64,
    pub log: Vec<LogEntry>,
    pub history: History,
}

impl Run {
    pub fn new() -> Self {
        Self::with_config(Default::default())
    }

    pub fn with_config(config: drover_coordinator::state::Config) -> Self {
        Self {
            sm: StateMachine::new(config),
            now: T0,
            log: Vec::new(),
            history: History::default(),
        }
    }

    pub fn apply(&mut self, command: Command) -> Result<Outcome, String> {
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

    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Submit(i) => {
                self.apply(Command::SubmitJob(SubmitJob {
                    file: "p.yaml".into(),
                    spec_yaml: SPECS[*i].into(),
                    params: vec![],
                    idempotency_key: None,
                    // Half the specs come with a trace, so stores and
                    // snapshots carry both shapes.
                    trace_parent: (*i % 2 == 0)
                        .then(|| format!("00-{:032x}-{:016x}-01", i + 1, i + 1)),
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
            Op::CreateToken(i, bootstrap) => {
                // A few ids, so creates collide with existing tokens and
                // revokes find them.
                use drover_coordinator::state::security::{Role, Token};
                let role = [Role::Submitter, Role::Operator, Role::Worker][*i as usize % 3];
                self.apply(Command::CreateToken {
                    token: Token {
                        id: format!("{:012x}", i),
                        name: format!("t{i}"),
                        role,
                        namespaces: if role == Role::Submitter {
                            vec!["a".into(), "c".into()]
                        } else {
                            Vec::new()
                        },
                        secret_sha256: [*i; 32],
                        created_by: "prop".into(),
                        created_ms: 0,
                        expires_ms: (*i % 2 == 0).then_some(T0 + 3_600_000),
                    },
                    bootstrap: *bootstrap,
                })?;
            }
            Op::RevokeToken(i) => {
                self.apply(Command::RevokeToken {
                    id: format!("{:012x}", i),
                })?;
            }
            Op::SetPolicy(i) => {
                // Policies that admit the dedup spec, refuse it, restrict
                // every namespace (the noop specs touch no dataset, so they
                // still pass), and clear them again.
                use drover_coordinator::state::policy::NamespacePolicy;
                let policy = |urls: &[&str]| NamespacePolicy {
                    allowed_urls: urls.iter().map(|u| u.to_string()).collect(),
                    allow_command: false,
                    updated_by: "prop".into(),
                    updated_ms: 0,
                };
                let (namespace, policy) = match i {
                    0 => ("c", Some(policy(&["file://i", "file://o"]))),
                    1 => ("c", Some(policy(&[]))),
                    2 => ("*", Some(policy(&["s3://elsewhere"]))),
                    3 => ("c", None),
                    _ => ("*", None),
                };
                self.apply(Command::SetNamespacePolicy {
                    namespace: namespace.into(),
                    policy,
                })?;
            }
            Op::BindCertificate(i) => {
                use drover_coordinator::state::security::{CertificateBinding, Role};
                let binding = (*i < 3).then(|| CertificateBinding {
                    role: [Role::Submitter, Role::Operator, Role::Worker][*i as usize],
                    namespaces: if *i == 0 {
                        vec!["a".into()]
                    } else {
                        Vec::new()
                    },
                    created_by: "prop".into(),
                    created_ms: 0,
                });
                self.apply(Command::BindCertificate {
                    identity: "client/ci".into(),
                    binding,
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
    pub fn heal(&mut self) -> Result<(), String> {
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
