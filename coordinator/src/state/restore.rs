//! Preparing a backed-up state to seed a new cluster.
//!
//! A backup is a point in the old cluster's history. The old cluster may
//! have gone on after it: granted more leases, with higher fencing tokens,
//! whose workers may still be running and may report to the new cluster.
//! Two rules keep the new cluster safe from them:
//!
//! - every lease live in the backup is handed back (the task is ready again
//!   at once and the attempt is not counted, as when a draining worker
//!   releases it), because the new cluster cannot know whether its holder
//!   is still alive or already finished it elsewhere;
//! - the fencing-token and worker-epoch counters jump by
//!   [`RESTORE_COUNTER_GAP`], so no token the old cluster handed out after
//!   the backup can equal one the new cluster hands out, and an attempt's
//!   output prefix (which names its token) is never shared between them.
//!
//! The preparation is a pure function of the backup, so every node of the
//! new cluster that restores the same file starts from byte-identical state.

use super::StateMachine;
use super::events::EventKind;
use super::types::TaskKey;

/// How far the fencing-token and worker-epoch counters jump on restore:
/// 2^40 is more tokens than a cluster granting 10,000 leases a second hands
/// out in three years, and leaves room for 2^24 restores before the u64
/// counters could wrap.
pub const RESTORE_COUNTER_GAP: u64 = 1 << 40;

/// What restoring changed, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreReport {
    /// Leases handed back.
    pub released: u64,
    /// Jobs in the state (finished ones included).
    pub jobs: usize,
    /// Jobs still pending or running.
    pub live_jobs: usize,
    /// Schedules.
    pub schedules: usize,
    /// Workers known; each registers again when it reaches the new cluster.
    pub workers: usize,
    /// The first fencing token the new cluster will hand out.
    pub next_token: u64,
}

impl StateMachine {
    /// Makes a restored backup safe to run as a new cluster (see the module
    /// docs). Deterministic: equal states give equal results.
    pub fn prepare_for_restore(&mut self) -> RestoreReport {
        let leased: Vec<(TaskKey, u64)> = self
            .idx
            .worker_tasks
            .values()
            .flatten()
            .filter_map(|key| {
                let job = self.core.jobs.get(&key.job)?;
                let record = job
                    .templates
                    .get(key.template as usize)?
                    .tasks
                    .get(&key.partition)?;
                Some((*key, record.token))
            })
            .collect();
        for &(key, token) in &leased {
            self.requeue_leased(key);
            self.event(key.job, EventKind::Released { task: key, token });
        }
        self.core.next_token = self.core.next_token.saturating_add(RESTORE_COUNTER_GAP);
        // The new cluster's ids must differ from those the old one gave
        // after the backup.
        self.reseed_ids();
        self.core.next_epoch = self.core.next_epoch.saturating_add(RESTORE_COUNTER_GAP);
        RestoreReport {
            released: leased.len() as u64,
            jobs: self.core.jobs.len(),
            live_jobs: self
                .core
                .jobs
                .values()
                .filter(|job| !job.state.is_terminal())
                .count(),
            schedules: self.core.schedules.len(),
            workers: self.core.workers.len(),
            next_token: self.core.next_token,
        }
    }
}
