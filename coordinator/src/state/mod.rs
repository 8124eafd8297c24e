//! The scheduler's state machine: a pure function from (state, log entry) to
//! (state, outcomes).
//!
//! **Architecture invariant:** nothing here does IO, reads a clock or draws a
//! random number, and no result depends on the iteration order of a hash
//! map. Time arrives with each [`LogEntry`], stamped by the leader. Two
//! replicas that apply the same log end in byte-identical state (compare
//! [`StateMachine::snapshot`]).
//!
//! # Layout
//!
//! - [`types`]: ids, states, settings, manifests.
//! - [`command`]: commands, outcomes and rejections.
//! - [`job`]: a job's record; templates hold a cursor instead of per-task
//!   records, so partitions are materialised only when they run.
//! - [`events`]: each job's bounded audit trail.
//! - [`ready`]: the lease order (priority, fair share, FIFO).
//! - `lifecycle`: submit, cancel, retry, job completion, collection.
//! - `lease`: lease, heartbeat, complete, fail, release, expiry.
//! - [`attempt`]: the attempt-scoped output prefix, and the rule that a
//!   completion's manifest lies there.
//! - `workers`: register, deregister, drain.
//! - [`schedule`]: cron schedules and their runs.
//! - `tick`: the passage of time.
//! - [`explain`]: why a task is pending.
//! - [`security`]: API tokens (hashed), their roles and namespaces.
//! - [`policy`]: namespace policies: the dataset URLs and kinds a
//!   namespace's specs may use, checked at submit and at each scheduled run.
//! - [`snapshot`]: the versioned byte format of the whole state.
//! - [`restore`]: making a backed-up state safe to seed a new cluster.
//! - [`scaling`]: the scaling signal: desired workers per pool, and why.
//! - [`stats`]: read-only summaries for metrics (tasks per namespace and
//!   state, the ready backlog and its oldest task's wait, workers).
//!
//! The replicated part of the state is [`Core`]; [`Indexes`] are derived from
//! it (ready queues, deadlines) and rebuilt whenever a state is restored.

pub mod attempt;
pub mod changes;
pub mod command;
pub mod events;
pub mod explain;
pub mod history;
pub mod ids;
mod invariants;
pub mod job;
pub mod outcome;
pub mod outputs;
pub mod policy;
pub mod ready;
pub mod restore;
pub mod scaling;
pub mod schedule;
pub mod security;
pub mod snapshot;
pub mod stats;
pub mod tally;
pub mod types;

mod lease;
mod lifecycle;
mod tick;
mod workers;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use command::{Command, LogEntry, SubmitJob, TaskProgress};
pub use job::{Counts, Job, Template, TemplateStatus};
pub use outcome::{
    Grant, HeartbeatReply, HeartbeatStatus, Outcome, Rejection, Submitted, TickReport,
};
pub use stats::Stats;
pub use types::{Config, JobId, JobState, Manifest, ScheduleId, TaskKey, TaskState, WorkerId};
pub use workers::{Worker, WorkerState};

use ready::ReadyIndex;
use schedule::Schedule;

/// The replicated state: everything a snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Core {
    /// Settings.
    pub config: Config,
    /// The latest time applied; time never goes backwards.
    pub now_ms: i64,
    /// Next job id.
    pub next_job: u64,
    /// Next schedule id.
    pub next_schedule: u64,
    /// Next fencing token. One counter for all tasks makes tokens strictly
    /// increase per task, and unique across the cluster.
    pub next_token: u64,
    /// Next worker registration epoch.
    pub next_epoch: u64,
    /// Live and recently finished jobs.
    pub jobs: BTreeMap<JobId, Job>,
    /// Registered workers.
    pub workers: BTreeMap<WorkerId, Worker>,
    /// Recurring schedules.
    pub schedules: BTreeMap<ScheduleId, Schedule>,
    /// (namespace, idempotency key) -> what it submitted, and the spec hash.
    pub idempotency: BTreeMap<(String, String), (Submitted, String)>,
    /// API tokens. (After the fields older snapshots have, so a version 2
    /// snapshot decodes by appending an empty one; see [`snapshot`].)
    pub security: security::Security,
    /// What each job's tasks did (attempts, last worker, first start,
    /// final finish), by job; kept as long as the job. (Last, so a version
    /// 4 snapshot decodes by appending an empty map.)
    pub history: BTreeMap<JobId, history::JobHistory>,
    /// Seeds job and schedule ids ([`ids`]); 0 until the first is drawn.
    /// (After `history`: a version 4 snapshot decodes by appending 0.)
    pub id_seed: u64,
}

