//! The worker's lease loop: register, lease up to the free slots (long
//! poll), run tasks concurrently, heartbeat every running task in one call,
//! complete or fail each with its fencing token, and drain on shutdown.
//!
//! Each attempt runs inside a `task` span (job, task, attempt and the job's
//! trace id), so its logs join the job's trace; the loop records into the
//! [`Metrics`] of its config.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::v1::{
    CompleteRequest, FailRequest, HeartbeatRequest, HeartbeatStatus, LeaseRequest, LeasedTask,
    RegisterRequest, ReleaseRequest, ReleasedTask, TaskHeartbeat, TaskKind,
};
use tokio::sync::{Notify, watch};
use tonic::Code;
use tracing::Instrument;

use crate::conn::Conn;
use crate::dataset::location::Location;
use crate::executors::{self, AttemptContext, Executor, Progress, TaskError};
use crate::metrics::{AttemptOutcome, Metrics};
use crate::task_log::upload::LogUploader;
use crate::task_log::{self, AttemptLog};

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique id; a restarted worker should use a new one.
    pub worker_id: String,
    /// Coordinator addresses; the worker follows the leader among them.
    pub coordinators: Vec<String>,
    /// Tasks run at once.
    pub slots: u32,
    /// Labels matched against task constraints.
    pub labels: BTreeMap<String, String>,
    /// Root below which attempts write their outputs, each under its own
    /// attempt-scoped prefix.
    pub data_root: PathBuf,
    /// Scratch space for running attempts (cleared after each).
    pub work_dir: PathBuf,
    /// Run `command` tasks (arbitrary programs).
    pub allow_command: bool,
    /// Run `probe` tasks, recording each attempt to a side log in this
    /// directory.
    pub probe_log: Option<PathBuf>,
    /// On shutdown, how long running tasks may finish before they are
    /// released to other workers.
    pub drain_timeout: Duration,
    /// Long-poll length of one lease call.
    pub lease_wait: Duration,
    /// Where the worker records its metrics; the caller keeps a clone to
    /// serve them.
    pub metrics: Metrics,
    /// How coordinators are dialled: plaintext, or mutual TLS with the
    /// worker's certificate, and a token if the cluster wants one.
    pub dialer: drover_net::Dialer,
}

impl WorkerConfig {
    /// Defaults for a worker talking to `coordinators`.
    pub fn new(worker_id: impl Into<String>, coordinators: Vec<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            coordinators,
            slots: 4,
            labels: BTreeMap::new(),
            data_root: PathBuf::from("./drover-data/outputs"),
            work_dir: PathBuf::from("./drover-data/worker"),
            allow_command: false,
            probe_log: None,
            drain_timeout: Duration::from_secs(30),
            lease_wait: Duration::from_secs(10),
            metrics: Metrics::new(),
            dialer: drover_net::Dialer::plaintext(),
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Completions the coordinator accepted.
    pub completed: u64,
    /// Failures reported.
    pub failed: u64,
    /// Tasks stopped because their lease was lost or their job cancelled.
    pub stopped: u64,
    /// Tasks handed back when draining.
    pub released: u64,
}

/// A task in flight.
struct Running {
    token: u64,
    cancel: watch::Sender<bool>,
    progress: Progress,
}

struct Shared {
    config: WorkerConfig,
    conn: Conn,
    running: Mutex<BTreeMap<String, Running>>,
    finished: Notify,
    report: Mutex<WorkerReport>,
    executors: BTreeMap<&'static str, Arc<dyn Executor>>,
    /// The cluster's task log store, as the last registration named it.
    task_logs: Mutex<Option<Location>>,
}

impl Shared {
    /// Follows the task log store a registration named; empty keeps no
    /// logs.
    fn set_task_log_store(&self, url: &str) {
        let store = if url.is_empty() {
            None
        } else {
            match Location::parse(url) {
                Ok(store) => Some(store),
                Err(e) => {
                    tracing::warn!(url, error = %e, "cannot use the cluster's task log store; attempts' logs are not stored");
                    None
                }
            }
        };
        if let Ok(mut current) = self.task_logs.lock() {
            *current = store;
        }
    }

