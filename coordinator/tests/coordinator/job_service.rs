//! `JobService` over real gRPC on loopback (port 0): a single-node
//! coordinator, the job service served on a second listener, and a tonic
//! client. Every wait is bounded, so a broken server fails a test instead
//! of hanging it.

use std::future::Future;
use std::time::Duration;

use drover_coordinator::server::{self, ServerConfig, Started};
use drover_coordinator::service::job::JobServer;
use drover_proto::DIAGNOSTICS_METADATA_KEY;
use drover_proto::v1::explain_task_response::Reason;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::job_service_server::JobServiceServer;
use drover_proto::v1::{
    CancelJobRequest, ExplainTaskRequest, GetJobRequest, JobEventKind, JobEventsRequest, JobState,
    ListJobsRequest, ListTasksRequest, PlanJobRequest, Severity, SubmitJobRequest,
    SubmitJobResponse, TaskKind, TaskState, WatchJobRequest,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {WAIT:?}"))
}

/// A single-node coordinator with the job service on its own listener.
struct Harness {
    client: JobServiceClient<Channel>,
    started: Started,
    stop_raft: oneshot::Sender<()>,
    stop_jobs: oneshot::Sender<()>,
    raft_server: JoinHandle<()>,
    job_server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raft_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = ServerConfig::new(1, dir.path());
        config.tick_ms = 20;
        config
            .peers
            .insert(1, raft_listener.local_addr().unwrap().to_string());
        let (stop_raft, stopped) = oneshot::channel::<()>();
        let (started, serve) = server::start(config, raft_listener, async {
            let _ = stopped.await;
        })
        .unwrap();
        let raft_server = tokio::spawn(async move {
            let _ = serve.await;
        });
        bounded("the election", async {
            while !started.node.status().is_leader {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;

        let job_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = job_listener.local_addr().unwrap();
        let service = JobServiceServer::new(JobServer::new(started.node.clone()));
        let (stop_jobs, stopped) = oneshot::channel::<()>();
        let job_server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(job_listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        let client = bounded(
            "connecting",
            JobServiceClient::connect(format!("http://{address}")),
        )
        .await
        .unwrap();
        Harness {
            client,
            started,
            stop_raft,
            stop_jobs,
            raft_server,
            job_server,
            _dir: dir,
        }
    }

    async fn stop(self) {
        drop(self.client);
        let _ = self.stop_jobs.send(());
        let _ = self.stop_raft.send(());
        for task in [self.job_server, self.raft_server] {
            let abort = task.abort_handle();
            if tokio::time::timeout(WAIT, task).await.is_err() {
                abort.abort();
            }
        }
        bounded("stopping the node", self.started.stop()).await;
    }

    async fn submit(&mut self, yaml: &str, key: &str) -> Result<SubmitJobResponse, Status> {
        bounded(
            "submit",
            self.client.submit_job(SubmitJobRequest {
                spec_yaml: yaml.to_owned(),
                source_name: "job.yaml".to_owned(),
                idempotency_key: key.to_owned(),
                ..SubmitJobRequest::default()
            }),
        )
        .await
        .map(|r| r.into_inner())
    }

    async fn submit_ok(&mut self, yaml: &str) -> String {
        self.submit(yaml, "").await.unwrap().job_id
    }

    async fn get(&mut self, id: &str) -> Result<drover_proto::v1::Job, Status> {
        bounded(
            "get",
            self.client.get_job(GetJobRequest {
                job_id: id.to_owned(),
                include_spec: false,
            }),
        )
        .await
        .map(|r| r.into_inner().job.unwrap())
    }

    async fn cancel(&mut self, id: &str, reason: &str) -> Result<(i32, bool), Status> {
        bounded(
            "cancel",
            self.client.cancel_job(CancelJobRequest {
                job_id: id.to_owned(),
                reason: reason.to_owned(),
            }),
        )
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.state, r.changed)
        })
    }
}

