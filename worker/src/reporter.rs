//! Reporting ended attempts in batches: completions and failures are
//! coalesced into `CompleteBatch` calls, each bounded by a count (the
//! cluster's `max_lease_batch`) and by a short linger, with a few calls in
//! flight at once so that one slow call never holds the reports behind it.
//!
//! A report is answered only when the coordinator has answered it, which it
//! does only after the report committed: an attempt stays leased (and
//! heartbeated) until then. A fenced report in a batch is answered on its
//! own, as `Complete` or `Fail` would have answered it.

use std::sync::Arc;
use std::time::Duration;

use drover_net::{CallError, Coordinators};
use drover_proto::v1::{
    CompleteBatchRequest, CompleteRequest, FailRequest, FailResult, OutputManifest,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Code;

use crate::metrics::AttemptOutcome;

/// Reports waiting to be sent, at most; an attempt that ends while the
/// queue is full waits for room.
const QUEUE_MAX: usize = 8192;

/// Attempts to send one batch through transport errors (a leader change)
/// before its reports are given up and left to their leases' expiry.
const SEND_TRIES_MAX: u32 = 20;

/// How reports are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most reports in one call: the cluster's `max_lease_batch`.
    pub reports_max: usize,
    /// How long the first report of a batch waits for others to join it.
    pub linger: Duration,
    /// Batches being sent at once; more wait for one to finish.
    pub in_flight_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            reports_max: 256,
            linger: Duration::from_millis(2),
            in_flight_max: 4,
        }
    }
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone)]
pub enum Ending {
    /// It succeeded with this manifest; `reused` when the manifest is an
    /// earlier job's committed output (the task is recorded as skipped).
    Succeeded {
        /// What the attempt wrote (or reused).
        manifest: OutputManifest,
        /// The prior output was reused instead of running.
        reused: bool,
    },
    /// It failed.
    Failed {
        /// False when a retry cannot help.
        retryable: bool,
        /// What went wrong.
        message: String,
    },
}

/// One ended attempt to report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The task.
    pub task_id: String,
    /// Its lease's token.
    pub token: u64,
    /// How it ended.
    pub ending: Ending,
    /// The attempt's span as a `traceparent`, when spans are exported.
    pub trace_parent: String,
}

type Queued = (Report, oneshot::Sender<AttemptOutcome>);

/// The sending end: attempts hand their reports to it and wait for the
/// answer.
#[derive(Debug, Clone)]
pub struct Reporter {
    queue: mpsc::Sender<Queued>,
}

impl Reporter {
    /// Starts batching reports of `worker_id` to the cluster behind
    /// `conn`. The batcher stops once every `Reporter` clone is dropped and
    /// the queue is empty.
    pub fn spawn(conn: Coordinators, worker_id: String, limits: BatchLimits) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(batch_loop(rx, Arc::new(Sender { conn, worker_id }), limits));
        Self { queue }
    }

    /// Reports one ended attempt and waits until the coordinator answered:
    /// `Completed` or `Failed` when it was recorded, `Stopped` when it was
    /// fenced off (a stale token, a lost lease, a cancelled job) or could
    /// not be sent, in which case the lease expires and the task runs again.
    pub async fn report(&self, report: Report) -> AttemptOutcome {
        let (tx, rx) = oneshot::channel();
        if self.queue.send((report, tx)).await.is_err() {
            return AttemptOutcome::Stopped;
        }
        rx.await.unwrap_or(AttemptOutcome::Stopped)
    }
}

