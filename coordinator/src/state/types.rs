//! Identifiers, states and settings shared by the state machine's modules.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's id: a UUIDv7 drawn when the job is created
/// (`0193a5f2-7c1e-7d3a-9b2f-4c8e1a2b3c4d`, see [`super::ids`]). A job
/// created before ids were UUIDs keeps its sequence number, shown `j42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u128);

/// The largest id of the sequence-number era: every UUIDv7 is larger (its
/// leading 48 bits are the time in milliseconds).
pub const LEGACY_ID_MAX: u128 = u64::MAX as u128;

/// `id` as shown: `j42` (or `s7`) for a sequence number, else the UUID.
fn show_id(f: &mut fmt::Formatter<'_>, letter: char, id: u128) -> fmt::Result {
    if id <= LEGACY_ID_MAX {
        write!(f, "{letter}{id}")
    } else {
        write!(f, "{}", uuid::Uuid::from_u128(id).hyphenated())
    }
}

/// Parses a whole id: `j42` (with `letter` `j`) or a UUID in any of its
/// usual forms. A prefix is resolved against the state instead
/// ([`super::StateMachine::resolve_id`]).
fn parse_id(s: &str, letter: char) -> Option<u128> {
    if let Some(n) = s.strip_prefix(letter).and_then(|n| n.parse::<u64>().ok()) {
        return Some(u128::from(n));
    }
    uuid::Uuid::try_parse(s).ok().map(|u| u.as_u128())
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_id(f, 'j', self.0)
    }
}

/// A caller-supplied string as an error message quotes it: cut to 64 bytes,
/// so a huge id cannot make a huge answer (or log line).
pub fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl std::str::FromStr for JobId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_id(s, 'j').map(JobId).ok_or_else(|| {
            IdError(format!(
                "`{}` is not a job id (a UUID such as 0193a5f2-7c1e-7d3a-9b2f-4c8e1a2b3c4d)",
                shown(s)
            ))
        })
    }
}

/// A schedule's id: a UUIDv7 like a job's; `s7` from before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScheduleId(pub u128);

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_id(f, 's', self.0)
    }
}

impl std::str::FromStr for ScheduleId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_id(s, 's').map(ScheduleId).ok_or_else(|| {
            IdError(format!(
                "`{}` is not a schedule id (a UUID such as 0193a5f2-7c1e-7d3a-9b2f-4c8e1a2b3c4d)",
                shown(s)
            ))
        })
    }
}

/// One task: a partition of a template of a job. Tasks have no record of
/// their own until they first run (DESIGN invariant 6), so the key is the
/// identity, shown as `j42/3/1999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    /// The job.
    pub job: JobId,
    /// Index of the template in the job's graph.
    pub template: u32,
    /// Index of the partition in the template.
    pub partition: u64,
}

impl TaskKey {
    /// The smallest key, for range bounds.
    pub const MIN: TaskKey = TaskKey {
        job: JobId(0),
        template: 0,
        partition: 0,
    };
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.job, self.template, self.partition)
    }
}

impl std::str::FromStr for TaskKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            IdError(format!(
                "`{}` is not a task id (JOB/TEMPLATE/PARTITION, as `job status` lists them)",
                shown(s)
            ))
        };
        let mut parts = s.split('/');
        let job = parts.next().ok_or_else(err)?.parse().map_err(|_| err())?;
        let template = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(TaskKey {
            job,
            template,
            partition,
        })
    }
}

/// A malformed id in a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

/// Workers name themselves (hostname plus a random suffix, or the cloud
/// instance id), so a restarted worker is a new worker.
pub type WorkerId = String;

/// A job's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted; no task has been leased yet.
    Pending,
    /// At least one task has been leased.
    Running,
    /// Every task succeeded (or was skipped).
    Succeeded,
    /// Every task is finished and at least one failed permanently.
    Failed,
    /// Cancelled by a user or replaced by a newer scheduled run.
    Cancelled,
}

impl JobState {
    /// Whether the job can still change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Lowercase name, as the CLI and events show it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A task's state as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for upstream templates.
    Blocked,
    /// Can be leased now.
    Ready,
    /// Waiting out a retry delay.
    Backoff,
    /// Leased to a worker.
    Leased,
    /// Completed; its output manifest is canonical.
    Succeeded,
    /// Failed permanently (or an upstream did).
    Failed,
    /// Its job was cancelled.
    Cancelled,
    /// Not run because an identical output already existed.
    Skipped,
    /// Never run because a template it depends on failed. Derived for
    /// display (a task record never holds it); counted with `failed`.
    UpstreamFailed,
}

