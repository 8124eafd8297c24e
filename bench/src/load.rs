//! The bench's load: jobs of `noop` tasks submitted over gRPC, and
//! simulated workers that register, lease, complete (in batches) and
//! heartbeat over real gRPC, as `drover worker` does, without running
//! anything. Every figure the scenarios report is counted here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Result, failed};
use drover_net::{CallError, Coordinators};
use drover_proto::v1::{
    CompleteBatchRequest, CompleteRequest, HeartbeatRequest, LeaseRequest, LeasedTask,
    RegisterRequest, SubmitJobRequest, TaskHeartbeat, TaskKind,
};
use tonic::Code;

use super::stats::Latencies;

/// How long a simulated worker's lease call waits for work.
const LEASE_WAIT_MS: i64 = 1_000;

/// A spec of one job of `tasks` noop tasks (one partitioned template).
pub fn noop_job(name: &str, tasks: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, namespace: bench}}\nspec:\n  maxParallel: 1000000\n  tasks:\n    - {{name: noop, kind: noop, partitions: {{shards: {tasks}}}}}\n"
    )
}

/// A spec of one hourly backfill of `hours` noop partitions: the shape of
/// a real date-range backfill, stored as one range however long.
pub fn hourly_backfill(name: &str, hours: u64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let end = start + chrono::Duration::hours(hours.saturating_sub(1) as i64);
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, namespace: bench}}\nspec:\n  maxParallel: 1000000\n  tasks:\n    - name: hour\n      kind: noop\n      partitions: {{hourly: {{start: \"{}\", end: \"{}\"}}}}\n",
        start.format("%Y-%m-%dT%H:%M"),
        end.format("%Y-%m-%dT%H:%M"),
    )
}

/// What every simulated worker and submitter adds to.
#[derive(Debug)]
pub struct Tally {
    /// When the bench began; instants below are micros since.
    pub origin: Instant,
    /// Tasks granted.
    pub leased: AtomicU64,
    /// Completions accepted for the first time.
    pub completed: AtomicU64,
    /// Completions answered as repeats of an accepted one.
    pub duplicates: AtomicU64,
    /// Completions refused (lease lost, stale token).
    pub rejected: AtomicU64,
    /// Calls that failed (no leader, a dead coordinator) and were retried.
    pub errors: AtomicU64,
    /// Micros since `origin` of the latest lease call that granted tasks
    /// and was sent at or after `grant_floor_us`.
    pub fresh_grant_us: AtomicU64,
    /// Only lease calls sent at or after this count as fresh grants.
    pub grant_floor_us: AtomicU64,
    /// When each job's submit was acknowledged, by job id, for per-task
    /// latency in the fixed-load scenario (empty otherwise).
    pub submitted: Mutex<HashMap<String, Instant>>,
    /// Set to stop every worker loop.
    pub stop: AtomicBool,
}

impl Tally {
    /// A fresh tally starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            leased: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            fresh_grant_us: AtomicU64::new(0),
            grant_floor_us: AtomicU64::new(u64::MAX),
            submitted: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        })
    }

    /// Micros since the origin.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }
}

/// Latencies one simulated worker measured.
#[derive(Debug, Default)]
pub struct WorkerLatencies {
    /// Lease calls that granted tasks.
    pub lease: Latencies,
    /// CompleteBatch calls.
    pub complete: Latencies,
    /// Heartbeat calls.
    pub heartbeat: Latencies,
    /// Per task, submit acknowledged to lease received (fixed load only).
    pub dispatch: Latencies,
    /// Per task, submit acknowledged to completion accepted (fixed load
    /// only).
    pub end_to_end: Latencies,
}

impl WorkerLatencies {
    /// Adds another worker's latencies.
    pub fn merge(&mut self, other: WorkerLatencies) {
        self.lease.merge(other.lease);
        self.complete.merge(other.complete);
        self.heartbeat.merge(other.heartbeat);
        self.dispatch.merge(other.dispatch);
        self.end_to_end.merge(other.end_to_end);
    }
}

/// How a simulated worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// Its id.
    pub id: String,
    /// Its way to the leader; workers may share one (and its channel).
    pub conn: Coordinators,
    /// Tasks asked for per lease call, and completed per CompleteBatch.
    pub batch: u32,
    /// Hold leased tasks (heartbeating them) instead of completing them,
    /// until `stop`; then complete them.
    pub hold: bool,
}

