//! The checkers: one file per invariant, each a pure function from an
//! [`Observation`] to the violations it finds. A violation names the
//! invariant and says exactly which job, task, token or operation broke it,
//! so a failing seed can be understood from the report alone.

mod dependencies;
mod exclusive_lease;
mod idempotency;
mod lost_submissions;
mod replicas;
mod single_completion;
mod stale_completion;
mod termination;
mod token_order;
mod trail;
mod witness;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::observation::{EventRecord, EventType, Observation};

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: String,
    /// What exactly.
    pub detail: String,
}

/// What the checkers found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every invariant checked, in order.
    pub checked: Vec<String>,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violations of one invariant.
    pub fn of(&self, invariant: &str) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.invariant == invariant)
            .collect()
    }
}

/// An invariant: a name and its check.
type Check = (&'static str, fn(&Observation) -> Vec<String>);

/// Every invariant, in the order they are reported.
pub const INVARIANTS: &[Check] = &[
    (lost_submissions::NAME, lost_submissions::check),
    (idempotency::NAME, idempotency::check),
    (single_completion::NAME, single_completion::check),
    (stale_completion::NAME, stale_completion::check),
    (dependencies::NAME, dependencies::check),
    (token_order::NAME, token_order::check),
    (exclusive_lease::NAME, exclusive_lease::check),
    (witness::NAME, witness::check),
    (termination::NAME, termination::check),
    (replicas::NAME, replicas::check),
    (trail::NAME, trail::check),
];

/// Runs every checker.
pub fn check(observation: &Observation) -> Report {
    let mut report = Report::default();
    for (name, check) in INVARIANTS {
        report.checked.push((*name).to_owned());
        // A broken run can break one invariant many times over; the first
        // few say what happened.
        for detail in check(observation)
            .into_iter()
            .take(VIOLATIONS_PER_INVARIANT_MAX)
        {
            report.violations.push(Violation {
                invariant: (*name).to_owned(),
                detail,
            });
        }
    }
    report
}

/// Violations kept per invariant.
const VIOLATIONS_PER_INVARIANT_MAX: usize = 20;

/// Task events grouped by task id, each list in trail order.
fn events_by_task(observation: &Observation) -> BTreeMap<&str, Vec<&EventRecord>> {
    let mut by_task: BTreeMap<&str, Vec<&EventRecord>> = BTreeMap::new();
    for job in &observation.jobs {
        for event in job.task_events() {
            by_task.entry(&event.task_id).or_default().push(event);
        }
    }
    by_task
}

/// Whether an event ends the lease with `token`.
fn ends_lease(event: &EventRecord, token: u64) -> bool {
    event.token == token
        && matches!(
            event.kind,
            EventType::Succeeded
                | EventType::Skipped
                | EventType::Failed
                | EventType::Expired
                | EventType::TimedOut
                | EventType::Released
        )
}

/// Whether an event is an accepted completion.
fn is_completion(event: &EventRecord) -> bool {
    matches!(event.kind, EventType::Succeeded | EventType::Skipped)
}

#[cfg(test)]
mod tests;
