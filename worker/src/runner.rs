//! The worker's lease loop: lease ahead of the free slots (long poll, a
//! bounded prefetch), run tasks concurrently, report their ends in batches
//! with their fencing tokens, and drain on shutdown. Registration and
//! heartbeats are the [`session`](crate::session)'s.
//!
//! A leased task is held from its grant until its report is answered:
//! first waiting for an execution slot, then running, then reporting. It
//! takes a slot only while it runs, so a slot never waits for a report to
//! commit or for a lease call to come back; and it is heartbeated the whole
//! time, so its lease outlives a slow report.
//!
//! Each attempt runs inside a `task` span (job, task, attempt and the job's
//! trace id), so its logs join the job's trace; the loop records into the
//! [`Metrics`] of its config.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_net::{CallError, Coordinators, Policy};
use drover_proto::v1::{
    LeaseRequest, LeaseResponse, LeasedTask, ReleaseRequest, ReleasedTask, TaskKind,
};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tonic::{Code, Status};
use tracing::Instrument;

pub use crate::config::{WorkerConfig, WorkerReport};
use crate::executors::{self, AttemptContext, Executor, Progress, TaskError};
use crate::metrics::AttemptOutcome;
use crate::prefetch::Prefetch;
use crate::reporter::{BatchLimits, Ending, Report, Reporter};
use crate::session;
use crate::shared::{Held, Shared};
use crate::task_log::upload::LogUploader;
use crate::task_log::{self, AttemptLog};

/// Lease calls in flight at once: one long poll, and one more for slots
/// that free up while it waits.
const LEASE_CALLS_MAX: usize = 2;

/// The executors a worker with `config` runs, by kind name.
fn executors_for(config: &WorkerConfig) -> BTreeMap<&'static str, Arc<dyn Executor>> {
    let mut executors: BTreeMap<&'static str, Arc<dyn Executor>> = BTreeMap::new();
    let noop: Arc<dyn Executor> = Arc::new(executors::noop::Noop);
    let sleep: Arc<dyn Executor> = Arc::new(executors::sleep::Sleep);
    let export: Arc<dyn Executor> = Arc::new(executors::annotation_export::AnnotationExport);
    let dedup: Arc<dyn Executor> = Arc::new(executors::dedup::Dedup);
    let sensors: Arc<dyn Executor> =
        Arc::new(executors::sensor_features::SensorFeatures::default());
    executors.insert(noop.kind(), noop);
    executors.insert(sleep.kind(), sleep);
    executors.insert(export.kind(), export);
    executors.insert(dedup.kind(), dedup);
    executors.insert(sensors.kind(), sensors);
    if config.allow_command {
        let command: Arc<dyn Executor> = Arc::new(executors::command::Command);
        executors.insert(command.kind(), command);
    }
    if let Some(dir) = &config.probe_log {
        match executors::probe::Probe::open(dir, &config.worker_id) {
            Ok(probe) => {
                let probe: Arc<dyn Executor> = Arc::new(probe);
                executors.insert(probe.kind(), probe);
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot open the probe log; not running probe tasks");
            }
        }
    }
    executors
}

/// Runs a worker until `shutdown` resolves, then drains.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> WorkerReport {
    let executors = executors_for(&config);
    let conn = Coordinators::new(config.coordinators.clone())
        .with_dialer(config.dialer.clone())
        .with_policy(Policy::WORKER);
    let kinds = session::kinds_of(&executors);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    // Registration retries until the cluster answers; a shutdown meanwhile
    // ends the worker with nothing to drain.
    let registered = {
        let registering = session::register(&conn, &config, &kinds, stop_rx.clone());
        tokio::pin!(registering);
        tokio::select! {
            r = &mut registering => r,
            _ = &mut shutdown => None,
        }
    };
    let Some((session, task_log_url)) = registered else {
        return WorkerReport::default();
    };
    let reporter = Reporter::spawn(
        conn.clone(),
        config.worker_id.clone(),
        BatchLimits {
            reports_max: session.lease_batch_max,
            linger: config.report_linger,
            ..BatchLimits::default()
        },
    );
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.slots.max(1) as usize)),
        prefetch: Mutex::new(Prefetch::new(
            config.prefetch_max.min(session.lease_batch_max),
        )),
        conn,
        config,
        held: Mutex::new(BTreeMap::new()),
        unfinished: AtomicUsize::new(0),
        finished: Notify::new(),
        report: Mutex::new(WorkerReport::default()),
        executors,
        task_logs: Mutex::new(None),
        session: Mutex::new(session),
        reporter,
        draining: AtomicBool::new(false),
        lease_failures: AtomicU32::new(0),
    });
    shared.set_task_log_store(&task_log_url);
    // Heartbeats go on through the drain, so the attempts it waits for keep
    // their leases.
    let heartbeats = tokio::spawn(session::heartbeat_loop(shared.clone(), kinds.clone()));
    let main = lease_loop(shared.clone(), kinds, stop_rx);
    tokio::pin!(main);
    tokio::select! {
        _ = &mut main => {}
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
            main.await;
        }
    }
    drain(&shared).await;
    heartbeats.abort();
    shared.report.lock().map(|r| r.clone()).unwrap_or_default()
}