/// Indexes derived from [`Core`]; never serialised.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    /// Lease order.
    pub ready: ReadyIndex,
    /// Leased tasks by the instant their lease or timeout ends.
    pub deadlines: BTreeSet<(i64, TaskKey)>,
    /// Tasks in backoff by the instant they become ready.
    pub backoff: BTreeSet<(i64, TaskKey)>,
    /// Schedules by their next fire time.
    pub schedule_due: BTreeSet<(i64, ScheduleId)>,
    /// Finished jobs by finish time, for collection.
    pub finished: BTreeSet<(i64, JobId)>,
    /// Leases held per worker.
    pub worker_tasks: BTreeMap<WorkerId, BTreeSet<TaskKey>>,
}

/// Most tasks one lease command grants.
pub const LEASE_BATCH_MAX: u32 = 1000;

/// Upstream outputs sent with one grant, at most: about 100 bytes each, so
/// a lease of a wide merge stays near a megabyte. A task with more is told
/// the list was truncated instead of being sent part of it.
pub const UPSTREAM_OUTPUTS_MAX: usize = 10_000;

/// Most tasks one heartbeat or release may name.
pub const TASKS_PER_REQUEST_MAX: usize = 10_000;

/// Most items of each kind (expiries, backoffs, fires, collections) one tick
/// processes; the rest wait for the next tick, which bounds an entry's apply
/// time after a long outage.
pub const TICK_WORK_MAX: usize = 100_000;

/// The state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    core: Core,
    idx: Indexes,
    /// Records changed since storage last took them.
    changes: changes::Changes,
    /// What the applied log did since this process loaded the state, for
    /// metrics; not replicated.
    tally: tally::Tally,
    /// Bugs planted for the chaos suite; not replicated state.
    #[cfg(feature = "planted-bugs")]
    planted: crate::planted::PlantedBugs,
    /// When debug builds next check the invariants; not replicated.
    #[cfg(debug_assertions)]
    invariant_checks: invariants::DebugChecks,
}

/// A command's result.
pub type Applied = Result<Outcome, Rejection>;

impl StateMachine {
    /// An empty state with these settings.
    pub fn new(config: Config) -> Self {
        let idx = Indexes {
            ready: ReadyIndex::new(config.namespace_weights.clone()),
            ..Indexes::default()
        };
        Self {
            changes: changes::Changes::default(),
            tally: tally::Tally::default(),
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::default(),
            #[cfg(debug_assertions)]
            invariant_checks: invariants::DebugChecks::default(),
            core: Core {
                config,
                now_ms: 0,
                next_job: 1,
                next_schedule: 1,
                next_token: 1,
                next_epoch: 1,
                jobs: BTreeMap::new(),
                workers: BTreeMap::new(),
                schedules: BTreeMap::new(),
                idempotency: BTreeMap::new(),
                security: security::Security::default(),
                history: BTreeMap::new(),
                id_seed: 0,
            },
            idx,
        }
    }

    /// Rebuilds a state machine from its replicated core.
    pub fn from_core(mut core: Core) -> Self {
        // Jobs from a state written before task history (snapshot format
        // 4) start an empty one: their tasks' history begins now. The same
        // on every replica, since each loads the same state.
        for (id, job) in &core.jobs {
            core.history
                .entry(*id)
                .or_insert_with(|| history::JobHistory::new(job.templates.len()));
        }
        let mut sm = Self {
            changes: changes::Changes::default(),
            tally: tally::Tally::default(),
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::default(),
            #[cfg(debug_assertions)]
            invariant_checks: invariants::DebugChecks::default(),
            idx: Indexes {
                ready: ReadyIndex::new(core.config.namespace_weights.clone()),
                ..Indexes::default()
            },
            core,
        };
        sm.rebuild_indexes();
        sm
    }

