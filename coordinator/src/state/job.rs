//! A job's replicated record: its templates, their progress, and the few
//! tasks that have a record of their own.
//!
//! A template's partitions are split by a cursor. Partitions at or above the
//! cursor have never run and have no record. Partitions below it either have
//! a record (leased, waiting to retry, failed, cancelled) or have succeeded
//! and left it. So a million-partition template holds records only for what
//! is running or went wrong, and its counts are kept as it changes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveDateTime};
use drover_jobspecs::PartitionSet;
use drover_jobspecs::model::{Resources, RetryPolicy};
use serde::{Deserialize, Serialize};

use super::events::EventLog;
use super::outputs::Outputs;
use super::types::{JobId, JobState, ScheduleId, TaskState, WorkerId};

/// Tasks per state. Kept per template and per job, updated on every change,
/// so progress reads are O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Waiting for upstream templates.
    pub blocked: u64,
    /// Leasable now.
    pub ready: u64,
    /// Waiting out a retry delay.
    pub backoff: u64,
    /// Held by a worker.
    pub leased: u64,
    /// Done.
    pub succeeded: u64,
    /// Failed permanently, or will not run because an upstream failed.
    pub failed: u64,
    /// Cancelled with the job.
    pub cancelled: u64,
    /// Not run because its output already existed.
    pub skipped: u64,
}

impl Counts {
    fn slot(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Blocked => &mut self.blocked,
            TaskState::Ready => &mut self.ready,
            TaskState::Backoff => &mut self.backoff,
            TaskState::Leased => &mut self.leased,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed | TaskState::UpstreamFailed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Skipped => &mut self.skipped,
        }
    }

    /// Moves `n` tasks from one state to another.
    pub fn shift(&mut self, from: TaskState, to: TaskState, n: u64) {
        let source = self.slot(from);
        debug_assert!(*source >= n, "moving {n} from {from:?} with {source}");
        *source = source.saturating_sub(n);
        *self.slot(to) += n;
    }

    /// Adds another set of counts to these.
    pub fn add(&mut self, other: &Counts) {
        for (state, n) in other.by_state() {
            *self.slot(state) += n;
        }
    }

    /// Every state with its count, in lifecycle order.
    pub fn by_state(&self) -> [(TaskState, u64); 8] {
        [
            (TaskState::Blocked, self.blocked),
            (TaskState::Ready, self.ready),
            (TaskState::Backoff, self.backoff),
            (TaskState::Leased, self.leased),
            (TaskState::Succeeded, self.succeeded),
            (TaskState::Failed, self.failed),
            (TaskState::Cancelled, self.cancelled),
            (TaskState::Skipped, self.skipped),
        ]
    }

    /// Tasks that will not change again.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.skipped
    }

    /// All tasks.
    pub fn total(&self) -> u64 {
        self.blocked
            + self.ready
            + self.backoff
            + self.leased
            + self.succeeded
            + self.failed
            + self.cancelled
            + self.skipped
    }
}

/// Where a template is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateStatus {
    /// Some upstream template has not finished.
    Blocked,
    /// Partitions may be leased.
    Open,
    /// Every partition is finished.
    Done,
}

/// A template's partition set as stored in snapshots: the same shapes as
/// [`PartitionSet`], kept separate so the on-disk format does not change
/// when the spec crate's JSON form does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitions {
    /// One task.
    Single,
    /// Days, inclusive.
    Daily(NaiveDate, NaiveDate),
    /// Hours, inclusive.
    Hourly(NaiveDateTime, NaiveDateTime),
    /// Listed keys.
    List(Vec<String>),
    /// Shards `0..n`.
    Shards(u64),
}

impl From<&PartitionSet> for Partitions {
    fn from(set: &PartitionSet) -> Self {
        match set {
            PartitionSet::Single => Partitions::Single,
            PartitionSet::Daily { start, end } => Partitions::Daily(*start, *end),
            PartitionSet::Hourly { start, end } => Partitions::Hourly(*start, *end),
            PartitionSet::List { keys } => Partitions::List(keys.clone()),
            PartitionSet::Shards { count } => Partitions::Shards(*count),
        }
    }
}

impl Partitions {
    /// The spec crate's form, for counting and keys.
    pub fn to_set(&self) -> PartitionSet {
        match self {
            Partitions::Single => PartitionSet::Single,
            Partitions::Daily(start, end) => PartitionSet::Daily {
                start: *start,
                end: *end,
            },
            Partitions::Hourly(start, end) => PartitionSet::Hourly {
                start: *start,
                end: *end,
            },
            Partitions::List(keys) => PartitionSet::List { keys: keys.clone() },
            Partitions::Shards(count) => PartitionSet::Shards { count: *count },
        }
    }

    /// The key of partition `index` (allocates only for the key itself).
    pub fn key(&self, index: u64) -> Option<String> {
        match self {
            // Lists are indexed directly rather than cloned into a set.
            Partitions::List(keys) => keys.get(usize::try_from(index).ok()?).cloned(),
            other => other.to_set().key(index),
        }
    }
}

