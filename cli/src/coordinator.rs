//! `drover coordinator`: one coordinator process (gRPC on `--listen`,
//! health and metrics on `--http`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::security::SecurityArgs;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use drover_client::parse_id_addresses;
use drover_coordinator::server::{self, ServerConfig};
use drover_net::Dialer;
use drover_web::Console;

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// This coordinator's Raft id (1, 2, 3...).
    #[arg(long)]
    node_id: u64,
    /// gRPC address for clients, workers and the other coordinators.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics (Prometheus).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Where the Raft log and the state live [default: ./drover-data/node-ID].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Every coordinator as ID=ADDR, this one included, e.g.
    /// 1=10.0.0.1:7070,2=10.0.0.2:7070,3=10.0.0.3:7070. Omit for a
    /// single-node cluster.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Dial peer ID at ADDR instead of the address the cluster knows it by,
    /// as ID=ADDR (repeatable or comma-separated): for a sidecar proxy or a
    /// tunnel between this node and that peer. Leader hints still name the
    /// advertised address.
    #[arg(long = "route", value_delimiter = ',')]
    routes: Vec<String>,
    /// Join a running cluster rather than create one; then run
    /// `drover cluster add-node ID ADDR` against it.
    #[arg(long)]
    join: bool,
    /// Where workers store each attempt's log and where this coordinator
    /// reads them for the console and `drover job logs`: s3://BUCKET/PREFIX,
    /// or a directory every coordinator and worker reaches (a relative one
    /// is made absolute). Give every coordinator the same one. Without it
    /// the cluster keeps no task logs.
    #[arg(long, value_name = "URL")]
    task_logs: Option<String>,
    /// Require credentials: a bearer token on the job and admin services,
    /// and a worker token or worker certificate on the worker service.
    /// Give every coordinator of a cluster the same setting. Create the
    /// first token with `drover token bootstrap`. Use it with mutual TLS,
    /// or tokens cross the network in the clear.
    #[arg(long, env = "DROVER_AUTH")]
    auth: bool,
    /// Requests a second each client may make of the job and admin
    /// services (per token or certificate; per connection without them),
    /// with bursts of twice that. 0 turns the limit off.
    #[arg(long, default_value_t = server::CLIENT_RATE_LIMIT_DEFAULT, value_name = "N")]
    rate_limit: u32,
    /// Requests a second each worker connection may make of the worker
    /// service, with bursts of twice that. 0 turns the limit off.
    #[arg(long, default_value_t = server::WORKER_RATE_LIMIT_DEFAULT, value_name = "N")]
    worker_rate_limit: u32,
    /// Slots per worker the scaling signal assumes for a pool with no live
    /// worker yet (set it to your workers' `--slots`).
    #[arg(long, default_value_t = 4, value_name = "N")]
    scaling_default_slots: u32,
    /// Print the scaling signal as CloudWatch Embedded Metric Format lines
    /// on stdout, one per pool, while this node leads; the CloudWatch agent
    /// turns them into metrics for a target-tracking policy.
    #[arg(long, env = "DROVER_EMF")]
    emf: bool,
    /// How often the EMF lines are printed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    emf_interval: std::time::Duration,
    /// The CloudWatch namespace of the EMF metrics.
    #[arg(long, default_value = drover_coordinator::scaling::EMF_NAMESPACE, value_name = "NAME")]
    emf_namespace: String,
}

fn parse_peers(args: &CoordinatorArgs) -> Result<BTreeMap<u64, String>> {
    let mut peers = parse_id_addresses(&args.peers, "--peers")?;
    if peers.is_empty() {
        peers.insert(args.node_id, args.listen.to_string());
    }
    if !peers.contains_key(&args.node_id) {
        bail!(
            "--peers does not list this node ({}); include {}={}",
            args.node_id,
            args.node_id,
            args.listen
        );
    }
    Ok(peers)
}

pub async fn run(args: CoordinatorArgs, security: &SecurityArgs) -> Result<()> {
    if args.node_id == 0 {
        bail!("--node-id must be at least 1");
    }
    let peers = parse_peers(&args)?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("./drover-data/node-{}", args.node_id)));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listening on {} for HTTP", args.http))?;
    let mut config = ServerConfig::new(args.node_id, &data_dir);
    config.peers = peers;
    config.join = args.join;
    config.routes = parse_id_addresses(&args.routes, "--route")?;
    config.task_logs = args
        .task_logs
        .as_deref()
        .map(drover_web::task_logs::open)
        .transpose()?;
    config.tls = security.tls_files()?;
    config.auth_required = args.auth;
    config.client_rate_limit = args.rate_limit;
    config.worker_rate_limit = args.worker_rate_limit;
    // The console dials its own node as the node does its peers.
    let console_dialer = match &config.tls {
        Some(files) => Dialer::tls(files.clone())?,
        None => Dialer::plaintext(),
    };
    let (started, serve) = server::start(config, listener, shutdown_signal()).map_err(|e| {
        anyhow!(
            "starting node {} in {}: {e}",
            args.node_id,
            data_dir.display()
        )
    })?;
    tracing::info!(node = args.node_id, grpc = %args.listen, http = %args.http, data = %data_dir.display(), "coordinator started");
    started
        .metrics
        .scaling()
        .set_default_slots(args.scaling_default_slots);
    let emf_task = args.emf.then(|| {
        tokio::spawn(drover_web::emf::print(
            started.node.clone(),
            started.metrics.scaling().clone(),
            args.emf_interval.max(std::time::Duration::from_secs(1)),
            args.emf_namespace.clone(),
        ))
    });
    let console = Console::new(
        started.node.clone(),
        dial_address(args.listen),
        console_dialer,
    );
    let http_task = tokio::spawn(drover_web::serve(
        http,
        started.node.clone(),
        started.metrics.clone(),
        console,
    ));
    let result = serve.await;
    http_task.abort();
    if let Some(task) = emf_task {
        task.abort();
    }
    started.stop().await;
    tracing::info!(node = args.node_id, "coordinator stopped");
    result.map_err(|e| anyhow!("{e}"))
}

/// An address this process can dial its own gRPC server at: `listen`, or
/// loopback on its port when it listens on every interface.
pub fn dial_address(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port()).to_string()
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