/// A job of `shards` noop tasks (`a`) and one downstream noop task (`b`).
fn spec(name: &str, namespace: &str, shards: u64) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  tasks:\n    - name: a\n      kind: noop\n      partitions: {{shards: {shards}}}\n    - name: b\n      kind: noop\n      dependsOn: [a]\n"
    )
}

/// A spec with an unknown key on line 8, column 7.
const INVALID: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: bad, namespace: demo}\nspec:\n  tasks:\n    - name: a\n      kind: noop\n      dependson: [x]\n";

/// A daily schedule in Berlin.
const SCHEDULED: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: nightly, namespace: maps, labels: {team: maps}}\nspec:\n  schedule: {cron: \"0 3 * * *\", timezone: Europe/Berlin}\n  tasks:\n    - name: a\n      kind: noop\n";

// ---- a minimal protobuf reader for the diagnostics metadata ----
//
// This crate has no `prost` dependency, so the test decodes the wire format
// itself, independently of the server's encoder.

#[derive(Debug, Default)]
struct Diag {
    file: String,
    line: u64,
    column: u64,
    severity: u64,
    message: String,
    hint: String,
    path: String,
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

/// Reads (field, wire type, varint or bytes) triples.
fn fields(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(bytes, &mut at);
                out.push((field, wire, v.to_le_bytes().to_vec()));
            }
            2 => {
                let len = varint(bytes, &mut at) as usize;
                out.push((field, wire, bytes[at..at + len].to_vec()));
                at += len;
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

fn decode_diagnostics(bytes: &[u8]) -> (Vec<Diag>, bool) {
    let num = |v: &[u8]| u64::from_le_bytes(v.try_into().unwrap());
    let text = |v: &[u8]| String::from_utf8(v.to_vec()).unwrap();
    let mut list = Vec::new();
    let mut truncated = false;
    for (field, _, value) in fields(bytes) {
        match field {
            1 => {
                let mut d = Diag::default();
                for (f, _, v) in fields(&value) {
                    match f {
                        1 => d.file = text(&v),
                        2 => d.line = num(&v),
                        3 => d.column = num(&v),
                        4 => d.severity = num(&v),
                        5 => d.message = text(&v),
                        6 => d.hint = text(&v),
                        7 => d.path = text(&v),
                        other => panic!("unknown Diagnostic field {other}"),
                    }
                }
                list.push(d);
            }
            2 => truncated = num(&value) != 0,
            other => panic!("unknown DiagnosticList field {other}"),
        }
    }
    (list, truncated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_get_and_list_with_pagination() {
    let mut h = Harness::start().await;
    let first = h.submit(&spec("one", "demo", 3), "").await.unwrap();
    // A UUIDv7.
    let uuid = uuid::Uuid::parse_str(&first.job_id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert_eq!(first.job_id, uuid.hyphenated().to_string());
    assert!(first.created);
    let plan = first.plan.unwrap();
    assert_eq!(plan.total_task_count, 4);
    assert_eq!(plan.stage_count, 2);
    assert_eq!(plan.templates[0].name, "a");
    assert_eq!(plan.templates[1].depends_on, ["a"]);

    let job = h.get(&first.job_id).await.unwrap();
    assert_eq!(job.name, "one");
    assert_eq!(job.namespace, "demo");
    assert_eq!(job.state, JobState::Pending as i32);
    let counts = job.task_counts.unwrap();
    assert_eq!((counts.ready, counts.blocked, counts.total), (3, 1, 4));
    assert_eq!(job.templates.len(), 2);
    assert_eq!(job.templates[1].name, "b");
    assert_eq!(job.templates[1].stage, 1);
    assert_eq!(job.templates[1].kind, TaskKind::Noop as i32);
    assert!(job.last_event_seq >= 1);

    let mut ids = vec![first.job_id.clone()];
    for i in 2..=5 {
        let namespace = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(h.submit_ok(&spec(&format!("job{i}"), namespace, 1)).await);
    }
    // Time-ordered: each later than the one before.
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Any unambiguous prefix names a job; the time part alone is shared.
    let short: String = ids[2].chars().rev().take(12).collect::<String>();
    let tail: String = short.chars().rev().collect();
    assert!(h.get(&tail).await.is_err(), "a suffix is not an id");
    let unique = &ids[2][..ids[2]
        .char_indices()
        .map(|(i, _)| i + 1)
        .find(|n| {
            ids.iter()
                .filter(|id| id.starts_with(&ids[2][..*n]))
                .count()
                == 1
        })
        .unwrap()
        .max(4)];
    assert_eq!(h.get(unique).await.unwrap().job_id, ids[2]);
    // The first 4 digits are the top of the time, the same for years.
    let shared = &ids[0][..4];
    let ambiguous = h.get(shared).await.unwrap_err();
    assert_eq!(ambiguous.code(), Code::InvalidArgument);
    assert!(
        ambiguous.message().contains("give more of the id"),
        "{ambiguous:?}"
    );

    // Newest first, two per page, every job exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = bounded(
            "list",
            h.client.list_jobs(ListJobsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..ListJobsRequest::default()
            }),
        )
        .await
        .unwrap()
        .into_inner();
        assert!(page.jobs.len() <= 2);
        assert!(page.jobs.iter().all(|j| j.templates.is_empty()));
        seen.extend(page.jobs.into_iter().map(|j| j.job_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    // Each job's short id is the shortest start (8 or more characters) no
    // other id shares, and names it back.
    for id in &ids {
        let short = h.get(id).await.unwrap().short_id;
        assert!(
            short.len() >= 8 && id.starts_with(&short),
            "{short} of {id}"
        );
        assert_eq!(
            ids.iter().filter(|other| other.starts_with(&short)).count(),
            1
        );
        assert_eq!(h.get(&short).await.unwrap().job_id, *id);
        let shorter = &short[..short.len() - 1];
        if shorter.len() >= 8 && !shorter.ends_with('-') {
            assert!(
                ids.iter().filter(|o| o.starts_with(shorter)).count() > 1,
                "{short}"
            );
        }
    }

    let even = bounded(
        "list",
        h.client.list_jobs(ListJobsRequest {
            namespace: "even".to_owned(),
            ..ListJobsRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let listed: Vec<&str> = even.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(listed, [ids[3].as_str(), ids[1].as_str()]);
    assert!(even.next_page_token.is_empty());

    let prefixed = bounded(
        "list",
        h.client.list_jobs(ListJobsRequest {
            name_prefix: "job".to_owned(),
            states: vec![JobState::Pending as i32],
            ..ListJobsRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(prefixed.jobs.len(), 4);

    let bad_token = bounded(
        "list",
        h.client.list_jobs(ListJobsRequest {
            page_token: "garbage".to_owned(),
            ..ListJobsRequest::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_is_invalid_argument_with_positioned_diagnostics() {
    let mut h = Harness::start().await;
    let status = h.submit(INVALID, "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("dependson"),
        "{}",
        status.message()
    );
    let bytes = status
        .metadata()
        .get_bin(DIAGNOSTICS_METADATA_KEY)
        .expect("diagnostics metadata")
        .to_bytes()
        .unwrap();
    let (diagnostics, truncated) = decode_diagnostics(&bytes);
    assert!(!truncated);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert_eq!(d.file, "job.yaml");
    assert_eq!((d.line, d.column), (8, 7));
    assert_eq!(d.severity, Severity::Error as u64);
    assert_eq!(d.path, "spec.tasks[0].dependson");
    assert!(d.message.contains("dependson"));
    assert!(d.hint.contains("dependsOn"));

    // Nothing was created.
    let listed = bounded("list", h.client.list_jobs(ListJobsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty());

    // Over the size limit: refused before parsing.
    let huge = format!("{INVALID}#{}\n", "x".repeat(1024 * 1024));
    let status = h.submit(&huge, "").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_resubmit_and_conflict() {
    let mut h = Harness::start().await;
    let yaml = spec("idem", "demo", 2);
    let first = h.submit(&yaml, "key-1").await.unwrap();
    assert!(first.created);
    let again = h.submit(&yaml, "key-1").await.unwrap();
    assert_eq!(again.job_id, first.job_id);
    assert!(!again.created);
    let conflict = h
        .submit(&spec("idem", "demo", 5), "key-1")
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    // A different key creates a new job.
    let other = h.submit(&yaml, "key-2").await.unwrap();
    assert!(other.created);
    assert_ne!(other.job_id, first.job_id);
    let job = h.get(&first.job_id).await.unwrap();
    assert_eq!(job.idempotency_key, "key-1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_is_pure_and_reports_invalid_specs_as_answers() {
    let mut h = Harness::start().await;
    let plan = bounded(
        "plan",
        h.client.plan_job(PlanJobRequest {
            spec_yaml: spec("big", "demo", 1_000_000),
            source_name: "big.yaml".to_owned(),
            ..PlanJobRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(plan.valid);
    let p = plan.plan.unwrap();
    assert_eq!(p.total_task_count, 1_000_001);
    assert_eq!(p.templates[0].partition_count, 1_000_000);
    assert_eq!(
        p.templates[0].sample_partition_keys,
        ["0", "1", "2", "3", "4"]
    );
    assert!(p.schedule.is_none());
    assert!(!p.spec_fingerprint.is_empty());

    let invalid = bounded(
        "plan",
        h.client.plan_job(PlanJobRequest {
            spec_yaml: INVALID.to_owned(),
            source_name: "bad.yaml".to_owned(),
            ..PlanJobRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(!invalid.valid);
    assert!(invalid.plan.is_none());
    assert_eq!(invalid.diagnostics[0].line, 8);
    assert_eq!(invalid.diagnostics[0].file, "bad.yaml");

    // As of 2026-03-27T12:00Z, the next Berlin 03:00 fires straddle the
    // DST change of 29 March: 02:00 UTC before it, 01:00 UTC after.
    let scheduled = bounded(
        "plan",
        h.client.plan_job(PlanJobRequest {
            spec_yaml: SCHEDULED.to_owned(),
            fire_time_count: 3,
            as_of_unix_ms: 1_774_612_800_000,
            ..PlanJobRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let schedule = scheduled.plan.unwrap().schedule.unwrap();
    assert_eq!(schedule.timezone, "Europe/Berlin");
    assert_eq!(
        schedule.next_fire_unix_ms,
        [1_774_663_200_000, 1_774_746_000_000, 1_774_832_400_000]
    );

    // Nothing was submitted.
    let listed = bounded("list", h.client.list_jobs(ListJobsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_get_shows_cancelled_and_events_page() {
    let mut h = Harness::start().await;
    let id = h.submit_ok(&spec("doomed", "demo", 3)).await;
    let (state, changed) = h.cancel(&id, "not needed").await.unwrap();
    assert_eq!(state, JobState::Cancelled as i32);
    assert!(changed);
    let job = h.get(&id).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled as i32);
    assert_eq!(job.state_reason, "not needed");
    assert!(job.finished_unix_ms > 0);
    assert_eq!(job.task_counts.unwrap().cancelled, 4);
    // Cancelling again is a successful no-op.
    let (state, changed) = h.cancel(&id, "again").await.unwrap();
    assert_eq!(state, JobState::Cancelled as i32);
    assert!(!changed);

    let events = |after_seq: u64, limit: u32, kinds: Vec<i32>| JobEventsRequest {
        job_id: id.clone(),
        after_seq,
        limit,
        kinds,
        ..JobEventsRequest::default()
    };
    let all = bounded("events", h.client.job_events(events(0, 0, vec![])))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = all.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            JobEventKind::JobSubmitted as i32,
            JobEventKind::JobCancelled as i32,
            JobEventKind::JobCancelled as i32,
        ]
    );
    let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(all.events[1].message, "not needed");
    assert_eq!(all.oldest_seq, 1);
    assert!(!all.more);
    assert_eq!(all.next_after_seq, 3);

    let after = bounded("events", h.client.job_events(events(1, 1, vec![])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.events.len(), 1);
    assert_eq!(after.events[0].seq, 2);
    assert!(after.more);
    assert_eq!(after.next_after_seq, 2);

    let submitted = bounded(
        "events",
        h.client
            .job_events(events(0, 0, vec![JobEventKind::JobSubmitted as i32])),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(submitted.events.len(), 1);
    assert_eq!(submitted.events[0].seq, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tasks_of_a_million_shards_is_one_bounded_page() {
    let mut h = Harness::start().await;
    let id = h.submit_ok(&spec("backfill", "demo", 1_000_000)).await;
    let list =
        |page_size: u32, page_token: String, states: Vec<i32>, template: &str| ListTasksRequest {
            job_id: id.clone(),
            template: template.to_owned(),
            states,
            page_size,
            page_token,
        };
    let first = bounded(
        "tasks",
        h.client.list_tasks(list(0, String::new(), vec![], "")),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(first.tasks.len(), 100);
    assert!(!first.next_page_token.is_empty());
    let t = &first.tasks[17];
    assert_eq!(t.task_id, format!("{id}/0/17"));
    assert_eq!(t.template, "a");
    assert_eq!(t.partition_key, "17");
    assert_eq!(t.state, TaskState::Ready as i32);

    // Larger pages are clamped, and the next page follows on.
    let big = bounded(
        "tasks",
        h.client
            .list_tasks(list(50_000, first.next_page_token.clone(), vec![], "")),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(big.tasks.len(), 1000);
    assert_eq!(big.tasks[0].partition_index, 100);
    assert!(!big.next_page_token.is_empty());

    // The downstream template alone: one blocked task, last page.
    let b = bounded(
        "tasks",
        h.client.list_tasks(list(0, String::new(), vec![], "b")),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(b.tasks.len(), 1);
    assert_eq!(b.tasks[0].state, TaskState::Blocked as i32);
    assert_eq!(b.tasks[0].partition_key, "");
    assert!(b.next_page_token.is_empty());

    // A state filter that matches nothing skips never-run ranges at once.
    let failed = bounded(
        "tasks",
        h.client
            .list_tasks(list(0, String::new(), vec![TaskState::Failed as i32], "")),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(failed.tasks.is_empty());
    assert!(failed.next_page_token.is_empty());

    let blocked = bounded(
        "tasks",
        h.client
            .list_tasks(list(0, String::new(), vec![TaskState::Blocked as i32], "")),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(blocked.tasks.len(), 1);
    assert_eq!(blocked.tasks[0].task_id, format!("{id}/1/0"));

    let unknown = bounded(
        "tasks",
        h.client.list_tasks(list(0, String::new(), vec![], "nope")),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_dependency_for_a_downstream_task() {
    let mut h = Harness::start().await;
    let id = h.submit_ok(&spec("dag", "demo", 3)).await;
    let explain = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: format!("{id}/1/0"),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(explain.task.unwrap().state, TaskState::Blocked as i32);
    assert!(explain.summary.contains("upstream"), "{}", explain.summary);
    assert!(explain.evaluated_unix_ms > 0);
    match explain.reason {
        Some(Reason::Dependency(wait)) => {
            assert_eq!(wait.blocking.len(), 1);
            let up = &wait.blocking[0];
            assert_eq!(up.template, "a");
            assert_eq!((up.remaining, up.total, up.failed), (3, 3, 0));
        }
        other => panic!("expected a dependency wait, got {other:?}"),
    }

    // An upstream task is ready, but no worker is registered.
    let ready = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: format!("{id}/0/2"),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    match ready.reason {
        Some(Reason::NoMatchingWorker(w)) => {
            assert_eq!(w.kind, TaskKind::Noop as i32);
            assert_eq!(w.alive_workers, 0);
        }
        other => panic!("expected no matching worker, got {other:?}"),
    }

    let missing = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: format!("{id}/0/3"),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: "j1-0-0".to_owned(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_until_the_job_is_terminal() {
    let mut h = Harness::start().await;
    let id = h.submit_ok(&spec("watched", "demo", 2)).await;
    let mut stream = bounded(
        "watch",
        h.client.watch_job(WatchJobRequest {
            job_id: id.clone(),
            ..WatchJobRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let first = bounded("first message", stream.message())
        .await
        .unwrap()
        .expect("a first message");
    assert_eq!(first.job.unwrap().state, JobState::Pending as i32);
    assert_eq!(first.events[0].kind, JobEventKind::JobSubmitted as i32);

    h.cancel(&id, "watched enough").await.unwrap();
    let mut last_state = JobState::Pending as i32;
    let mut last_seq = first.events.last().unwrap().seq;
    bounded("the end of the stream", async {
        while let Some(message) = stream.message().await.unwrap() {
            last_state = message.job.unwrap().state;
            for event in message.events {
                assert!(event.seq > last_seq, "events arrive once, in order");
                last_seq = event.seq;
            }
        }
    })
    .await;
    assert_eq!(last_state, JobState::Cancelled as i32);
    assert_eq!(last_seq, 3);

    // Watching a finished job sends its final state once and ends.
    let mut again = bounded(
        "watch",
        h.client.watch_job(WatchJobRequest {
            job_id: id.clone(),
            after_seq: 3,
            ..WatchJobRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let only = bounded("message", again.message()).await.unwrap().unwrap();
    assert_eq!(only.job.unwrap().state, JobState::Cancelled as i32);
    assert!(only.events.is_empty());
    assert!(bounded("end", again.message()).await.unwrap().is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_have_schedule_ids() {
    let mut h = Harness::start().await;
    let submitted = h.submit(SCHEDULED, "nightly").await.unwrap();
    let s1 = submitted.job_id.clone();
    assert_eq!(uuid::Uuid::parse_str(&s1).unwrap().get_version_num(), 7);
    assert!(submitted.plan.unwrap().schedule.is_some());
    let job = h.get(&s1).await.unwrap();
    assert_eq!(job.name, "nightly");
    assert_eq!(job.labels.get("team").map(String::as_str), Some("maps"));
    assert_eq!(job.idempotency_key, "nightly");
    assert_eq!(job.state, JobState::Pending as i32);
    let schedule = job.schedule.unwrap();
    assert_eq!(schedule.plan.unwrap().next_fire_unix_ms.len(), 5);
    assert_eq!(schedule.run_count, 0);

    let plain = h.submit_ok(&spec("plain", "maps", 1)).await;
    let listed = bounded("list", h.client.list_jobs(ListJobsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, [plain.as_str(), s1.as_str()]);
    let runs = bounded(
        "list",
        h.client.list_jobs(ListJobsRequest {
            parent_job_id: s1.clone(),
            ..ListJobsRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(runs.jobs.is_empty());

    let (state, changed) = h.cancel(&s1, "no longer needed").await.unwrap();
    assert_eq!((state, changed), (JobState::Cancelled as i32, true));
    let (_, changed) = h.cancel(&s1, "again").await.unwrap();
    assert!(!changed);
    let job = h.get(&s1).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled as i32);
    assert_eq!(job.state_reason, "no longer needed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids() {
    let mut h = Harness::start().await;
    assert_eq!(h.get("j999").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(h.get("s999").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(h.get("x1").await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(h.get("j").await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(
        h.cancel("j999", "").await.unwrap_err().code(),
        Code::NotFound
    );
    let events = bounded(
        "events",
        h.client.job_events(JobEventsRequest {
            job_id: "j999".to_owned(),
            ..JobEventsRequest::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(events.code(), Code::NotFound);
    let tasks = bounded(
        "tasks",
        h.client.list_tasks(ListTasksRequest {
            job_id: "j999".to_owned(),
            ..ListTasksRequest::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(tasks.code(), Code::NotFound);
    let watch = bounded(
        "watch",
        h.client.watch_job(WatchJobRequest {
            job_id: "j999".to_owned(),
            ..WatchJobRequest::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(watch.code(), Code::NotFound);
    let retry = bounded(
        "retry",
        h.client.retry_job(drover_proto::v1::RetryJobRequest {
            job_id: "j999".to_owned(),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(retry.code(), Code::NotFound);

    // Retrying a job that has not failed is refused.
    let id = h.submit_ok(&spec("fine", "demo", 1)).await;
    let retry = bounded(
        "retry",
        h.client.retry_job(drover_proto::v1::RetryJobRequest {
            job_id: id,
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(retry.code(), Code::FailedPrecondition);
    h.stop().await;
}

/// Drives tasks through a worker directly on the node, so that records
/// exist: leased, succeeded and failed tasks among never-run ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_records_show_in_tasks_explain_events_and_retry() {
    use drover_coordinator::state::{Command, Manifest, Outcome, TaskKey};

    let mut h = Harness::start().await;
    let id = h.submit_ok(&spec("records", "demo", 5)).await;
    let job: drover_coordinator::state::JobId = id.parse().unwrap();
    let node = h.started.node.clone();
    let propose = |command: Command| {
        let node = node.clone();
        async move {
            bounded("propose", node.propose(vec![command]))
                .await
                .unwrap()
                .remove(0)
                .unwrap()
        }
    };
    propose(Command::RegisterWorker {
        worker: "w1".to_owned(),
        slots: 8,
        labels: Default::default(),
        kinds: Vec::new(),
    })
    .await;
    let Outcome::Leased(grants) = propose(Command::Lease {
        worker: "w1".to_owned(),
        max_tasks: 3,
    })
    .await
    else {
        panic!("expected grants");
    };
    assert_eq!(grants.len(), 3);
    let key = |partition: u64| TaskKey {
        job,
        template: 0,
        partition,
    };
    let token = |partition: u64| {
        grants
            .iter()
            .find(|g| g.task == key(partition))
            .unwrap()
            .token
    };
    propose(Command::Complete {
        worker: "w1".to_owned(),
        task: key(0),
        token: token(0),
        manifest: Manifest {
            prefix: grants
                .iter()
                .find(|g| g.task == key(0))
                .unwrap()
                .output_prefix
                .clone(),
            ..Manifest::default()
        },
        skipped: false,
    })
    .await;
    propose(Command::Fail {
        worker: "w1".to_owned(),
        task: key(1),
        token: token(1),
        retryable: false,
        message: "boom".to_owned(),
    })
    .await;

    let tasks = |states: Vec<i32>| ListTasksRequest {
        job_id: id.clone(),
        states,
        ..ListTasksRequest::default()
    };
    let all = bounded("tasks", h.client.list_tasks(tasks(vec![])))
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(String, i32)> = all
        .tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.state))
        .collect();
    assert_eq!(
        states,
        [
            (format!("{id}/0/0"), TaskState::Succeeded as i32),
            (format!("{id}/0/1"), TaskState::Failed as i32),
            (format!("{id}/0/2"), TaskState::Leased as i32),
            (format!("{id}/0/3"), TaskState::Ready as i32),
            (format!("{id}/0/4"), TaskState::Ready as i32),
            // The upstream failure settles the downstream template at
            // once, as upstream-failed rather than failed.
            (format!("{id}/1/0"), TaskState::UpstreamFailed as i32),
        ]
    );
    // Each task that ran keeps its attempts, worker, start and finish.
    let (done, failed_task, never) = (&all.tasks[0], &all.tasks[1], &all.tasks[5]);
    assert_eq!((done.attempt, done.worker_id.as_str()), (1, "w1"));
    assert!(done.started_unix_ms > 0 && done.finished_unix_ms >= done.started_unix_ms);
    assert_eq!(
        (failed_task.attempt, failed_task.worker_id.as_str()),
        (1, "w1")
    );
    assert!(failed_task.finished_unix_ms > 0);
    assert_eq!(
        (never.attempt, never.started_unix_ms, never.finished_unix_ms),
        (0, 0, 0)
    );
    assert_eq!(
        all.tasks[0].output_prefix,
        format!("jobs/{job}/0/0/attempt-1-{}", token(0))
    );
    assert_eq!(all.tasks[1].last_error, "boom");
    assert_eq!(all.tasks[2].worker_id, "w1");
    assert!(all.tasks[2].lease_deadline_unix_ms > 0);
    assert_eq!(all.tasks[2].attempt, 1);

    // Page by page, two at a time, across both templates.
    let mut paged = Vec::new();
    let mut token_str = String::new();
    for _ in 0..10 {
        let page = bounded(
            "tasks",
            h.client.list_tasks(ListTasksRequest {
                job_id: id.clone(),
                page_size: 2,
                page_token: token_str.clone(),
                ..ListTasksRequest::default()
            }),
        )
        .await
        .unwrap()
        .into_inner();
        paged.extend(page.tasks.into_iter().map(|t| t.task_id));
        token_str = page.next_page_token;
        if token_str.is_empty() {
            break;
        }
    }
    let ids: Vec<String> = all.tasks.iter().map(|t| t.task_id.clone()).collect();
    assert_eq!(paged, ids);

    let failed = bounded(
        "tasks",
        h.client.list_tasks(tasks(vec![TaskState::Failed as i32])),
    )
    .await
    .unwrap()
    .into_inner();
    let ids: Vec<&str> = failed.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, [format!("{id}/0/1")]);
    let upstream = bounded(
        "tasks",
        h.client
            .list_tasks(tasks(vec![TaskState::UpstreamFailed as i32])),
    )
    .await
    .unwrap()
    .into_inner();
    let ids: Vec<&str> = upstream.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, [format!("{id}/1/0")]);

    // A ready task with a live worker waits for a slot.
    let explain = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: format!("{id}/0/4"),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    match explain.reason {
        Some(Reason::FairShare(wait)) => {
            assert_eq!(wait.namespace, "demo");
            assert_eq!(wait.used_slots, 1);
            assert_eq!(wait.tasks_ahead, 1);
        }
        other => panic!("expected a fair-share wait, got {other:?}"),
    }
    let explain = bounded(
        "explain",
        h.client.explain_task(ExplainTaskRequest {
            task_id: format!("{id}/0/1"),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    match explain.reason {
        Some(Reason::NotPending(n)) => assert_eq!(n.state, TaskState::Failed as i32),
        other => panic!("expected not pending, got {other:?}"),
    }

    let events = bounded(
        "events",
        h.client.job_events(JobEventsRequest {
            job_id: id.clone(),
            task_id: format!("{id}/0/1"),
            ..JobEventsRequest::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let kinds: Vec<i32> = events.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            JobEventKind::TaskLeased as i32,
            JobEventKind::TaskFailed as i32
        ]
    );
    assert_eq!(events.events[0].worker_id, "w1");
    assert_eq!(events.events[0].fencing_token, token(1));
    assert!(events.events[1].message.starts_with("boom"));

    // Finish the rest; the job fails because of task 1.
    propose(Command::Complete {
        worker: "w1".to_owned(),
        task: key(2),
        token: token(2),
        manifest: Manifest::default(),
        skipped: false,
    })
    .await;
    let Outcome::Leased(rest) = propose(Command::Lease {
        worker: "w1".to_owned(),
        max_tasks: 8,
    })
    .await
    else {
        panic!("expected grants");
    };
    assert_eq!(rest.len(), 2);
    for grant in rest {
        propose(Command::Complete {
            worker: "w1".to_owned(),
            task: grant.task,
            token: grant.token,
            manifest: Manifest::default(),
            skipped: false,
        })
        .await;
    }
    let failed_job = h.get(&id).await.unwrap();
    assert_eq!(failed_job.state, JobState::Failed as i32);
    assert_eq!(
        failed_job.state_reason,
        format!("task {id}/0/1 failed: boom")
    );
    assert!(failed_job.started_unix_ms > 0);

    let retried = bounded(
        "retry",
        h.client.retry_job(drover_proto::v1::RetryJobRequest {
            job_id: id.clone(),
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(retried.requeued_task_count, 2);
    assert_eq!(retried.state, JobState::Running as i32);
    let job = h.get(&id).await.unwrap();
    let counts = job.task_counts.unwrap();
    assert_eq!((counts.ready, counts.blocked, counts.failed), (1, 1, 0));
    h.stop().await;
}
