//! Commands the state machine applies, and what each returns.
//!
//! A Raft entry carries a [`LogEntry`]: the leader's clock reading when it
//! proposed, and a batch of commands applied in order under that time.

use std::collections::BTreeMap;

use drover_jobspecs::Diagnostic;
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
    /// registered: refused with [`Rejection::UnknownSession`] when the
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

/// What a submit created or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Submitted {
    /// A one-off job.
    Job(JobId),
    /// A recurring schedule; its runs are child jobs.
    Schedule(ScheduleId),
}

/// A task handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The task.
    pub task: TaskKey,
    /// Its job's namespace.
    pub namespace: String,
    /// Its job's name.
    pub job_name: String,
    /// Template id (`task` or `task/stage`).
    pub template: String,
    /// Kind name.
    pub kind: String,
    /// Partition key.
    pub partition_key: String,
    /// The config for this partition, as JSON.
    pub config_json: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Fencing token; carried by every later request about this task.
    pub token: u64,
    /// When the lease ends without a heartbeat.
    pub lease_deadline_ms: i64,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// The job's W3C `traceparent`, so the attempt joins the job's trace.
    pub trace_parent: Option<String>,
    /// Where this attempt writes, relative to the data root; the only
    /// prefix its completion may name ([`super::attempt`]).
    pub output_prefix: String,
    /// The accepted outputs of the templates this one depends on, read in
    /// the same apply as the grant; `None` when there are more than
    /// [`super::UPSTREAM_OUTPUTS_MAX`], so the worker is told rather than
    /// sent a partial list.
    pub upstream: Option<Vec<super::job::UpstreamOutput>>,
}

/// What a worker should do about one task after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatStatus {
    /// Keep going; the lease now ends at this time.
    Ok {
        /// New lease deadline.
        lease_deadline_ms: i64,
    },
    /// The lease is gone (expired and possibly re-leased): stop, discard.
    LeaseLost,
    /// The job was cancelled: stop.
    JobCancelled,
}

/// Reply to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Per task, in request order.
    pub tasks: Vec<(TaskKey, HeartbeatStatus)>,
    /// The worker should stop leasing and finish or release its tasks.
    pub drain: bool,
    /// The heartbeat interval in force.
    pub heartbeat_interval_ms: u64,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TickReport {
    /// Attempts ended by their timeout.
    pub timed_out: u64,
    /// Tasks whose backoff ended.
    pub requeued: u64,
    /// Scheduled runs started.
    pub fired: u64,
    /// Finished jobs garbage-collected.
    pub collected: u64,
}

/// A command's successful result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Submit: what was created, and false when an idempotent replay
    /// returned an existing submission.
    Submitted {
        /// Job or schedule.
        id: Submitted,
        /// False for an idempotent replay.
        created: bool,
    },
    /// Tasks granted (possibly none).
    Leased(Vec<Grant>),
    /// Nothing granted: the worker is being drained, and should finish or
    /// release what it runs, then leave.
    Draining,
    /// Heartbeat reply.
    Heartbeat(HeartbeatReply),
    /// Completion accepted; `duplicate` when the same token had already
    /// completed it (a retried request).
    Completed {
        /// A repeat of an accepted completion.
        duplicate: bool,
    },
    /// Failure recorded; when the task runs again, if it does.
    FailRecorded {
        /// Retry time, or `None` if the failure is final.
        retry_at_ms: Option<i64>,
    },
    /// Worker registered.
    Registered {
        /// Changes each registration, so a worker can tell it was forgotten.
        epoch: u64,
        /// Lease TTL to honour.
        lease_ttl_ms: u64,
        /// How often to heartbeat.
        heartbeat_interval_ms: u64,
    },
    /// Tasks released.
    Released {
        /// How many were held and released.
        released: u32,
        /// Tasks named that this worker did not hold (stale tokens).
        not_held: Vec<TaskKey>,
    },
    /// Failed tasks reset.
    Retried {
        /// How many.
        tasks: u64,
    },
    /// What a tick did.
    Ticked(TickReport),
    /// The leases of these tasks ended by expiry (those still live when
    /// the expiry applied).
    LeasesExpired(Vec<TaskKey>),
    /// Done, nothing to report.
    Done,
}

/// Why a command was refused. Refusals are deterministic: every replica
/// refuses the same command the same way.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// No such job (never existed, or collected).
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    /// No such schedule.
    #[error("unknown schedule {0}")]
    UnknownSchedule(ScheduleId),
    /// No such task.
    #[error("unknown task {0}")]
    UnknownTask(TaskKey),
    /// The worker is not registered (or was forgotten): register again.
    #[error("unknown worker `{}`: register again", super::types::shown(.0))]
    UnknownWorker(WorkerId),
    /// The token is not the task's current one: a newer lease exists or the
    /// lease ended. Recorded as an event.
    #[error("stale fencing token {presented} for task {task} (current {current})")]
    StaleToken {
        /// Task.
        task: TaskKey,
        /// Token in the request.
        presented: u64,
        /// Token of the latest grant.
        current: u64,
    },
    /// The task's lease ended (expired, released, or the job was cancelled).
    #[error("task {task} is no longer leased ({reason})")]
    LeaseLost {
        /// Task.
        task: TaskKey,
        /// What ended it.
        reason: String,
    },
    /// Same idempotency key, different spec.
    #[error("idempotency key `{key}` was used for a different spec (by {existing:?})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// What the key already names.
        existing: Submitted,
    },
    /// The spec does not validate.
    #[error("invalid spec ({} problems)", .0.len())]
    InvalidSpec(Vec<Diagnostic>),
    /// The job is finished and cannot be changed that way.
    #[error("job {job} is {state}")]
    JobFinished {
        /// Job.
        job: JobId,
        /// Its state.
        state: String,
    },
    /// A request exceeded a limit.
    #[error("{0}")]
    TooLarge(String),
    /// Settings that do not fit together or are out of range.
    #[error("{0}")]
    InvalidSettings(String),
    /// A token that cannot be created as asked.
    #[error("{0}")]
    InvalidToken(String),
    /// No token with this id (never created, or revoked).
    #[error("unknown token `{0}`")]
    UnknownToken(String),
    /// Bootstrap asked of a cluster that already has tokens.
    #[error("the cluster already has tokens; ask an operator to create one (drover token create)")]
    AlreadyBootstrapped,
    /// A spec reaches outside its namespace's policy.
    #[error("{0}")]
    PolicyDenied(String),
    /// A namespace policy that cannot be set as asked.
    #[error("{0}")]
    InvalidPolicy(String),
    /// A lease or heartbeat from a session that is not the worker's latest,
    /// or that was declared lost: register again.
    #[error("session {epoch} of worker `{}` has ended: register again", super::types::shown(.worker))]
    UnknownSession {
        /// The worker.
        worker: WorkerId,
        /// The session it named.
        epoch: u64,
    },
    /// A completion's manifest lies outside the attempt's own output
    /// prefix, where another attempt could have written.
    #[error("manifest prefix `{}` is not the output prefix of {task}'s lease with token {token} (`{expected}`)", super::types::shown(.presented))]
    ForeignPrefix {
        /// Task.
        task: TaskKey,
        /// Token in the request.
        token: u64,
        /// The prefix the manifest named.
        presented: String,
        /// The attempt's own prefix.
        expected: String,
    },
}
