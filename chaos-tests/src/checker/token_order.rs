//! Fencing tokens strictly increase per task, in grant order, and no token
//! is ever granted twice.

use std::collections::BTreeMap;

use crate::observation::{EventType, Observation};

use super::events_by_task;

pub const NAME: &str = "fencing tokens strictly increase per task";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for (task, events) in events_by_task(o) {
        let mut last = 0u64;
        for e in events.iter().filter(|e| e.kind == EventType::Leased) {
            if e.token <= last {
                out.push(format!(
                    "{task} was granted token {} after token {last} (event {})",
                    e.token, e.seq
                ));
            }
            last = last.max(e.token);
            if let Some(other) = owner.insert(e.token, task) {
                out.push(format!(
                    "token {} was granted to both {other} and {task}",
                    e.token
                ));
            }
        }
    }
    out
}
