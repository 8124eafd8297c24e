//! Observability of a real single-node coordinator over loopback gRPC
//! (port 0): the metrics a scrape renders after a job ran through the
//! lease protocol, and the trace context a submit hands to leased tasks.
//! Every wait is bounded, so a broken server fails a test instead of
//! hanging it.

use std::future::Future;
use std::time::Duration;

use drover_coordinator::metrics::CONTENT_TYPE;
use drover_coordinator::server::{self, ServerConfig, Started};
use drover_proto::TRACEPARENT_METADATA_KEY;
use drover_proto::trace::TraceParent;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::worker_service_client::WorkerServiceClient;
use drover_proto::v1::{
    CompleteRequest, GetJobRequest, JobState, LeaseRequest, LeasedTask, RegisterRequest,
    SubmitJobRequest, SubmitJobResponse,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(30);

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {WAIT:?}"))
}

struct Coordinator {
    started: Started,
    jobs: JobServiceClient<Channel>,
    workers: WorkerServiceClient<Channel>,
    /// The session of the worker registered last.
    session: u64,
    stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Coordinator {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let mut config = ServerConfig::new(1, dir.path());
        config.tick_ms = 20;
        config.peers.insert(1, address.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, serve) = server::start(config, listener, async {
            let _ = stopped.await;
        })
        .unwrap();
        tokio::spawn(serve);
        bounded("the election", async {
            while !started.node.status().is_leader {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let channel = bounded(
            "connecting",
            drover_proto::endpoint(&address).unwrap().connect(),
        )
        .await
        .unwrap();
        Self {
            started,
            jobs: JobServiceClient::new(channel.clone()),
            workers: WorkerServiceClient::new(channel),
            session: 0,
            stop,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        bounded("stopping the node", self.started.stop()).await;
    }

    async fn submit(
        &mut self,
        yaml: &str,
        trace_parent: Option<&str>,
        key: &str,
    ) -> SubmitJobResponse {
        let mut request = tonic::Request::new(SubmitJobRequest {
            spec_yaml: yaml.to_owned(),
            source_name: "job.yaml".to_owned(),
            idempotency_key: key.to_owned(),
            ..SubmitJobRequest::default()
        });
        if let Some(t) = trace_parent {
            request
                .metadata_mut()
                .insert(TRACEPARENT_METADATA_KEY, t.parse().unwrap());
        }
        bounded("submit", self.jobs.submit_job(request))
            .await
            .unwrap()
            .into_inner()
    }

    /// Registers `worker`; its session is kept for its leases.
    async fn register(&mut self, worker: &str) {
        self.session = bounded(
            "register",
            self.workers.register(RegisterRequest {
                worker_id: worker.to_owned(),
                slots: 10,
                ..RegisterRequest::default()
            }),
        )
        .await
        .unwrap()
        .into_inner()
        .session_epoch;
    }

    /// Leases until `n` tasks are held.
    async fn lease(&mut self, worker: &str, n: usize) -> Vec<LeasedTask> {
        let mut tasks = Vec::new();
        while tasks.len() < n {
            let response = bounded(
                "lease",
                self.workers.lease(LeaseRequest {
                    worker_id: worker.to_owned(),
                    session_epoch: self.session,
                    max_tasks: (n - tasks.len()) as u32,
                    wait_ms: 1000,
                }),
            )
            .await
            .unwrap()
            .into_inner();
            tasks.extend(response.tasks);
        }
        tasks
    }

    async fn complete(&mut self, worker: &str, task: &LeasedTask) -> bool {
        bounded(
            "complete",
            self.workers.complete(CompleteRequest {
                worker_id: worker.to_owned(),
                task_id: task.task_id.clone(),
                fencing_token: task.fencing_token,
                ..CompleteRequest::default()
            }),
        )
        .await
        .unwrap()
        .into_inner()
        .accepted
    }
}

fn noop_job(name: &str, shards: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  tasks:\n    - {{name: a, kind: noop, partitions: {{shards: {shards}}}}}\n"
    )
}

/// The value of the sample line that starts with `series` (name and
/// labels), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_job_ran_shows_its_tasks_leases_and_raft_progress() {
    let mut c = Coordinator::start().await;
    let job = c.submit(&noop_job("scraped", 3), None, "").await.job_id;
    c.register("w").await;
    let tasks = c.lease("w", 3).await;
    for t in &tasks {
        assert!(c.complete("w", t).await);
    }
    // A second completion with a stale token is fenced off.
    let mut stale = tasks[0].clone();
    stale.fencing_token += 1000;
    let refused = c
        .workers
        .complete(CompleteRequest {
            worker_id: "w".to_owned(),
            task_id: stale.task_id.clone(),
            fencing_token: stale.fencing_token,
            ..CompleteRequest::default()
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let state = bounded(
        "get",
        c.jobs.get_job(GetJobRequest {
            job_id: job,
            include_spec: false,
        }),
    )
    .await
    .unwrap()
    .into_inner()
    .job
    .unwrap()
    .state;
    assert_eq!(state, JobState::Succeeded as i32);

    let text = c.started.metrics.render(&c.started.node).await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(CONTENT_TYPE.starts_with("application/openmetrics-text"));
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no `{series}` in\n{text}"));
    assert_eq!(
        value("drover_tasks{state=\"succeeded\",namespace=\"default\"}"),
        3.0
    );
    assert_eq!(
        value("drover_tasks{state=\"ready\",namespace=\"default\"}"),
        0.0
    );
    assert_eq!(value("drover_ready_tasks"), 0.0);
    assert_eq!(value("drover_oldest_ready_task_age_seconds"), 0.0);
    assert_eq!(value("drover_workers_alive"), 1.0);
    assert_eq!(value("drover_workers{state=\"alive\"}"), 1.0);
    assert!(value("drover_worker_rpc_requests_total{method=\"lease\",outcome=\"ok\"}") >= 1.0);
    assert_eq!(
        value("drover_worker_rpc_requests_total{method=\"complete\",outcome=\"ok\"}"),
        3.0
    );
    assert_eq!(
        value("drover_worker_rpc_requests_total{method=\"complete\",outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        value("drover_worker_rpc_duration_seconds_count{method=\"complete\"}"),
        4.0
    );
    assert_eq!(value("drover_lease_granted_tasks_sum"), 3.0);
    let applied = value("drover_raft_applied_index");
    assert!(applied > 0.0, "{text}");
    assert!(value("drover_raft_commit_index") >= applied);
    assert!(value("drover_raft_term") >= 1.0);
    assert_eq!(value("drover_raft_is_leader"), 1.0);
    assert_eq!(value("drover_raft_leader_id"), 1.0);
    assert!(value("drover_raft_log_fsync_seconds_count") > 0.0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_traceparent_is_the_trace_of_every_leased_task() {
    let mut c = Coordinator::start().await;
    let traced = c.submit(&noop_job("traced", 2), Some(TRACE), "k1").await;
    assert_eq!(traced.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    c.register("w").await;
    let tasks = c.lease("w", 2).await;
    for t in &tasks {
        assert_eq!(t.job_id, traced.job_id);
        assert_eq!(t.trace_parent, TRACE);
    }

    // Without a traceparent the coordinator starts a trace, and the job's
    // tasks carry that one.
    let fresh = c.submit(&noop_job("fresh", 1), None, "").await;
    let leased = c.lease("w", 1).await.remove(0);
    let parent = TraceParent::parse(&leased.trace_parent).unwrap();
    assert_eq!(parent.trace_id(), fresh.trace_id);
    assert_ne!(fresh.trace_id, traced.trace_id);

    // A malformed one is dropped for a new trace, never an error.
    let malformed = c
        .submit(&noop_job("malformed", 1), Some("00-not-a-trace-01"), "")
        .await;
    assert_eq!(malformed.trace_id.len(), 32);
    assert!(malformed.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));

    // An idempotent replay answers with the existing job's trace.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let replay = c.submit(&noop_job("traced", 2), Some(other), "k1").await;
    assert!(!replay.created);
    assert_eq!(replay.job_id, traced.job_id);
    assert_eq!(replay.trace_id, traced.trace_id);
    c.stop().await;
}