    /// Switches planted bugs on or off (the chaos suite's planted-bug
    /// proofs).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bugs: crate::planted::PlantedBugs) {
        self.planted = bugs;
    }

    /// Takes the set of records changed since the last call.
    pub fn take_changes(&mut self) -> changes::Changes {
        std::mem::take(&mut self.changes)
    }

    /// A change set naming every record, for writing a whole state (after a
    /// snapshot is installed).
    pub fn all_changes(&self) -> changes::Changes {
        let mut all = changes::Changes::default();
        for (id, job) in &self.core.jobs {
            all.jobs.insert(*id);
            all.events_from.insert(*id, 0);
            for (t, template) in job.templates.iter().enumerate() {
                let key = |partition: u64| TaskKey {
                    job: *id,
                    template: t as u32,
                    partition,
                };
                all.tasks.extend(template.tasks.keys().map(|p| key(*p)));
                all.outputs.extend(template.outputs.keys().map(key));
                if let Some(h) = self.core.history.get(id).and_then(|h| h.templates.get(t)) {
                    all.history
                        .extend(h.partitions_in(0..u64::MAX).into_iter().map(key));
                }
            }
        }
        all.workers.extend(self.core.workers.keys().cloned());
        all.schedules.extend(self.core.schedules.keys().copied());
        all.idempotency
            .extend(self.core.idempotency.keys().cloned());
        all.security = true;
        all
    }

    /// Marks a task record (and its job header) as changed.
    fn touch_task(&mut self, key: TaskKey) {
        self.changes.tasks.insert(key);
        self.changes.jobs.insert(key.job);
    }

    /// Marks a worker record as changed.
    fn touch_worker(&mut self, worker: &WorkerId) {
        if !self.changes.workers.contains(worker) {
            self.changes.workers.insert(worker.clone());
        }
    }

    /// The replicated state.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The derived indexes (read-only, for metrics and tests).
    pub fn indexes(&self) -> &Indexes {
        &self.idx
    }

    /// Applies one log entry; one result per command, in order.
    pub fn apply(&mut self, entry: &LogEntry) -> Vec<Applied> {
        // A new leader's clock may lag the old one's: never go backwards, so
        // deadlines already passed stay passed.
        self.core.now_ms = self.core.now_ms.max(entry.now_ms);
        let applied: Vec<Applied> = entry.commands.iter().map(|c| self.apply_one(c)).collect();
        debug_assert_eq!(
            applied.len(),
            entry.commands.len(),
            "one result per command"
        );
        self.debug_check_invariants("applying an entry");
        applied
    }

    fn apply_one(&mut self, command: &Command) -> Applied {
        match command {
            Command::SubmitJob(submit) => self.submit(submit, false),
            Command::SubmitOnce(submit) => self.submit(submit, true),
            Command::CancelJob { job, reason } => self.cancel(*job, reason),
            Command::RetryJob { job } => self.retry(*job),
            Command::RegisterWorker {
                worker,
                slots,
                labels,
                kinds,
            } => self.register_worker(worker, *slots, labels, kinds),
            Command::DeregisterWorker { worker } => self.deregister_worker(worker),
            Command::DrainWorker { worker } => self.drain_worker(worker),
            Command::Lease { worker, max_tasks } => self.lease(worker, None, *max_tasks),
            Command::LeaseInSession {
                worker,
                epoch,
                max_tasks,
            } => self.lease(worker, Some(*epoch), *max_tasks),
            Command::ExpireLeases { tasks } => self.expire_leases(tasks),
            Command::WorkersLost { workers } => self.workers_lost(workers),
            Command::Heard { workers, tasks } => self.heard(workers, tasks),
            Command::StaleHeartbeats { worker, tasks } => self.stale_heartbeats(worker, tasks),
            Command::Heartbeat { worker, tasks } => self.heartbeat(worker, tasks),
            Command::Complete {
                worker,
                task,
                token,
                manifest,
                skipped,
            } => self.complete(worker, *task, *token, manifest, *skipped),
            Command::Fail {
                worker,
                task,
                token,
                retryable,
                message,
            } => self.fail(worker, *task, *token, *retryable, message),
            Command::Release { worker, tasks } => self.release(worker, tasks),
            Command::CancelSchedule { schedule, reason } => self.cancel_schedule(*schedule, reason),
            Command::Tick => Ok(Outcome::Ticked(self.tick())),
            Command::SetNamespaceWeight { namespace, weight } => {
                let weight = (*weight).max(1);
                self.core
                    .config
                    .namespace_weights
                    .insert(namespace.clone(), weight);
                self.idx.ready.set_weight(namespace, weight);
                Ok(Outcome::Done)
            }
            Command::CreateToken { token, bootstrap } => self.create_token(token, *bootstrap),
            Command::RevokeToken { id } => self.revoke_token(id),
            Command::SetNamespacePolicy { namespace, policy } => {
                self.set_namespace_policy(namespace, policy.as_ref())
            }
            Command::BindCertificate { identity, binding } => {
                self.bind_certificate(identity, binding.as_ref())
            }
            Command::SetLeaseSettings {
                lease_ttl_ms,
                heartbeat_interval_ms,
                worker_timeout_ms,
            } => {
                let mut next = self.core.config.clone();
                next.lease_ttl_ms = lease_ttl_ms.unwrap_or(next.lease_ttl_ms);
                next.heartbeat_interval_ms =
                    heartbeat_interval_ms.unwrap_or(next.heartbeat_interval_ms);
                next.worker_timeout_ms = worker_timeout_ms.unwrap_or(next.worker_timeout_ms);
                next.check_lease_settings()
                    .map_err(Rejection::InvalidSettings)?;
                self.core.config = next;
                Ok(Outcome::Done)
            }
        }
    }

    /// The current replicated time.
    pub fn now_ms(&self) -> i64 {
        self.core.now_ms
    }

    /// A job by id.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.core.jobs.get(&id)
    }

    /// Updates the ready index for one template of a job.
    fn refresh_template(&mut self, job_id: JobId, t: u32) {
        // Every path that changes a template ends here, so this is where the
        // job header is marked for storage.
        self.changes.jobs.insert(job_id);
        let Some(job) = self.core.jobs.get(&job_id) else {
            return;
        };
        let Some(template) = job.templates.get(t as usize) else {
            return;
        };
        let below_cap = template
            .def
            .max_parallel
            .is_none_or(|cap| template.counts.leased < u64::from(cap));
        let leasable = !job.state.is_terminal() && template.has_leasable() && below_cap;
        self.idx.ready.set_template(job_id, t, leasable);
    }

    /// Puts the job in the lease order, or takes it out.
    fn refresh_job(&mut self, job_id: JobId) {
        self.changes.jobs.insert(job_id);
        let Some(job) = self.core.jobs.get(&job_id) else {
            self.idx.ready.forget_job(job_id);
            return;
        };
        if !job.state.is_terminal()
            && job.below_max_parallel()
            && self.idx.ready.has_templates(job_id)
        {
            self.idx
                .ready
                .insert_job(job_id, job.priority, &job.namespace, job.submit_seq);
        } else {
            self.idx.ready.remove_job(job_id);
        }
    }

    /// Rebuilds every index from the core (after restore).
    fn rebuild_indexes(&mut self) {
        let mut ready = ReadyIndex::new(self.core.config.namespace_weights.clone());
        let mut idx = Indexes::default();
        for (id, job) in &self.core.jobs {
            if job.state.is_terminal() {
                if let Some(at) = job.finished_ms {
                    idx.finished.insert((at, *id));
                }
            } else {
                ready.add_running(&job.namespace, job.counts.leased as i64);
            }
            for (t, template) in job.templates.iter().enumerate() {
                for (p, record) in &template.tasks {
                    let key = TaskKey {
                        job: *id,
                        template: t as u32,
                        partition: *p,
                    };
                    match record.state {
                        TaskState::Leased => {
                            idx.deadlines.insert((record.expires_at_ms(), key));
                            if let Some(w) = &record.worker {
                                idx.worker_tasks.entry(w.clone()).or_default().insert(key);
                            }
                        }
                        TaskState::Backoff => {
                            idx.backoff.insert((record.ready_at_ms, key));
                        }
                        _ => {}
                    }
                }
            }
        }
        for (id, schedule) in &self.core.schedules {
            if let Some(at) = schedule.next_fire_ms
                && schedule.active
            {
                idx.schedule_due.insert((at, *id));
            }
        }
        idx.ready = ready;
        self.idx = idx;
        let jobs: Vec<(JobId, usize)> = self
            .core
            .jobs
            .iter()
            .map(|(id, job)| (*id, job.templates.len()))
            .collect();
        for (id, templates) in jobs {
            for t in 0..templates {
                self.refresh_template(id, t as u32);
            }
            self.refresh_job(id);
        }
    }

    /// Appends an event to a job's trail.
    fn event(&mut self, job_id: JobId, kind: events::EventKind) {
        let max = self.core.config.events_per_job_max;
        let now = self.core.now_ms;
        if let Some(job) = self.core.jobs.get_mut(&job_id) {
            let skipped = match &kind {
                events::EventKind::Completed { task, .. } => job
                    .templates
                    .get(task.template as usize)
                    .and_then(|t| t.outputs.get(task.partition))
                    .is_some_and(|o| o.skipped),
                _ => false,
            };
            self.tally.record(&job.namespace, &kind, skipped);
            job.events.push(now, kind, max);
            let seq = job.events.last_seq();
            self.changes.jobs.insert(job_id);
            self.changes.events_from.entry(job_id).or_insert(seq);
        }
    }
}