/// What one lease call brought back: the tasks asked for, the session it
/// was made in, and the answer.
struct Answer {
    asked: usize,
    epoch: u64,
    elapsed: Duration,
    result: Result<LeaseResponse, Status>,
}

/// Leases until stopped or drained: asks for the free slots plus the
/// lease-ahead depth, with at most [`LEASE_CALLS_MAX`] calls in flight, and
/// starts every granted task.
async fn lease_loop(shared: Arc<Shared>, kinds: Vec<i32>, stop: watch::Receiver<bool>) {
    let (answers_tx, mut answers) = mpsc::channel::<Answer>(LEASE_CALLS_MAX);
    let mut in_flight = 0usize;
    let mut asked = 0usize;
    let mut stop_wait = stop.clone();
    loop {
        if *stop.borrow() || shared.draining.load(Ordering::Acquire) {
            break;
        }
        let wanted = shared.wanted(asked);
        // A second call only for a worthwhile batch, so freed slots do not
        // each cost a lease command of their own.
        let worth = (shared.config.slots as usize / 4).max(1);
        if wanted > 0 && (in_flight == 0 || (in_flight < LEASE_CALLS_MAX && wanted >= worth)) {
            let session = shared.session();
            let n = wanted.min(session.lease_batch_max.max(1));
            in_flight += 1;
            asked += n;
            let request = LeaseRequest {
                worker_id: shared.config.worker_id.clone(),
                session_epoch: session.epoch,
                max_tasks: n as u32,
                wait_ms: shared
                    .config
                    .lease_wait
                    .min(session.lease_wait_max)
                    .as_millis() as i64,
            };
            let conn = shared.conn.clone();
            let tx = answers_tx.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = conn
                    .workers(|mut c| {
                        let r = request.clone();
                        async move { c.lease(r).await.map(|r| r.into_inner()) }
                    })
                    .await
                    .map_err(CallError::into_status);
                let _ = tx
                    .send(Answer {
                        asked: n,
                        epoch: request.session_epoch,
                        elapsed: started.elapsed(),
                        result,
                    })
                    .await;
            });
            continue;
        }
        tokio::select! {
            answer = answers.recv() => {
                let Some(answer) = answer else { break };
                in_flight -= 1;
                asked -= answer.asked;
                take_answer(&shared, &kinds, answer, &stop).await;
            }
            _ = shared.finished.notified() => {}
            _ = stop_wait.changed() => {}
        }
    }
    // Calls still in flight may already have been granted tasks: take them
    // (briefly) so they are drained and released rather than left leased
    // until their TTL.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while in_flight > 0 {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Ok(Some(answer)) => {
                in_flight -= 1;
                if let Ok(response) = answer.result {
                    for task in response.tasks {
                        start_task(&shared, task);
                    }
                }
            }
            _ => break,
        }
    }
}

/// Starts the granted tasks of one answer, or reacts to its error.
async fn take_answer(
    shared: &Arc<Shared>,
    kinds: &[i32],
    answer: Answer,
    stop: &watch::Receiver<bool>,
) {
    shared.config.metrics.lease_call(answer.elapsed);
    match answer.result {
        Ok(response) => {
            if shared.lease_failures.swap(0, Ordering::Relaxed) > 0 {
                tracing::info!("leasing again");
            }
            if response.drain_requested {
                shared.draining.store(true, Ordering::Release);
            }
            if !response.tasks.is_empty()
                && let Ok(mut prefetch) = shared.prefetch.lock()
            {
                prefetch.lease_answered(answer.elapsed);
            }
            for task in response.tasks {
                start_task(shared, task);
            }
        }
        Err(status) if status.code() == Code::NotFound => {
            // The session ended (declared lost, or the worker forgotten):
            // register again, once for all the calls that learn it.
            session::renew(shared, kinds, answer.epoch, stop.clone()).await;
        }
        Err(status) => {
            // A failover is over within a few hundred milliseconds, so the
            // first retries come quickly; a cluster that stays unreachable
            // is asked at most once a second.
            let failures = shared.lease_failures.fetch_add(1, Ordering::Relaxed);
            if failures == 0 {
                tracing::warn!(error = %status.message(), "lease failed; retrying");
            }
            tokio::time::sleep(lease_retry_delay(failures)).await;
        }
    }
}

