//! The clients of a run: they submit small DAG jobs of `probe` tasks with
//! idempotency keys, retry indeterminate submits with the same key, and
//! cancel some jobs, recording every operation in the history.

use std::time::Duration;

use drover_proto::LEADER_METADATA_KEY;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::{CancelJobRequest, SubmitJobRequest};
use tokio::sync::watch;
use tonic::{Code, Status};

use crate::history::{History, Op, OpType};
use crate::rng::Rng;

/// Longest a client waits for one call; beyond it the outcome is unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one submit (same key) before the client moves on.
const SUBMIT_TRIES_MAX: u32 = 6;

/// Whether a status says nothing about the outcome (indeterminate).
pub fn is_indeterminate(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
    )
}

/// A client connection that follows the leader among `addresses`.
#[derive(Debug, Clone)]
pub struct Client {
    addresses: Vec<String>,
    preferred: Option<String>,
}

impl Client {
    /// A client of the cluster at `addresses`.
    pub fn new(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            preferred: None,
        }
    }

    /// Calls `f` once on what is believed to be the leader. A refusal from a
    /// follower (which did nothing) moves on to its hint or the next node,
    /// within the call timeout; anything else is returned.
    pub async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T, Status>
    where
        F: FnMut(JobServiceClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let mut queue: Vec<String> = self.preferred.iter().cloned().collect();
        queue.extend(self.addresses.iter().cloned());
        let mut last = Status::unavailable("no coordinator reachable");
        while let Some(address) = (!queue.is_empty()).then(|| queue.remove(0)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let Ok(endpoint) = drover_proto::endpoint(&address) else {
                continue;
            };
            let endpoint = endpoint
                .connect_timeout(Duration::from_secs(1))
                .timeout(left);
            let Ok(channel) = endpoint.connect().await else {
                continue;
            };
            match tokio::time::timeout(left, f(JobServiceClient::new(channel))).await {
                Err(_) => return Err(Status::deadline_exceeded("the call timed out")),
                Ok(Ok(v)) => {
                    self.preferred = Some(address);
                    return Ok(v);
                }
                // NotLeader is UNAVAILABLE with a hint and means the node
                // did nothing, so trying elsewhere is safe.
                Ok(Err(status)) if status.metadata().contains_key(LEADER_METADATA_KEY) => {
                    if let Some(hint) = status
                        .metadata()
                        .get(LEADER_METADATA_KEY)
                        .and_then(|v| v.to_str().ok())
                        .filter(|h| !h.is_empty() && *h != address)
                    {
                        queue.retain(|a| a != hint);
                        queue.insert(0, hint.to_owned());
                    }
                    last = status;
                }
                Ok(Err(status)) => return Err(status),
            }
        }
        Err(last)
    }
}

/// A small DAG of probe tasks named after its idempotency key: a fan-out
/// stage, a stage that fails its first attempt, and a join.
pub fn job_spec(key: &str, rng: &mut Rng) -> String {
    let shards = rng.between(1, 4);
    let ms = rng.between(100, 700);
    let fan_in = rng.between(1, 2);
    format!(
        r#"apiVersion: drover/v1
kind: Job
metadata:
  name: {key}
  namespace: chaos
spec:
  defaults:
    retries: {{max: 30, backoff: constant, initialDelay: 200ms, maxDelay: 200ms}}
    timeout: 1m
  tasks:
    - name: fan-out
      kind: probe
      partitions: {{shards: {shards}}}
      config: {{ms: {ms}}}
    - name: flaky
      kind: probe
      dependsOn: [fan-out]
      partitions: {{shards: {fan_in}}}
      config: {{ms: 150, failTimes: 1}}
    - name: join
      kind: probe
      dependsOn: [fan-out, flaky]
      config: {{ms: 100}}
"#
    )
}

/// One client: submits and cancels until `stop` turns true.
pub async fn run_client(
    name: String,
    mut client: Client,
    mut rng: Rng,
    history: History,
    stop: watch::Receiver<bool>,
    key_prefix: String,
) {
    let mut jobs: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !*stop.borrow() {
        if !jobs.is_empty() && rng.chance(0.12) {
            let job = rng.pick(&jobs).cloned().unwrap_or_default();
            cancel(&name, &mut client, &history, &job).await;
        } else {
            n += 1;
            let key = format!("{key_prefix}-{name}-{n}");
            let spec = job_spec(&key, &mut rng);
            if let Some(job) = submit(&name, &mut client, &history, &key, &spec).await {
                jobs.push(job);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.between(400, 1200))).await;
    }
}

/// Submits with one key until a definite answer or the tries run out.
async fn submit(
    name: &str,
    client: &mut Client,
    history: &History,
    key: &str,
    spec: &str,
) -> Option<String> {
    for _ in 0..SUBMIT_TRIES_MAX {
        history.record(Op::new(name, OpType::Invoke, "submit").key(key));
        let request = SubmitJobRequest {
            spec_yaml: spec.to_owned(),
            source_name: format!("{key}.yaml"),
            idempotency_key: key.to_owned(),
            ..SubmitJobRequest::default()
        };
        let result = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.submit_job(request).await }
            })
            .await;
        match result {
            Ok(response) => {
                let job = response.into_inner().job_id;
                history.record(Op::new(name, OpType::Ok, "submit").key(key).job(&job));
                return Some(job);
            }
            Err(status) if is_indeterminate(&status) => {
                history.record(
                    Op::new(name, OpType::Info, "submit")
                        .key(key)
                        .value(status.message()),
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(status) => {
                history.record(
                    Op::new(name, OpType::Fail, "submit")
                        .key(key)
                        .value(format!("{:?}: {}", status.code(), status.message())),
                );
                return None;
            }
        }
    }
    None
}

async fn cancel(name: &str, client: &mut Client, history: &History, job: &str) {
    history.record(Op::new(name, OpType::Invoke, "cancel").job(job));
    let request = CancelJobRequest {
        job_id: job.to_owned(),
        reason: "chaos workload".to_owned(),
    };
    let result = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.cancel_job(request).await }
        })
        .await;
    let op = match result {
        Ok(_) => Op::new(name, OpType::Ok, "cancel"),
        Err(status) if is_indeterminate(&status) => {
            Op::new(name, OpType::Info, "cancel").value(status.message())
        }
        Err(status) => Op::new(name, OpType::Fail, "cancel").value(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        )),
    };
    history.record(op.job(job));
}
