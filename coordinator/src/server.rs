//! A coordinator process: one Raft node plus its gRPC services on one
//! listener, until shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use drover_net::{ClientTls, Dialer, ServerTls, TlsError, TlsFiles};
use drover_proto::v1::admin_service_server::AdminServiceServer;
use drover_proto::v1::job_service_server::JobServiceServer;
use drover_proto::v1::raft_service_server::RaftServiceServer;
use drover_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::auth::{AuditLog, AuthSettings, GuardLayer, Rate};
use crate::metrics::Metrics;
use crate::raft::node::{self, NodeConfig, NodeError, NodeHandle};
use crate::raft::service::RaftServer;
use crate::raft::transport::GrpcTransport;
use crate::service::admin::AdminServer;
use crate::service::job::JobServer;
use crate::service::worker::WorkerServer;
use crate::state::Config as StateConfig;
use crate::task_logs::TaskLogStore;

/// Largest gRPC message a coordinator accepts or sends.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Default per-client limit on the job and admin services: far above what
/// a person, a CI pipeline or the console polling does, low enough that a
/// runaway loop cannot crowd out everyone else.
pub const CLIENT_RATE_LIMIT_DEFAULT: u32 = 100;

/// Default per-connection limit on the worker service: a worker makes a
/// few calls a second (lease, heartbeat, completions, all batched).
pub const WORKER_RATE_LIMIT_DEFAULT: u32 = 1000;

/// What a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Raft id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Members' addresses, this node included. For a new cluster they are
    /// the initial voters (ignored once the data directory holds a log).
    pub peers: BTreeMap<u64, String>,
    /// Join an existing cluster instead of creating one: the node waits to
    /// be added (`drover cluster add-node`) and learns the state from the
    /// leader.
    pub join: bool,
    /// Raft tick length. The leader heartbeats every 2 ticks and a follower
    /// campaigns after 10 to 20 silent ticks: with the default 15 ms, a
    /// killed leader is replaced within 150 to 300 ms. etcd's defaults are
    /// a 100 ms heartbeat and a 1 s election timeout; shorter is safe here
    /// because heartbeats are not log entries, checkpoints are written off
    /// the Raft thread, and pre-vote with check-quorum keeps one slow
    /// follower from deposing a leader the others still hear.
    pub tick_ms: u64,
    /// Applied entries between checkpoints.
    pub checkpoint_entries: u64,
    /// State machine settings for a new cluster.
    pub state_config: StateConfig,
    /// Peers this node dials at another address than their advertised one
    /// (a proxy in between); see `GrpcTransport::with_routes`.
    pub routes: BTreeMap<u64, String>,
    /// The task log store: workers are told to write attempts' logs there,
    /// and GetTaskLog reads them back. `None` keeps no logs.
    pub task_logs: Option<Arc<dyn TaskLogStore>>,
    /// Mutual TLS for everything this node serves and dials: its node
    /// certificate and key, and the cluster's CA. `None` is plaintext.
    pub tls: Option<TlsFiles>,
    /// Require credentials (a bearer token, or a worker certificate for the
    /// worker service) on every service but Raft; see `crate::auth`.
    pub auth_required: bool,
    /// Requests a second each client may make of the job and admin
    /// services (a token, a certificate, or else a connection), with
    /// bursts of twice that; 0 for no limit.
    pub client_rate_limit: u32,
    /// Requests a second each worker connection may make of the worker
    /// service, with bursts of twice that; 0 for no limit.
    pub worker_rate_limit: u32,
    /// Bugs planted for the chaos suite's proofs.
    #[cfg(feature = "planted-bugs")]
    pub planted: crate::planted::PlantedBugs,
}

impl ServerConfig {
    /// Defaults for node `node_id` under `data_dir`.
    pub fn new(node_id: u64, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            peers: BTreeMap::new(),
            join: false,
            tick_ms: 15,
            checkpoint_entries: 10_000,
            state_config: StateConfig::default(),
            routes: BTreeMap::new(),
            task_logs: None,
            tls: None,
            auth_required: false,
            client_rate_limit: CLIENT_RATE_LIMIT_DEFAULT,
            worker_rate_limit: WORKER_RATE_LIMIT_DEFAULT,
            // A build with planted bugs takes them from the environment, so
            // the chaos suite can switch them on in a `drover` process.
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::from_env().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring {}", crate::planted::ENV);
                crate::planted::PlantedBugs::default()
            }),
        }
    }
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The node could not start.
    #[error("raft node: {0}")]
    Node(#[from] NodeError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The audit log cannot be opened.
    #[error("audit log: {0}")]
    Audit(std::io::Error),
}

