//! The record is whole: no job's audit trail was pruned, so the other
//! checkers saw every grant and completion. A run too big for the trail's
//! retention says so instead of passing on partial evidence.

use crate::observation::Observation;

pub const NAME: &str = "every job's audit trail is complete";

pub fn check(o: &Observation) -> Vec<String> {
    o.jobs
        .iter()
        .filter(|j| !j.events_complete)
        .map(|j| format!("job {} lost old events; make the run's jobs smaller", j.id))
        .collect()
}
