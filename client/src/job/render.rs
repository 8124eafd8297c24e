//! How jobs, tasks, events and workers look on the terminal and in
//! `--json`. The JSON shapes are a stable interface for scripts: keys are
//! camelCase, enums are lower-case names (`succeeded`), times are RFC 3339
//! in UTC and absent times are `null`.

use chrono::{DateTime, Utc};
use drover_proto::v1::{Job, JobEvent, Task, TaskCounts, TemplateProgress, WorkerInfo};
use serde_json::{Value, json};

pub use drover_proto::names::{
    enum_name, event_kind, job_state, parse_job_state, replication_state, task_kind, task_state,
    worker_state,
};

/// A wire time (Unix ms, 0 for none) as RFC 3339, or `None`.
pub fn time(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| DateTime::<Utc>::from_timestamp_millis(ms))
        .flatten()
}

fn time_json(ms: i64) -> Value {
    time(ms).map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// A short local-looking time for tables: `2026-11-21 10:04:05Z`.
pub fn short_time(ms: i64) -> String {
    time(ms).map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

/// How long from `start` to `end` (or to now while running), as `1m 4s`.
pub fn elapsed(start_ms: i64, end_ms: i64) -> String {
    if start_ms <= 0 {
        return "-".to_owned();
    }
    let end = if end_ms > 0 {
        end_ms
    } else {
        Utc::now().timestamp_millis()
    };
    let secs = ((end - start_ms).max(0) / 1000) as u64;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

pub fn counts_json(c: &TaskCounts) -> Value {
    json!({
        "blocked": c.blocked,
        "ready": c.ready,
        "backoff": c.backoff,
        "leased": c.leased,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "skipped": c.skipped,
        "upstreamFailed": c.upstream_failed,
        "total": c.total,
    })
}

/// Tasks that reached an end state.
pub fn finished(c: &TaskCounts) -> u64 {
    c.succeeded + c.failed + c.cancelled + c.skipped + c.upstream_failed
}

/// `3 leased, 1 failed, ...`: the non-zero counts, in lifecycle order.
pub fn counts_line(c: &TaskCounts) -> String {
    let parts: Vec<String> = [
        ("blocked", c.blocked),
        ("ready", c.ready),
        ("backoff", c.backoff),
        ("running", c.leased),
        ("succeeded", c.succeeded),
        ("failed", c.failed),
        ("upstream failed", c.upstream_failed),
        ("cancelled", c.cancelled),
        ("skipped", c.skipped),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{n} {name}"))
    .collect();
    if parts.is_empty() {
        "no tasks".to_owned()
    } else {
        parts.join(", ")
    }
}

fn template_json(t: &TemplateProgress) -> Value {
    json!({
        "name": t.name,
        "kind": task_kind(t.kind),
        "stage": t.stage,
        "dependsOn": t.depends_on,
        "partitions": t.partition_count,
        "counts": t.counts.as_ref().map(counts_json),
        "startedAt": time_json(t.started_unix_ms),
        "finishedAt": time_json(t.finished_unix_ms),
        "output": (!t.output.is_empty()).then_some(&t.output),
    })
}

pub fn job_json(j: &Job) -> Value {
    json!({
        "id": j.job_id,
        "namespace": j.namespace,
        "name": j.name,
        "labels": j.labels,
        "priority": j.priority,
        "state": job_state(j.state),
        "reason": j.state_reason,
        "createdAt": time_json(j.created_unix_ms),
        "startedAt": time_json(j.started_unix_ms),
        "finishedAt": time_json(j.finished_unix_ms),
        "counts": j.task_counts.as_ref().map(counts_json),
        "templates": j.templates.iter().map(template_json).collect::<Vec<_>>(),
        "maxParallel": j.max_parallel,
        "source": j.source_name,
        "idempotencyKey": j.idempotency_key,
        "specFingerprint": j.spec_fingerprint,
        "parentJobId": j.parent_job_id,
        "lastEventSeq": j.last_event_seq,
        "shortId": short_id(j),
    })
}

pub fn task_json(t: &Task) -> Value {
    json!({
        "id": t.task_id,
        "jobId": t.job_id,
        "template": t.template,
        "partition": t.partition_index,
        "partitionKey": t.partition_key,
        "state": task_state(t.state),
        "attempt": t.attempt,
        "maxAttempts": t.max_attempts,
        "worker": t.worker_id,
        "fencingToken": t.fencing_token,
        "leaseDeadline": time_json(t.lease_deadline_unix_ms),
        "backoffUntil": time_json(t.backoff_until_unix_ms),
        "lastError": t.last_error,
        "startedAt": time_json(t.started_unix_ms),
        "finishedAt": time_json(t.finished_unix_ms),
        "outputPrefix": t.output_prefix,
        "progress": t.progress_fraction,
        "progressMessage": t.progress_message,
    })
}

pub fn event_json(e: &JobEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": time_json(e.at_unix_ms),
        "kind": event_kind(e.kind),
        "task": e.task_id,
        "template": e.template,
        "partition": e.partition_index,
        "attempt": e.attempt,
        "worker": e.worker_id,
        "fencingToken": e.fencing_token,
        "message": e.message,
    })
}

/// One event as a table row.
pub fn event_line(e: &JobEvent) -> String {
    let mut line = format!(
        "{:>6}  {}  {:<24}",
        e.seq,
        short_time(e.at_unix_ms),
        event_kind(e.kind)
    );
    if !e.task_id.is_empty() {
        line.push_str(&format!(" {}", e.task_id));
        if e.attempt > 0 {
            line.push_str(&format!(" attempt {}", e.attempt));
        }
    }
    if !e.worker_id.is_empty() {
        line.push_str(&format!(" on {}", e.worker_id));
    }
    if e.fencing_token > 0 {
        line.push_str(&format!(" token {}", e.fencing_token));
    }
    if !e.message.is_empty() {
        line.push_str(&format!(": {}", e.message));
    }
    line
}

pub fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "id": w.worker_id,
        "state": worker_state(w.state),
        "slots": w.slots,
        "running": w.running_tasks,
        "labels": w.labels,
        "kinds": w.supported_kinds.iter().map(|k| task_kind(*k)).collect::<Vec<_>>(),
        "version": w.version,
        "instanceId": w.instance_id,
        "sessionEpoch": w.session_epoch,
        "registeredAt": time_json(w.registered_unix_ms),
        "lastHeartbeat": time_json(w.last_heartbeat_unix_ms),
        "drainReason": w.drain_reason,
    })
}

/// A job's id as tables show it: the shortest start no other job or
/// schedule shares, as the coordinator computed it (which every command
/// accepts back), or the whole id from a coordinator that sends none.
pub fn short_id(j: &Job) -> &str {
    if j.short_id.is_empty() {
        &j.job_id
    } else {
        &j.short_id
    }
}

/// The width of an id column: the longest short id, and at least `header`
/// wide.
pub fn id_width(jobs: &[Job], header: usize) -> usize {
    jobs.iter()
        .map(|j| short_id(j).len())
        .max()
        .unwrap_or(header)
        .max(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_line_lists_only_non_zero_counts() {
        let c = TaskCounts {
            leased: 2,
            succeeded: 5,
            total: 7,
            ..TaskCounts::default()
        };
        assert_eq!(counts_line(&c), "2 running, 5 succeeded");
        assert_eq!(counts_line(&TaskCounts::default()), "no tasks");
    }

    #[test]
    fn elapsed_reads_like_a_clock() {
        assert_eq!(elapsed(1_000, 5_500), "4s");
        assert_eq!(elapsed(0, 5_500), "-");
        assert_eq!(elapsed(1, 3_600_001), "1h 0m");
        assert_eq!(elapsed(1_000, 126_000), "2m 5s");
    }
}
