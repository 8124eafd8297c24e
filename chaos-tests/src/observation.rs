//! What a run leaves for the checkers: the client history, the cluster's
//! committed record of every job (read back after the heal), the probes'
//! side logs, and each replica's state digest. Plain data, saved next to
//! the history so a run can be checked again without the cluster.

use serde::{Deserialize, Serialize};

use crate::history::Op;

pub use drover_worker::executors::probe::ProbeRecord;

/// Everything the checkers look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Client and nemesis operations, in the order recorded.
    pub ops: Vec<Op>,
    /// Every job the cluster holds at the end.
    pub jobs: Vec<JobRecord>,
    /// Every probe execution record from every worker.
    pub probes: Vec<ProbeRecord>,
    /// Each coordinator's state digest, read once the cluster was quiet.
    pub replicas: Vec<ReplicaDigest>,
    /// Whether the replicas' digests were read at one applied index (when
    /// not, they cannot be compared and the replica check says so).
    pub replicas_settled: bool,
    /// Jobs that were not terminal when the heal bound ran out.
    pub unfinished_after_heal: Vec<String>,
    /// The heal bound, in seconds.
    pub heal_bound_s: u64,
    /// Panics found in the processes' logs (`<log>: <line>`).
    pub crashes: Vec<String>,
    /// Why the run could not finish its liveness phase or observation
    /// (the cluster never recovered), if it could not.
    pub failure: String,
}

/// One job as the cluster recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// `metadata.name`; the workload puts the idempotency key in it.
    pub name: String,
    /// Final state: `pending`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    /// Templates in plan order.
    pub templates: Vec<TemplateRecord>,
    /// The job's audit trail, in sequence order.
    pub events: Vec<EventRecord>,
    /// False when the cluster had pruned old events (the trail is partial).
    pub events_complete: bool,
}

/// One template of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// Name.
    pub name: String,
    /// Names of the templates it waits for.
    pub depends_on: Vec<String>,
    /// Number of partitions.
    pub partitions: u64,
}

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A lease was granted (`token` is the grant's).
    Leased,
    /// A completion was accepted (`token` is the accepted one).
    Succeeded,
    /// A completion that skipped the task was accepted.
    Skipped,
    /// An attempt failed.
    Failed,
    /// A lease ran out without a heartbeat.
    Expired,
    /// An attempt ran past its timeout.
    TimedOut,
    /// A request with a stale token was refused.
    StaleRejected,
    /// A worker handed a task back.
    Released,
    /// Anything else (job-level events, retries, cancels).
    Other,
}

/// One event of a job's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the trail.
    pub seq: u64,
    /// What happened.
    pub kind: EventType,
    /// The task, as `<job>/<template index>/<partition>`; empty for job
    /// events.
    pub task_id: String,
    /// Template name; empty for job events.
    pub template: String,
    /// Partition index.
    pub partition: u64,
    /// Fencing token involved.
    pub token: u64,
    /// Worker involved.
    pub worker: String,
    /// Leader time, in Unix milliseconds.
    pub at_unix_ms: i64,
}

/// One replica's answer to `StateDigest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDigest {
    /// Node id.
    pub node_id: u64,
    /// The applied index the digest reflects.
    pub applied_index: u64,
    /// SHA-256 of the state, hex.
    pub sha256: String,
    /// Why the replica could not answer, if it could not.
    pub error: String,
}

impl Observation {
    /// Reads a saved observation.
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }

    /// Saves the observation as JSON.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )
    }
}

impl JobRecord {
    /// Whether the job reached a terminal state.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }

    /// Task events (those naming a task), in trail order.
    pub fn task_events(&self) -> impl Iterator<Item = &EventRecord> {
        self.events.iter().filter(|e| !e.task_id.is_empty())
    }
}
