//! Jobs coming and going: submit, cancel, retry, finishing, and the DAG
//! bookkeeping that opens downstream templates or fails them.

use chrono::{TimeZone, Utc};
use drover_jobspecs::{LoadOptions, Plan};

use super::command::SubmitJob;
use super::events::EventKind;
use super::job::{Counts, Job, TemplateStatus, templates_from_graph};
use super::outcome::{Outcome, Rejection, Submitted};
use super::types::{JobId, JobState, ScheduleId, TRACE_PARENT_BYTES_MAX, TaskKey, TaskState};
use super::{Applied, StateMachine};

/// Converts replicated milliseconds to a `chrono` time for spec planning.
pub(super) fn to_utc(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl StateMachine {
    /// Submits a spec: a job, or a schedule when the spec has one and
    /// `once` is not set.
    pub(super) fn submit(&mut self, submit: &SubmitJob, once: bool) -> Applied {
        let now = self.core.now_ms;
        let opts = LoadOptions {
            params: submit.params.clone(),
            logical_time: to_utc(now),
        };
        let plan = drover_jobspecs::plan(&submit.file, &submit.spec_yaml, &opts)
            .map_err(Rejection::InvalidSpec)?;
        let namespace = plan.spec.namespace.clone();
        if submit
            .trace_parent
            .as_ref()
            .is_some_and(|t| t.len() > TRACE_PARENT_BYTES_MAX)
        {
            return Err(Rejection::TooLarge(format!(
                "a traceparent is at most {TRACE_PARENT_BYTES_MAX} bytes"
            )));
        }
        if let Some(key) = &submit.idempotency_key {
            if key.is_empty() || key.len() > 256 {
                return Err(Rejection::TooLarge(
                    "idempotency keys are 1 to 256 bytes".to_owned(),
                ));
            }
            if let Some((existing, hash)) =
                self.core.idempotency.get(&(namespace.clone(), key.clone()))
            {
                if *hash == plan.spec_hash {
                    return Ok(Outcome::Submitted {
                        id: *existing,
                        created: false,
                    });
                }
                return Err(Rejection::IdempotencyConflict {
                    key: key.clone(),
                    existing: *existing,
                });
            }
        }
        // After the idempotency check: a retried submit of a job already
        // admitted gets that job, even if the policy has changed since.
        super::policy::admit(&self.core.security.policies, &plan)
            .map_err(Rejection::PolicyDenied)?;
        let id = if plan.spec.schedule.is_some() && !once {
            Submitted::Schedule(self.create_schedule(submit, &plan))
        } else {
            Submitted::Job(self.create_job(
                &plan,
                submit.idempotency_key.clone(),
                None,
                submit.trace_parent.clone(),
            ))
        };
        if let Some(key) = &submit.idempotency_key {
            let entry = (namespace, key.clone());
            self.changes.idempotency.insert(entry.clone());
            self.core
                .idempotency
                .insert(entry, (id, plan.spec_hash.clone()));
        }
        Ok(Outcome::Submitted { id, created: true })
    }

    /// Creates a job from a validated plan and queues its open templates.
    pub(super) fn create_job(
        &mut self,
        plan: &Plan,
        idempotency_key: Option<String>,
        schedule: Option<(ScheduleId, i64)>,
        trace_parent: Option<String>,
    ) -> JobId {
        let id = self.new_job_id(trace_parent.as_deref());
        let submit_seq = self.core.next_job;
        self.core.next_job += 1;
        let mut templates = templates_from_graph(&plan.graph);
        for t in &mut templates {
            if t.status == TemplateStatus::Open {
                t.opened_ms = self.core.now_ms;
            }
        }
        let mut counts = Counts::default();
        for t in &templates {
            counts.blocked += t.counts.blocked;
            counts.ready += t.counts.ready;
        }
        let spec = &plan.spec;
        let job = Job {
            id,
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            labels: spec.labels.clone(),
            priority: spec.priority,
            max_parallel: spec.max_parallel,
            spec_hash: plan.spec_hash.clone(),
            idempotency_key,
            schedule: schedule.map(|(s, _)| s),
            fire_time_ms: schedule.map(|(_, at)| at),
            submit_seq,
            state: JobState::Pending,
            created_ms: self.core.now_ms,
            started_ms: None,
            finished_ms: None,
            templates,
            counts,
            events: Default::default(),
            cancel_reason: None,
            trace_parent,
        };
        let template_count = job.templates.len() as u32;
        self.core
            .history
            .insert(id, super::history::JobHistory::new(job.templates.len()));
        self.core.jobs.insert(id, job);
        self.event(id, EventKind::Submitted);
        for t in 0..template_count {
            self.refresh_template(id, t);
        }
        self.refresh_job(id);
        id
    }

    pub(super) fn cancel(&mut self, job_id: JobId, reason: &str) -> Applied {
        let job = self
            .core
            .jobs
            .get(&job_id)
            .ok_or(Rejection::UnknownJob(job_id))?;
        if job.state.is_terminal() {
            return Err(Rejection::JobFinished {
                job: job_id,
                state: job.state.as_str().to_owned(),
            });
        }
        let reason: String = reason.chars().take(1024).collect();
        self.event(
            job_id,
            EventKind::CancelRequested {
                reason: reason.clone(),
            },
        );
        self.cancel_tasks(job_id);
        if let Some(job) = self.core.jobs.get_mut(&job_id) {
            job.cancel_reason = Some(reason);
        }
        self.finish_job(job_id, JobState::Cancelled);
        Ok(Outcome::Done)
    }

    /// Moves every unfinished task of the job to `Cancelled`. Leased tasks
    /// keep their record (state `Cancelled`, same token) so the worker's
    /// next heartbeat is answered "job cancelled" rather than "lease lost".
    fn cancel_tasks(&mut self, job_id: JobId) {
        let Some(job) = self.core.jobs.get_mut(&job_id) else {
            return;
        };
        let mut freed_slots = 0u64;
        let mut cancelled = Vec::new();
        let mut done_templates = Vec::new();
        for (t, template) in job.templates.iter_mut().enumerate() {
            for (p, record) in template.tasks.iter_mut() {
                let key = TaskKey {
                    job: job_id,
                    template: t as u32,
                    partition: *p,
                };
                match record.state {
                    TaskState::Leased => {
                        self.idx.deadlines.remove(&(record.expires_at_ms(), key));
                        if let Some(w) = &record.worker
                            && let Some(set) = self.idx.worker_tasks.get_mut(w)
                        {
                            set.remove(&key);
                        }
                        freed_slots += 1;
                    }
                    TaskState::Backoff => {
                        self.idx.backoff.remove(&(record.ready_at_ms, key));
                    }
                    _ => {}
                }
                if matches!(
                    record.state,
                    TaskState::Leased | TaskState::Backoff | TaskState::Ready
                ) {
                    record.state = TaskState::Cancelled;
                    self.changes.tasks.insert(key);
                    cancelled.push((key, record.attempt));
                }
            }
            if template.status != TemplateStatus::Done {
                done_templates.push(t as u32);
            }
            template.requeued.clear();
            template.cursor = template.def.count;
            template.status = TemplateStatus::Done;
            let c = template.counts;
            let moved = c.blocked + c.ready + c.backoff + c.leased;
            template.counts = Counts {
                blocked: 0,
                ready: 0,
                backoff: 0,
                leased: 0,
                cancelled: c.cancelled + moved,
                ..c
            };
        }
        let c = job.counts;
        job.counts = Counts {
            blocked: 0,
            ready: 0,
            backoff: 0,
            leased: 0,
            cancelled: c.cancelled + c.blocked + c.ready + c.backoff + c.leased,
            ..c
        };
        let namespace = job.namespace.clone();
        self.idx
            .ready
            .add_running(&namespace, -(freed_slots as i64));
        self.idx.ready.forget_job(job_id);
        let now = self.core.now_ms;
        for (key, attempts) in cancelled {
            self.history_finished(key, attempts);
        }
        for t in done_templates {
            self.history_template_finished(job_id, t, Some(now));
        }
    }

    pub(super) fn retry(&mut self, job_id: JobId) -> Applied {
        let now = self.core.now_ms;
        let job = self
            .core
            .jobs
            .get_mut(&job_id)
            .ok_or(Rejection::UnknownJob(job_id))?;
        if job.state != JobState::Failed {
            return Err(Rejection::JobFinished {
                job: job_id,
                state: format!("{} (only failed jobs can be retried)", job.state.as_str()),
            });
        }
        let mut reset = 0u64;
        let mut retried = Vec::new();
        for t in 0..job.templates.len() {
            let template = &mut job.templates[t];
            // Tasks that ran and failed get a fresh retry budget.
            let failed: Vec<u64> = template
                .tasks
                .iter()
                .filter(|(_, r)| r.state == TaskState::Failed)
                .map(|(p, _)| *p)
                .collect();
            for p in &failed {
                let key = TaskKey {
                    job: job_id,
                    template: t as u32,
                    partition: *p,
                };
                if let Some(record) = template.tasks.get_mut(p) {
                    record.state = TaskState::Ready;
                    record.last_error = None;
                    record.ready_at_ms = now;
                }
                template.requeued.insert(*p);
                self.changes.tasks.insert(key);
                retried.push(key);
            }
            let n = failed.len() as u64;
            // What remains failed never ran (an upstream failed): it goes
            // back to waiting for its upstream templates.
            let never_ran = template.counts.failed - n;
            reset += n + never_ran;
            job.shift(t as u32, TaskState::Failed, TaskState::Ready, n);
            job.shift(t as u32, TaskState::Failed, TaskState::Blocked, never_ran);
        }
        // Recompute which templates are open, in topological order.
        for t in 0..job.templates.len() {
            let remaining = job.templates[t]
                .def
                .depends_on
                .iter()
                .filter(|d| {
                    let up = &job.templates[**d as usize];
                    up.counts.succeeded + up.counts.skipped < up.def.count
                })
                .count() as u32;
            let template = &mut job.templates[t];
            template.remaining_upstream = remaining;
            let unfinished = template.counts.total() - template.counts.finished();
            template.status = if unfinished == 0 {
                TemplateStatus::Done
            } else if remaining == 0 {
                TemplateStatus::Open
            } else {
                TemplateStatus::Blocked
            };
            if template.status == TemplateStatus::Open {
                template.opened_ms = now;
                let blocked = template.counts.blocked;
                job.shift(t as u32, TaskState::Blocked, TaskState::Ready, blocked);
            }
        }
        job.state = if job.started_ms.is_some() {
            JobState::Running
        } else {
            JobState::Pending
        };
        if let Some(at) = job.finished_ms.take() {
            self.idx.finished.remove(&(at, job_id));
        }
        let templates = job.templates.len() as u32;
        let reopened: Vec<u32> = (0..templates)
            .filter(|t| job.templates[*t as usize].status != TemplateStatus::Done)
            .collect();
        // Attempt numbers go on from what each task had; its new budget
        // counts from there (`retry_base`).
        for key in retried {
            let attempts = self.history_retried(key);
            if let Some(record) = self
                .core
                .jobs
                .get_mut(&job_id)
                .and_then(|j| j.templates.get_mut(key.template as usize))
                .and_then(|t| t.tasks.get_mut(&key.partition))
            {
                record.attempt = attempts.max(record.attempt) + 1;
            }
        }
        for t in reopened {
            self.history_template_finished(job_id, t, None);
        }
        self.event(job_id, EventKind::Retried { tasks: reset });
        for t in 0..templates {
            self.refresh_template(job_id, t);
        }
        self.refresh_job(job_id);
        Ok(Outcome::Retried { tasks: reset })
    }

    /// After a task of template `t` finished: closes the template when all
    /// its partitions are done, opens downstream templates, and finishes the
    /// job when nothing is left.
    pub(super) fn after_task_finished(&mut self, job_id: JobId, t: u32) {
        let now = self.core.now_ms;
        let Some(job) = self.core.jobs.get_mut(&job_id) else {
            return;
        };
        let template = &mut job.templates[t as usize];
        let mut opened = Vec::new();
        let mut finished = false;
        if template.all_finished() && template.status != TemplateStatus::Done {
            template.status = TemplateStatus::Done;
            finished = true;
            let clean = template.counts.failed == 0 && template.counts.cancelled == 0;
            let downstream = template.def.downstream.clone();
            if clean {
                for d in downstream {
                    let down = &mut job.templates[d as usize];
                    down.remaining_upstream = down.remaining_upstream.saturating_sub(1);
                    if down.remaining_upstream == 0 && down.status == TemplateStatus::Blocked {
                        down.status = TemplateStatus::Open;
                        down.opened_ms = now;
                        let blocked = down.counts.blocked;
                        job.shift(d, TaskState::Blocked, TaskState::Ready, blocked);
                        opened.push(d);
                    }
                }
            }
        }
        if finished {
            self.history_template_finished(job_id, t, Some(now));
        }
        for d in opened {
            self.refresh_template(job_id, d);
        }
        self.refresh_template(job_id, t);
        self.refresh_job(job_id);
        self.finish_if_done(job_id);
    }

    /// After a permanent failure in template `t`: every template downstream
    /// of it (transitively) cannot run, so its tasks fail now, which tells
    /// the user at once rather than when the rest of the job drains.
    pub(super) fn fail_downstream(&mut self, job_id: JobId, t: u32) {
        let Some(job) = self.core.jobs.get(&job_id) else {
            return;
        };
        let mut stack: Vec<u32> = job.templates[t as usize].def.downstream.clone();
        let mut failed_templates = Vec::new();
        while let Some(d) = stack.pop() {
            let Some(job) = self.core.jobs.get_mut(&job_id) else {
                return;
            };
            let down = &mut job.templates[d as usize];
            if down.status != TemplateStatus::Blocked {
                continue;
            }
            down.status = TemplateStatus::Done;
            let blocked = down.counts.blocked;
            stack.extend(down.def.downstream.iter().copied());
            job.shift(d, TaskState::Blocked, TaskState::Failed, blocked);
            failed_templates.push(d);
        }
        failed_templates.sort_unstable();
        let now = self.core.now_ms;
        for d in failed_templates {
            self.history_template_finished(job_id, d, Some(now));
            self.event(job_id, EventKind::UpstreamFailed { template: d });
            self.refresh_template(job_id, d);
        }
    }

    /// Finishes the job if every task is finished.
    pub(super) fn finish_if_done(&mut self, job_id: JobId) {
        let Some(job) = self.core.jobs.get(&job_id) else {
            return;
        };
        if job.state.is_terminal() || !job.all_finished() {
            return;
        }
        let state = if job.counts.failed > 0 {
            JobState::Failed
        } else if job.counts.cancelled > 0 {
            JobState::Cancelled
        } else {
            JobState::Succeeded
        };
        self.finish_job(job_id, state);
    }

    fn finish_job(&mut self, job_id: JobId, state: JobState) {
        let now = self.core.now_ms;
        let Some(job) = self.core.jobs.get_mut(&job_id) else {
            return;
        };
        job.state = state;
        job.finished_ms = Some(now);
        let schedule = job.schedule;
        self.idx.finished.insert((now, job_id));
        self.idx.ready.forget_job(job_id);
        self.event(job_id, EventKind::Finished { state });
        if let Some(s) = schedule
            && let Some(schedule) = self.core.schedules.get_mut(&s)
        {
            schedule.running.remove(&job_id);
            self.changes.schedules.insert(s);
        }
    }

    /// Drops a finished job and what refers to it.
    pub(super) fn collect(&mut self, job_id: JobId) {
        let Some(job) = self.core.jobs.remove(&job_id) else {
            return;
        };
        self.core.history.remove(&job_id);
        // Storage deletes every record of a job it no longer finds.
        self.changes.jobs.insert(job_id);
        if let Some(at) = job.finished_ms {
            self.idx.finished.remove(&(at, job_id));
        }
        self.idx.ready.forget_job(job_id);
        if let Some(key) = job.idempotency_key {
            let entry = (job.namespace.clone(), key);
            if self.core.idempotency.get(&entry).map(|(s, _)| *s) == Some(Submitted::Job(job_id)) {
                self.core.idempotency.remove(&entry);
                self.changes.idempotency.insert(entry);
            }
        }
        // Cancelled leased tasks keep a worker index entry until heartbeat;
        // drop any left.
        for (t, template) in job.templates.iter().enumerate() {
            for (p, record) in &template.tasks {
                if let Some(w) = &record.worker
                    && let Some(set) = self.idx.worker_tasks.get_mut(w)
                {
                    set.remove(&TaskKey {
                        job: job_id,
                        template: t as u32,
                        partition: *p,
                    });
                }
            }
        }
    }
}