/// The parts of a template fixed at submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateDef {
    /// `task` or `task/stage`.
    pub id: String,
    /// Kind name.
    pub kind: String,
    /// The fan-out, as a description.
    pub partitions: Partitions,
    /// Partitions in the set.
    pub count: u64,
    /// Templates that must finish first.
    pub depends_on: Vec<u32>,
    /// Templates that wait for this one (the reverse edges).
    pub downstream: Vec<u32>,
    /// The kind's config as JSON, with `${partition.*}` unresolved.
    pub config_json: String,
    /// Retry policy.
    pub retries: RetryPolicy,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Cap on leased partitions of this template.
    pub max_parallel: Option<u32>,
    /// Placement needs.
    pub resources: Resources,
    /// Worker labels required.
    pub constraints: BTreeMap<String, String>,
}

/// A task that has run at least once and has not succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Current state: ready (requeued), backoff, leased, failed, cancelled.
    pub state: TaskState,
    /// Attempt number of the current or last attempt, from 1.
    pub attempt: u32,
    /// Fencing token of the latest grant; a request with any other token is
    /// stale.
    pub token: u64,
    /// Holder of the lease, while leased.
    pub worker: Option<WorkerId>,
    /// When the lease would run out without another heartbeat, as of the
    /// last one the leader folded into the log; for display. Leases are
    /// timed by the leader alone (`crate::raft::lease_timers`).
    pub lease_deadline_ms: i64,
    /// When the attempt runs out whatever the heartbeats.
    pub timeout_deadline_ms: i64,
    /// When a backoff wait ends; for a record in `Ready`, when it became
    /// ready (how long it has waited to be leased again).
    pub ready_at_ms: i64,
    /// Last progress reported, in thousandths.
    pub progress_permille: u16,
    /// Last failure message, truncated.
    pub last_error: Option<String>,
}

impl TaskRecord {
    /// The instant the current attempt runs out of time, in the cluster's
    /// time. (A lease's TTL is the leader's to time, not the log's.)
    pub fn expires_at_ms(&self) -> i64 {
        self.timeout_deadline_ms
    }
}

/// A template's replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Fixed definition.
    pub def: TemplateDef,
    /// Lifecycle.
    pub status: TemplateStatus,
    /// Upstream templates not yet finished successfully.
    pub remaining_upstream: u32,
    /// Partitions `>= cursor` have never run.
    pub cursor: u64,
    /// Tasks below the cursor that have not succeeded.
    pub tasks: BTreeMap<u64, TaskRecord>,
    /// Partitions with a record in state `Ready`, leased before new ones
    /// (lowest partition first) so retries are not starved by fresh work.
    pub requeued: BTreeSet<u64>,
    /// Per-state counts.
    pub counts: Counts,
    /// Canonical outputs of succeeded (or skipped) partitions.
    pub outputs: Outputs,
    /// When the template last opened: its never-run partitions have been
    /// ready since then, which is how long the backlog has waited (0 while
    /// it has never opened).
    pub opened_ms: i64,
}

impl Template {
    /// Whether a partition can be leased right now, ignoring caps.
    pub fn has_leasable(&self) -> bool {
        self.status == TemplateStatus::Open
            && (!self.requeued.is_empty() || self.cursor < self.def.count)
    }

    /// Whether every partition is finished.
    pub fn all_finished(&self) -> bool {
        self.counts.finished() == self.def.count
    }

    /// The state of partition `p`, derived for partitions without a
    /// record: a partition below the cursor without one has an output.
    pub fn task_state(&self, p: u64) -> Option<TaskState> {
        if p >= self.def.count {
            return None;
        }
        if let Some(record) = self.tasks.get(&p) {
            return Some(record.state);
        }
        if p < self.cursor
            && let Some(output) = self.outputs.get(p)
        {
            return Some(if output.skipped {
                TaskState::Skipped
            } else {
                TaskState::Succeeded
            });
        }
        Some(match self.status {
            TemplateStatus::Blocked => TaskState::Blocked,
            TemplateStatus::Open => TaskState::Ready,
            // A done template's partitions that never ran were cancelled
            // with the job, or failed in bulk because an upstream template
            // failed (`fail_downstream`), which is the only other way.
            TemplateStatus::Done => {
                if self.counts.cancelled > 0 {
                    TaskState::Cancelled
                } else {
                    TaskState::UpstreamFailed
                }
            }
        })
    }

    /// Tasks counted as failed that never ran because an upstream template
    /// failed.
    pub fn upstream_failed(&self) -> u64 {
        let ran_and_failed = self
            .tasks
            .values()
            .filter(|r| r.state == TaskState::Failed)
            .count() as u64;
        self.counts.failed.saturating_sub(ran_and_failed)
    }
}

