//! GetTaskLog: which attempt a request means, read from the replicated
//! state, and its log, read from the cluster's task log store.
//!
//! The attempt is found by its grant's fencing token (attempt numbers start
//! again after a retry, tokens never repeat): in the job's events, whose
//! `Leased` entries name the attempt, token and worker, or failing that
//! (events are pruned) in the task's record. Its log lives at a key derived
//! from its output prefix, so nothing about logs is replicated.

use std::sync::Arc;

use drover_proto::v1::{GetTaskLogRequest, GetTaskLogResponse};
use tonic::Status;

use crate::state::attempt::attempt_prefix;
use crate::state::events::{EventKind, ExpiryReason};
use crate::state::{StateMachine, TaskKey, TaskState};
use crate::task_logs::TaskLogStore;

/// Bytes of log text one answer carries at most, and by default. Workers
/// store at most about 1 MiB per attempt, so this is the whole log.
pub const LOG_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// One attempt of a task, as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRef {
    /// The task.
    pub task: TaskKey,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Its grant's fencing token.
    pub token: u64,
    /// The worker it was granted to; empty when the state no longer says.
    pub worker: String,
    /// It still holds its lease.
    pub running: bool,
    /// Its lease ran out without a heartbeat: its worker stopped answering
    /// while it ran, so its log ends at the worker's last upload.
    pub lease_lapsed: bool,
    /// The worker's state now: `alive`, `draining`, `lost` or `gone`.
    pub worker_state: &'static str,
}

/// The attempt of `key` granted `token`, or its latest attempt when
/// `token` is 0.
pub fn find_attempt(sm: &StateMachine, key: TaskKey, token: u64) -> Result<AttemptRef, Status> {
    let job = sm
        .job(key.job)
        .ok_or_else(|| Status::not_found(format!("job {} does not exist", key.job)))?;
    let template = job
        .templates
        .get(key.template as usize)
        .filter(|t| key.partition < t.def.count)
        .ok_or_else(|| Status::not_found(format!("task {key} does not exist")))?;
    let record = template.tasks.get(&key.partition);
    let leased = job.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Leased {
            task,
            worker,
            token: granted,
            attempt,
        } if *task == key && (token == 0 || *granted == token) => {
            Some((*attempt, *granted, worker.clone()))
        }
        _ => None,
    });
    let (attempt, token, worker) = match (leased, record) {
        (Some(found), _) => found,
        // The lease's event was pruned; the record still knows the latest
        // grant.
        (None, Some(r)) if r.token != 0 && (token == 0 || token == r.token) => {
            (r.attempt, r.token, r.worker.clone().unwrap_or_default())
        }
        (None, _) if token == 0 => {
            return Err(Status::not_found(format!(
                "task {key} has not run yet, so it has no log"
            )));
        }
        (None, _) => {
            return Err(Status::not_found(format!(
                "task {key} had no attempt granted token {token}, or its events were pruned"
            )));
        }
    };
    let running = record.is_some_and(|r| r.state == TaskState::Leased && r.token == token);
    let lease_lapsed = job.events.iter().any(|e| {
        matches!(&e.kind, EventKind::Expired { task, token: t, reason: ExpiryReason::Lease, .. }
            if *task == key && *t == token)
    });
    let worker_state = sm
        .core()
        .workers
        .get(&worker)
        .map_or("gone", |w| w.state.as_str());
    Ok(AttemptRef {
        task: key,
        attempt,
        token,
        worker,
        running,
        lease_lapsed,
        worker_state,
    })
}

/// The answer for `found`: its log from `store`, or why there is none.
pub async fn answer(
    found: AttemptRef,
    request: &GetTaskLogRequest,
    store: Option<&Arc<dyn TaskLogStore>>,
) -> GetTaskLogResponse {
    let key = drover_proto::task_log_key(&attempt_prefix(found.task, found.attempt, found.token));
    let mut response = GetTaskLogResponse {
        task_id: request.task_id.clone(),
        attempt: found.attempt,
        fencing_token: found.token,
        worker_id: found.worker.clone(),
        running: found.running,
        worker_state: found.worker_state.to_owned(),
        ..GetTaskLogResponse::default()
    };
    let Some(store) = store else {
        response.note = "this cluster keeps no task logs: start the coordinators with \
                         --task-logs URL (s3://bucket/prefix, or a directory every \
                         coordinator and worker reaches)"
            .to_owned();
        return response;
    };
    response.location = format!("{}/{key}", store.url().trim_end_matches('/'));
    let max = match u64::from(request.max_bytes) {
        0 => LOG_BYTES_MAX,
        n => n.min(LOG_BYTES_MAX),
    };
    match store.read_tail(&key, max).await {
        Ok(Some(tail)) => {
            response.found = true;
            response.truncated = (tail.bytes.len() as u64) < tail.total_bytes;
            response.text = text_of(&tail.bytes, response.truncated);
        }
        Ok(None) => {}
        Err(e) => {
            response.note = format!("cannot read {}: {e}", response.location);
            return response;
        }
    }
    response.note = note(&found, response.found);
    response
}

