//! The clients of a run: they submit small DAG jobs of `probe` tasks with
//! idempotency keys, retry indeterminate submits with the same key, and
//! cancel some jobs, recording every operation in the history.

use std::time::Duration;

use drover_net::{CallError, Coordinators, Policy};
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

/// How a workload client calls the cluster: within [`CALL_TIMEOUT`], and
/// never sending again a call whose outcome is unknown (the workload
/// records it as such and retries with the same key itself). A follower's
/// refusal, which did nothing, is retried.
const POLICY: Policy = Policy {
    patience: CALL_TIMEOUT,
    unreachable_patience: CALL_TIMEOUT,
    pause: Duration::from_millis(50),
    max_pause: Duration::from_millis(400),
    connect_timeout: Duration::from_secs(1),
    request_timeout: CALL_TIMEOUT,
    call_timeout: Some(CALL_TIMEOUT),
    retry_unknown: false,
};

/// A client of the cluster at `addresses` that follows its leader.
pub fn client(addresses: Vec<String>) -> Coordinators {
    Coordinators::new(addresses).with_policy(POLICY)
}

/// A small DAG of probe tasks named after its idempotency key: a fan-out
/// stage, a stage that fails its first attempt, and a join.
pub fn job_spec(key: &str, rng: &mut Rng) -> String {
    let shards = rng.between(1, 4);
    let ms = rng.between(100, 700);
    let fan_in = rng.between(1, 2);
    probe_job(
        key,
        &format!(
            r#"    - name: fan-out
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
        ),
    )
}

/// A job named `key` of the YAML list `tasks`, each retried many times
/// 200 ms apart (faults make attempts fail) within a minute.
pub fn probe_job(key: &str, tasks: &str) -> String {
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
{tasks}"#
    )
}

/// One client: submits and cancels until `stop` turns true.
pub async fn run_client(
    name: String,
    client: Coordinators,
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
            cancel(&name, &client, &history, &job).await;
        } else {
            n += 1;
            let key = format!("{key_prefix}-{name}-{n}");
            let spec = job_spec(&key, &mut rng);
            if let Some(job) = submit(&name, &client, &history, &key, &spec).await {
                jobs.push(job);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.between(400, 1200))).await;
    }
}

/// Submits with one key until a definite answer or the tries run out;
/// the job's id when it was accepted.
pub async fn submit(
    name: &str,
    client: &Coordinators,
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
            .jobs(|mut c| {
                let request = request.clone();
                async move { c.submit_job(request).await }
            })
            .await
            .map_err(CallError::into_status);
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

async fn cancel(name: &str, client: &Coordinators, history: &History, job: &str) {
    history.record(Op::new(name, OpType::Invoke, "cancel").job(job));
    let request = CancelJobRequest {
        job_id: job.to_owned(),
        reason: "chaos workload".to_owned(),
    };
    let result = client
        .jobs(|mut c| {
            let request = request.clone();
            async move { c.cancel_job(request).await }
        })
        .await
        .map_err(CallError::into_status);
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
