//! "Why is this task pending?" answered from the state, in the order a
//! user would check: the task's own state, its dependencies, its retry wait,
//! the job's and template's caps, placement, and finally its turn.

use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use super::StateMachine;
use super::job::Job;
use super::outcome::Rejection;
use super::types::{DEFAULT_NAMESPACE_WEIGHT, TaskKey, TaskState};
use super::workers::WorkerState;

/// Why a task is not running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Why {
    /// It is not pending at all.
    NotPending(TaskState),
    /// Upstream templates have not all succeeded.
    Dependency {
        /// Ids of the unfinished upstream templates.
        waiting_on: Vec<String>,
    },
    /// Waiting out a retry delay.
    Backoff {
        /// When it becomes ready.
        until_ms: i64,
        /// The attempt that will run.
        next_attempt: u32,
    },
    /// The job has `maxParallel` tasks running.
    JobMaxParallel {
        /// The cap.
        limit: u32,
    },
    /// The template has its own `maxParallel` tasks running.
    TemplateMaxParallel {
        /// The cap.
        limit: u32,
    },
    /// No live worker has the labels and kind this task needs.
    NoMatchingWorker {
        /// Required labels.
        constraints: Vec<(String, String)>,
        /// The kind.
        kind: String,
    },
    /// It can run and is waiting for a free slot: higher-priority work, or
    /// other namespaces' fair share, goes first.
    WaitingForSlot {
        /// Tasks running in the job's namespace.
        namespace_running: u64,
        /// Job priority.
        priority: u8,
    },
}

impl StateMachine {
    /// Explains why `key` is not running.
    pub fn why_pending(&self, key: TaskKey) -> Result<Why, Rejection> {
        let job = self
            .core
            .jobs
            .get(&key.job)
            .ok_or(Rejection::UnknownJob(key.job))?;
        let template = job
            .templates
            .get(key.template as usize)
            .ok_or(Rejection::UnknownTask(key))?;
        let state = template
            .task_state(key.partition)
            .ok_or(Rejection::UnknownTask(key))?;
        match state {
            TaskState::Blocked => {
                let waiting_on = template
                    .def
                    .depends_on
                    .iter()
                    .map(|d| &job.templates[*d as usize])
                    .filter(|up| up.counts.succeeded + up.counts.skipped < up.def.count)
                    .map(|up| up.def.id.clone())
                    .collect();
                Ok(Why::Dependency { waiting_on })
            }
            TaskState::Backoff => {
                let record = &template.tasks[&key.partition];
                Ok(Why::Backoff {
                    until_ms: record.ready_at_ms,
                    next_attempt: record.attempt,
                })
            }
            TaskState::Ready => {
                if !job.below_max_parallel() {
                    return Ok(Why::JobMaxParallel {
                        limit: job.max_parallel,
                    });
                }
                if let Some(limit) = template.def.max_parallel
                    && template.counts.leased >= u64::from(limit)
                {
                    return Ok(Why::TemplateMaxParallel { limit });
                }
                let placeable = self
                    .core
                    .workers
                    .values()
                    .any(|w| w.state == WorkerState::Alive && w.can_run(&template.def));
                if !placeable {
                    return Ok(Why::NoMatchingWorker {
                        constraints: template
                            .def
                            .constraints
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        kind: template.def.kind.clone(),
                    });
                }
                Ok(Why::WaitingForSlot {
                    namespace_running: self.idx.ready.running(&job.namespace),
                    priority: job.priority,
                })
            }
            other => Ok(Why::NotPending(other)),
        }
    }
}

/// An upstream template a task waits for, and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamWait {
    /// The template's id.
    pub template: String,
    /// Its tasks not yet succeeded or skipped.
    pub remaining: u64,
    /// Its tasks.
    pub total: u64,
    /// Its failed tasks: the job goes on only after a retry.
    pub failed: u64,
}

/// Where a ready task stands in the lease order, and its namespace's share
/// of the cluster's slots.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotWait {
    /// The namespace's weight.
    pub weight: u32,
    /// Its weighted share of the alive workers' slots, among the
    /// namespaces with ready work.
    pub fair_share_slots: f64,
    /// Ready tasks that lease before this one.
    pub tasks_ahead: u64,
}

impl Job {
    /// The unfinished upstream templates among `waiting_on`, in stage
    /// order (ties in graph order).
    pub fn upstream_waits(&self, waiting_on: &[String]) -> Vec<UpstreamWait> {
        let stages = self.stages();
        let mut waits: Vec<(u32, usize, UpstreamWait)> = self
            .templates
            .iter()
            .enumerate()
            .filter(|(_, up)| waiting_on.contains(&up.def.id))
            .map(|(i, up)| {
                let done = up.counts.succeeded + up.counts.skipped;
                let wait = UpstreamWait {
                    template: up.def.id.clone(),
                    remaining: up.def.count.saturating_sub(done),
                    total: up.def.count,
                    failed: up.counts.failed,
                };
                (stages[i], i, wait)
            })
            .collect();
        waits.sort_by_key(|(stage, index, _)| (*stage, *index));
        waits.into_iter().map(|(_, _, wait)| wait).collect()
    }
}

impl StateMachine {
    /// Workers that can take leases now.
    pub fn alive_workers(&self) -> usize {
        self.core
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
            .count()
    }

    /// Where the ready task `key` of `job` stands.
    pub fn slot_wait(&self, job: &Job, key: TaskKey) -> SlotWait {
        let weight_of = |ns: &str| {
            self.core
                .config
                .namespace_weights
                .get(ns)
                .copied()
                .unwrap_or(DEFAULT_NAMESPACE_WEIGHT)
                .max(1)
        };
        let mut namespaces: BTreeSet<&str> = self
            .idx
            .ready
            .in_order()
            .filter_map(|id| self.job(id))
            .map(|j| j.namespace.as_str())
            .collect();
        namespaces.insert(job.namespace.as_str());
        let weight = weight_of(&job.namespace);
        let total_weight: u64 = namespaces.iter().map(|ns| u64::from(weight_of(ns))).sum();
        let slots: u64 = self
            .core
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
            .map(|w| u64::from(w.slots))
            .sum();
        SlotWait {
            weight,
            fair_share_slots: slots as f64 * f64::from(weight) / (total_weight.max(1) as f64),
            tasks_ahead: self.tasks_ahead(job, key),
        }
    }

    /// Ready tasks that lease before `key`: those of jobs ahead in the
    /// lease order, then those of the same job in earlier templates or
    /// partitions.
    fn tasks_ahead(&self, job: &Job, key: TaskKey) -> u64 {
        let mut ahead = 0u64;
        for id in self.idx.ready.in_order() {
            if id == job.id {
                break;
            }
            ahead += self.job(id).map_or(0, |j| j.counts.ready);
        }
        for (t, template) in job.templates.iter().enumerate() {
            if (t as u32) < key.template {
                ahead += template.counts.ready;
            } else if t as u32 == key.template {
                let requeued_before = template.requeued.range(..key.partition).count() as u64;
                ahead += requeued_before;
                if !template.tasks.contains_key(&key.partition) {
                    ahead += template.requeued.len() as u64 - requeued_before
                        + key.partition.saturating_sub(template.cursor);
                }
            }
        }
        ahead
    }
}
