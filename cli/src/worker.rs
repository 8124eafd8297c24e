//! `drover worker`: a stateless worker process, with /healthz and /metrics
//! on `--http` when given.

use drover_net::Coordinators;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use drover_worker::imds::Imds;
use drover_worker::metrics::Metrics;
use drover_worker::runner::{self, WorkerConfig};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Labels matched against task constraints, as KEY=VALUE (repeatable).
    #[arg(long = "labels", value_delimiter = ',')]
    labels: Vec<String>,
    /// Where attempts of the built-in kinds (noop, sleep, command, probe)
    /// write their outputs (a `file://` URL or a path); each attempt writes
    /// only below its own `jobs/<job>/.../attempt-<n>-<token>`. Data jobs
    /// write to their spec's `output` (file:// or s3://).
    #[arg(long, value_name = "URL", default_value = "./drover-data/outputs", value_parser = parse_data_root)]
    data_root: PathBuf,
    /// Scratch space for running attempts.
    #[arg(long, default_value = "./drover-data/worker")]
    work_dir: PathBuf,
    /// Run `command` tasks, which execute arbitrary programs.
    #[arg(long)]
    allow_command: bool,
    /// Run `probe` tasks, appending each attempt's start and end to
    /// DIR/probe-<worker id>.jsonl (the chaos suite's witness).
    #[arg(long, value_name = "DIR")]
    probe_log: Option<PathBuf>,
    /// On SIGTERM, seconds running tasks may finish before being handed back.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Worker id [default: the EC2 instance id with --ec2, else hostname
    /// plus a random suffix].
    #[arg(long)]
    id: Option<String>,
    /// On EC2: take the instance id as worker id, and drain (as on SIGTERM)
    /// when the instance metadata service gives a spot interruption notice
    /// or Auto Scaling starts terminating the instance.
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides the service's address.
    #[arg(long, env = "DROVER_EC2")]
    ec2: bool,
    /// How often --ec2 polls for those notices (spot notices come two
    /// minutes ahead).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    notice_poll: Duration,
    /// HTTP address for /healthz and /metrics (Prometheus); none when
    /// omitted.
    #[arg(long)]
    http: Option<SocketAddr>,
}

/// A data root as a local directory: `file:///abs`, `file://rel` or a
/// plain path. It holds the outputs of the built-in kinds (`noop`, `sleep`,
/// `command`, `probe`), which write local files; the data jobs write where
/// their spec's `output` says, `s3://` included. Another scheme is refused
/// here rather than failing every such task.
fn parse_data_root(text: &str) -> Result<PathBuf, String> {
    if let Some(path) = text.strip_prefix("file://") {
        if path.is_empty() {
            return Err("`file://` needs a path, like file:///var/lib/drover/outputs".to_owned());
        }
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "`{scheme}://` data roots are not supported: --data-root holds the local outputs of noop, sleep, command and probe tasks (data jobs write to their spec's `output`, s3:// included); use a file:// URL or a path"
        ));
    }
    Ok(PathBuf::from(text))
}

/// A fresh worker id: host name and a random suffix, so a restarted worker
/// is a new worker.
pub fn new_worker_id(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".to_owned());
    let mut suffix = [0u8; 4];
    // Without the OS's randomness, the process id still tells two workers
    // on one host apart.
    if getrandom::fill(&mut suffix).is_err() {
        suffix = std::process::id().to_le_bytes();
    }
    format!("{prefix}{host}-{:08x}", u32::from_le_bytes(suffix))
}

/// Serves /healthz and /metrics for a worker on `listener`.
async fn serve_http(listener: tokio::net::TcpListener, metrics: Metrics) -> std::io::Result<()> {
    let routes = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    axum::serve(listener, routes).await
}

async fn metrics_text(State(metrics): State<Metrics>) -> impl IntoResponse {
    drover_web::openmetrics(metrics.render())
}

pub async fn run(args: WorkerArgs, cluster: Coordinators) -> Result<()> {
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("label `{l}` is not KEY=VALUE"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let imds = args.ec2.then(Imds::from_env);
    let id = match (args.id, &imds) {
        (Some(id), _) => id,
        (None, Some(imds)) => match imds.instance_id().await {
            Ok(id) => id,
            Err(e) => {
                let id = new_worker_id("");
                tracing::warn!(error = %e, worker = %id, "--ec2: no instance id; using a generated worker id");
                id
            }
        },
        (None, None) => new_worker_id(""),
    };
    let mut config = WorkerConfig::new(id, cluster.addresses().to_vec());
    config.dialer = cluster.dialer().clone();
    config.slots = args.slots.max(1);
    config.labels = labels;
    config.data_root = args.data_root;
    config.work_dir = args.work_dir;
    config.allow_command = args.allow_command;
    config.probe_log = args.probe_log;
    config.drain_timeout = Duration::from_secs(args.drain_timeout);
    let id = config.worker_id.clone();
    // Bound before the worker starts, so a taken port fails at once.
    let http_task = match args.http {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address} for HTTP"))?;
            Some(tokio::spawn(serve_http(listener, config.metrics.clone())))
        }
        None => None,
    };
    tracing::info!(worker = %id, slots = config.slots, http = ?args.http, "worker starting");
    let poll = args.notice_poll.max(Duration::from_millis(100));
    let worker = id.clone();
    let shutdown = async move {
        match imds {
            None => crate::coordinator::shutdown_signal().await,
            Some(imds) => tokio::select! {
                () = crate::coordinator::shutdown_signal() => {}
                notice = imds.watch(poll) => {
                    tracing::warn!(worker = %worker, %notice, "the instance is going away: draining");
                }
            },
        }
    };
    let report = runner::run(config, shutdown).await;
    if let Some(task) = http_task {
        task.abort();
    }
    tracing::info!(worker = %id, completed = report.completed, failed = report.failed, released = report.released, "worker stopped");
    Ok(())
}
