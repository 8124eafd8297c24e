//! The cluster's record agrees with what really ran: every accepted
//! completion is backed by a probe attempt with that token that finished
//! ok, and every probe attempt ran under a token the cluster granted for
//! that task.

use std::collections::BTreeSet;

use crate::observation::{EventType, Observation};

use super::is_completion;

pub const NAME: &str = "accepted outputs were really produced by granted attempts";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    let ran_ok: BTreeSet<(&str, u64)> = o
        .probes
        .iter()
        .filter(|p| p.event == "ok")
        .map(|p| (p.task_id.as_str(), p.token))
        .collect();
    let mut granted: BTreeSet<(&str, u64)> = BTreeSet::new();
    for job in o.jobs.iter().filter(|j| j.events_complete) {
        for e in job.task_events() {
            if e.kind == EventType::Leased {
                granted.insert((&e.task_id, e.token));
            }
            if is_completion(e) && !ran_ok.contains(&(e.task_id.as_str(), e.token)) {
                out.push(format!(
                    "{} accepted token {} but no probe attempt with it finished ok",
                    e.task_id, e.token
                ));
            }
        }
    }
    let complete: BTreeSet<&str> = o
        .jobs
        .iter()
        .filter(|j| j.events_complete)
        .map(|j| j.id.as_str())
        .collect();
    for p in o.probes.iter().filter(|p| p.event == "start") {
        if complete.contains(p.job_id.as_str()) && !granted.contains(&(p.task_id.as_str(), p.token))
        {
            out.push(format!(
                "{} ran under token {} on {}, which the cluster never granted for it",
                p.task_id, p.token, p.worker_id
            ));
        }
    }
    out
}
