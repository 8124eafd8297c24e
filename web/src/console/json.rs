//! The console's JSON: the wire types of the gRPC services turned into
//! plain objects for the page, in one place. Enum values become short
//! lower-case names (`JOB_STATE_RUNNING` → `running`), times stay Unix
//! milliseconds (the page formats them in the viewer's or the schedule's
//! time zone), and 0 means "not yet" as on the wire.

use drover_proto::v1::{
    ClusterStatusResponse, ExplainTaskResponse, GetTaskLogResponse, GetTaskOutputResponse, Job,
    JobEvent, Member, MemberRole, SchedulerStats, Task, TaskCounts, TemplateProgress, WorkerInfo,
    explain_task_response::Reason,
};
use serde_json::{Value, json};

use super::graph::{self, Vertex};

// Enum values are named as the CLI's `--json` names them.
use drover_proto::names::{
    enum_name as short, event_kind, job_state, replication_state, task_kind, task_state,
    worker_state,
};

/// Task counts by state name, as the page's tasks name their `state`;
/// zeros when absent (the page always has a bar to draw).
fn counts(c: Option<&TaskCounts>) -> Value {
    let c = c.cloned().unwrap_or_default();
    json!({
        "blocked": c.blocked,
        "ready": c.ready,
        "backoff": c.backoff,
        "leased": c.leased,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "skipped": c.skipped,
        "upstream_failed": c.upstream_failed,
        "total": c.total,
    })
}

fn template(t: &TemplateProgress) -> Value {
    json!({
        "name": t.name,
        "kind": task_kind(t.kind),
        "stage": t.stage,
        "depends_on": t.depends_on,
        "partitions": t.partition_count,
        "counts": counts(t.counts.as_ref()),
        "started_ms": t.started_unix_ms,
        "finished_ms": t.finished_unix_ms,
    })
}

/// A job, a scheduled job or a run; with its templates and the picture of
/// its DAG when the wire job carries templates (GetJob, not ListJobs).
pub fn job(j: &Job) -> Value {
    let schedule = j.schedule.as_ref().map(|s| {
        let plan = s.plan.clone().unwrap_or_default();
        json!({
            "cron": plan.cron,
            "timezone": plan.timezone,
            "next_fire_ms": plan.next_fire_unix_ms,
            "catchup": short(plan.catchup().as_str_name(), "CATCHUP_POLICY_"),
            "max_catchup": plan.max_catchup,
            "overlap": short(plan.overlap().as_str_name(), "OVERLAP_POLICY_"),
            "last_fire_ms": s.last_fire_unix_ms,
            "run_count": s.run_count,
        })
    });
    let vertices: Vec<Vertex> = j
        .templates
        .iter()
        .map(|t| Vertex {
            name: t.name.clone(),
            stage: t.stage,
            depends_on: t.depends_on.clone(),
        })
        .collect();
    json!({
        "id": j.job_id,
        "namespace": j.namespace,
        "name": j.name,
        "labels": j.labels,
        "priority": j.priority,
        "state": job_state(j.state),
        "state_reason": j.state_reason,
        "created_ms": j.created_unix_ms,
        "started_ms": j.started_unix_ms,
        "finished_ms": j.finished_unix_ms,
        "counts": counts(j.task_counts.as_ref()),
        "templates": j.templates.iter().map(template).collect::<Vec<_>>(),
        "graph": (!vertices.is_empty()).then(|| graph::layout(&vertices)),
        "max_parallel": j.max_parallel,
        "source_name": j.source_name,
        "idempotency_key": j.idempotency_key,
        "parent_job_id": j.parent_job_id,
        "fire_ms": j.fire_unix_ms,
        "schedule": schedule,
        "last_event_seq": j.last_event_seq,
    })
}

pub fn event(e: &JobEvent) -> Value {
    json!({
        "seq": e.seq,
        "at_ms": e.at_unix_ms,
        "kind": event_kind(e.kind),
        "task_id": e.task_id,
        "template": e.template,
        "partition": e.partition_index,
        "attempt": e.attempt,
        "worker_id": e.worker_id,
        "fencing_token": e.fencing_token,
        "message": e.message,
    })
}

pub fn task(t: &Task) -> Value {
    json!({
        "id": t.task_id,
        "job_id": t.job_id,
        "template": t.template,
        "partition": t.partition_index,
        "partition_key": t.partition_key,
        "state": task_state(t.state),
        "attempt": t.attempt,
        "max_attempts": t.max_attempts,
        "worker_id": t.worker_id,
        "fencing_token": t.fencing_token,
        "lease_deadline_ms": t.lease_deadline_unix_ms,
        "backoff_until_ms": t.backoff_until_unix_ms,
        "last_error": t.last_error,
        "started_ms": t.started_unix_ms,
        "finished_ms": t.finished_unix_ms,
        "output_prefix": t.output_prefix,
        "progress": t.progress_fraction,
        "progress_message": t.progress_message,
    })
}

