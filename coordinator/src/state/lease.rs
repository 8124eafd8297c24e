//! The lease protocol: grants, heartbeats, completions, failures, releases
//! and expiry, all fenced by per-grant tokens.
//!
//! **Architecture invariant:** a request about a task is honoured only if it
//! carries the token of the task's latest grant and that grant is still
//! live. Anything else is rejected and recorded as an event, so a worker
//! that was paused past its lease can never commit over a newer attempt.

use super::attempt::{attempt_prefix, is_own_prefix};
use super::command::TaskProgress;
use super::events::{EventKind, ExpiryReason};
use super::job::TaskRecord;
use super::outcome::{Grant, HeartbeatReply, HeartbeatStatus, Outcome, Rejection};
use super::outputs::Output;
use super::ready::SCAN_MAX;
use super::types::{JobState, MANIFEST_BYTES_MAX, Manifest, TaskKey, TaskState, WorkerId};
use super::workers::WorkerState;
use super::{Applied, LEASE_BATCH_MAX, StateMachine, TASKS_PER_REQUEST_MAX, UPSTREAM_OUTPUTS_MAX};

/// Longest failure message kept; the full text belongs in the task's log.
const MESSAGE_MAX: usize = 2048;

/// How a lease ended without a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    /// The worker reported a failure.
    Failed { retryable: bool },
    /// The lease or the timeout ran out.
    Expired(ExpiryReason),
}

