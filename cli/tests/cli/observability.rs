//! Observability of real `drover coordinator` and `drover worker`
//! processes on loopback: a job submitted over gRPC with a `traceparent`
//! runs on the worker; both `/metrics` endpoints show it in OpenMetrics
//! text; with `--log-format json` every log line is a JSON object, and the
//! worker's attempt lines carry the job's trace id.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_proto::TRACEPARENT_METADATA_KEY;
use drover_proto::v1::SubmitJobRequest;
use drover_proto::v1::job_service_client::JobServiceClient;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// A child process whose stderr lines are collected as they come; killed
/// if the test fails before stopping it.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(args: &[&str], data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .arg(data)
            .args(["--log-format", "json"])
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Sends SIGTERM, waits for the exit, and returns every stderr line.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{pid} ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reader thread sees EOF once the process is gone.
        std::thread::sleep(Duration::from_millis(200));
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code, headers and body of a GET.
fn http_get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head.to_ascii_lowercase(), body.to_owned()))
}

/// Polls `f` until it returns Some, up to `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit(grpc: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = drover_proto::endpoint(grpc).unwrap().connect().await.unwrap();
        let mut client = JobServiceClient::new(channel);
        let mut request = tonic::Request::new(SubmitJobRequest {
            spec_yaml: "apiVersion: drover/v1\nkind: Job\nmetadata: {name: observed}\nspec:\n  tasks:\n    - {name: a, kind: sleep, partitions: {shards: 2}, config: {ms: 10}}\n".to_owned(),
            source_name: "observed.yaml".to_owned(),
            ..SubmitJobRequest::default()
        });
        request
            .metadata_mut()
            .insert(TRACEPARENT_METADATA_KEY, TRACE.parse().unwrap());
        let response = client.submit_job(request).await.unwrap().into_inner();
        assert_eq!(response.trace_id, TRACE_ID);
        response.job_id
    })
}

/// The sample value of `series` in OpenMetrics `text`.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn metrics_and_json_logs_follow_a_traced_job_from_submit_to_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, coordinator_http, worker_http) = (free_addr(), free_addr(), free_addr());
    let coordinator = Proc::spawn(
        &[
            "coordinator",
            "--node-id",
            "1",
            "--listen",
            &grpc,
            "--http",
            &coordinator_http,
            "--data-dir",
        ],
        &dir.path().join("c"),
    );
    wait_for("readiness", Duration::from_secs(30), || {
        http_get(&coordinator_http, "/readyz").filter(|(code, ..)| *code == 200)
    });
    let job = submit(&grpc);
    let worker = Proc::spawn(
        &[
            "--coordinators",
            &grpc,
            "worker",
            "--http",
            &worker_http,
            "--work-dir",
        ],
        &dir.path().join("w"),
    );

    // The coordinator's scrape shows the job done and the leases behind it.
    let (head, text) = wait_for("the job's success", Duration::from_secs(60), || {
        let (code, head, body) = http_get(&coordinator_http, "/metrics")?;
        assert_eq!(code, 200);
        (sample(
            &body,
            "drover_tasks{state=\"succeeded\",namespace=\"default\"}",
        ) == Some("2"))
        .then_some((head, body))
    });
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(sample(&text, "drover_raft_is_leader"), Some("1"));
    assert_eq!(sample(&text, "drover_workers_alive"), Some("1"));
    // The worker reports in batches: both completions in one or two calls.
    let batches = sample(
        &text,
        "drover_worker_rpc_requests_total{method=\"complete_batch\",outcome=\"ok\"}",
    );
    assert!(matches!(batches, Some("1" | "2")), "{batches:?}");

    // So does the worker's, once the answers to its reports are in.
    let (head, text) = wait_for("the worker's count", Duration::from_secs(30), || {
        let (code, head, body) = http_get(&worker_http, "/metrics")?;
        assert_eq!(code, 200);
        (sample(
            &body,
            "drover_worker_attempts_finished_total{outcome=\"completed\"}",
        ) == Some("2"))
        .then_some((head, body))
    });
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert_eq!(sample(&text, "drover_worker_tasks_running"), Some("0"));
    let (code, _, body) = http_get(&worker_http, "/healthz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    let worker_lines = json_lines(&worker.stop());
    let coordinator_lines = json_lines(&coordinator.stop());
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        coordinator_lines
            .iter()
            .any(|v| message(v) == "coordinator started"),
        "{coordinator_lines:?}"
    );
    let submitted = coordinator_lines
        .iter()
        .find(|v| message(v) == "job submitted")
        .expect("a submit line");
    assert_eq!(submitted["fields"]["trace_id"], TRACE_ID);
    assert_eq!(submitted["fields"]["job_id"], job.as_str());
    let attempts: Vec<&serde_json::Value> = worker_lines
        .iter()
        .filter(|v| message(v) == "attempt finished")
        .collect();
    assert_eq!(attempts.len(), 2, "{worker_lines:?}");
    for a in attempts {
        assert_eq!(a["span"]["name"], "task");
        assert_eq!(a["span"]["trace_id"], TRACE_ID);
        assert_eq!(a["span"]["job_id"], job.as_str());
        assert_eq!(a["fields"]["outcome"], "completed");
    }
}
