//! Fencing: a completion is accepted only from the live lease, that is the
//! task's latest grant, before that lease ended.

use crate::observation::{EventType, Observation};

use super::{ends_lease, events_by_task, is_completion};

pub const NAME: &str = "no completion accepted from a stale token";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    for (task, events) in events_by_task(o) {
        let mut live: Option<u64> = None;
        for e in events {
            if is_completion(e) {
                match live {
                    Some(t) if t == e.token => {}
                    Some(t) => out.push(format!(
                        "{task} accepted token {} from {} while token {t} held the lease (event {})",
                        e.token, e.worker, e.seq
                    )),
                    None => out.push(format!(
                        "{task} accepted token {} from {} with no live lease (event {})",
                        e.token, e.worker, e.seq
                    )),
                }
            }
            if e.kind == EventType::Leased {
                live = Some(e.token);
            } else if live.is_some_and(|t| ends_lease(e, t)) {
                live = None;
            }
        }
    }
    out
}
