//! Running totals of what the applied log did since this process loaded its
//! state: jobs finished per namespace and final state, attempts ended per
//! namespace and outcome, and completions or reports fenced off by a stale
//! token. They feed Prometheus counters (throughput, failure rates).
//!
//! Not replicated and not part of a snapshot: every replica counts the
//! entries it applies, so the totals restart from zero with the process,
//! as Prometheus counters do, and the state digest never sees them.

use std::collections::BTreeMap;

use super::JobState;
use super::events::{EventKind, ExpiryReason};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttemptOutcome {
    /// Its completion was accepted.
    Succeeded,
    /// Its worker reused an identical earlier output.
    Skipped,
    /// Its worker reported a failure.
    Failed,
    /// Its lease ran out without a heartbeat.
    LeaseExpired,
    /// It ran past the task's timeout.
    TimedOut,
    /// A draining worker handed it back.
    Released,
}

impl AttemptOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Skipped => "skipped",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Released => "released",
        }
    }
}

/// The totals, per namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs that reached a terminal state, by state.
    pub jobs_finished: BTreeMap<String, BTreeMap<JobState, u64>>,
    /// Attempts that ended, by outcome.
    pub attempts: BTreeMap<String, BTreeMap<AttemptOutcome, u64>>,
    /// Requests fenced off by a stale token.
    pub stale_rejections: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one event of a job in `namespace`; `skipped` says whether a
    /// completion reused an earlier output.
    pub fn record(&mut self, namespace: &str, kind: &EventKind, skipped: bool) {
        let outcome = match kind {
            EventKind::Completed { .. } if skipped => AttemptOutcome::Skipped,
            EventKind::Completed { .. } => AttemptOutcome::Succeeded,
            EventKind::Failed { .. } => AttemptOutcome::Failed,
            EventKind::Expired {
                reason: ExpiryReason::Lease,
                ..
            } => AttemptOutcome::LeaseExpired,
            EventKind::Expired {
                reason: ExpiryReason::Timeout,
                ..
            } => AttemptOutcome::TimedOut,
            EventKind::Released { .. } => AttemptOutcome::Released,
            EventKind::Finished { state } => {
                *of(&mut self.jobs_finished, namespace)
                    .entry(*state)
                    .or_default() += 1;
                return;
            }
            EventKind::StaleRejected { .. } => {
                *of(&mut self.stale_rejections, namespace) += 1;
                return;
            }
            _ => return,
        };
        *of(&mut self.attempts, namespace)
            .entry(outcome)
            .or_default() += 1;
    }
}

/// The entry of `namespace`, allocating its name only the first time.
fn of<'a, V: Default>(map: &'a mut BTreeMap<String, V>, namespace: &str) -> &'a mut V {
    if !map.contains_key(namespace) {
        map.insert(namespace.to_owned(), V::default());
    }
    map.get_mut(namespace).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TaskKey;
    use crate::state::types::JobId;

    #[test]
    fn events_count_per_namespace_and_outcome() {
        let task = TaskKey {
            job: JobId(1),
            template: 0,
            partition: 0,
        };
        let mut t = Tally::default();
        let completed = EventKind::Completed {
            task,
            token: 1,
            worker: "w".into(),
            attempt: 1,
        };
        t.record("etl", &completed, false);
        t.record("etl", &completed, true);
        t.record("etl", &completed, false);
        t.record(
            "ml",
            &EventKind::Expired {
                task,
                token: 2,
                reason: ExpiryReason::Timeout,
                retry_at_ms: None,
            },
            false,
        );
        t.record(
            "ml",
            &EventKind::Finished {
                state: JobState::Failed,
            },
            false,
        );
        t.record("ml", &EventKind::Submitted, false);
        assert_eq!(t.attempts["etl"][&AttemptOutcome::Succeeded], 2);
        assert_eq!(t.attempts["etl"][&AttemptOutcome::Skipped], 1);
        assert_eq!(t.attempts["ml"][&AttemptOutcome::TimedOut], 1);
        assert_eq!(t.jobs_finished["ml"][&JobState::Failed], 1);
        assert!(t.stale_rejections.is_empty());
    }
}
