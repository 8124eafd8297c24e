//! A worker on "EC2": a fake instance metadata service (IMDSv2, tokens
//! required) gives it its instance id and later a spot interruption
//! notice; the worker drains well inside the two-minute notice window and
//! hands its tasks back. A second one drains when Auto Scaling starts
//! terminating its instance (a lifecycle hook's target state). Another
//! worker finishes the job with no task lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Cluster, spec_file, wait_for};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};

const INSTANCE: &str = "i-0123456789abcdef0";
const TOKEN: &str = "AQAEAFake-session-token==";

/// What the fake service knows and has seen.
#[derive(Default)]
struct Metadata {
    /// Whether a spot interruption notice is out.
    interrupted: AtomicBool,
    /// Whether Auto Scaling is terminating the instance.
    terminating: AtomicBool,
    /// Session tokens handed out.
    tokens: AtomicU32,
    /// Reads refused for want of a token.
    refused: AtomicU32,
}

type Shared = State<Arc<Metadata>>;

fn authorized(metadata: &Metadata, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("x-aws-ec2-metadata-token")
        .is_some_and(|t| t == TOKEN);
    if !ok {
        metadata.refused.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn token(State(m): Shared, headers: HeaderMap) -> (StatusCode, String) {
    if headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .is_none()
    {
        return (StatusCode::BAD_REQUEST, String::new());
    }
    m.tokens.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, TOKEN.to_owned())
}

async fn instance_id(State(m): Shared, headers: HeaderMap) -> (StatusCode, String) {
    if !authorized(&m, &headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (StatusCode::OK, INSTANCE.to_owned())
}

async fn instance_action(State(m): Shared, headers: HeaderMap) -> (StatusCode, String) {
    if !authorized(&m, &headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    if !m.interrupted.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let at = chrono::Utc::now() + chrono::Duration::minutes(2);
    (
        StatusCode::OK,
        format!(
            r#"{{"action": "terminate", "time": "{}"}}"#,
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
}

async fn lifecycle(State(m): Shared, headers: HeaderMap) -> (StatusCode, String) {
    if !authorized(&m, &headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let state = if m.terminating.load(Ordering::SeqCst) {
        "Terminated"
    } else {
        "InService"
    };
    (StatusCode::OK, state.to_owned())
}

/// Serves the fake on a loopback port from its own thread.
fn serve(metadata: Arc<Metadata>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let routes = Router::new()
                .route("/latest/api/token", put(token))
                .route("/latest/meta-data/instance-id", get(instance_id))
                .route(
                    "/latest/meta-data/spot/instance-action",
                    get(instance_action),
                )
                .route(
                    "/latest/meta-data/autoscaling/target-lifecycle-state",
                    get(lifecycle),
                )
                .with_state(metadata);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, routes).await.unwrap();
        });
    });
    format!("http://{address}")
}

const SPEC: &str = "apiVersion: drover/v1
kind: Job
metadata: {name: spot, namespace: team-a}
spec:
  tasks:
    - {name: nap, kind: sleep, partitions: {shards: 6}, config: {ms: 4000}}
";

#[test]
fn a_spot_notice_drains_the_worker_in_time_and_loses_nothing() {
    let metadata = Arc::new(Metadata::default());
    let endpoint = serve(metadata.clone());
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let spec = spec_file(dir.path(), "spot.yaml", SPEC);
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut spot = cluster.worker_with("spot", 2, |command| {
        command
            .args(["--ec2", "--notice-poll", "200ms", "--drain-timeout", "1"])
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    });
    // It names itself by its instance id and takes two tasks.
    wait_for(Duration::from_secs(30), || {
        let status = cluster.job(&job);
        let on_it = status["tasks"].as_array().map_or(0, |tasks| {
            tasks
                .iter()
                .filter(|t| t["state"] == "leased" && t["worker"] == INSTANCE)
                .count()
        });
        (on_it == 2).then_some(())
    });
    assert!(
        metadata.tokens.load(Ordering::SeqCst) >= 1,
        "the worker fetched an IMDSv2 token"
    );
    assert_eq!(
        metadata.refused.load(Ordering::SeqCst),
        0,
        "every read carried the token"
    );

    // The notice: the worker drains and exits well inside two minutes.
    let noticed = Instant::now();
    metadata.interrupted.store(true, Ordering::SeqCst);
    let status = wait_for(Duration::from_secs(60), || spot.child.try_wait().unwrap());
    let drained_in = noticed.elapsed();
    assert!(status.success(), "{status:?}\n{}", cluster.log("spot"));
    assert!(
        drained_in < Duration::from_secs(30),
        "drained in {drained_in:?}"
    );
    let log = cluster.log("spot");
    assert!(
        log.contains("spot interruption notice: terminate at"),
        "{log}"
    );

    // The instance comes back (same id, a new registration) and is scaled
    // in: Auto Scaling's target lifecycle state turns `Terminated`.
    metadata.interrupted.store(false, Ordering::SeqCst);
    let mut scaled_in = cluster.worker_with("scaled-in", 2, |command| {
        command
            .args(["--ec2", "--notice-poll", "200ms", "--drain-timeout", "1"])
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    });
    wait_for(Duration::from_secs(30), || {
        cluster
            .log("scaled-in")
            .contains("registered")
            .then_some(())
    });
    metadata.terminating.store(true, Ordering::SeqCst);
    let status = wait_for(Duration::from_secs(60), || {
        scaled_in.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    let log = cluster.log("scaled-in");
    assert!(
        log.contains("Auto Scaling is terminating this instance"),
        "{log}"
    );

    // Another worker finishes the job: every task succeeds once.
    let _other = cluster.worker("w2", 6, &[]);
    let done = cluster.wait_job(&job, "succeeded", Duration::from_secs(60));
    assert_eq!(done["counts"]["succeeded"], 6, "{done:#}");
    eprintln!("spot worker drained {drained_in:?} after the notice");
}
