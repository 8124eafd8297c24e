//! The worker's session with the cluster: registration, which names the
//! session every lease and heartbeat carries, and the heartbeat loop, one
//! call per interval for every task the worker holds.
//!
//! A session ends when the cluster declares the worker lost or forgets it;
//! its calls then get NOT_FOUND, and the worker registers again and goes on
//! in the new session, keeping the tasks it holds (their tokens are still
//! good if their leases are).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use drover_net::{CallError, Coordinators};
use drover_proto::v1::{HeartbeatRequest, HeartbeatStatus, RegisterRequest, TaskHeartbeat};
use tokio::sync::watch;
use tonic::Code;

use crate::config::WorkerConfig;
use crate::executors::Executor;
use crate::shared::{Session, Shared};

/// The wire kinds of the executors a worker runs.
pub fn kinds_of(executors: &BTreeMap<&'static str, Arc<dyn Executor>>) -> Vec<i32> {
    executors
        .keys()
        .map(|k| drover_proto::names::task_kind_named(k) as i32)
        .collect()
}

/// Registers until the cluster answers (or `stop` is set): the new session
/// and the cluster's task log store.
pub async fn register(
    conn: &Coordinators,
    config: &WorkerConfig,
    kinds: &[i32],
    stop: watch::Receiver<bool>,
) -> Option<(Session, String)> {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return None;
        }
        let request = RegisterRequest {
            worker_id: config.worker_id.clone(),
            slots: config.slots,
            labels: config.labels.clone().into_iter().collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            supported_kinds: kinds.to_vec(),
            ..RegisterRequest::default()
        };
        match conn
            .workers(|mut c| {
                let r = request.clone();
                async move { c.register(r).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(CallError::into_status)
        {
            Ok(r) => {
                let session = Session {
                    epoch: r.session_epoch,
                    heartbeat_interval: Duration::from_millis(
                        r.heartbeat_interval_ms.clamp(100, 60_000) as u64,
                    ),
                    // Zero from a coordinator that does not say.
                    lease_batch_max: match r.max_lease_batch {
                        0 => Session::default().lease_batch_max,
                        n => n.min(1000) as usize,
                    },
                    lease_wait_max: match r.max_lease_wait_ms {
                        ..=0 => Session::default().lease_wait_max,
                        ms => Duration::from_millis(ms as u64),
                    },
                };
                tracing::info!(worker = %config.worker_id, epoch = session.epoch, task_logs = %r.task_log_url, "registered");
                return Some((session, r.task_log_url));
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "register failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Registers again after a call made in session `ended` got NOT_FOUND,
/// unless another call already did, and goes on in the new session.
pub(crate) async fn renew(shared: &Shared, kinds: &[i32], ended: u64, stop: watch::Receiver<bool>) {
    if shared.session().epoch != ended {
        return;
    }
    tracing::info!(epoch = ended, "session ended; registering again");
    if let Some((session, task_log_url)) = register(&shared.conn, &shared.config, kinds, stop).await
    {
        shared.set_task_log_store(&task_log_url);
        if let Ok(mut current) = shared.session.lock() {
            *current = session;
        }
    }
}

/// Heartbeats every held task once per interval, in one call, and stops
/// the tasks the cluster says to stop.
pub(crate) async fn heartbeat_loop(shared: Arc<Shared>, kinds: Vec<i32>) {
    let mut ticker = tokio::time::interval(shared.session().heartbeat_interval);
    let (_never, never_stop) = watch::channel(false);
    loop {
        ticker.tick().await;
        let tasks: Vec<TaskHeartbeat> = shared
            .held
            .lock()
            .map(|held| {
                held.iter()
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
        let epoch = shared.session().epoch;
        let request = HeartbeatRequest {
            worker_id: shared.config.worker_id.clone(),
            session_epoch: epoch,
            tasks,
        };
        let response = match shared
            .conn
            .workers(|mut c| {
                let r = request.clone();
                async move { c.heartbeat(r).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(CallError::into_status)
        {
            Ok(response) => response,
            Err(status) => {
                shared.config.metrics.heartbeat_failed();
                if status.code() == Code::NotFound {
                    renew(&shared, &kinds, epoch, never_stop.clone()).await;
                }
                continue;
            }
        };
        if response.drain_requested {
            shared.draining.store(true, Ordering::Release);
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
                && let Ok(held) = shared.held.lock()
                && let Some(task) = held.get(&result.task_id)
                && task.token == result.fencing_token
            {
                tracing::info!(task = %result.task_id, status = result.status, "stopping task");
                let _ = task.cancel.send(true);
            }
        }
    }
}