/// How long a lease call waits after `failures` failed calls in a row:
/// 25 ms more for each, at most 1 s.
fn lease_retry_delay(failures: u32) -> Duration {
    Duration::from_millis((25 * (u64::from(failures) + 1)).min(1000))
}

fn start_task(shared: &Arc<Shared>, task: LeasedTask) {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    // Kept only where it will be stored: the task log store uploads it.
    let log = if shared.keeps_task_logs() {
        AttemptLog::default()
    } else {
        AttemptLog::discarding()
    };
    let progress = Progress::logged_to(log.clone());
    let started = Arc::new(AtomicBool::new(false));
    if let Ok(mut held) = shared.held.lock() {
        held.insert(
            task.task_id.clone(),
            Held {
                token: task.fencing_token,
                cancel: cancel_tx,
                progress: progress.clone(),
                started: started.clone(),
            },
        );
        shared.config.metrics.set_running(held.len());
    }
    shared.unfinished.fetch_add(1, Ordering::AcqRel);
    let kind = drover_proto::v1::TaskKind::try_from(task.kind).unwrap_or(TaskKind::Unspecified);
    let name = kind_name(kind);
    // The attempt's logs carry the job's trace id, so one id finds a job's
    // work from the submit to every worker that ran it; the events inside
    // also go to the attempt's own log.
    let handed = log.is_kept().then(|| task_log::capture::hand_over(&log));
    let span = tracing::info_span!(
        "task",
        job_id = %task.job_id,
        task_id = %task.task_id,
        attempt = task.attempt,
        kind = name,
        trace_id = %drover_proto::trace::trace_id_of(&task.trace_parent).unwrap_or_default(),
        attempt_log = handed.as_ref().map(task_log::capture::HandedOver::number),
    );
    // Exported spans: the attempt is a child of its lease in the job's
    // trace.
    drover_proto::spans::set_parent(&span, &task.trace_parent);
    drop(handed);
    let shared = shared.clone();
    let attempt = Attempt {
        task,
        name,
        cancel: cancel_rx,
        progress,
        log,
        started,
    };
    tokio::spawn(hold(shared, attempt).instrument(span));
}

/// One held task's attempt, as it starts.
struct Attempt {
    task: LeasedTask,
    name: &'static str,
    cancel: watch::Receiver<bool>,
    progress: Progress,
    log: AttemptLog,
    started: Arc<AtomicBool>,
}

/// Holds a task from its grant to its answered report: waits for a slot
/// (or a stop), runs the attempt, reports it.
async fn hold(shared: Arc<Shared>, attempt: Attempt) {
    let task_id = attempt.task.task_id.clone();
    let token = attempt.task.fencing_token;
    let permit = {
        let slots = shared.slots.clone();
        let acquire = slots.acquire_owned();
        tokio::pin!(acquire);
        let mut cancel = attempt.cancel.clone();
        loop {
            if *cancel.borrow_and_update() {
                break None;
            }
            tokio::select! {
                permit = &mut acquire => break permit.ok(),
                changed = cancel.changed() => if changed.is_err() { break None },
            }
        }
    };
    let Some(permit) = permit else {
        // Stopped before it ran: lease lost, job cancelled, or handed back
        // by a drain (which then counts it as released).
        shared.unfinished_done();
        if shared.forget(&task_id) {
            shared.count_finished(AttemptOutcome::Stopped, 1);
        }
        shared.finished.notify_one();
        return;
    };
    attempt.started.store(true, Ordering::Release);
    let Ran {
        result,
        elapsed,
        reused,
        stopped,
    } = run_attempt(&shared, attempt).await;
    drop(permit);
    shared.unfinished_done();
    if let Ok(mut prefetch) = shared.prefetch.lock() {
        prefetch.attempt_ran(elapsed);
    }
    let outcome = if stopped {
        // Lease lost, job cancelled or drained: the coordinator already
        // knows; reporting would only be rejected. A drain took the task
        // out of `held` and counts it as released.
        if shared.forget(&task_id) {
            shared.count_finished(AttemptOutcome::Stopped, 1);
            AttemptOutcome::Stopped
        } else {
            AttemptOutcome::Released
        }
    } else {
        // Still held, and heartbeated, while the report is on its way; counted
        // once it has left, so a count never runs ahead of the held gauge.
        let ending = match result {
            Ok(manifest) => Ending::Succeeded { manifest, reused },
            Err(e) => Ending::Failed {
                retryable: e.retryable,
                message: e.message,
            },
        };
        let outcome = shared
            .reporter
            .report(Report {
                task_id: task_id.clone(),
                token,
                ending,
                // The report's span on the coordinator joins the trace
                // under this attempt.
                trace_parent: drover_proto::spans::traceparent_of(&tracing::Span::current())
                    .unwrap_or_default(),
            })
            .await;
        // A drain that handed it back meanwhile counted it already.
        if shared.forget(&task_id) {
            shared.count_finished(outcome, 1);
        }
        outcome
    };
    tracing::info!(
        outcome = outcome.as_str(),
        duration_ms = elapsed.as_millis() as u64,
        "attempt finished"
    );
    shared.finished.notify_one();
}

