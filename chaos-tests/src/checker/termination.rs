//! Liveness: after the faults heal, every job reaches a terminal state
//! within the heal bound.

use crate::observation::Observation;

pub const NAME: &str = "every job ends after the heal";

pub fn check(o: &Observation) -> Vec<String> {
    o.unfinished_after_heal
        .iter()
        .map(|job| {
            let state = o
                .jobs
                .iter()
                .find(|j| j.id == *job)
                .map_or("unknown", |j| j.state.as_str());
            format!(
                "job {job} was still {state} {} s after the heal",
                o.heal_bound_s
            )
        })
        .collect()
}