    fn task_log_store(&self) -> Option<Location> {
        self.task_logs.lock().ok().and_then(|s| s.clone())
    }

    fn running_count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Takes a task out of `running`; false when it was no longer there
    /// (a drain handed it back).
    fn forget(&self, task_id: &str) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return false;
        };
        let held = running.remove(task_id).is_some();
        self.config.metrics.set_running(running.len());
        held
    }

    /// Counts attempts that ended, in the report and the metrics alike.
    fn count_finished(&self, outcome: AttemptOutcome, n: u64) {
        if let Ok(mut r) = self.report.lock() {
            let field = match outcome {
                AttemptOutcome::Completed => &mut r.completed,
                AttemptOutcome::Failed => &mut r.failed,
                AttemptOutcome::Stopped => &mut r.stopped,
                AttemptOutcome::Released => &mut r.released,
            };
            *field += n;
        }
        self.config.metrics.attempts_finished(outcome, n);
    }
}

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
    let shared = Arc::new(Shared {
        conn: Conn::new(config.coordinators.clone()).with_dialer(config.dialer.clone()),
        config,
        running: Mutex::new(BTreeMap::new()),
        finished: Notify::new(),
        report: Mutex::new(WorkerReport::default()),
        executors,
        task_logs: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let main = main_loop(shared.clone(), stop_rx);
    tokio::pin!(main);
    tokio::select! {
        _ = &mut main => {}
        _ = shutdown => {
            let _ = stop_tx.send(true);
            main.await;
        }
    }
    drain(&shared).await;
    shared.report.lock().map(|r| r.clone()).unwrap_or_default()
}

async fn register(shared: &Shared, stop: &watch::Receiver<bool>) -> Option<(u64, Duration)> {
    let kinds: Vec<i32> = shared
        .executors
        .keys()
        .map(|k| wire_kind(k) as i32)
        .collect();
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return None;
        }
        let request = RegisterRequest {
            worker_id: shared.config.worker_id.clone(),
            slots: shared.config.slots,
            labels: shared.config.labels.clone().into_iter().collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            supported_kinds: kinds.clone(),
            ..RegisterRequest::default()
        };
        match shared
            .conn
            .call(|mut c| {
                let r = request.clone();
                async move { c.register(r).await.map(|r| r.into_inner()) }
            })
            .await
        {
            Ok(r) => {
                let interval =
                    Duration::from_millis(r.heartbeat_interval_ms.clamp(100, 60_000) as u64);
                tracing::info!(worker = %shared.config.worker_id, epoch = r.session_epoch, task_logs = %r.task_log_url, "registered");
                shared.set_task_log_store(&r.task_log_url);
                return Some((r.session_epoch, interval));
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "register failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn main_loop(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let Some((epoch, interval)) = register(&shared, &stop).await else {
        return;
    };
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hb = tokio::spawn(heartbeat_loop(
        shared.clone(),
        epoch,
        interval,
        draining.clone(),
    ));
    let mut stop_wait = stop.clone();
    loop {
        if *stop.borrow() || draining.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let free = (shared.config.slots as usize).saturating_sub(shared.running_count());
        if free == 0 {
            tokio::select! {
                _ = shared.finished.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop_wait.changed() => {}
            }
            continue;
        }
        let request = LeaseRequest {
            worker_id: shared.config.worker_id.clone(),
            session_epoch: epoch,
            max_tasks: free as u32,
            wait_ms: shared.config.lease_wait.as_millis() as i64,
        };
        let lease_started = std::time::Instant::now();
        let call = shared.conn.call(|mut c| {
            let r = request.clone();
            async move { c.lease(r).await.map(|r| r.into_inner()) }
        });
        tokio::pin!(call);
        let leased = tokio::select! {
            r = &mut call => r,
            _ = stop_wait.changed() => {
                // Stopping mid-call: the coordinator may already have granted
                // tasks. Take the answer (briefly) so they are drained and
                // released, rather than left leased until their TTL.
                if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), &mut call).await {
                    for task in response.tasks {
                        start_task(&shared, task);
                    }
                }
                break;
            }
        };
        shared.config.metrics.lease_call(lease_started.elapsed());
        match leased {
            Ok(response) => {
                if response.drain_requested {
                    draining.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                for task in response.tasks {
                    start_task(&shared, task);
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                // The coordinator forgot us (declared lost): register again.
                if register(&shared, &stop).await.is_none() {
                    break;
                }
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "lease failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    hb.abort();
}

fn start_task(shared: &Arc<Shared>, task: LeasedTask) {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let log = AttemptLog::default();
    let progress = Progress::logged_to(log.clone());
    if let Ok(mut running) = shared.running.lock() {
        running.insert(
            task.task_id.clone(),
            Running {
                token: task.fencing_token,
                cancel: cancel_tx,
                progress: progress.clone(),
            },
        );
        shared.config.metrics.set_running(running.len());
    }
    let kind = drover_proto::v1::TaskKind::try_from(task.kind).unwrap_or(TaskKind::Unspecified);
    let name = kind_name(kind);
    // The attempt's logs carry the job's trace id, so one id finds a job's
    // work from the submit to every worker that ran it; the events inside
    // also go to the attempt's own log.
    let handed = task_log::capture::hand_over(&log);
    let span = tracing::info_span!(
        "task",
        job_id = %task.job_id,
        task_id = %task.task_id,
        attempt = task.attempt,
        kind = name,
        trace_id = %drover_proto::trace::trace_id_of(&task.trace_parent).unwrap_or_default(),
        attempt_log = handed.number(),
    );
    drop(handed);
    let shared = shared.clone();
    tokio::spawn(run_attempt(shared, task, name, cancel_rx, progress, log).instrument(span));
}

/// Runs one attempt to its end and reports it.
async fn run_attempt(
    shared: Arc<Shared>,
    task: LeasedTask,
    name: &'static str,
    cancel_rx: watch::Receiver<bool>,
    progress: Progress,
    log: AttemptLog,
) {
    let executor = shared.executors.get(name).cloned();
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
    let (ended_tx, ended_rx) = watch::channel(false);
    let uploader = shared.task_log_store().map(|store| {
        let uploader = LogUploader::new(store, &task.output_prefix, log.clone());
        tokio::spawn(
            uploader
                .keep_stored(task_log::upload::STORE_EVERY, ended_rx)
                .in_current_span(),
        )
    });
    let task_id = task.task_id.clone();
    let token = task.fencing_token;
    let trace_parent = task.trace_parent.clone();
    let timeout = Duration::from_millis(task.timeout_ms.max(1) as u64);
    let stopped = cancel_rx.clone();
    tracing::debug!(token, "attempt started");
    let started = std::time::Instant::now();
    let reused = executors::Reused::default();
    // The scratch directory is named by the (unique) prefix too, so a
    // fenced attempt still running elsewhere never shares it.
    let scratch_dir = crate::output::attempt_dir(&shared.config.work_dir, &task.output_prefix);
    let output_dir = crate::output::attempt_dir(&shared.config.data_root, &task.output_prefix);
    let result = match (executor, output_dir, scratch_dir.clone()) {
        (None, ..) => Err(TaskError::permanent(format!(
            "this worker does not run `{name}` tasks"
        ))),
        (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        (Some(executor), Ok(output_dir), Ok(scratch_dir)) => {
            let ctx = AttemptContext {
                cancel: cancel_rx,
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
    if let Ok(dir) = scratch_dir {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    let elapsed = started.elapsed();
    shared.config.metrics.attempt_ran(name, elapsed);
    let was_stopped = *stopped.borrow();
    log.stamped("drover", &ending(&result, was_stopped, elapsed));
    // Stored before the report, so a finished attempt's log is whole by the
    // time the cluster shows how it ended.
    let _ = ended_tx.send(true);
    if let Some(uploader) = uploader {
        let _ = uploader.await;
    }
    let outcome = if was_stopped {
        // Lease lost, job cancelled or drained: the coordinator already
        // knows; reporting would only be rejected. A drain took the task
        // out of `running` and counts it as released.
        if shared.forget(&task_id) {
            shared.count_finished(AttemptOutcome::Stopped, 1);
            AttemptOutcome::Stopped
        } else {
            AttemptOutcome::Released
        }
    } else {
        // Still heartbeated while the report is retried, so it stays in
        // `running` until then; counted once it has left, so a count never
        // runs ahead of the running gauge.
        let outcome = report(
            &shared,
            &task_id,
            token,
            &trace_parent,
            result,
            reused.is_marked(),
        )
        .await;
        shared.forget(&task_id);
        shared.count_finished(outcome, 1);
        outcome
    };
    tracing::info!(
        outcome = outcome.as_str(),
        duration_ms = elapsed.as_millis() as u64,
        "attempt finished"
    );
    shared.finished.notify_one();
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

/// Every kind this worker knows, by wire value.
const KINDS: [TaskKind; 7] = [
    TaskKind::Noop,
    TaskKind::Sleep,
    TaskKind::Command,
    TaskKind::Probe,
    TaskKind::AnnotationExport,
    TaskKind::Dedup,
    TaskKind::SensorFeatureBackfill,
];

/// The wire value of an executor's kind name.
fn wire_kind(name: &str) -> TaskKind {
    KINDS
        .into_iter()
        .find(|k| kind_name(*k) == name)
        .unwrap_or(TaskKind::Unspecified)
}

fn kind_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Noop => "noop",
        TaskKind::Sleep => "sleep",
        TaskKind::Command => "command",
        TaskKind::Probe => "probe",
        TaskKind::AnnotationExport => "annotation_export",
        TaskKind::Dedup => "dedup",
        TaskKind::SensorFeatureBackfill => "sensor_feature_backfill",
        TaskKind::Unspecified => "unspecified",
    }
}

/// A request carrying the job's `traceparent`, so the coordinator's span
/// for it joins the job's trace.
fn traced<T>(message: T, trace_parent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = trace_parent.parse()
        && !trace_parent.is_empty()
    {
        request
            .metadata_mut()
            .insert(drover_proto::TRACEPARENT_METADATA_KEY, value);
    }
    request
}

/// Reports an attempt's end, retrying transport errors (a completion must
/// not be lost to a leader change); the coordinator answers repeats of an
/// accepted completion as duplicates. `reused` says the manifest is an
/// earlier job's committed output, so the task is recorded as skipped.
/// Returns how the attempt ended.
async fn report(
    shared: &Shared,
    task_id: &str,
    token: u64,
    trace_parent: &str,
    result: Result<drover_proto::v1::OutputManifest, TaskError>,
    reused: bool,
) -> AttemptOutcome {
    let worker_id = shared.config.worker_id.clone();
    for attempt in 0..20u32 {
        let outcome = match &result {
            Ok(manifest) => {
                let request = CompleteRequest {
                    worker_id: worker_id.clone(),
                    task_id: task_id.to_owned(),
                    fencing_token: token,
                    manifest: Some(manifest.clone()),
                    reused_prior_output: reused,
                };
                shared
                    .conn
                    .call(|mut c| {
                        let r = request.clone();
                        async move {
                            c.complete(traced(r, trace_parent))
                                .await
                                .map(|r| r.into_inner().accepted)
                        }
                    })
                    .await
            }
            Err(e) => {
                let request = FailRequest {
                    worker_id: worker_id.clone(),
                    task_id: task_id.to_owned(),
                    fencing_token: token,
                    retryable: e.retryable,
                    message: e.message.clone(),
                };
                shared
                    .conn
                    .call(|mut c| {
                        let r = request.clone();
                        async move {
                            c.fail(traced(r, trace_parent))
                                .await
                                .map(|r| r.into_inner().accepted)
                        }
                    })
                    .await
            }
        };
        match outcome {
            Ok(accepted) => {
                let outcome = match (&result, accepted) {
                    (Ok(_), true) => AttemptOutcome::Completed,
                    (Err(_), true) => AttemptOutcome::Failed,
                    _ => AttemptOutcome::Stopped,
                };
                return outcome;
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument
                ) =>
            {
                // Stale token or unknown task: this attempt was fenced.
                tracing::info!(reason = %status.message(), "report rejected");
                return AttemptOutcome::Stopped;
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "report failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
        }
    }
    // The lease will expire and the task run again elsewhere.
    tracing::warn!("giving up reporting the attempt; its lease will expire");
    AttemptOutcome::Stopped
}

async fn heartbeat_loop(
    shared: Arc<Shared>,
    epoch: u64,
    interval: Duration,
    draining: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let tasks: Vec<TaskHeartbeat> = shared
            .running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(id, t)| {
                        let (progress_fraction, progress_message) = t.progress.get();
                        TaskHeartbeat {
                            task_id: id.clone(),
                            fencing_token: t.token,
                            progress_fraction,
                            progress_message,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = HeartbeatRequest {
            worker_id: shared.config.worker_id.clone(),
            session_epoch: epoch,
            tasks,
        };
        let Ok(response) = shared
            .conn
            .call(|mut c| {
                let r = request.clone();
                async move { c.heartbeat(r).await.map(|r| r.into_inner()) }
            })
            .await
        else {
            shared.config.metrics.heartbeat_failed();
            continue;
        };
        if response.drain_requested {
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Follow a changed interval (a shortened lease TTL must reach
        // running workers before their leases lapse).
        let wanted =
            Duration::from_millis(response.heartbeat_interval_ms.clamp(100, 60_000) as u64);
        if response.heartbeat_interval_ms > 0 && wanted != ticker.period() {
            tracing::info!(
                interval_ms = wanted.as_millis() as u64,
                "heartbeat interval changed"
            );
            ticker = tokio::time::interval_at(tokio::time::Instant::now() + wanted, wanted);
        }
        for result in response.tasks {
            if result.status != HeartbeatStatus::Ok as i32
                && let Ok(running) = shared.running.lock()
                && let Some(task) = running.get(&result.task_id)
                && task.token == result.fencing_token
            {
                tracing::info!(task = %result.task_id, status = result.status, "stopping task");
                let _ = task.cancel.send(true);
            }
        }
    }
}

/// Waits for running tasks up to the drain timeout, then stops the rest and
/// hands them back so they are leased again at once.
async fn drain(shared: &Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    while shared.running_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = shared.finished.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    // Taken out of `running` with the lock held, so each attempt is counted
    // once: released here, or stopped by its own task (`run_attempt`).
    let leftover: Vec<ReleasedTask> = shared
        .running
        .lock()
        .map(|mut r| {
            let taken = std::mem::take(&mut *r);
            shared.config.metrics.set_running(0);
            taken
                .into_iter()
                .map(|(id, t)| {
                    let _ = t.cancel.send(true);
                    ReleasedTask {
                        task_id: id,
                        fencing_token: t.token,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let count = leftover.len() as u64;
    let request = ReleaseRequest {
        worker_id: shared.config.worker_id.clone(),
        tasks: leftover,
        reason: "worker shutting down".to_owned(),
        worker_exiting: true,
    };
    let released = shared
        .conn
        .call(|mut c| {
            let r = request.clone();
            async move { c.release(r).await.map(|r| r.into_inner()) }
        })
        .await
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
    fn every_executor_registers_its_kind() {
        let mut config = WorkerConfig::new("w".to_owned(), vec![]);
        config.allow_command = true;
        let executors = executors_for(&config);
        assert!(executors.len() >= 6);
        for name in executors.keys() {
            let kind = wire_kind(name);
            assert_ne!(kind, TaskKind::Unspecified, "`{name}` has no wire kind");
            assert_eq!(kind_name(kind), *name);
        }
    }

    #[test]
    fn reports_carry_the_jobs_traceparent_when_there_is_one() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let request = traced((), trace);
        let sent = request
            .metadata()
            .get(drover_proto::TRACEPARENT_METADATA_KEY)
            .and_then(|v| v.to_str().ok());
        assert_eq!(sent, Some(trace));
        let untraced = traced((), "");
        assert!(
            untraced
                .metadata()
                .get(drover_proto::TRACEPARENT_METADATA_KEY)
                .is_none()
        );
    }
}
