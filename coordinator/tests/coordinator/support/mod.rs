//! A harness for state machine tests: a controlled clock, one command per
//! log entry, and every invariant checked after every command.

#![allow(dead_code)]

pub mod random;

use std::collections::BTreeMap;

use drover_coordinator::state::{
    Applied, Command, Config, Grant, Job, JobId, LogEntry, Manifest, Outcome, StateMachine,
    SubmitJob, Submitted, TaskProgress, TickReport,
};

/// Cases for a property test: `PROPTEST_CASES` when set (long runs on
/// demand), else the given default, which CI uses.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 2026-06-01T00:00:00Z.
pub const T0: i64 = 1_780_272_000_000;

pub struct H {
    pub sm: StateMachine,
    pub now: i64,
}

impl H {
    pub fn new() -> Self {
        Self::with(Config::default())
    }

    pub fn with(config: Config) -> Self {
        Self {
            sm: StateMachine::new(config),
            now: T0,
        }
    }

    pub fn run(&mut self, command: Command) -> Applied {
        let out = self
            .sm
            .apply(&LogEntry {
                now_ms: self.now,
                commands: vec![command],
            })
            .remove(0);
        if let Err(violation) = self.sm.check_invariants() {
            panic!("invariant broken: {violation}");
        }
        out
    }

    pub fn advance(&mut self, ms: i64) -> TickReport {
        self.now += ms;
        self.tick()
    }

    pub fn tick(&mut self) -> TickReport {
        match self.run(Command::Tick).unwrap() {
            Outcome::Ticked(report) => report,
            other => panic!("{other:?}"),
        }
    }

    pub fn submit_with_key(&mut self, yaml: &str, key: Option<&str>) -> Applied {
        self.submit_traced(yaml, key, None)
    }

    pub fn submit_traced(
        &mut self,
        yaml: &str,
        key: Option<&str>,
        trace_parent: Option<&str>,
    ) -> Applied {
        self.run(Command::SubmitJob(SubmitJob {
            file: "test.yaml".into(),
            spec_yaml: yaml.into(),
            params: Vec::new(),
            idempotency_key: key.map(str::to_owned),
            trace_parent: trace_parent.map(str::to_owned),
        }))
    }

    pub fn submit(&mut self, yaml: &str) -> JobId {
        match self.submit_with_key(yaml, None) {
            Ok(Outcome::Submitted {
                id: Submitted::Job(id),
                created: true,
            }) => id,
            other => panic!("{other:?}"),
        }
    }

    pub fn worker(&mut self, id: &str, slots: u32, labels: &[(&str, &str)]) {
        self.worker_kinds(id, slots, labels, &[]);
    }

    pub fn worker_kinds(&mut self, id: &str, slots: u32, labels: &[(&str, &str)], kinds: &[&str]) {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.run(Command::RegisterWorker {
            worker: id.into(),
            slots,
            labels,
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        })
        .unwrap();
    }

    pub fn lease(&mut self, worker: &str, n: u32) -> Vec<Grant> {
        match self
            .run(Command::Lease {
                worker: worker.into(),
                max_tasks: n,
            })
            .unwrap()
        {
            Outcome::Leased(grants) => grants,
            other => panic!("{other:?}"),
        }
    }

    pub fn complete(&mut self, worker: &str, g: &Grant) -> Applied {
        self.run(Command::Complete {
            worker: worker.into(),
            task: g.task,
            token: g.token,
            manifest: Manifest::default(),
            skipped: false,
        })
    }

    pub fn fail(&mut self, worker: &str, g: &Grant, retryable: bool) -> Applied {
        self.run(Command::Fail {
            worker: worker.into(),
            task: g.task,
            token: g.token,
            retryable,
            message: "boom".into(),
        })
    }

    pub fn heartbeat(&mut self, worker: &str, grants: &[Grant]) -> Applied {
        self.run(Command::Heartbeat {
            worker: worker.into(),
            tasks: grants
                .iter()
                .map(|g| TaskProgress {
                    task: g.task,
                    token: g.token,
                    progress_permille: 500,
                })
                .collect(),
        })
    }

    /// Leases and completes everything it can with `worker` until nothing is
    /// leasable; returns how many tasks completed.
    pub fn drain_all(&mut self, worker: &str) -> usize {
        let mut done = 0;
        loop {
            let grants = self.lease(worker, 1000);
            if grants.is_empty() {
                return done;
            }
            for g in &grants {
                self.complete(worker, g).unwrap();
                done += 1;
            }
        }
    }

    pub fn job(&self, id: JobId) -> &Job {
        self.sm.job(id).expect("job exists")
    }

    pub fn event_names(&self, id: JobId) -> Vec<String> {
        self.job(id)
            .events
            .iter()
            .map(|e| {
                format!("{:?}", e.kind)
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

/// A job spec with these tasks (YAML list items indented by four spaces).
pub fn spec(name: &str, extra: &str, tasks: &str) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, namespace: team}}\nspec:\n{extra}  tasks:\n{tasks}"
    )
}