/// "Why is this task not running", with the one reason and its details.
pub fn explain(e: &ExplainTaskResponse) -> Value {
    let (reason, details) = match &e.reason {
        Some(Reason::Dependency(d)) => (
            "dependency",
            json!({ "blocking": d.blocking.iter().map(|u| json!({
                "template": u.template, "remaining": u.remaining,
                "total": u.total, "failed": u.failed,
            })).collect::<Vec<_>>() }),
        ),
        Some(Reason::MaxParallel(m)) => (
            "max_parallel",
            json!({ "max_parallel": m.max_parallel, "leased": m.leased }),
        ),
        Some(Reason::FairShare(f)) => (
            "fair_share",
            json!({
                "namespace": f.namespace, "weight": f.weight, "used_slots": f.used_slots,
                "fair_share_slots": f.fair_share_slots, "tasks_ahead": f.tasks_ahead,
            }),
        ),
        Some(Reason::NoMatchingWorker(n)) => (
            "no_matching_worker",
            json!({
                "required_labels": n.required_labels, "kind": task_kind(n.kind),
                "alive_workers": n.alive_workers,
            }),
        ),
        Some(Reason::BackoffUntil(b)) => (
            "backoff",
            json!({
                "until_ms": b.backoff_until_unix_ms, "attempt": b.attempt,
                "last_error": b.last_error,
            }),
        ),
        Some(Reason::NotPending(n)) => ("not_pending", json!({ "state": task_state(n.state) })),
        None => ("unknown", Value::Null),
    };
    json!({
        "task": e.task.as_ref().map(task),
        "summary": e.summary,
        "evaluated_ms": e.evaluated_unix_ms,
        "reason": reason,
        "details": details,
    })
}

pub fn output(o: &GetTaskOutputResponse) -> Value {
    let m = o.manifest.clone().unwrap_or_default();
    json!({
        "task": o.task.as_ref().map(task),
        "fencing_token": o.fencing_token,
        "reused": o.reused,
        "output_prefix": m.output_prefix,
        "files": m.files.iter().map(|f| json!({
            "path": f.path, "rows": f.rows, "bytes": f.bytes, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
        "schema_json": m.schema_json,
        "code_version": m.code_version,
        "input_fingerprint": m.input_fingerprint,
    })
}

pub fn task_log(l: &GetTaskLogResponse) -> Value {
    json!({
        "task_id": l.task_id,
        "attempt": l.attempt,
        "fencing_token": l.fencing_token,
        "worker_id": l.worker_id,
        "worker_state": l.worker_state,
        "running": l.running,
        "found": l.found,
        "text": l.text,
        "truncated": l.truncated,
        "location": l.location,
        "note": l.note,
    })
}

pub fn worker(w: &WorkerInfo) -> Value {
    json!({
        "id": w.worker_id,
        "state": worker_state(w.state),
        "slots": w.slots,
        "labels": w.labels,
        "running_tasks": w.running_tasks,
        "running_task_ids": w.running_task_ids,
        "last_heartbeat_ms": w.last_heartbeat_unix_ms,
        "registered_ms": w.registered_unix_ms,
        "version": w.version,
        "instance_id": w.instance_id,
        "drain_reason": w.drain_reason,
        "kinds": w.supported_kinds.iter().map(|k| task_kind(*k)).collect::<Vec<_>>(),
    })
}

fn member(m: &Member) -> Value {
    json!({
        "id": m.node_id,
        "address": m.address,
        "role": MemberRole::try_from(m.role)
            .map_or_else(|_| "unknown".into(), |r| short(r.as_str_name(), "MEMBER_ROLE_")),
        "is_leader": m.is_leader,
        "match_index": m.match_index,
        "lag_entries": m.lag_entries,
        "replication": replication_state(m.replication),
        "last_contact_age_ms": m.last_contact_age_ms,
    })
}

fn scheduler(s: &SchedulerStats) -> Value {
    json!({
        "ready_tasks": s.ready_tasks,
        "leased_tasks": s.leased_tasks,
        "oldest_ready_age_ms": s.oldest_ready_age_ms,
        "alive_workers": s.alive_workers,
        "total_slots": s.total_slots,
        "free_slots": s.free_slots,
    })
}

/// One coordinator's own account of itself (term, indexes, fsync) and, on
/// the leader, of the members it replicates to.
pub fn node_status(s: &ClusterStatusResponse) -> Value {
    json!({
        "id": s.node_id,
        "leader_id": s.leader_id,
        "leader_address": s.leader_address,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "last_fsync_us": s.last_fsync_us,
        "version": s.version,
        "members": s.members.iter().map(member).collect::<Vec<_>>(),
        "scheduler": s.scheduler.as_ref().map(scheduler),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_with_templates_carries_its_picture() {
        let j = Job {
            job_id: "j1".into(),
            templates: vec![
                TemplateProgress {
                    name: "a".into(),
                    ..TemplateProgress::default()
                },
                TemplateProgress {
                    name: "b".into(),
                    stage: 1,
                    depends_on: vec!["a".into()],
                    ..TemplateProgress::default()
                },
            ],
            ..Job::default()
        };
        let v = job(&j);
        assert_eq!(v["graph"]["nodes"].as_array().unwrap().len(), 2);
        assert_eq!(v["graph"]["edges"][0]["from"], "a");
        // A listed job (no templates) has no picture.
        assert!(job(&Job::default())["graph"].is_null());
    }
}
