//! Submissions with the same idempotency key map to one job: every "ok"
//! for a key names the same job, and the cluster holds at most one job
//! made from that key (the workload names each job after its key, so even
//! submissions whose outcome the client never learned are covered).

use std::collections::BTreeMap;

use crate::history::OpType;
use crate::observation::Observation;

pub const NAME: &str = "one job per idempotency key";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    let mut acked: BTreeMap<&str, &str> = BTreeMap::new();
    for op in o
        .ops
        .iter()
        .filter(|op| op.f == "submit" && op.kind == OpType::Ok)
    {
        match acked.get(op.key.as_str()) {
            Some(first) if *first != op.job => out.push(format!(
                "key {} was acknowledged as job {first} and as job {}",
                op.key, op.job
            )),
            _ => {
                acked.insert(&op.key, &op.job);
            }
        }
    }
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for job in &o.jobs {
        by_name.entry(&job.name).or_default().push(&job.id);
    }
    for (name, ids) in by_name {
        if ids.len() > 1 {
            out.push(format!(
                "{} jobs were made from key {name}: {ids:?}",
                ids.len()
            ));
        }
    }
    out
}
