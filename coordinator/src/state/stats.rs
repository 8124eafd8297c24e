//! Read-only summaries of the state, for metrics: tasks per namespace and
//! state, the ready backlog and how long its oldest task has waited, and
//! workers per state.
//!
//! Like the rest of the state machine this reads no clock: ages are
//! measured against the state's own `now_ms`, the time of the latest
//! applied entry. The leader proposes a `Tick` every second, so on a
//! healthy cluster that time trails the wall clock by about a second at
//! most, on every replica alike.

use std::collections::BTreeMap;

use super::StateMachine;
use super::job::{Counts, TemplateStatus};
use super::tally::Tally;
use super::workers::WorkerState;

/// A summary of the state at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The state's time (the latest applied entry's `now_ms`).
    pub now_ms: i64,
    /// Tasks per state, per namespace, over the jobs the state still holds
    /// (finished jobs count until they are collected).
    pub tasks: BTreeMap<String, Counts>,
    /// Tasks ready to be leased: the backlog that workers would drain.
    pub ready_tasks: u64,
    /// Jobs in the lease order (with a template that can lease now).
    pub ready_jobs: u64,
    /// When the longest-waiting ready task became ready; `None` with no
    /// ready task.
    pub oldest_ready_ms: Option<i64>,
    /// Registered workers leasing and heartbeating.
    pub workers_alive: u64,
    /// Registered workers told to drain.
    pub workers_draining: u64,
    /// Registered workers not heard from within the worker timeout.
    pub workers_lost: u64,
    /// Running totals since this process loaded the state.
    pub tally: Tally,
}

impl Stats {
    /// How long the oldest ready task has waited, in milliseconds of the
    /// state's time; 0 with no ready task.
    pub fn oldest_ready_age_ms(&self) -> i64 {
        self.oldest_ready_ms
            .map_or(0, |since| self.now_ms.saturating_sub(since).max(0))
    }
}

impl StateMachine {
    /// Summarises the state; one pass over jobs, templates, requeued tasks
    /// and workers.
    pub fn stats(&self) -> Stats {
        let core = &self.core;
        let mut stats = Stats {
            now_ms: core.now_ms,
            ready_jobs: self.idx.ready.len() as u64,
            tally: self.tally.clone(),
            ..Stats::default()
        };
        for job in core.jobs.values() {
            stats
                .tasks
                .entry(job.namespace.clone())
                .or_default()
                .add(&job.counts);
            if job.state.is_terminal() {
                continue;
            }
            stats.ready_tasks += job.counts.ready;
            for template in &job.templates {
                if template.status != TemplateStatus::Open {
                    continue;
                }
                // Never-run partitions have waited since the template
                // opened; requeued ones since they became ready again.
                let mut since =
                    (template.cursor < template.def.count).then_some(template.opened_ms);
                for p in &template.requeued {
                    if let Some(record) = template.tasks.get(p) {
                        since =
                            Some(since.map_or(record.ready_at_ms, |s| s.min(record.ready_at_ms)));
                    }
                }
                if let Some(since) = since {
                    stats.oldest_ready_ms =
                        Some(stats.oldest_ready_ms.map_or(since, |o| o.min(since)));
                }
            }
        }
        for worker in core.workers.values() {
            match worker.state {
                WorkerState::Alive => stats.workers_alive += 1,
                WorkerState::Draining => stats.workers_draining += 1,
                WorkerState::Lost => stats.workers_lost += 1,
            }
        }
        stats
    }
}