/// Registers, then returns the session epoch and heartbeat interval.
async fn register(
    conn: &Coordinators,
    plan: &WorkerPlan,
) -> std::result::Result<(u64, Duration), tonic::Status> {
    let request = RegisterRequest {
        worker_id: plan.id.clone(),
        slots: plan.batch,
        supported_kinds: vec![TaskKind::Noop as i32],
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..RegisterRequest::default()
    };
    let r = conn
        .workers(|mut c| {
            let r = request.clone();
            async move { c.register(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    Ok((
        r.session_epoch,
        Duration::from_millis(r.heartbeat_interval_ms.max(100) as u64),
    ))
}

/// Runs one simulated worker until `tally.stop`.
pub async fn run_worker(plan: WorkerPlan, tally: Arc<Tally>) -> WorkerLatencies {
    let conn = plan.conn.clone();
    let mut lat = WorkerLatencies::default();
    let held: Arc<Mutex<Vec<LeasedTask>>> = Arc::default();
    let mut session = None;
    // Written by the heartbeat loop, which is aborted (it may be asleep
    // for an interval) when the worker stops.
    let heartbeat_latencies: Arc<Mutex<Latencies>> = Arc::default();
    let mut heartbeats: Option<tokio::task::JoinHandle<()>> = None;
    while !tally.stop.load(Ordering::Relaxed) {
        let Some(epoch) = session else {
            match register(&conn, &plan).await {
                Ok((epoch, interval)) => {
                    session = Some(epoch);
                    if let Some(h) = heartbeats.take() {
                        h.abort();
                    }
                    heartbeats = Some(tokio::spawn(heartbeat_loop(
                        conn.clone(),
                        plan.id.clone(),
                        epoch,
                        interval,
                        held.clone(),
                        tally.clone(),
                        heartbeat_latencies.clone(),
                    )));
                }
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        let want = if plan.hold {
            let have = held.lock().map(|h| h.len()).unwrap_or(0) as u32;
            if have >= plan.batch {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            plan.batch - have
        } else {
            plan.batch
        };
        let sent = Instant::now();
        let sent_us = tally.now_us();
        let request = LeaseRequest {
            worker_id: plan.id.clone(),
            session_epoch: epoch,
            max_tasks: want,
            wait_ms: LEASE_WAIT_MS,
        };
        let leased = conn
            .workers(|mut c| {
                let r = request.clone();
                async move { c.lease(r).await.map(|r| r.into_inner().tasks) }
            })
            .await
            .map_err(CallError::into_status);
        let tasks = match leased {
            Ok(tasks) => tasks,
            Err(status) => {
                if status.code() == Code::NotFound {
                    // Lost (for example after a long failover): a new
                    // session.
                    session = None;
                }
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if tasks.is_empty() {
            continue;
        }
        let received = Instant::now();
        lat.lease.record(received - sent);
        tally
            .leased
            .fetch_add(tasks.len() as u64, Ordering::Relaxed);
        if sent_us >= tally.grant_floor_us.load(Ordering::Relaxed) {
            tally
                .fresh_grant_us
                .fetch_max(tally.now_us(), Ordering::Relaxed);
        }
        record_dispatch(&tally, &tasks, received, &mut lat.dispatch);
        if plan.hold {
            if let Ok(mut h) = held.lock() {
                h.extend(tasks);
            }
            continue;
        }
        complete_all(&conn, &plan.id, tasks, &tally, &mut lat).await;
    }
    if let Some(h) = heartbeats.take() {
        h.abort();
        let _ = h.await;
    }
    if let Ok(mut l) = heartbeat_latencies.lock() {
        lat.heartbeat.merge(std::mem::take(&mut *l));
    }
    let rest = held
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default();
    for chunk in rest.chunks(plan.batch.max(1) as usize) {
        complete_all(&conn, &plan.id, chunk.to_vec(), &tally, &mut lat).await;
    }
    lat
}

fn record_dispatch(tally: &Tally, tasks: &[LeasedTask], at: Instant, into: &mut Latencies) {
    let Ok(submitted) = tally.submitted.lock() else {
        return;
    };
    if submitted.is_empty() {
        return;
    }
    for t in tasks {
        if let Some(s) = submitted.get(&t.job_id) {
            into.record(at.saturating_duration_since(*s));
        }
    }
}

/// Completes `tasks` in one CompleteBatch, retrying failed calls (a
/// completion must not be lost to a leader change; repeats are answered as
/// duplicates) for as long as the bench runs plus a grace period.
async fn complete_all(
    conn: &Coordinators,
    worker: &str,
    tasks: Vec<LeasedTask>,
    tally: &Tally,
    lat: &mut WorkerLatencies,
) {
    let request = CompleteBatchRequest {
        completions: tasks
            .iter()
            .map(|t| CompleteRequest {
                worker_id: worker.to_owned(),
                task_id: t.task_id.clone(),
                fencing_token: t.fencing_token,
                manifest: None,
                reused_prior_output: false,
                trace_parent: String::new(),
            })
            .collect(),
        failures: Vec::new(),
    };
    for _ in 0..200 {
        let sent = Instant::now();
        let answer = conn
            .workers(|mut c| {
                let r = request.clone();
                async move { c.complete_batch(r).await.map(|r| r.into_inner().results) }
            })
            .await;
        match answer {
            Ok(results) => {
                let done = Instant::now();
                lat.complete.record(done - sent);
                let (mut accepted, mut duplicates, mut rejected) = (0, 0, 0);
                // One lock per batch, not per task: this is the bench's own
                // hot path, and the map is empty outside the fixed-load run.
                let submitted = tally.submitted.lock().ok();
                for (r, t) in results.iter().zip(&tasks) {
                    if r.accepted && !r.duplicate {
                        accepted += 1;
                        if let Some(s) = submitted.as_ref().and_then(|m| m.get(&t.job_id)) {
                            lat.end_to_end.record(done.saturating_duration_since(*s));
                        }
                    } else if r.accepted {
                        duplicates += 1;
                    } else {
                        rejected += 1;
                    }
                }
                drop(submitted);
                tally.completed.fetch_add(accepted, Ordering::Relaxed);
                tally.duplicates.fetch_add(duplicates, Ordering::Relaxed);
                tally.rejected.fetch_add(rejected, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Heartbeats every held task at the cluster's interval, recording each
/// call's latency into `lat`.
async fn heartbeat_loop(
    conn: Coordinators,
    worker: String,
    epoch: u64,
    interval: Duration,
    held: Arc<Mutex<Vec<LeasedTask>>>,
    tally: Arc<Tally>,
    lat: Arc<Mutex<Latencies>>,
) {
    // Spread workers over the interval rather than all at once.
    let offset = Duration::from_micros(rand_below(interval.as_micros() as u64));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !tally.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let tasks = held
            .lock()
            .map(|h| {
                h.iter()
                    .map(|t| TaskHeartbeat {
                        task_id: t.task_id.clone(),
                        fencing_token: t.fencing_token,
                        progress_fraction: 0.5,
                        progress_message: String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = HeartbeatRequest {
            worker_id: worker.clone(),
            session_epoch: epoch,
            tasks,
        };
        let sent = Instant::now();
        let answer = conn
            .workers(|mut c| {
                let r = request.clone();
                async move { c.heartbeat(r).await.map(|_| ()) }
            })
            .await;
        match answer {
            Ok(()) => {
                if let Ok(mut l) = lat.lock() {
                    l.record(sent.elapsed());
                }
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A number below `n` from the OS's generator (0 if it fails).
fn rand_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    if n == 0 || getrandom::fill(&mut bytes).is_err() {
        return 0;
    }
    u64::from_le_bytes(bytes) % n
}

/// Submits one job, following the leader and retrying with the same
/// idempotency key; returns the job id.
pub async fn submit(conn: &Coordinators, name: &str, spec_yaml: String) -> Result<String> {
    let request = SubmitJobRequest {
        spec_yaml,
        source_name: format!("{name}.yaml"),
        idempotency_key: format!("bench-{name}"),
        ..SubmitJobRequest::default()
    };
    let mut last = None;
    for _ in 0..50 {
        let answer = conn
            .jobs(|mut c| {
                let r = request.clone();
                async move { c.submit_job(r).await.map(|r| r.into_inner().job_id) }
            })
            .await
            .map_err(CallError::into_status);
        match answer {
            Ok(id) => return Ok(id),
            Err(status) if matches!(status.code(), Code::InvalidArgument) => {
                return Err(failed!(
                    "the bench's spec was refused: {}",
                    status.message()
                ));
            }
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(failed!(
        "submitting {name}: {}",
        last.map(|s| s.message().to_owned()).unwrap_or_default()
    ))
}