/// A job's replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Name from the spec.
    pub name: String,
    /// Namespace for fair share.
    pub namespace: String,
    /// Labels from the spec.
    pub labels: BTreeMap<String, String>,
    /// 0..=100.
    pub priority: u8,
    /// Cap on leased tasks.
    pub max_parallel: u32,
    /// Identity of the spec for idempotent submits.
    pub spec_hash: String,
    /// The submit's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The schedule that started this run, if any.
    pub schedule: Option<ScheduleId>,
    /// The fire time of that run.
    pub fire_time_ms: Option<i64>,
    /// Order of submission, for FIFO between equals.
    pub submit_seq: u64,
    /// Lifecycle.
    pub state: JobState,
    /// Submit time.
    pub created_ms: i64,
    /// First lease.
    pub started_ms: Option<i64>,
    /// Terminal time.
    pub finished_ms: Option<i64>,
    /// Templates in topological order.
    pub templates: Vec<Template>,
    /// Sum of the templates' counts.
    pub counts: Counts,
    /// The audit trail.
    pub events: EventLog,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// W3C `traceparent` of the job's trace, handed to every attempt.
    pub trace_parent: Option<String>,
}

/// One upstream task's accepted output, as the task downstream of it
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamOutput {
    /// Id of the upstream template (`task` or `task/stage`).
    pub template: String,
    /// Its partition index.
    pub partition_index: u64,
    /// Its partition key.
    pub partition_key: String,
    /// Prefix of the accepted output; empty when it wrote nothing.
    pub prefix: String,
}

impl Job {
    /// Each template's stage: 0 without dependencies, else one past its
    /// deepest upstream.
    pub fn stages(&self) -> Vec<u32> {
        let mut stages: Vec<u32> = Vec::with_capacity(self.templates.len());
        for template in &self.templates {
            let stage = template
                .def
                .depends_on
                .iter()
                .filter_map(|d| stages.get(*d as usize))
                .map(|s| s + 1)
                .max()
                .unwrap_or(0);
            stages.push(stage);
        }
        stages
    }

    /// The accepted outputs of the templates template `t` depends on, in
    /// template then partition order; `None` when there are more than
    /// `max` (the caller says so rather than sending a partial list).
    pub fn upstream_outputs(&self, t: u32, max: usize) -> Option<Vec<UpstreamOutput>> {
        let template = self.templates.get(t as usize)?;
        let mut out = Vec::new();
        for &u in &template.def.depends_on {
            let Some(up) = self.templates.get(u as usize) else {
                continue;
            };
            if out.len() + up.outputs.len() > max {
                return None;
            }
            out.extend(up.outputs.iter().map(|(partition, output)| {
                UpstreamOutput {
                    template: up.def.id.clone(),
                    partition_index: partition,
                    partition_key: up.def.partitions.key(partition).unwrap_or_default(),
                    prefix: output
                        .manifest
                        .map(|m| m.prefix.clone())
                        .unwrap_or_default(),
                }
            }));
        }
        Some(out)
    }

    /// Whether the job may lease another task, ignoring templates.
    pub fn below_max_parallel(&self) -> bool {
        self.counts.leased < u64::from(self.max_parallel)
    }

    /// Moves `n` tasks of template `t` between states in both count sets.
    pub fn shift(&mut self, t: u32, from: TaskState, to: TaskState, n: u64) {
        if n == 0 || from == to {
            return;
        }
        if let Some(template) = self.templates.get_mut(t as usize) {
            template.counts.shift(from, to, n);
        }
        self.counts.shift(from, to, n);
    }

    /// Whether every task of the job is finished.
    pub fn all_finished(&self) -> bool {
        self.counts.finished() == self.counts.total()
    }
}

/// Builds the templates of a job from an expanded graph.
pub fn templates_from_graph(graph: &drover_jobspecs::TaskGraph) -> Vec<Template> {
    let mut downstream: Vec<Vec<u32>> = vec![Vec::new(); graph.templates.len()];
    for (i, t) in graph.templates.iter().enumerate() {
        for &d in &t.depends_on {
            downstream[d].push(i as u32);
        }
    }
    graph
        .templates
        .iter()
        .zip(downstream)
        .map(|(t, downstream)| {
            let open = t.depends_on.is_empty();
            let mut counts = Counts::default();
            if open {
                counts.ready = t.partition_count;
            } else {
                counts.blocked = t.partition_count;
            }
            Template {
                def: TemplateDef {
                    id: t.id.clone(),
                    kind: t.kind.to_owned(),
                    partitions: Partitions::from(&t.partitions),
                    count: t.partition_count,
                    depends_on: t.depends_on.iter().map(|d| *d as u32).collect(),
                    downstream,
                    config_json: t.config.to_string(),
                    retries: t.retries,
                    timeout_ms: t.timeout_ms,
                    max_parallel: t.max_parallel,
                    resources: t.resources,
                    constraints: t.constraints.clone(),
                },
                status: if open {
                    TemplateStatus::Open
                } else {
                    TemplateStatus::Blocked
                },
                remaining_upstream: t.depends_on.len() as u32,
                cursor: 0,
                tasks: BTreeMap::new(),
                requeued: BTreeSet::new(),
                counts,
                outputs: Outputs::default(),
                // Set by the caller, who knows the time.
                opened_ms: 0,
            }
        })
        .collect()
}

/// Template indexes in stage order, ties in graph order.
pub fn stage_order(stages: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..stages.len() as u32).collect();
    order.sort_by_key(|t| (stages[*t as usize], *t));
    order
}
