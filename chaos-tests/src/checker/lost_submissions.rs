//! No acknowledged submission is lost: every job id a client heard "ok"
//! for exists in the cluster at the end.

use std::collections::BTreeSet;

use crate::history::OpType;
use crate::observation::Observation;

pub const NAME: &str = "no acknowledged submission lost";

pub fn check(o: &Observation) -> Vec<String> {
    let held: BTreeSet<&str> = o.jobs.iter().map(|j| j.id.as_str()).collect();
    o.ops
        .iter()
        .filter(|op| op.f == "submit" && op.kind == OpType::Ok && !held.contains(op.job.as_str()))
        .map(|op| {
            format!(
                "{} was told job {} was created (key {}) at {} ms, but the cluster does not hold it",
                op.process,
                op.job,
                op.key,
                op.time_ns / 1_000_000
            )
        })
        .collect()
}
