//! The passage of time. The leader proposes a `Tick` regularly; applying it
//! expires leases and timeouts, ends backoff waits, fires schedules,
//! collects old jobs and marks silent workers lost. Each kind of work is
//! bounded per tick ([`TICK_WORK_MAX`]).

use super::command::TickReport;
use super::events::ExpiryReason;
use super::lease::AttemptEnd;
use super::types::{JobId, ScheduleId, TaskKey, TaskState};
use super::workers::WorkerState;
use super::{StateMachine, TICK_WORK_MAX};

/// The smallest task key, for range bounds.
const KEY_MIN: TaskKey = TaskKey {
    job: JobId(0),
    template: 0,
    partition: 0,
};

impl StateMachine {
    pub(super) fn tick(&mut self) -> TickReport {
        let now = self.core.now_ms;
        let mut report = TickReport::default();

        let expired: Vec<(i64, TaskKey)> = self
            .idx
            .deadlines
            .range(..(now.saturating_add(1), KEY_MIN))
            .take(TICK_WORK_MAX)
            .copied()
            .collect();
        for (_, key) in expired {
            let Some(record) = self
                .core
                .jobs
                .get(&key.job)
                .and_then(|j| j.templates.get(key.template as usize))
                .and_then(|t| t.tasks.get(&key.partition))
            else {
                continue;
            };
            let timed_out = record.timeout_deadline_ms <= now
                && record.timeout_deadline_ms <= record.lease_deadline_ms;
            let (reason, message) = if timed_out {
                report.timed_out += 1;
                (
                    ExpiryReason::Timeout,
                    "the attempt ran past its timeout".to_owned(),
                )
            } else {
                report.expired += 1;
                (
                    ExpiryReason::Lease,
                    format!(
                        "no heartbeat from {} within the lease TTL",
                        record.worker.as_deref().unwrap_or("?")
                    ),
                )
            };
            self.end_attempt(key, AttemptEnd::Expired(reason), &message);
        }

        let ready: Vec<(i64, TaskKey)> = self
            .idx
            .backoff
            .range(..(now.saturating_add(1), KEY_MIN))
            .take(TICK_WORK_MAX)
            .copied()
            .collect();
        for entry in ready {
            self.idx.backoff.remove(&entry);
            let key = entry.1;
            let Some(job) = self.core.jobs.get_mut(&key.job) else {
                continue;
            };
            let template = &mut job.templates[key.template as usize];
            let Some(record) = template.tasks.get_mut(&key.partition) else {
                continue;
            };
            if record.state != TaskState::Backoff {
                continue;
            }
            record.state = TaskState::Ready;
            template.requeued.insert(key.partition);
            job.shift(key.template, TaskState::Backoff, TaskState::Ready, 1);
            self.touch_task(key);
            self.refresh_template(key.job, key.template);
            self.refresh_job(key.job);
            report.requeued += 1;
        }

        let due: Vec<ScheduleId> = self
            .idx
            .schedule_due
            .range(..(now.saturating_add(1), ScheduleId(0)))
            .take(TICK_WORK_MAX)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            report.fired += self.fire_schedule(id);
        }

        let horizon = now.saturating_sub(self.core.config.retention_ms as i64);
        let old: Vec<JobId> = self
            .idx
            .finished
            .range(..(horizon.saturating_add(1), JobId(0)))
            .take(TICK_WORK_MAX)
            .map(|(_, id)| *id)
            .collect();
        for id in old {
            self.collect(id);
            report.collected += 1;
        }

        let timeout = self.core.config.worker_timeout_ms as i64;
        for (id, worker) in self.core.workers.iter_mut() {
            if worker.state != WorkerState::Lost && worker.last_seen_ms + timeout <= now {
                worker.state = WorkerState::Lost;
                self.changes.workers.insert(id.clone());
                report.workers_lost += 1;
            }
        }
        report
    }
}