/// How one attempt ended on this worker.
struct Ran {
    /// The executor's result.
    result: Result<drover_proto::v1::OutputManifest, TaskError>,
    /// How long it ran.
    elapsed: Duration,
    /// It reused a prior output instead of running.
    reused: bool,
    /// It was told to stop (lease lost, job cancelled, drain) and did not
    /// finish. One that finished anyway is still reported: fencing is the
    /// coordinator's to decide.
    stopped: bool,
}

/// Runs one attempt to its end or its timeout. Its log is stored before
/// this returns, so an attempt's log is whole by the time the cluster shows
/// how it ended.
async fn run_attempt(shared: &Shared, attempt: Attempt) -> Ran {
    let Attempt {
        task,
        name,
        cancel,
        progress,
        log,
        ..
    } = attempt;
    let executor = shared.executors.get(name).cloned();
    if log.is_kept() {
        log.stamped(
            "drover",
            &format!(
                "attempt {} of task {} ({name}) on worker {}, fencing token {}, output prefix {}",
                task.attempt,
                task.task_id,
                shared.config.worker_id,
                task.fencing_token,
                task.output_prefix
            ),
        );
    }
    let (ended_tx, ended_rx) = watch::channel(false);
    let uploader = shared.task_log_store().map(|store| {
        let uploader = LogUploader::new(store, &task.output_prefix, log.clone());
        tokio::spawn(
            uploader
                .keep_stored(task_log::upload::STORE_EVERY, ended_rx)
                .in_current_span(),
        )
    });
    let timeout = Duration::from_millis(task.timeout_ms.max(1) as u64);
    let stopped = cancel.clone();
    tracing::debug!(token = task.fencing_token, "attempt started");
    let started = Instant::now();
    let reused = executors::Reused::default();
    // The scratch directory is named by the (unique) prefix too, so a
    // fenced attempt still running elsewhere never shares it.
    let scratch_dir = crate::output::attempt_dir(&shared.config.work_dir, &task.output_prefix);
    let output_dir = crate::output::attempt_dir(&shared.config.data_root, &task.output_prefix);
    let uses_scratch = executor.as_ref().is_some_and(|e| e.uses_scratch_dir());
    let result = match (executor, output_dir, scratch_dir.clone()) {
        (None, ..) => Err(TaskError::permanent(format!(
            "this worker does not run `{name}` tasks"
        ))),
        (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        (Some(executor), Ok(output_dir), Ok(scratch_dir)) => {
            let ctx = AttemptContext {
                cancel,
                progress,
                reused: reused.clone(),
                output_dir,
                scratch_dir,
                log: log.clone(),
            };
            match tokio::time::timeout(timeout, executor.run(task, ctx)).await {
                Ok(r) => r,
                Err(_) => Err(TaskError::retryable("the attempt ran past its timeout")),
            }
        }
    };
    // Most attempts never make their scratch directory: look (only where
    // the kind may make one) before sending a removal to the blocking pool.
    if uses_scratch
        && let Ok(dir) = scratch_dir
        && std::fs::symlink_metadata(&dir).is_ok()
    {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    let elapsed = started.elapsed();
    shared.config.metrics.attempt_ran(name, elapsed);
    // An attempt that was told to stop and then failed was stopped; one
    // that finished its work anyway is reported, and the coordinator's
    // fencing decides whether it counts.
    let was_stopped = *stopped.borrow() && result.is_err();
    if log.is_kept() {
        log.stamped("drover", &ending(&result, was_stopped, elapsed));
    }
    let _ = ended_tx.send(true);
    if let Some(uploader) = uploader {
        let _ = uploader.await;
    }
    Ran {
        result,
        elapsed,
        reused: reused.is_marked(),
        stopped: was_stopped,
    }
}

/// The last line of an attempt's log: how it ended as far as the worker
/// knows (the coordinator may still refuse a stale completion).
fn ending(
    result: &Result<drover_proto::v1::OutputManifest, TaskError>,
    stopped: bool,
    elapsed: Duration,
) -> String {
    let ms = elapsed.as_millis();
    match result {
        _ if stopped => format!(
            "attempt stopped after {ms} ms: its lease was lost, its job cancelled, or the worker is draining"
        ),
        Ok(m) => format!(
            "attempt succeeded after {ms} ms with {} output files",
            m.files.len()
        ),
        Err(e) => format!(
            "attempt failed after {ms} ms ({}): {}",
            if e.retryable {
                "retryable"
            } else {
                "permanent"
            },
            e.message
        ),
    }
}

/// A kind's name, as specs and executors spell it.
fn kind_name(kind: TaskKind) -> &'static str {
    drover_proto::names::task_kind_name(kind).unwrap_or("unspecified")
}

/// Waits for running attempts up to the drain timeout, then stops the rest
/// and hands them back so they are leased again at once. Tasks still
/// waiting for a slot are handed back first, without waiting.
async fn drain(shared: &Arc<Shared>) {
    release(shared, |h| !h.started.load(Ordering::Acquire), false).await;
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    while shared.held_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = shared.finished.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    release(shared, |_| true, true).await;
}

/// Stops the held tasks `which` picks and hands them back in one call;
/// `exiting` also tells the cluster the worker is leaving. They are taken
/// out of `held` with the lock held, so each attempt is counted once:
/// released here, or stopped by its own task ([`hold`]).
async fn release(shared: &Arc<Shared>, which: impl Fn(&Held) -> bool, exiting: bool) {
    let leftover: Vec<ReleasedTask> = shared
        .held
        .lock()
        .map(|mut held| {
            let ids: Vec<String> = held
                .iter()
                .filter(|(_, h)| which(h))
                .map(|(id, _)| id.clone())
                .collect();
            let taken: Vec<ReleasedTask> = ids
                .into_iter()
                .filter_map(|id| {
                    let h = held.remove(&id)?;
                    let _ = h.cancel.send(true);
                    Some(ReleasedTask {
                        task_id: id,
                        fencing_token: h.token,
                    })
                })
                .collect();
            shared.config.metrics.set_running(held.len());
            taken
        })
        .unwrap_or_default();
    if leftover.is_empty() && !exiting {
        return;
    }
    let count = leftover.len() as u64;
    let request = ReleaseRequest {
        worker_id: shared.config.worker_id.clone(),
        tasks: leftover,
        reason: "worker shutting down".to_owned(),
        worker_exiting: exiting,
    };
    let released = shared
        .conn
        .workers(|mut c| {
            let r = request.clone();
            async move { c.release(r).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(CallError::into_status)
        .is_ok();
    // Unreleased tasks are left to their lease's expiry.
    shared.count_finished(
        if released {
            AttemptOutcome::Released
        } else {
            AttemptOutcome::Stopped
        },
        count,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_retries_come_quickly_through_an_election_and_slowly_after() {
        assert_eq!(lease_retry_delay(0), Duration::from_millis(25));
        assert_eq!(lease_retry_delay(3), Duration::from_millis(100));
        let through_an_election: Duration = (0..6).map(lease_retry_delay).sum();
        assert!(through_an_election < Duration::from_millis(600));
        assert_eq!(lease_retry_delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn every_executor_registers_its_kind() {
        let mut config = WorkerConfig::new("w".to_owned(), vec![]);
        config.allow_command = true;
        let executors = executors_for(&config);
        assert!(executors.len() >= 6);
        for name in executors.keys() {
            let kind = drover_proto::names::task_kind_named(name);
            assert_ne!(kind, TaskKind::Unspecified, "`{name}` has no wire kind");
            assert_eq!(kind_name(kind), *name);
        }
    }
}
