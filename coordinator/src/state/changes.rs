//! Which records an apply changed, so storage writes only those.
//!
//! Derived bookkeeping, like the indexes: never serialised, and reset by
//! whoever persists ([`super::StateMachine::take_changes`]). A record missed
//! here would be lost on restart; the storage round-trip property test
//! reloads after random histories and compares snapshots to catch that.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{JobId, ScheduleId, TaskKey, WorkerId};

/// Records changed since the last [`super::StateMachine::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Jobs whose header (everything but task records, outputs and events)
    /// changed, or that were removed.
    pub jobs: BTreeSet<JobId>,
    /// Task records written or removed.
    pub tasks: BTreeSet<TaskKey>,
    /// Outputs written.
    pub outputs: BTreeSet<TaskKey>,
    /// Task histories written.
    pub history: BTreeSet<TaskKey>,
    /// Per job, the first event sequence number appended.
    pub events_from: BTreeMap<JobId, u64>,
    /// Workers written or removed.
    pub workers: BTreeSet<WorkerId>,
    /// Schedules written.
    pub schedules: BTreeSet<ScheduleId>,
    /// Idempotency entries written or removed.
    pub idempotency: BTreeSet<(String, String)>,
    /// Tokens changed (they are written together: there are few, and they
    /// change rarely).
    pub security: bool,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// Adds `later`'s records, so one write covers both change sets.
    pub fn absorb(&mut self, later: Changes) {
        self.jobs.extend(later.jobs);
        self.tasks.extend(later.tasks);
        self.outputs.extend(later.outputs);
        self.history.extend(later.history);
        for (job, from) in later.events_from {
            let first = self.events_from.entry(job).or_insert(from);
            *first = (*first).min(from);
        }
        self.workers.extend(later.workers);
        self.schedules.extend(later.schedules);
        self.idempotency.extend(later.idempotency);
        self.security |= later.security;
    }

    /// Records named, a measure of how big the next write is.
    pub fn len(&self) -> usize {
        self.jobs.len()
            + self.tasks.len()
            + self.outputs.len()
            + self.history.len()
            + self.events_from.len()
            + self.workers.len()
            + self.schedules.len()
            + self.idempotency.len()
            + usize::from(self.security)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_keeps_every_record_and_the_earliest_event() {
        let key = |p| TaskKey {
            job: JobId(1),
            template: 0,
            partition: p,
        };
        let mut a = Changes::default();
        a.tasks.insert(key(1));
        a.events_from.insert(JobId(1), 5);
        let mut b = Changes::default();
        b.tasks.insert(key(2));
        b.events_from.insert(JobId(1), 9);
        b.events_from.insert(JobId(2), 3);
        b.workers.insert("w".into());
        a.absorb(b);
        assert_eq!(a.tasks, [key(1), key(2)].into());
        assert_eq!(a.events_from, [(JobId(1), 5), (JobId(2), 3)].into());
        assert_eq!(a.len(), 5);
    }
}