/// Takes reports off the queue into batches and sends each on its own
/// task, at most `in_flight_max` at once.
async fn batch_loop(mut rx: mpsc::Receiver<Queued>, sender: Arc<Sender>, limits: BatchLimits) {
    let reports_max = limits.reports_max.clamp(1, 1000);
    let in_flight = Arc::new(Semaphore::new(limits.in_flight_max.max(1)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(limits.linger);
        tokio::pin!(linger);
        while batch.len() < reports_max {
            // Whatever is queued already joins without waiting.
            match rx.try_recv() {
                Ok(next) => {
                    batch.push(next);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                next = rx.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.send(batch).await;
            drop(permit);
        });
    }
}

/// What sends batches.
struct Sender {
    conn: Coordinators,
    worker_id: String,
}

impl Sender {
    /// Sends one batch, retrying transport errors, and answers every
    /// report in it.
    async fn send(&self, batch: Vec<Queued>) {
        let (reports, answers): (Vec<Report>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = self.outcomes(&reports).await;
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            let _ = answer.send(outcome);
        }
    }

    /// The outcome of each report, in order.
    async fn outcomes(&self, reports: &[Report]) -> Vec<AttemptOutcome> {
        let mut request = CompleteBatchRequest::default();
        // Where each report went: (is a completion, index in its list).
        let mut places = Vec::with_capacity(reports.len());
        for r in reports {
            match &r.ending {
                Ending::Succeeded { manifest, reused } => {
                    places.push((true, request.completions.len()));
                    request.completions.push(CompleteRequest {
                        worker_id: self.worker_id.clone(),
                        task_id: r.task_id.clone(),
                        fencing_token: r.token,
                        manifest: Some(manifest.clone()),
                        reused_prior_output: *reused,
                        trace_parent: r.trace_parent.clone(),
                    });
                }
                Ending::Failed { retryable, message } => {
                    places.push((false, request.failures.len()));
                    request.failures.push(FailRequest {
                        worker_id: self.worker_id.clone(),
                        task_id: r.task_id.clone(),
                        fencing_token: r.token,
                        retryable: *retryable,
                        message: message.clone(),
                        trace_parent: r.trace_parent.clone(),
                    });
                }
            }
        }
        let Some(response) = self.call(&request).await else {
            tracing::warn!(
                reports = reports.len(),
                "giving up reporting attempts; their leases will expire"
            );
            return vec![AttemptOutcome::Stopped; reports.len()];
        };
        // A coordinator that predates failures in batches ignores them and
        // answers none: those are sent one by one.
        let failures_answered = response.failure_results.len() == request.failures.len();
        let mut outcomes = Vec::with_capacity(reports.len());
        for (completion, i) in places {
            let outcome = if completion {
                response
                    .results
                    .get(i)
                    .map_or(AttemptOutcome::Stopped, |r| {
                        item_outcome(
                            AttemptOutcome::Completed,
                            r.accepted,
                            r.error_code,
                            &r.error_message,
                        )
                    })
            } else if failures_answered {
                let r: &FailResult = &response.failure_results[i];
                item_outcome(
                    AttemptOutcome::Failed,
                    r.accepted,
                    r.error_code,
                    &r.error_message,
                )
            } else {
                self.fail_alone(&request.failures[i]).await
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Calls CompleteBatch until it answers or fails for good.
    async fn call(
        &self,
        request: &CompleteBatchRequest,
    ) -> Option<drover_proto::v1::CompleteBatchResponse> {
        for attempt in 0..SEND_TRIES_MAX {
            let result = self
                .conn
                .workers(|mut c| {
                    let r = request.clone();
                    async move { c.complete_batch(r).await.map(|r| r.into_inner()) }
                })
                .await
                .map_err(CallError::into_status);
            match result {
                Ok(response) => return Some(response),
                Err(status) if fenced(status.code()) => {
                    tracing::info!(reason = %status.message(), "report batch refused");
                    return None;
                }
                Err(status) => {
                    tracing::warn!(error = %status.message(), "report batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
            }
        }
        None
    }

    /// Sends one failure with Fail (a coordinator without batched
    /// failures).
    async fn fail_alone(&self, request: &FailRequest) -> AttemptOutcome {
        for attempt in 0..SEND_TRIES_MAX {
            let result = self
                .conn
                .workers(|mut c| {
                    let r = request.clone();
                    async move { c.fail(r).await.map(|r| r.into_inner().accepted) }
                })
                .await
                .map_err(CallError::into_status);
            match result {
                Ok(true) => return AttemptOutcome::Failed,
                Ok(false) => return AttemptOutcome::Stopped,
                Err(status) if fenced(status.code()) => return AttemptOutcome::Stopped,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
            }
        }
        AttemptOutcome::Stopped
    }
}

/// Codes that mean the report itself was refused (a stale token, an
/// unknown task, a foreign prefix), so sending it again cannot help.
fn fenced(code: Code) -> bool {
    matches!(
        code,
        Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument
    )
}

/// How one answered report ended: `recorded` when it was accepted.
fn item_outcome(
    recorded: AttemptOutcome,
    accepted: bool,
    error_code: i32,
    error_message: &str,
) -> AttemptOutcome {
    if error_code != 0 {
        tracing::info!(code = error_code, reason = error_message, "report rejected");
        return AttemptOutcome::Stopped;
    }
    if accepted {
        recorded
    } else {
        AttemptOutcome::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_error_or_refusal_stops_the_attempt_and_acceptance_records_it() {
        assert_eq!(
            item_outcome(AttemptOutcome::Completed, true, 0, ""),
            AttemptOutcome::Completed
        );
        assert_eq!(
            item_outcome(AttemptOutcome::Failed, true, 0, ""),
            AttemptOutcome::Failed
        );
        assert_eq!(
            item_outcome(AttemptOutcome::Completed, false, 0, ""),
            AttemptOutcome::Stopped
        );
        assert_eq!(
            item_outcome(
                AttemptOutcome::Completed,
                false,
                Code::FailedPrecondition as i32,
                "stale"
            ),
            AttemptOutcome::Stopped
        );
    }
}