/// A started coordinator: the node, for in-process callers and tests.
#[derive(Debug)]
pub struct Started {
    /// The node's handle.
    pub node: NodeHandle,
    /// The coordinator's metrics, which the HTTP endpoint renders with
    /// [`Metrics::render`].
    pub metrics: Metrics,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Started {
    /// Stops the node and waits for its thread (off the async runtime, as
    /// the last write may still be syncing).
    pub async fn stop(mut self) {
        self.node.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// How long in-flight requests may finish after shutdown is asked before
/// connections are dropped. Peers keep HTTP/2 connections open forever, so
/// a purely graceful shutdown would never end.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a node whose storage failed keeps answering (every request
/// with the reason) before the server stops and the process exits.
pub const FAILURE_LINGER: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts the node; the returned future serves gRPC on `listener` until
/// `shutdown` resolves, or fails once the node stopped on a storage
/// failure (fail-stop: the process then exits non-zero).
pub fn start(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Started, impl Future<Output = Result<(), ServerError>>), ServerError> {
    // Both ends of every connection from the same files: the node's
    // certificate serves clients and authenticates it to its peers.
    let tls = match &config.tls {
        Some(files) => Some((
            Arc::new(ServerTls::load(files.clone())?),
            Arc::new(ClientTls::load(files.clone())?),
        )),
        None => None,
    };
    let dialer = match &tls {
        Some((_, client)) => Dialer::plaintext().with_tls(Arc::clone(client)),
        None => Dialer::plaintext(),
    };
    let transport = GrpcTransport::new(config.node_id, tokio::runtime::Handle::current())
        .with_routes(config.routes.clone())
        .with_dialer(dialer);
    let slot = transport.node_slot();
    let mut node_config = NodeConfig::new(config.node_id, &config.data_dir);
    node_config.peers = config.peers.clone();
    node_config.bootstrap = !config.join;
    node_config.tick_ms = config.tick_ms;
    node_config.checkpoint_entries = config.checkpoint_entries;
    node_config.state_config = config.state_config.clone();
    #[cfg(feature = "planted-bugs")]
    {
        node_config.planted = config.planted;
    }
    let metrics = Metrics::new();
    node_config.log_fsync_seconds = Some(metrics.log_fsync_seconds());
    node_config.entry_commands = Some(metrics.entry_commands());
    let (node, thread) = node::start(node_config, Box::new(transport))?;
    let _ = slot.set(node.clone());
    let raft_server = match tls {
        Some(_) => RaftServer::new(node.clone()).nodes_only(),
        None => RaftServer::new(node.clone()),
    };
    let raft = RaftServiceServer::new(raft_server).max_decoding_message_size(64 * 1024 * 1024);
    let admin = AdminServiceServer::new(
        AdminServer::new(node.clone()).with_auth_required(config.auth_required),
    )
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    if config.auth_required && tls.is_none() {
        tracing::warn!(
            "authentication is on without TLS: tokens cross the network in the clear, and any host that reaches this port can speak Raft"
        );
    }
    let guard = GuardLayer::new(
        AuthSettings {
            required: config.auth_required,
            node_id: config.node_id,
            audit: Some(AuditLog::open(&config.data_dir).map_err(ServerError::Audit)?),
            client_rate: Rate::per_second(config.client_rate_limit),
            worker_rate: Rate::per_second(config.worker_rate_limit),
            metrics: Some(metrics.clone()),
        },
        node.clone(),
    );
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let mut graceful = stopping.clone();
    let mut forced = stopping;
    let task_log_url = config
        .task_logs
        .as_ref()
        .map(|s| s.url().to_owned())
        .unwrap_or_default();
    let workers = WorkerServiceServer::new(
        WorkerServer::new(node.clone(), metrics.clone()).with_task_log_url(task_log_url),
    )
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let jobs = JobServiceServer::new(
        JobServer::new(node.clone()).with_task_logs(config.task_logs.clone()),
    )
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let mut node_status = node.watch_status();
    let serve = async move {
        let router = tonic::transport::Server::builder()
            .layer(guard)
            .add_service(raft)
            .add_service(admin)
            .add_service(workers)
            .add_service(jobs);
        let graceful = async move {
            let _ = graceful.wait_for(|s| *s).await;
        };
        let server: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match tls {
            // Plaintext is refused: a connection that does not finish
            // a TLS handshake never reaches a service.
            Some((server_tls, _)) => Box::pin(
                router.serve_with_incoming_shutdown(server_tls.incoming(listener), graceful),
            ),
            // Small replies (a lease, an append response) must leave
            // at once: with Nagle's algorithm on, each waited for the
            // peer's delayed ACK, about 40 ms. Connections tonic
            // accepts from a listener it did not bind get no
            // TCP_NODELAY unless told.
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                graceful,
            )),
        };
        tokio::select! {
            result = server => result?,
            _ = async {
                let _ = forced.wait_for(|s| *s).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {}
            reason = async {
                let failed = node_status
                    .wait_for(|s| s.failure.is_some())
                    .await
                    .map(|s| s.failure.clone().unwrap_or_default());
                let Ok(reason) = failed else {
                    // Stopped without a failure: the other branches end it.
                    return std::future::pending().await;
                };
                // Clients and `/readyz` are told why meanwhile; then the
                // ports are released so a supervisor can restart the node.
                tokio::time::sleep(FAILURE_LINGER).await;
                reason
            } => return Err(ServerError::Node(NodeError::Storage(reason))),
        }
        Ok(())
    };
    Ok((
        Started {
            node,
            metrics,
            thread: Some(thread),
        },
        serve,
    ))
}
