//! A task is never granted while an earlier grant of it is still live: the
//! trail must show the earlier lease end (completion, failure, expiry or
//! release) before the next grant.

use crate::observation::{EventType, Observation};

use super::{ends_lease, events_by_task};

pub const NAME: &str = "no task leased twice at once";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    for (task, events) in events_by_task(o) {
        let mut live: Option<(u64, &str)> = None;
        for e in events {
            if e.kind == EventType::Leased {
                if let Some((token, worker)) = live {
                    out.push(format!(
                        "{task} was granted to {} (token {}, event {}) while token {token} of {worker} was live",
                        e.worker, e.token, e.seq
                    ));
                }
                live = Some((e.token, &e.worker));
            } else if live.is_some_and(|(t, _)| ends_lease(e, t)) {
                live = None;
            }
        }
    }
    out
}