impl StateMachine {
    /// Grants up to `max_tasks` tasks to a worker. With `epoch`, only in
    /// the worker's live session: a session that is not its latest, or
    /// that was declared lost, is refused, and the worker registers again.
    pub(super) fn lease(
        &mut self,
        worker_id: &WorkerId,
        epoch: Option<u64>,
        max_tasks: u32,
    ) -> Applied {
        let now = self.core.now_ms;
        let worker = self
            .core
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| Rejection::UnknownWorker(worker_id.clone()))?;
        if let Some(epoch) = epoch
            && (worker.epoch != epoch || worker.state == WorkerState::Lost)
        {
            return Err(Rejection::UnknownSession {
                worker: worker_id.clone(),
                epoch,
            });
        }
        worker.last_seen_ms = now;
        if worker.state == WorkerState::Lost {
            worker.state = WorkerState::Alive;
        }
        let worker = worker.clone();
        self.touch_worker(worker_id);
        if worker.state == WorkerState::Draining {
            return Ok(Outcome::Draining);
        }
        let want = max_tasks.min(LEASE_BATCH_MAX) as usize;
        let mut grants = Vec::with_capacity(want);
        let mut scanned = 0usize;
        while grants.len() < want {
            // The order changes with every grant (fair share), so look again.
            let mut chosen = None;
            'search: for job_id in self.idx.ready.in_order() {
                let Some(job) = self.core.jobs.get(&job_id) else {
                    continue;
                };
                for t in self.idx.ready.templates(job_id) {
                    scanned += 1;
                    if scanned > SCAN_MAX {
                        break 'search;
                    }
                    if worker.can_run(&job.templates[t as usize].def) {
                        chosen = Some((job_id, t));
                        break 'search;
                    }
                }
            }
            let Some((job_id, t)) = chosen else {
                break;
            };
            grants.push(self.grant(job_id, t, worker_id));
        }
        debug_assert!(grants.len() <= want, "granted more than asked for");
        Ok(Outcome::Leased(grants))
    }

    /// Grants one partition of template `t`: a requeued retry first, else
    /// the next partition that never ran.
    fn grant(&mut self, job_id: super::JobId, t: u32, worker_id: &WorkerId) -> Grant {
        let now = self.core.now_ms;
        let ttl = self.core.config.lease_ttl_ms as i64;
        let token = self.core.next_token;
        self.core.next_token += 1;
        let regrant = self.planted_regrant(job_id, t, worker_id);
        if let Some((partition, _)) = regrant {
            // The old lease leaves the indexes, so the state stays
            // self-consistent and only the audit trail shows the bug.
            self.end_lease(TaskKey {
                job: job_id,
                template: t,
                partition,
            });
        }
        let job = self
            .core
            .jobs
            .get_mut(&job_id)
            .expect("the ready index only holds live jobs");
        let template = &mut job.templates[t as usize];
        let timeout_ms = template.def.timeout_ms;
        let (partition, attempt) = match regrant {
            Some(taken) => taken,
            None => match template.requeued.pop_first() {
                Some(p) => (p, template.tasks.get(&p).map_or(1, |r| r.attempt)),
                None => {
                    let p = template.cursor;
                    template.cursor += 1;
                    (p, 1)
                }
            },
        };

        let record = TaskRecord {
            state: TaskState::Leased,
            attempt,
            token,
            worker: Some(worker_id.clone()),
            lease_deadline_ms: now + ttl,
            timeout_deadline_ms: now.saturating_add(timeout_ms as i64),
            ready_at_ms: 0,
            progress_permille: 0,
            last_error: template
                .tasks
                .get(&partition)
                .and_then(|r| r.last_error.clone()),
        };
        let expires = record.expires_at_ms();
        template.tasks.insert(partition, record);
        let key = TaskKey {
            job: job_id,
            template: t,
            partition,
        };
        let partition_key = template.def.partitions.key(partition).unwrap_or_default();
        let count = template.def.count;
        let config_json =
            resolve_config(&template.def.config_json, &partition_key, partition, count);
        let grant_template = template.def.id.clone();
        let kind = template.def.kind.clone();
        let from = if regrant.is_some() {
            TaskState::Leased
        } else {
            TaskState::Ready
        };
        job.shift(t, from, TaskState::Leased, 1);
        if job.state == JobState::Pending {
            job.state = JobState::Running;
            job.started_ms = Some(now);
        }
        let namespace = job.namespace.clone();
        let job_name = job.name.clone();
        let trace_parent = job.trace_parent.clone();
        // Succeeded upstream outputs never change, so the list read here
        // stays true for the whole attempt.
        let upstream = job.upstream_outputs(t, UPSTREAM_OUTPUTS_MAX);
        self.idx.deadlines.insert((expires, key));
        self.touch_task(key);
        self.history_leased(key, worker_id);
        // Look up before inserting so the common case clones no id.
        match self.idx.worker_tasks.get_mut(worker_id) {
            Some(held) => {
                held.insert(key);
            }
            None => {
                self.idx
                    .worker_tasks
                    .insert(worker_id.clone(), [key].into_iter().collect());
            }
        }
        self.idx.ready.add_running(&namespace, 1);
        self.event(
            job_id,
            EventKind::Leased {
                task: key,
                worker: worker_id.clone(),
                token,
                attempt,
            },
        );
        self.refresh_template(job_id, t);
        self.refresh_job(job_id);
        Grant {
            task: key,
            namespace,
            job_name,
            template: grant_template,
            kind,
            partition_key,
            config_json,
            attempt,
            token,
            lease_deadline_ms: now + ttl,
            timeout_ms,
            trace_parent,
            output_prefix: attempt_prefix(key, attempt, token),
            upstream,
        }
    }

    pub(super) fn heartbeat(&mut self, worker_id: &WorkerId, tasks: &[TaskProgress]) -> Applied {
        if tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a heartbeat names at most {TASKS_PER_REQUEST_MAX} tasks"
            )));
        }
        let now = self.core.now_ms;
        let ttl = self.core.config.lease_ttl_ms as i64;
        let worker = self
            .core
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| Rejection::UnknownWorker(worker_id.clone()))?;
        worker.last_seen_ms = now;
        if worker.state == WorkerState::Lost {
            worker.state = WorkerState::Alive;
        }
        let drain = worker.state == WorkerState::Draining;
        self.touch_worker(worker_id);
        let mut replies = Vec::with_capacity(tasks.len());
        for progress in tasks {
            let status = self.heartbeat_one(worker_id, progress, now, ttl);
            replies.push((progress.task, status));
        }
        Ok(Outcome::Heartbeat(HeartbeatReply {
            tasks: replies,
            drain,
            heartbeat_interval_ms: self.core.config.heartbeat_interval_ms,
        }))
    }

    fn heartbeat_one(
        &mut self,
        worker_id: &WorkerId,
        progress: &TaskProgress,
        now: i64,
        ttl: i64,
    ) -> HeartbeatStatus {
        let key = progress.task;
        let Some(job) = self.core.jobs.get_mut(&key.job) else {
            return HeartbeatStatus::LeaseLost;
        };
        let cancelled = job.state == JobState::Cancelled;
        let record = job
            .templates
            .get_mut(key.template as usize)
            .and_then(|t| t.tasks.get_mut(&key.partition));
        match record {
            Some(r) if r.token == progress.token && r.state == TaskState::Leased => {
                self.idx.deadlines.remove(&(r.expires_at_ms(), key));
                r.lease_deadline_ms = now + ttl;
                r.progress_permille = progress.progress_permille.min(1000);
                self.idx.deadlines.insert((r.expires_at_ms(), key));
                self.changes.tasks.insert(key);
                HeartbeatStatus::Ok {
                    lease_deadline_ms: r.lease_deadline_ms,
                }
            }
            Some(r) if r.token == progress.token && r.state == TaskState::Cancelled => {
                HeartbeatStatus::JobCancelled
            }
            _ if cancelled => HeartbeatStatus::JobCancelled,
            _ => {
                self.stale(key, progress.token, "heartbeat", worker_id);
                HeartbeatStatus::LeaseLost
            }
        }
    }

    /// Checks a heartbeat without changing anything: the leader extends
    /// leases on its own timers, so a heartbeat is a read. Refused when the
    /// session is not the worker's live one. Returns the reply and the
    /// tasks it named with a stale token (to be recorded as events).
    pub fn check_heartbeat(
        &self,
        worker_id: &WorkerId,
        epoch: u64,
        tasks: &[TaskProgress],
    ) -> Result<(HeartbeatReply, Vec<(TaskKey, u64)>), Rejection> {
        if tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a heartbeat names at most {TASKS_PER_REQUEST_MAX} tasks"
            )));
        }
        let worker = self
            .core
            .workers
            .get(worker_id)
            .ok_or_else(|| Rejection::UnknownWorker(worker_id.clone()))?;
        if worker.epoch != epoch || worker.state == WorkerState::Lost {
            return Err(Rejection::UnknownSession {
                worker: worker_id.clone(),
                epoch,
            });
        }
        let deadline = self.core.now_ms + self.core.config.lease_ttl_ms as i64;
        let mut stale = Vec::new();
        let replies = tasks
            .iter()
            .map(|progress| {
                let key = progress.task;
                let job = self.core.jobs.get(&key.job);
                let record = job
                    .and_then(|j| j.templates.get(key.template as usize))
                    .and_then(|t| t.tasks.get(&key.partition));
                let cancelled = job.is_some_and(|j| j.state == JobState::Cancelled);
                let status = match record {
                    _ if job.is_none() => HeartbeatStatus::LeaseLost,
                    Some(r) if r.token == progress.token && r.state == TaskState::Leased => {
                        HeartbeatStatus::Ok {
                            lease_deadline_ms: deadline,
                        }
                    }
                    Some(r) if r.token == progress.token && r.state == TaskState::Cancelled => {
                        HeartbeatStatus::JobCancelled
                    }
                    _ if cancelled => HeartbeatStatus::JobCancelled,
                    _ => {
                        stale.push((key, progress.token));
                        HeartbeatStatus::LeaseLost
                    }
                };
                (key, status)
            })
            .collect();
        Ok((
            HeartbeatReply {
                tasks: replies,
                drain: worker.state == WorkerState::Draining,
                heartbeat_interval_ms: self.core.config.heartbeat_interval_ms,
            },
            stale,
        ))
    }

    /// The record of a task that has run, if it has one.
    fn record(&self, key: TaskKey) -> Option<&TaskRecord> {
        self.core
            .jobs
            .get(&key.job)?
            .templates
            .get(key.template as usize)?
            .tasks
            .get(&key.partition)
    }

    /// The token of `key`'s live lease, if it is leased.
    pub fn live_token(&self, key: TaskKey) -> Option<u64> {
        self.record(key)
            .filter(|r| r.state == TaskState::Leased)
            .map(|r| r.token)
    }

    /// Ends the leases the leader's timers ran out for, each only if it is
    /// still live with the token the leader timed.
    pub(super) fn expire_leases(&mut self, tasks: &[(TaskKey, u64)]) -> Applied {
        if tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "an expiry names at most {TASKS_PER_REQUEST_MAX} leases"
            )));
        }
        let mut expired = Vec::new();
        for &(key, token) in tasks {
            if self.live_token(key) != Some(token) {
                continue;
            }
            let worker = self
                .record(key)
                .and_then(|r| r.worker.clone())
                .unwrap_or_default();
            let message = format!(
                "no heartbeat from {} within the lease TTL",
                super::types::shown(&worker)
            );
            self.end_attempt(key, AttemptEnd::Expired(ExpiryReason::Lease), &message);
            expired.push(key);
        }
        Ok(Outcome::LeasesExpired(expired))
    }

    /// Records what the leader's heartbeats said since it last did: when
    /// each session was heard, and each live lease's progress and display
    /// deadline.
    pub(super) fn heard(&mut self, workers: &[(WorkerId, u64)], tasks: &[TaskProgress]) -> Applied {
        if workers.len() + tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a heard summary names at most {TASKS_PER_REQUEST_MAX} workers and tasks"
            )));
        }
        let now = self.core.now_ms;
        let ttl = self.core.config.lease_ttl_ms as i64;
        for (id, epoch) in workers {
            if let Some(w) = self.core.workers.get_mut(id)
                && w.epoch == *epoch
                && w.state != WorkerState::Lost
            {
                w.last_seen_ms = now;
                self.touch_worker(id);
            }
        }
        for progress in tasks {
            let key = progress.task;
            let Some(record) = self
                .core
                .jobs
                .get_mut(&key.job)
                .and_then(|j| j.templates.get_mut(key.template as usize))
                .and_then(|t| t.tasks.get_mut(&key.partition))
                .filter(|r| r.token == progress.token && r.state == TaskState::Leased)
            else {
                continue;
            };
            record.progress_permille = progress.progress_permille.min(1000);
            record.lease_deadline_ms = now + ttl;
            self.changes.tasks.insert(key);
        }
        Ok(Outcome::Done)
    }

    /// Records heartbeats the leader refused for stale tokens in the
    /// tasks' audit trails.
    pub(super) fn stale_heartbeats(
        &mut self,
        worker_id: &WorkerId,
        tasks: &[(TaskKey, u64)],
    ) -> Applied {
        if tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a heartbeat names at most {TASKS_PER_REQUEST_MAX} tasks"
            )));
        }
        for &(key, token) in tasks {
            if self.live_token(key) != Some(token) {
                self.stale(key, token, "heartbeat", worker_id);
            }
        }
        Ok(Outcome::Done)
    }

    /// Records a rejected request about `key` made with `token`.
    fn stale(&mut self, key: TaskKey, token: u64, action: &str, worker_id: &WorkerId) {
        self.event(
            key.job,
            EventKind::StaleRejected {
                task: key,
                token,
                action: action.to_owned(),
                worker: worker_id.clone(),
            },
        );
    }

    /// Checks that `token` holds a live lease on `key`. On failure, records
    /// the rejection and says why.
    fn check_lease(
        &mut self,
        key: TaskKey,
        token: u64,
        action: &str,
        worker_id: &WorkerId,
    ) -> Result<(), Rejection> {
        let job = self
            .core
            .jobs
            .get(&key.job)
            .ok_or(Rejection::UnknownJob(key.job))?;
        let template = job
            .templates
            .get(key.template as usize)
            .filter(|t| key.partition < t.def.count)
            .ok_or(Rejection::UnknownTask(key))?;
        let verdict = match template.tasks.get(&key.partition) {
            Some(r) if r.token == token && r.state == TaskState::Leased => Ok(()),
            // Planted bug: any token of a leased task is taken as live.
            #[cfg(feature = "planted-bugs")]
            // A completion is taken even for a task waiting to run again
            // after its lease expired, as a coordinator without the check
            // would.
            Some(r)
                if self.planted.skip_fencing
                    && (r.state == TaskState::Leased
                        || (action == "complete"
                            && matches!(r.state, TaskState::Backoff | TaskState::Ready))) =>
            {
                Ok(())
            }
            Some(r) if r.token == token => Err(Rejection::LeaseLost {
                task: key,
                reason: match r.state {
                    TaskState::Cancelled => "the job was cancelled".to_owned(),
                    state => format!("the lease ended; the task is {}", state.as_str()),
                },
            }),
            Some(r) => Err(Rejection::StaleToken {
                task: key,
                presented: token,
                current: r.token,
            }),
            None => Err(Rejection::StaleToken {
                task: key,
                presented: token,
                current: template.outputs.get(key.partition).map_or(0, |o| o.token),
            }),
        };
        if verdict.is_err() {
            self.stale(key, token, action, worker_id);
        }
        verdict
    }

    pub(super) fn complete(
        &mut self,
        worker_id: &WorkerId,
        key: TaskKey,
        token: u64,
        manifest: &Manifest,
        skipped: bool,
    ) -> Applied {
        if manifest.weight() > MANIFEST_BYTES_MAX {
            return Err(Rejection::TooLarge(format!(
                "the manifest is {} bytes; the limit is {MANIFEST_BYTES_MAX}",
                manifest.weight()
            )));
        }
        // A repeat of the accepted completion (the reply was lost) is
        // answered as a success, without a second effect.
        if let Some(job) = self.core.jobs.get(&key.job)
            && let Some(template) = job.templates.get(key.template as usize)
            && !template.tasks.contains_key(&key.partition)
            && template
                .outputs
                .get(key.partition)
                .is_some_and(|o| o.token == token)
        {
            return Ok(Outcome::Completed { duplicate: true });
        }
        self.check_lease(key, token, "complete", worker_id)?;
        // The prefix rule pins the token's own attempt, so it fences too;
        // the planted bug skips it with the token check.
        #[cfg(feature = "planted-bugs")]
        let fenced = !self.planted.skip_fencing;
        #[cfg(not(feature = "planted-bugs"))]
        let fenced = true;
        if fenced {
            self.check_prefix(key, token, manifest, skipped)?;
        }
        // Leased, unless the planted skip-fencing bug took a completion
        // for a task waiting to run again.
        let from = self.record(key).map_or(TaskState::Leased, |r| r.state);
        let record = if from == TaskState::Leased {
            self.end_lease(key)
        } else {
            self.unqueue(key)
        };
        #[cfg(feature = "planted-bugs")]
        let planted = self.planted.any();
        #[cfg(not(feature = "planted-bugs"))]
        let planted = false;
        let job = self.core.jobs.get_mut(&key.job).expect("checked above");
        let template = &mut job.templates[key.template as usize];
        template.tasks.remove(&key.partition);
        let manifest = (*manifest != Manifest::default()).then(|| Box::new(manifest.clone()));
        // A task's output is committed exactly once: a repeat was answered
        // as a duplicate above (unless a planted bug broke fencing).
        debug_assert!(
            planted || template.outputs.get(key.partition).is_none(),
            "a second output for {key}"
        );
        template.outputs.insert(
            key.partition,
            Output {
                manifest,
                token,
                skipped,
            },
        );
        let to = if skipped {
            TaskState::Skipped
        } else {
            TaskState::Succeeded
        };
        job.shift(key.template, from, to, 1);
        self.touch_task(key);
        self.changes.outputs.insert(key);
        let (worker, attempt) = record.map_or_else(
            || (WorkerId::default(), 0),
            |r| (r.worker.unwrap_or_default(), r.attempt),
        );
        self.history_finished(key, attempt);
        self.event(
            key.job,
            EventKind::Completed {
                task: key,
                token,
                worker,
                attempt,
            },
        );
        self.after_task_finished(key.job, key.template);
        Ok(Outcome::Completed { duplicate: false })
    }

    /// Refuses a manifest outside the attempt's own prefix (a reused
    /// prior output names an earlier attempt's, and is exempt). Called once
    /// the lease is known to be live, so the record exists.
    fn check_prefix(
        &self,
        key: TaskKey,
        token: u64,
        manifest: &Manifest,
        skipped: bool,
    ) -> Result<(), Rejection> {
        let attempt = self.record(key).map_or(0, |r| r.attempt);
        if skipped || is_own_prefix(key, attempt, token, &manifest.prefix) {
            return Ok(());
        }
        Err(Rejection::ForeignPrefix {
            task: key,
            token,
            presented: manifest.prefix.clone(),
            expected: attempt_prefix(key, attempt, token),
        })
    }

    pub(super) fn fail(
        &mut self,
        worker_id: &WorkerId,
        key: TaskKey,
        token: u64,
        retryable: bool,
        message: &str,
    ) -> Applied {
        self.check_lease(key, token, "fail", worker_id)?;
        let retry_at_ms = self.end_attempt(key, AttemptEnd::Failed { retryable }, message);
        Ok(Outcome::FailRecorded { retry_at_ms })
    }

    pub(super) fn release(&mut self, worker_id: &WorkerId, tasks: &[(TaskKey, u64)]) -> Applied {
        if tasks.len() > TASKS_PER_REQUEST_MAX {
            return Err(Rejection::TooLarge(format!(
                "a release names at most {TASKS_PER_REQUEST_MAX} tasks"
            )));
        }
        let mut released = 0u32;
        let mut not_held = Vec::new();
        for &(key, token) in tasks {
            if self.check_lease(key, token, "release", worker_id).is_err() {
                not_held.push(key);
                continue;
            }
            self.requeue_leased(key);
            self.event(key.job, EventKind::Released { task: key, token });
            released += 1;
        }
        Ok(Outcome::Released { released, not_held })
    }

    /// Puts a leased task back in the queue at once without counting the
    /// attempt (drain, deregistration).
    pub(super) fn requeue_leased(&mut self, key: TaskKey) {
        let now = self.core.now_ms;
        self.end_lease(key);
        let Some(job) = self.core.jobs.get_mut(&key.job) else {
            return;
        };
        let template = &mut job.templates[key.template as usize];
        if let Some(record) = template.tasks.get_mut(&key.partition) {
            record.state = TaskState::Ready;
            record.worker = None;
            record.ready_at_ms = now;
        }
        template.requeued.insert(key.partition);
        job.shift(key.template, TaskState::Leased, TaskState::Ready, 1);
        self.touch_task(key);
        self.refresh_template(key.job, key.template);
        self.refresh_job(key.job);
    }

    /// Takes a task waiting to run again (in backoff, or requeued) out of
    /// its queue; the record itself is left for the caller to change.
    fn unqueue(&mut self, key: TaskKey) -> Option<TaskRecord> {
        let record = self.record(key)?.clone();
        match record.state {
            TaskState::Backoff => {
                self.idx.backoff.remove(&(record.ready_at_ms, key));
            }
            TaskState::Ready => {
                if let Some(template) = self
                    .core
                    .jobs
                    .get_mut(&key.job)
                    .and_then(|j| j.templates.get_mut(key.template as usize))
                {
                    template.requeued.remove(&key.partition);
                }
            }
            _ => {}
        }
        Some(record)
    }

    /// Removes a live lease from the indexes and frees its slot; the record
    /// itself is left for the caller to change.
    fn end_lease(&mut self, key: TaskKey) -> Option<TaskRecord> {
        let job = self.core.jobs.get_mut(&key.job)?;
        let namespace = job.namespace.clone();
        let record = job
            .templates
            .get_mut(key.template as usize)?
            .tasks
            .get(&key.partition)?
            .clone();
        self.idx.deadlines.remove(&(record.expires_at_ms(), key));
        if let Some(w) = &record.worker
            && let Some(set) = self.idx.worker_tasks.get_mut(w)
        {
            set.remove(&key);
            if set.is_empty() {
                self.idx.worker_tasks.remove(w);
            }
        }
        self.idx.ready.add_running(&namespace, -1);
        Some(record)
    }

    /// Ends a leased attempt that did not complete: schedules a retry with
    /// backoff, or fails the task for good. Returns the retry time.
    pub(super) fn end_attempt(
        &mut self,
        key: TaskKey,
        end: AttemptEnd,
        message: &str,
    ) -> Option<i64> {
        let now = self.core.now_ms;
        let record = self.end_lease(key)?;
        // Attempt numbers go on across `job retry`; the budget counts from
        // the retry.
        let attempt_since_retry = record.attempt.saturating_sub(self.retry_base(key));
        let job = self.core.jobs.get_mut(&key.job)?;
        let template = &mut job.templates[key.template as usize];
        let policy = template.def.retries;
        let retryable = match end {
            AttemptEnd::Failed { retryable } => retryable,
            AttemptEnd::Expired(_) => true,
        };
        // Attempt n failing leaves n - 1 retries used; `max` retries allowed.
        let retry = retryable && attempt_since_retry <= policy.max;
        let message: String = message.chars().take(MESSAGE_MAX).collect();
        let entry = template.tasks.get_mut(&key.partition)?;
        entry.worker = None;
        entry.last_error = Some(message.clone());
        let retry_at_ms = if retry {
            let at = now.saturating_add(policy.delay_ms(attempt_since_retry) as i64);
            entry.attempt = record.attempt + 1;
            entry.ready_at_ms = at;
            if at <= now {
                entry.state = TaskState::Ready;
                template.requeued.insert(key.partition);
                job.shift(key.template, TaskState::Leased, TaskState::Ready, 1);
            } else {
                entry.state = TaskState::Backoff;
                self.idx.backoff.insert((at, key));
                job.shift(key.template, TaskState::Leased, TaskState::Backoff, 1);
            }
            Some(at)
        } else {
            entry.state = TaskState::Failed;
            job.shift(key.template, TaskState::Leased, TaskState::Failed, 1);
            None
        };
        let event = match end {
            AttemptEnd::Failed { .. } => EventKind::Failed {
                task: key,
                token: record.token,
                message,
                retry_at_ms,
            },
            AttemptEnd::Expired(reason) => EventKind::Expired {
                task: key,
                token: record.token,
                reason,
                retry_at_ms,
            },
        };
        self.touch_task(key);
        if retry_at_ms.is_none() {
            self.history_finished(key, record.attempt);
        }
        self.event(key.job, event);
        if retry_at_ms.is_none() {
            self.fail_downstream(key.job, key.template);
            self.after_task_finished(key.job, key.template);
        } else {
            self.refresh_template(key.job, key.template);
            self.refresh_job(key.job);
        }
        retry_at_ms
    }
}

