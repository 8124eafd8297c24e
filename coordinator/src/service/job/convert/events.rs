//! A job's events on the wire.

use drover_proto::v1::{JobEvent, JobEventKind};

use super::super::utc;
use crate::state::events::{Event, EventKind, ExpiryReason};
use crate::state::job::Job;
use crate::state::{JobState, TaskKey};

/// The task an event concerns, if any.
fn event_task(kind: &EventKind) -> Option<TaskKey> {
    match kind {
        EventKind::Leased { task, .. }
        | EventKind::Completed { task, .. }
        | EventKind::Failed { task, .. }
        | EventKind::Expired { task, .. }
        | EventKind::StaleRejected { task, .. }
        | EventKind::Released { task, .. } => Some(*task),
        _ => None,
    }
}

/// Whether an event is about task `key` (its own events, and the
/// upstream failure of its template).
pub fn event_concerns(kind: &EventKind, key: TaskKey) -> bool {
    match kind {
        EventKind::UpstreamFailed { template } => *template == key.template,
        other => event_task(other) == Some(key),
    }
}

/// The wire kind of an event.
pub fn event_kind(job: &Job, kind: &EventKind) -> JobEventKind {
    match kind {
        EventKind::Submitted => JobEventKind::JobSubmitted,
        EventKind::Leased { .. } => JobEventKind::TaskLeased,
        EventKind::Completed { task, .. } => {
            let skipped = job
                .templates
                .get(task.template as usize)
                .and_then(|t| t.outputs.get(task.partition))
                .is_some_and(|o| o.skipped);
            if skipped {
                JobEventKind::TaskSkipped
            } else {
                JobEventKind::TaskSucceeded
            }
        }
        EventKind::Failed { .. } => JobEventKind::TaskFailed,
        EventKind::Expired {
            reason: ExpiryReason::Lease,
            ..
        } => JobEventKind::TaskLeaseExpired,
        EventKind::Expired {
            reason: ExpiryReason::Timeout,
            ..
        } => JobEventKind::TaskTimedOut,
        EventKind::StaleRejected { .. } => JobEventKind::TaskStaleTokenRejected,
        EventKind::Released { .. } => JobEventKind::TaskReleased,
        EventKind::UpstreamFailed { .. } => JobEventKind::TaskCancelled,
        EventKind::Retried { .. } => JobEventKind::JobRetried,
        EventKind::CancelRequested { .. } => JobEventKind::JobCancelled,
        EventKind::Finished { state } => match state {
            JobState::Succeeded => JobEventKind::JobSucceeded,
            JobState::Failed => JobEventKind::JobFailed,
            JobState::Cancelled => JobEventKind::JobCancelled,
            JobState::Pending | JobState::Running => JobEventKind::Unspecified,
        },
    }
}

fn retry_note(retry_at_ms: Option<i64>) -> String {
    match retry_at_ms {
        Some(at) => format!(
            "retry at {}",
            utc(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        None => "no retries left".to_owned(),
    }
}

/// The wire form of an event of `job`.
pub fn event(job: &Job, event: &Event, kind: JobEventKind) -> JobEvent {
    let mut out = JobEvent {
        seq: event.seq,
        at_unix_ms: event.at_ms,
        kind: kind as i32,
        ..JobEvent::default()
    };
    let template_name = |t: u32| {
        job.templates
            .get(t as usize)
            .map(|t| t.def.id.clone())
            .unwrap_or_default()
    };
    if let Some(task) = event_task(&event.kind) {
        out.task_id = task.to_string();
        out.template = template_name(task.template);
        out.partition_index = task.partition;
        // Only grants record their attempt; the record's current attempt
        // may be a later one than the event's, so others leave it 0.
    }
    match &event.kind {
        EventKind::Submitted => {}
        EventKind::Leased {
            worker,
            token,
            attempt,
            ..
        } => {
            out.worker_id = worker.clone();
            out.fencing_token = *token;
            out.attempt = *attempt;
        }
        EventKind::Completed {
            token,
            worker,
            attempt,
            ..
        } => {
            out.worker_id = worker.clone();
            out.fencing_token = *token;
            out.attempt = *attempt;
        }
        EventKind::Released { token, .. } => {
            out.fencing_token = *token;
        }
        EventKind::Failed {
            token,
            message,
            retry_at_ms,
            ..
        } => {
            out.fencing_token = *token;
            out.message = format!("{message} ({})", retry_note(*retry_at_ms));
        }
        EventKind::Expired {
            token, retry_at_ms, ..
        } => {
            out.fencing_token = *token;
            out.message = retry_note(*retry_at_ms);
        }
        EventKind::StaleRejected {
            token,
            action,
            worker,
            ..
        } => {
            out.fencing_token = *token;
            out.worker_id = worker.clone();
            out.message = format!("stale token on {action}");
        }
        EventKind::UpstreamFailed { template } => {
            out.template = template_name(*template);
            out.message = "an upstream task failed; this template will not run".to_owned();
        }
        EventKind::Retried { tasks } => out.message = format!("{tasks} tasks requeued"),
        EventKind::CancelRequested { reason } => out.message = reason.clone(),
        EventKind::Finished { state } => out.message = format!("job {}", state.as_str()),
    }
    out
}
