//! Exactly-once commit: a task has at most one accepted completion, and it
//! carries the highest token the task was ever granted (so no newer attempt
//! was still running when an older one was committed).

use crate::observation::{EventType, Observation};

use super::{events_by_task, is_completion};

pub const NAME: &str = "at most one accepted completion per task, with its highest token";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    for (task, events) in events_by_task(o) {
        let completions: Vec<u64> = events
            .iter()
            .filter(|e| is_completion(e))
            .map(|e| e.token)
            .collect();
        if completions.len() > 1 {
            out.push(format!(
                "{task} has {} accepted completions, tokens {completions:?}",
                completions.len()
            ));
        }
        let highest = events
            .iter()
            .filter(|e| e.kind == EventType::Leased)
            .map(|e| e.token)
            .chain(
                o.probes
                    .iter()
                    .filter(|p| p.task_id == task)
                    .map(|p| p.token),
            )
            .max();
        if let (Some(&accepted), Some(highest)) = (completions.first(), highest)
            && accepted != highest
        {
            out.push(format!(
                "{task} accepted the completion of token {accepted}, but token {highest} was granted"
            ));
        }
    }
    out
}