impl TaskState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Blocked => "blocked",
            TaskState::Ready => "ready",
            TaskState::Backoff => "backoff",
            TaskState::Leased => "leased",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Skipped => "skipped",
            TaskState::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Settings of the state machine. They are part of the replicated state (set
/// at cluster creation and changed only through commands), so every replica
/// decides with the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl_ms: u64,
    /// How often workers are told to heartbeat; well under the TTL so one
    /// lost heartbeat does not lose a lease.
    pub heartbeat_interval_ms: u64,
    /// How long finished jobs are kept before garbage collection.
    pub retention_ms: u64,
    /// Events kept per job; older ones are dropped first.
    pub events_per_job_max: usize,
    /// A scheduled fire time processed within this long of its time counts
    /// as on time, not missed (`catchup: none` still runs it).
    pub schedule_grace_ms: u64,
    /// Fair-share weight per namespace; absent namespaces weigh
    /// [`DEFAULT_NAMESPACE_WEIGHT`].
    pub namespace_weights: BTreeMap<String, u32>,
    /// Workers not heard from for this long are marked lost.
    pub worker_timeout_ms: u64,
}

/// Bounds of the lease TTL: under a second, a GC pause loses leases; over an
/// hour, a vanished worker holds its tasks too long.
pub const LEASE_TTL_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// Shortest heartbeat interval: each heartbeat is a replicated write.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 100;

impl Config {
    /// Whether the lease settings fit together: a heartbeat at most half the
    /// TTL (one lost heartbeat must not lose a lease), and workers declared
    /// lost no sooner than their leases expire.
    pub fn check_lease_settings(&self) -> Result<(), String> {
        if !LEASE_TTL_MS_RANGE.contains(&self.lease_ttl_ms) {
            return Err(format!(
                "lease TTL {} ms is outside {}..={} ms",
                self.lease_ttl_ms,
                LEASE_TTL_MS_RANGE.start(),
                LEASE_TTL_MS_RANGE.end()
            ));
        }
        if self.heartbeat_interval_ms < HEARTBEAT_INTERVAL_MS_MIN
            || self.heartbeat_interval_ms * 2 > self.lease_ttl_ms
        {
            return Err(format!(
                "heartbeat interval {} ms must be at least {HEARTBEAT_INTERVAL_MS_MIN} ms and at most half the lease TTL ({} ms)",
                self.heartbeat_interval_ms, self.lease_ttl_ms
            ));
        }
        if self.worker_timeout_ms < self.lease_ttl_ms {
            return Err(format!(
                "worker timeout {} ms is shorter than the lease TTL ({} ms)",
                self.worker_timeout_ms, self.lease_ttl_ms
            ));
        }
        Ok(())
    }
}

/// Weight of a namespace with no configured weight.
pub const DEFAULT_NAMESPACE_WEIGHT: u32 = 1;

impl Default for Config {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 30_000,
            heartbeat_interval_ms: 5_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            events_per_job_max: 10_000,
            schedule_grace_ms: 60_000,
            namespace_weights: BTreeMap::new(),
            worker_timeout_ms: 60_000,
        }
    }
}

/// One file of a task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputFile {
    /// Path relative to the attempt's output prefix.
    pub path: String,
    /// Rows, where the format has rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// What an accepted completion reports; the only canonical output of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Where the attempt wrote (attempt-scoped prefix).
    pub prefix: String,
    /// The files.
    pub files: Vec<OutputFile>,
    /// Arrow schema as JSON, when tabular.
    pub schema_json: String,
    /// Version of the code that produced it.
    pub code_version: String,
    /// Fingerprint of the inputs, for memoisation.
    pub input_fingerprint: String,
}

impl Manifest {
    /// Bytes this manifest takes in memory, roughly; bounds what a
    /// completion may carry.
    pub fn weight(&self) -> usize {
        self.prefix.len()
            + self.schema_json.len()
            + self.code_version.len()
            + self.input_fingerprint.len()
            + self
                .files
                .iter()
                .map(|f| f.path.len() + f.sha256.len() + 16)
                .sum::<usize>()
    }
}

/// Largest manifest a completion may carry; bigger outputs list their files
/// in an object-store index instead.
pub const MANIFEST_BYTES_MAX: usize = 64 * 1024;

/// Longest `traceparent` a job keeps: a version-00 W3C `traceparent` is 55
/// bytes, and the service refuses any other shape before proposing.
pub const TRACE_PARENT_BYTES_MAX: usize = 55;
