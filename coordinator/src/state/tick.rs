//! The passage of time. The leader proposes a `Tick` regularly; applying it
//! ends attempts past their timeout, ends backoff waits, fires schedules and
//! collects old jobs. Each kind of work is bounded per tick
//! ([`TICK_WORK_MAX`]). Leases and worker sessions are not timed here: the
//! leader times them on its own monotonic clock and proposes their ends
//! ([`Command::ExpireLeases`](super::Command::ExpireLeases),
//! [`Command::WorkersLost`](super::Command::WorkersLost)), so no wall clock
//! can hasten or stall them.

use super::events::ExpiryReason;
use super::lease::AttemptEnd;
use super::outcome::TickReport;
use super::types::{JobId, ScheduleId, TaskKey, TaskState};
use super::{StateMachine, TICK_WORK_MAX};

const KEY_MIN: TaskKey = TaskKey::MIN;

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
        for (at, key) in expired {
            let live = self
                .core
                .jobs
                .get(&key.job)
                .and_then(|j| j.templates.get(key.template as usize))
                .and_then(|t| t.tasks.get(&key.partition))
                .is_some_and(|r| r.state == TaskState::Leased);
            if !live {
                self.idx.deadlines.remove(&(at, key));
                continue;
            }
            report.timed_out += 1;
            self.end_attempt(
                key,
                AttemptEnd::Expired(ExpiryReason::Timeout),
                "the attempt ran past its timeout",
            );
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

        report
    }
}