/// The log's bytes as text. A cut tail starts at its first whole line, and
/// bytes that are not UTF-8 are replaced rather than refused.
fn text_of(bytes: &[u8], cut: bool) -> String {
    let start = if cut {
        bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// What to know about an attempt's log, in one sentence; empty when the
/// log is final and there is nothing to add.
fn note(a: &AttemptRef, found: bool) -> String {
    let worker = if a.worker.is_empty() {
        "its worker".to_owned()
    } else {
        format!("worker {}", a.worker)
    };
    let vanished = match a.worker_state {
        "lost" => Some(format!("{worker} is lost (no heartbeat)")),
        "gone" => Some(format!("{worker} is no longer registered")),
        _ => None,
    };
    let lapsed =
        "its lease ran out without a heartbeat, so its log ends at the worker's last upload";
    match (found, a.running, vanished) {
        (true, false, Some(v)) if a.lease_lapsed => format!("{lapsed}; {v}"),
        (true, false, None) if a.lease_lapsed => lapsed.to_owned(),
        (true, false, _) => String::new(),
        (true, true, None) => {
            "the attempt is running: its worker stores the log every few seconds".to_owned()
        }
        (true, true, Some(v)) => {
            format!("{v}: the attempt will not finish there, and its log ends at the last upload")
        }
        (false, true, None) => {
            "no log stored yet: the worker stores it a few seconds into the attempt".to_owned()
        }
        (false, _, Some(v)) => format!("no log was stored: {v}, and it stored none before"),
        (false, false, None) => format!(
            "no log was stored: {worker} could not reach the task log store, or ran \
             the attempt before task logs were turned on"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(running: bool, worker_state: &'static str) -> AttemptRef {
        AttemptRef {
            task: TaskKey {
                job: crate::state::JobId(1),
                template: 0,
                partition: 0,
            },
            attempt: 1,
            token: 7,
            worker: "w-1".to_owned(),
            running,
            lease_lapsed: false,
            worker_state,
        }
    }

    #[test]
    fn a_cluster_without_a_store_says_how_to_keep_logs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let request = GetTaskLogRequest {
            task_id: "j1/0/0".to_owned(),
            ..GetTaskLogRequest::default()
        };
        let answer = runtime.block_on(answer(attempt(true, "alive"), &request, None));
        assert!(!answer.found);
        assert_eq!((answer.attempt, answer.fencing_token), (1, 7));
        assert_eq!(answer.worker_id, "w-1");
        assert!(answer.running);
        assert!(answer.note.contains("--task-logs"), "{}", answer.note);
        assert!(answer.location.is_empty());
    }

    #[test]
    fn a_cut_log_starts_at_a_whole_line_and_survives_bad_utf8() {
        assert_eq!(text_of(b"ne\nwhole\n", true), "whole\n");
        assert_eq!(text_of(b"ne\nwhole\n", false), "ne\nwhole\n");
        assert_eq!(text_of(b"a\xffb\n", false), "a\u{fffd}b\n");
    }

    #[test]
    fn the_note_says_why_a_log_is_missing_or_partial() {
        assert_eq!(note(&attempt(false, "alive"), true), "");
        assert!(note(&attempt(true, "alive"), true).contains("running"));
        assert!(note(&attempt(true, "lost"), true).contains("worker w-1 is lost"));
        assert!(note(&attempt(false, "gone"), false).contains("w-1 is no longer registered"));
        assert!(note(&attempt(true, "alive"), false).contains("no log stored yet"));
        assert!(note(&attempt(false, "alive"), false).contains("could not reach"));
        let lapsed = AttemptRef {
            lease_lapsed: true,
            ..attempt(false, "lost")
        };
        assert_eq!(
            note(&lapsed, true),
            "its lease ran out without a heartbeat, so its log ends at the worker's last upload; \
             worker w-1 is lost (no heartbeat)"
        );
    }
}
