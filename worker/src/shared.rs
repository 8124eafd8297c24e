//! What the lease loop, the attempts, the heartbeats and the drain share:
//! the session, the held tasks, the slots and the counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_net::Coordinators;
use tokio::sync::{Notify, Semaphore, watch};

use crate::config::{WorkerConfig, WorkerReport};
use crate::dataset::location::Location;
use crate::executors::{Executor, Progress};
use crate::metrics::AttemptOutcome;
use crate::prefetch::Prefetch;
use crate::reporter::Reporter;

/// What the cluster told the worker when it registered.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The session every lease and heartbeat names.
    pub epoch: u64,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// Most tasks one lease call grants, and most reports one batch holds.
    pub lease_batch_max: usize,
    /// Longest long poll the cluster honours.
    pub lease_wait_max: Duration,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            epoch: 0,
            heartbeat_interval: Duration::from_secs(5),
            lease_batch_max: 256,
            lease_wait_max: Duration::from_secs(10),
        }
    }
}

/// A task held from its grant until its report is answered.
pub(crate) struct Held {
    /// Its lease's token.
    pub(crate) token: u64,
    /// Tells the attempt to stop (lease lost, job cancelled, drain).
    pub(crate) cancel: watch::Sender<bool>,
    /// What its heartbeats say of its progress.
    pub(crate) progress: Progress,
    /// Set once it holds an execution slot: a drain hands back at once the
    /// tasks still waiting for one.
    pub(crate) started: Arc<AtomicBool>,
}

/// What the lease loop, the attempts, the heartbeats and the drain share.
pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) conn: Coordinators,
    /// Every held task, by id.
    pub(crate) held: Mutex<BTreeMap<String, Held>>,
    /// Held tasks that have not finished running (waiting for a slot or
    /// running): what lease-ahead counts against the slots.
    pub(crate) unfinished: AtomicUsize,
    /// One permit per slot; an attempt runs while it holds one.
    pub(crate) slots: Arc<Semaphore>,
    /// Signalled when an attempt stops running or its report is answered.
    pub(crate) finished: Notify,
    pub(crate) report: Mutex<WorkerReport>,
    pub(crate) executors: BTreeMap<&'static str, Arc<dyn Executor>>,
    /// The cluster's task log store, as the last registration named it.
    pub(crate) task_logs: Mutex<Option<Location>>,
    /// The session every lease and heartbeat names; replaced when the
    /// worker registers again.
    pub(crate) session: Mutex<Session>,
    /// Batches the reports of ended attempts.
    pub(crate) reporter: Reporter,
    /// The lease-ahead depth.
    pub(crate) prefetch: Mutex<Prefetch>,
    /// Set when the cluster asked this worker to drain.
    pub(crate) draining: AtomicBool,
    /// Lease calls that failed in a row (no leader reachable): how long
    /// the next waits.
    pub(crate) lease_failures: AtomicU32,
}

impl Shared {
    /// Follows the task log store a registration named; empty keeps no
    /// logs.
    pub(crate) fn set_task_log_store(&self, url: &str) {
        let store = if url.is_empty() {
            None
        } else {
            match Location::parse(url) {
                Ok(store) => Some(store),
                Err(e) => {
                    tracing::warn!(url, error = %e, "cannot use the cluster's task log store; attempts' logs are not stored");
                    None
                }
            }
        };
        if let Ok(mut current) = self.task_logs.lock() {
            *current = store;
        }
    }

    pub(crate) fn task_log_store(&self) -> Option<Location> {
        self.task_logs.lock().ok().and_then(|s| s.clone())
    }

    /// Whether attempts' logs are stored, and so worth keeping.
    pub(crate) fn keeps_task_logs(&self) -> bool {
        self.task_logs.lock().is_ok_and(|s| s.is_some())
    }

    pub(crate) fn held_count(&self) -> usize {
        self.held.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// The current session.
    pub(crate) fn session(&self) -> Session {
        self.session.lock().map(|s| *s).unwrap_or_default()
    }

    /// Takes a task out of `held`; false when it was no longer there (a
    /// drain handed it back).
    pub(crate) fn forget(&self, task_id: &str) -> bool {
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        let was_held = held.remove(task_id).is_some();
        self.config.metrics.set_running(held.len());
        was_held
    }

    /// Counts attempts that ended, in the report and the metrics alike.
    pub(crate) fn count_finished(&self, outcome: AttemptOutcome, n: u64) {
        if let Ok(mut r) = self.report.lock() {
            let field = match outcome {
                AttemptOutcome::Completed => &mut r.completed,
                AttemptOutcome::Failed => &mut r.failed,
                AttemptOutcome::Stopped => &mut r.stopped,
                AttemptOutcome::Released => &mut r.released,
            };
            *field += n;
        }
        self.config.metrics.attempts_finished(outcome, n);
    }

    /// Tasks to ask for now: the slots plus the lease-ahead depth, less
    /// what is held unfinished and what calls in flight already ask for.
    pub(crate) fn wanted(&self, asked: usize) -> usize {
        let slots = self.config.slots.max(1) as usize;
        let depth = self.prefetch.lock().map_or(0, |p| p.depth(slots));
        (slots + depth).saturating_sub(self.unfinished.load(Ordering::Acquire) + asked)
    }

    /// Marks one held task as done running, freeing its place for the
    /// leaser.
    pub(crate) fn unfinished_done(&self) {
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
        self.finished.notify_one();
    }
}
