//! Commands the state machine applies (their answers are in
//! [`outcome`](super::outcome)).
//!
//! A Raft entry carries a [`LogEntry`]: the leader's clock reading when it
//! proposed, and a batch of commands applied in order under that time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::policy::NamespacePolicy;
use super::security::{CertificateBinding, Token};
use super::types::{JobId, Manifest, ScheduleId, TaskKey, WorkerId};

/// One Raft entry's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Leader wall-clock time at proposal, in Unix milliseconds. The state
    /// machine never reads a clock; it never lets time go backwards either
    /// (a new leader's clock may be behind the old one's).
    pub now_ms: i64,
    /// The commands, applied in order.
    pub commands: Vec<Command>,
}

/// A change to the scheduler's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Submit a job spec (YAML). A spec with a schedule creates a schedule.
    SubmitJob(SubmitJob),
    /// Cancel a job; its running tasks learn of it on their next heartbeat.
    CancelJob {
        /// The job.
        job: JobId,
        /// Why, for the audit trail.
        reason: String,
    },
    /// Reset the failed tasks of a finished job and run them again.
    RetryJob {
        /// The job.
        job: JobId,
    },
    /// Announce a worker, or refresh its slots and labels.
    RegisterWorker {
        /// Its self-chosen id.
        worker: WorkerId,
        /// Tasks it runs at once.
        slots: u32,
        /// Its labels, matched against task constraints.
        labels: BTreeMap<String, String>,
        /// Kinds it can run; empty means all except `command`.
        kinds: Vec<String>,
    },
    /// Forget a worker; its leases are released without counting an attempt.
    DeregisterWorker {
        /// The worker.
        worker: WorkerId,
    },
    /// Stop leasing to a worker; it is told on its next heartbeat.
    DrainWorker {
        /// The worker.
        worker: WorkerId,
    },
    /// Grant up to `max_tasks` tasks to a worker.
    Lease {
        /// The worker.
        worker: WorkerId,
        /// Upper bound on grants (its free slots).
        max_tasks: u32,
    },
    /// Extend the leases of every task a worker runs, in one command.
    Heartbeat {
        /// The worker.
        worker: WorkerId,
        /// Its running tasks.
        tasks: Vec<TaskProgress>,
    },
    /// Report a task's success and its output.
    Complete {
        /// The reporting worker.
        worker: WorkerId,
        /// The task.
        task: TaskKey,
        /// The lease's fencing token.
        token: u64,
        /// The output.
        manifest: Manifest,
        /// The worker reused an identical earlier output instead of running.
        skipped: bool,
    },
    /// Report a failed attempt.
    Fail {
        /// The reporting worker.
        worker: WorkerId,
        /// The task.
        task: TaskKey,
        /// The lease's fencing token.
        token: u64,
        /// False for failures a retry cannot fix (bad config, bad input).
        retryable: bool,
        /// What went wrong.
        message: String,
    },
    /// Hand tasks back (drain); they are ready again at once and the attempt
    /// is not counted.
    Release {
        /// The worker.
        worker: WorkerId,
        /// Tasks with their tokens.
        tasks: Vec<(TaskKey, u64)>,
    },
    /// Stop a schedule from firing; runs already started go on.
    CancelSchedule {
        /// The schedule.
        schedule: ScheduleId,
        /// Why, kept in the schedule's notes.
        reason: String,
    },
    /// Let time pass: end attempts past their timeout, end backoff waits,
    /// fire schedules, collect old jobs. (Leases and worker sessions are
    /// timed by the leader, which proposes their ends.)
    Tick,
    /// Set a namespace's fair-share weight.
    SetNamespaceWeight {
        /// Namespace.
        namespace: String,
        /// Weight, at least 1.
        weight: u32,
    },
    /// Change lease settings; `None` keeps the current value.
    SetLeaseSettings {
        /// How long a lease lasts without a heartbeat.
        lease_ttl_ms: Option<u64>,
        /// How often workers heartbeat.
        heartbeat_interval_ms: Option<u64>,
        /// When a silent worker is marked lost.
        worker_timeout_ms: Option<u64>,
    },
    /// Submit a spec as one job now even if it has a schedule, which is
    /// ignored: a backfill, or a manual run of a scheduled spec.
    SubmitOnce(SubmitJob),
    /// Add an API token (its secret already hashed). With `bootstrap`,
    /// refused unless the cluster has no token yet.
    CreateToken {
        /// The token; `created_ms` is set from the entry's time.
        token: Token,
        /// The credential-less first token.
        bootstrap: bool,
    },
    /// Remove an API token.
    RevokeToken {
        /// Its id.
        id: String,
    },
    /// Set or clear what a namespace's specs may touch.
    SetNamespacePolicy {
        /// The namespace, or `*` for those without their own policy.
        namespace: String,
        /// The policy; `None` removes it.
        policy: Option<NamespacePolicy>,
    },
    /// Bind a client certificate to a role, or unbind it.
    BindCertificate {
        /// `client/NAME`.
        identity: String,
        /// The role; `None` removes the binding.
        binding: Option<CertificateBinding>,
    },
    /// Grant up to `max_tasks` tasks to a worker in the session it
    /// registered: refused with [`Rejection::UnknownSession`](super::Rejection::UnknownSession) when the
    /// session is not the worker's latest, or was declared lost. (Last:
    /// variants are encoded by position, so new ones go at the end;
    /// [`Command::Lease`] is what entries written before sessions were
    /// checked carry.)
    LeaseInSession {
        /// The worker.
        worker: WorkerId,
        /// The session, from its registration.
        epoch: u64,
        /// Upper bound on grants (its free slots and prefetch).
        max_tasks: u32,
    },
    /// The leader's timers ran out for these leases (no heartbeat within
    /// the TTL, timed on the leader's monotonic clock): each lease still
    /// live with its token ends as a retryable failure.
    ExpireLeases {
        /// Tasks with the token of the lease that ran out.
        tasks: Vec<(TaskKey, u64)>,
    },
    /// The leader heard nothing from these sessions within the worker
    /// timeout: each still current is declared lost, and the worker must
    /// register again.
    WorkersLost {
        /// Workers with the session that went silent.
        workers: Vec<(WorkerId, u64)>,
    },
    /// What the leader's heartbeats said since it last wrote it down, for
    /// readers on every node: when each session was last heard, and each
    /// lease's progress. Extending a lease needs no log entry; this one is
    /// written at most every few seconds and holds only what changed.
    Heard {
        /// Workers heard, with the session they were heard in.
        workers: Vec<(WorkerId, u64)>,
        /// Leases heartbeated, with their progress.
        tasks: Vec<TaskProgress>,
    },
    /// Heartbeats named leases that are not live: recorded in the tasks'
    /// audit trails as stale rejections (the worker was already told).
    StaleHeartbeats {
        /// The worker that sent them.
        worker: WorkerId,
        /// Tasks with the token it sent.
        tasks: Vec<(TaskKey, u64)>,
    },
}

/// A job submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJob {
    /// File name, for diagnostics.
    pub file: String,
    /// The YAML spec.
    pub spec_yaml: String,
    /// `--param` overrides.
    pub params: Vec<(String, String)>,
    /// Same key and same spec returns the same job.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the job's trace, kept with the job and handed
    /// to every attempt. The service validates it (or starts a new trace);
    /// the state machine only bounds its length, since ids are drawn
    /// outside it.
    pub trace_parent: Option<String>,
}

/// One running task in a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// The task.
    pub task: TaskKey,
    /// Its lease's token.
    pub token: u64,
    /// Progress in thousandths.
    pub progress_permille: u16,
}
