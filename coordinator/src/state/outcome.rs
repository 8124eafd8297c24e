//! What applying a command answers: its result ([`Outcome`]) or why it
//! was refused ([`Rejection`]), and the records results carry.

use drover_jobspecs::Diagnostic;
use serde::{Deserialize, Serialize};

use super::types::{JobId, ScheduleId, TaskKey, WorkerId};

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