/// The template's config for one partition: `${partition.*}` resolved.
impl StateMachine {
    /// Planted bug `double-lease`: a partition of template `t` that another
    /// worker holds a live lease on, to be granted again.
    #[cfg(feature = "planted-bugs")]
    fn planted_regrant(
        &self,
        job_id: super::JobId,
        t: u32,
        worker_id: &WorkerId,
    ) -> Option<(u64, u32)> {
        if !self.planted.double_lease {
            return None;
        }
        self.core
            .jobs
            .get(&job_id)?
            .templates
            .get(t as usize)?
            .tasks
            .iter()
            .find(|(_, r)| r.state == TaskState::Leased && r.worker.as_ref() != Some(worker_id))
            .map(|(p, r)| (*p, r.attempt))
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn planted_regrant(
        &self,
        _job: super::JobId,
        _t: u32,
        _worker: &WorkerId,
    ) -> Option<(u64, u32)> {
        None
    }
}

fn resolve_config(config_json: &str, key: &str, index: u64, count: u64) -> String {
    if !config_json.contains("${") {
        return config_json.to_owned();
    }
    match serde_json::from_str::<serde_json::Value>(config_json) {
        Ok(mut value) => {
            drover_jobspecs::interpolate::resolve_partition_refs(&mut value, key, index, count);
            value.to_string()
        }
        Err(_) => config_json.to_owned(),
    }
}
