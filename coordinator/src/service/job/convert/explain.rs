//! The wire answer to "why is this task not running".

use drover_proto::v1::{
    BackoffWait, DependencyWait, ExplainTaskResponse, FairShareWait, MaxParallelWait,
    NoMatchingWorker, NotPending, UpstreamProgress, explain_task_response::Reason,
};

use super::super::utc;
use crate::state::explain::Why;
use crate::state::job::Job;
use crate::state::{StateMachine, TaskKey, TaskState};

use super::*;

/// The wire answer to "why is this task not running".
pub fn explain(sm: &StateMachine, job: &Job, key: TaskKey, why: Why) -> ExplainTaskResponse {
    let template = job.templates.get(key.template as usize);
    let state = template
        .and_then(|t| t.task_state(key.partition))
        .unwrap_or(TaskState::Ready);
    let alive = sm.alive_workers();
    let (summary, reason) = match why {
        Why::NotPending(s) => (
            format!("task {key} is {}, not waiting to run", s.as_str()),
            Reason::NotPending(NotPending {
                state: task_state(s) as i32,
            }),
        ),
        Why::Dependency { waiting_on } => {
            let blocking: Vec<UpstreamProgress> = job
                .upstream_waits(&waiting_on)
                .into_iter()
                .map(|u| UpstreamProgress {
                    template: u.template,
                    remaining: u.remaining,
                    total: u.total,
                    failed: u.failed,
                })
                .collect();
            let list: Vec<String> = blocking
                .iter()
                .map(|u| {
                    let failed = if u.failed > 0 {
                        format!(", {} failed: retry the job to go on", u.failed)
                    } else {
                        String::new()
                    };
                    format!(
                        "{} ({} of {} tasks left{failed})",
                        u.template, u.remaining, u.total
                    )
                })
                .collect();
            (
                format!(
                    "task {key} waits for upstream templates: {}",
                    list.join(", ")
                ),
                Reason::Dependency(DependencyWait { blocking }),
            )
        }
        Why::Backoff {
            until_ms,
            next_attempt,
        } => {
            let last_error = template
                .and_then(|t| t.tasks.get(&key.partition))
                .and_then(|r| r.last_error.clone())
                .unwrap_or_default();
            (
                format!(
                    "task {key} failed attempt {next_attempt} and waits for its retry at {}",
                    utc(until_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
                Reason::BackoffUntil(BackoffWait {
                    backoff_until_unix_ms: until_ms,
                    attempt: next_attempt,
                    last_error,
                }),
            )
        }
        Why::JobMaxParallel { limit } => (
            format!(
                "job {} already runs {} tasks, its maxParallel of {limit}",
                job.id, job.counts.leased
            ),
            Reason::MaxParallel(MaxParallelWait {
                max_parallel: limit,
                leased: u32::try_from(job.counts.leased).unwrap_or(u32::MAX),
            }),
        ),
        Why::TemplateMaxParallel { limit } => {
            let leased = template.map_or(0, |t| t.counts.leased);
            (
                format!(
                    "template {} already runs {leased} tasks, its maxParallel of {limit}",
                    template.map_or("", |t| t.def.id.as_str())
                ),
                Reason::MaxParallel(MaxParallelWait {
                    max_parallel: limit,
                    leased: u32::try_from(leased).unwrap_or(u32::MAX),
                }),
            )
        }
        Why::NoMatchingWorker { constraints, kind } => {
            let labels: Vec<String> = constraints
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let with = if labels.is_empty() {
                String::new()
            } else {
                format!(" with labels {}", labels.join(","))
            };
            (
                format!(
                    "no alive worker runs `{kind}` tasks{with} ({} alive workers)",
                    alive
                ),
                Reason::NoMatchingWorker(NoMatchingWorker {
                    required_labels: constraints.into_iter().collect(),
                    kind: task_kind(&kind) as i32,
                    alive_workers: alive as u32,
                }),
            )
        }
        Why::WaitingForSlot {
            namespace_running, ..
        } => {
            let wait = sm.slot_wait(job, key);
            (
                format!(
                    "task {key} is ready and waits for a free slot: {} ready tasks lease first; namespace {} uses {namespace_running} of its {:.1} fair-share slots",
                    wait.tasks_ahead, job.namespace, wait.fair_share_slots
                ),
                Reason::FairShare(FairShareWait {
                    namespace: job.namespace.clone(),
                    weight: wait.weight,
                    used_slots: namespace_running,
                    fair_share_slots: wait.fair_share_slots,
                    tasks_ahead: wait.tasks_ahead,
                }),
            )
        }
    };
    ExplainTaskResponse {
        task: Some(task(sm, job, key.template, key.partition, state)),
        summary,
        evaluated_unix_ms: sm.now_ms(),
        reason: Some(reason),
    }
}
