//! Liveness: after the faults heal, the cluster recovers without any
//! process having panicked, and every job reaches a terminal state within
//! the heal bound.

use crate::observation::Observation;

pub const NAME: &str = "the cluster recovers and every job ends after the heal";

pub fn check(o: &Observation) -> Vec<String> {
    let failure = (!o.failure.is_empty())
        .then(|| format!("the cluster did not recover after the heal: {}", o.failure));
    failure
        .into_iter()
        .chain(o.crashes.iter().map(|c| format!("a process panicked: {c}")))
        .chain(o.unfinished_after_heal.iter().map(|job| {
            let state = o
                .jobs
                .iter()
                .find(|j| j.id == *job)
                .map_or("unknown", |j| j.state.as_str());
            format!(
                "job {job} was still {state} {} s after the heal",
                o.heal_bound_s
            )
        }))
        .collect()
}
