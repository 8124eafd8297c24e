//! "Why is this task pending?" answered from the state, in the order a
//! user would check: the task's own state, its dependencies, its retry wait,
//! the job's and template's caps, placement, and finally its turn.

use serde::{Deserialize, Serialize};

use super::StateMachine;
use super::command::Rejection;
use super::types::{TaskKey, TaskState};
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
