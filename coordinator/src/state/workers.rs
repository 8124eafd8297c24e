//! Workers: registration, draining and leaving.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::events::EventKind;
use super::job::TemplateDef;
use super::outcome::{Outcome, Rejection};
use super::types::WorkerId;
use super::{Applied, StateMachine};

/// Longest worker id, label count and kind list accepted.
const WORKER_ID_MAX: usize = 256;
const WORKER_LABELS_MAX: usize = 64;
const WORKER_SLOTS_MAX: u32 = 4096;

/// A worker's lifecycle as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Leasing and heartbeating.
    Alive,
    /// Told to stop leasing; finishing or releasing its tasks.
    Draining,
    /// Not heard from within the worker timeout (its leases expire on
    /// their own TTL).
    Lost,
}

impl WorkerState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Draining => "draining",
            WorkerState::Lost => "lost",
        }
    }
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Tasks it runs at once.
    pub slots: u32,
    /// Labels matched against task constraints.
    pub labels: BTreeMap<String, String>,
    /// Kinds it runs; empty means every kind except `command`.
    pub kinds: BTreeSet<String>,
    /// Registration epoch.
    pub epoch: u64,
    /// Lifecycle.
    pub state: WorkerState,
    /// Last register, lease or heartbeat.
    pub last_seen_ms: i64,
    /// When it registered.
    pub registered_ms: i64,
}

impl Worker {
    /// Whether this worker may run tasks of `template`: it has every
    /// constraint label, and the kind is one it runs. `command` runs only on
    /// workers that list it, because it executes arbitrary programs.
    pub fn can_run(&self, template: &TemplateDef) -> bool {
        let kind_ok = if self.kinds.is_empty() {
            template.kind != "command"
        } else {
            self.kinds.contains(&template.kind)
        };
        kind_ok
            && template
                .constraints
                .iter()
                .all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

impl StateMachine {
    pub(super) fn register_worker(
        &mut self,
        worker_id: &WorkerId,
        slots: u32,
        labels: &BTreeMap<String, String>,
        kinds: &[String],
    ) -> Applied {
        if worker_id.is_empty() || worker_id.len() > WORKER_ID_MAX {
            return Err(Rejection::TooLarge(format!(
                "worker ids are 1 to {WORKER_ID_MAX} bytes"
            )));
        }
        if labels.len() > WORKER_LABELS_MAX || kinds.len() > 64 {
            return Err(Rejection::TooLarge(format!(
                "a worker has at most {WORKER_LABELS_MAX} labels and 64 kinds"
            )));
        }
        let now = self.core.now_ms;
        let epoch = self.core.next_epoch;
        self.core.next_epoch += 1;
        let registered_ms = self
            .core
            .workers
            .get(worker_id)
            .map_or(now, |w| w.registered_ms);
        self.touch_worker(worker_id);
        self.core.workers.insert(
            worker_id.clone(),
            Worker {
                slots: slots.clamp(1, WORKER_SLOTS_MAX),
                labels: labels.clone(),
                kinds: kinds.iter().cloned().collect(),
                epoch,
                state: WorkerState::Alive,
                last_seen_ms: now,
                registered_ms,
            },
        );
        Ok(Outcome::Registered {
            epoch,
            lease_ttl_ms: self.core.config.lease_ttl_ms,
            heartbeat_interval_ms: self.core.config.heartbeat_interval_ms,
        })
    }

    /// Declares lost the sessions the leader heard nothing from within the
    /// worker timeout, each only if it is still the worker's current one.
    pub(super) fn workers_lost(&mut self, workers: &[(WorkerId, u64)]) -> Applied {
        if workers.len() > super::TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a loss names at most {} workers",
                super::TASKS_PER_REQUEST_MAX
            )));
        }
        for (id, epoch) in workers {
            if let Some(w) = self.core.workers.get_mut(id)
                && w.epoch == *epoch
                && w.state != WorkerState::Lost
            {
                w.state = WorkerState::Lost;
                self.touch_worker(id);
            }
        }
        Ok(Outcome::Done)
    }

    pub(super) fn deregister_worker(&mut self, worker_id: &WorkerId) -> Applied {
        if self.core.workers.remove(worker_id).is_none() {
            return Err(Rejection::UnknownWorker(worker_id.clone()));
        }
        self.touch_worker(worker_id);
        // A worker that says goodbye hands its tasks back: they are ready at
        // once and the attempt does not count.
        let held: Vec<_> = self
            .idx
            .worker_tasks
            .get(worker_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let released = held.len() as u32;
        for key in held {
            let token = self.core.jobs.get(&key.job).and_then(|job| {
                let template = job.templates.get(key.template as usize)?;
                Some(template.tasks.get(&key.partition)?.token)
            });
            self.requeue_leased(key);
            // The audit trail shows every lease's end, so a later grant of
            // the task never looks like a second live lease.
            if let Some(token) = token {
                self.event(key.job, EventKind::Released { task: key, token });
            }
        }
        Ok(Outcome::Released {
            released,
            not_held: Vec::new(),
        })
    }

    pub(super) fn drain_worker(&mut self, worker_id: &WorkerId) -> Applied {
        let worker = self
            .core
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| Rejection::UnknownWorker(worker_id.clone()))?;
        worker.state = WorkerState::Draining;
        self.touch_worker(worker_id);
        Ok(Outcome::Done)
    }
}
