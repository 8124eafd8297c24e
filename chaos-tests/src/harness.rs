//! Real `drover` processes on loopback: coordinators and workers, each with
//! its own data directory and log file, and a [`Proxy`] on every link:
//! one per ordered pair of coordinators (node `i` dials node `j` through
//! `proxy(i, j)`, set with `drover coordinator --route`) and one per worker
//! and coordinator. The harness itself talks to coordinators directly: it
//! is the observer, not a subject.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::{
    AddNodeRequest, ClusterStatusRequest, RemoveNodeRequest, Settings, TransferLeaderRequest,
    UpdateSettingsRequest,
};
use drover_worker::executors::probe::{ProbeRecord, log_path};
use tonic::transport::Channel;

use crate::proxy::{LinkFaults, Proxy};

/// Lease settings of a chaos cluster: short, so pauses and partitions
/// outlive leases within a run of minutes.
pub const LEASE_TTL_MS: i64 = 3_000;
/// Worker heartbeat interval.
pub const HEARTBEAT_MS: i64 = 500;
/// When a silent worker is declared lost.
pub const WORKER_TIMEOUT_MS: i64 = 6_000;

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Building or finding the `drover` binary failed.
    #[error("drover binary: {0}")]
    Binary(String),
    /// The cluster did not reach a wanted state in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A call to the cluster failed.
    #[error("rpc: {0}")]
    Rpc(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |e| HarnessError::Io(what, e)
}

/// Finds the `drover` binary to run: `$DROVER_BIN`, or the one cargo builds
/// (with the `planted-bugs` feature, switched off unless asked for) in the
/// profile this code was built in.
pub fn drover_binary() -> Result<PathBuf, HarnessError> {
    if let Ok(bin) = std::env::var("DROVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| HarnessError::Binary("no workspace directory".into()))?;
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "-p",
            "drover",
            "--bin",
            "drover",
            "--features",
            "planted-bugs",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let out = command.output().map_err(io("running cargo build"))?;
    if !out.status.success() {
        return Err(HarnessError::Binary(format!(
            "cargo build -p drover failed ({})",
            out.status
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "drover")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| HarnessError::Binary("cargo built no drover executable".into()))
}

/// A free loopback port for a coordinator (see [`crate::ports`]).
fn free_address() -> Result<SocketAddr, HarnessError> {
    crate::ports::free_address().map_err(io("finding a free port"))
}

/// What a cluster is made of.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Voters at the start (3 or 5).
    pub nodes: u64,
    /// Node ids above `nodes` that membership faults may add and remove.
    pub spare_nodes: u64,
    /// Worker processes.
    pub workers: usize,
    /// Task slots per worker.
    pub worker_slots: u32,
    /// Where everything of the run goes.
    pub run_dir: PathBuf,
    /// The `drover` binary.
    pub binary: PathBuf,
    /// `DROVER_PLANTED_BUGS` for the coordinators; empty for none.
    pub planted_bugs: String,
}

/// A process the harness started.
#[derive(Debug)]
struct Process {
    child: Child,
    paused: bool,
}

impl Process {
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(mut self, grace: Duration) {
        if self.paused {
            self.signal("-CONT");
        }
        self.signal("-TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// One coordinator slot (a member or a spare).
#[derive(Debug)]
struct Node {
    grpc: SocketAddr,
    /// The address the node gives the cluster as its own, and so the one
    /// its leader hints name: nothing listens there. A worker reaches the
    /// nodes only through its own proxies, so a hint cannot lead it around
    /// a cut (peers dial each other by `--route`, clients by `grpc`).
    advertised: SocketAddr,
    http: SocketAddr,
    process: Option<Process>,
    /// In the Raft configuration (as far as the harness made it so).
    member: bool,
}

/// One worker slot; each (re)start is a new worker id.
#[derive(Debug)]
struct Worker {
    generation: u32,
    process: Option<Process>,
}

/// The id of worker slot `w`'s `generation`th process: each (re)start is a
/// new worker to the cluster.
fn worker_id(w: usize, generation: u32) -> String {
    format!("w{w}-{generation}")
}

/// A running chaos cluster.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    nodes: BTreeMap<u64, Node>,
    workers: Vec<Worker>,
    /// `(from, to)` → the proxy `from` dials `to` through.
    peer_links: BTreeMap<(u64, u64), Proxy>,
    /// `(worker, node)` → the proxy the worker dials the node through.
    worker_links: BTreeMap<(usize, u64), Proxy>,
}

impl Cluster {
    /// Starts the proxies, the coordinators (waiting for a leader) and the
    /// workers, and sets the short lease settings.
    pub async fn start(spec: ClusterSpec) -> Result<Self, HarnessError> {
        for dir in ["logs", "nodes", "probes", "data", "work"] {
            std::fs::create_dir_all(spec.run_dir.join(dir)).map_err(io("creating the run dir"))?;
        }
        let all = spec.nodes + spec.spare_nodes;
        let mut nodes = BTreeMap::new();
        for id in 1..=all {
            nodes.insert(
                id,
                Node {
                    grpc: free_address()?,
                    advertised: free_address()?,
                    http: free_address()?,
                    process: None,
                    member: id <= spec.nodes,
                },
            );
        }
        let mut peer_links = BTreeMap::new();
        for from in 1..=all {
            for to in (1..=all).filter(|to| *to != from) {
                let proxy = Proxy::start(nodes[&to].grpc)
                    .await
                    .map_err(io("starting a proxy"))?;
                peer_links.insert((from, to), proxy);
            }
        }
        let mut worker_links = BTreeMap::new();
        for w in 0..spec.workers {
            for to in 1..=all {
                let proxy = Proxy::start(nodes[&to].grpc)
                    .await
                    .map_err(io("starting a proxy"))?;
                worker_links.insert((w, to), proxy);
            }
        }
        let mut cluster = Self {
            workers: (0..spec.workers)
                .map(|_| Worker {
                    generation: 0,
                    process: None,
                })
                .collect(),
            spec,
            nodes,
            peer_links,
            worker_links,
        };
        for id in 1..=cluster.spec.nodes {
            cluster.start_node(id, false)?;
        }
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        // A leader needs only a majority: a member that never came up would
        // go unnoticed until the replicas are compared at the end.
        cluster.wait_for_members(Duration::from_secs(60)).await?;
        cluster.set_lease_settings().await?;
        for w in 0..cluster.spec.workers {
            cluster.start_worker(w)?;
        }
        Ok(cluster)
    }

    /// Node ids in the configuration.
    pub fn members(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Node ids that may be added.
    pub fn spares(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Worker slots.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The id of the process running in worker slot `w` (of its latest
    /// start, when none runs).
    pub fn worker_id(&self, w: usize) -> String {
        worker_id(w, self.workers.get(w).map_or(0, |worker| worker.generation))
    }

    /// Worker slots whose running process has a probe attempt started and
    /// not yet ended, by its probe log: the workers a pause or a cut hurts.
    pub fn busy_workers(&self) -> Vec<usize> {
        let probes = self.spec.run_dir.join("probes");
        (0..self.workers.len())
            .filter(|w| {
                let worker = &self.workers[*w];
                if worker.process.is_none() {
                    return false;
                }
                let id = worker_id(*w, worker.generation);
                let text = std::fs::read_to_string(log_path(&probes, &id)).unwrap_or_default();
                let mut open = 0i64;
                for record in text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<ProbeRecord>(l).ok())
                {
                    open += if record.event == "start" { 1 } else { -1 };
                }
                open > 0
            })
            .collect()
    }

    /// A node's gRPC address.
    pub fn address(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(|n| n.grpc.to_string())
            .unwrap_or_default()
    }

    /// Every member's gRPC address, for clients.
    pub fn client_addresses(&self) -> Vec<String> {
        self.members().iter().map(|id| self.address(*id)).collect()
    }

    fn log_file(&self, name: &str) -> Result<std::fs::File, HarnessError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.run_dir.join("logs").join(format!("{name}.log")))
            .map_err(io("opening a log file"))
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.spec.run_dir.join("nodes").join(format!("node-{id}"))
    }

    /// Starts coordinator `id` (on its fixed address), joining an existing
    /// cluster when `join`.
    pub fn start_node(&mut self, id: u64, join: bool) -> Result<(), HarnessError> {
        let members = self.members();
        let Some(node) = self.nodes.get(&id) else {
            return Err(HarnessError::Rpc(format!("no node {id}")));
        };
        if node.process.is_some() {
            return Ok(());
        }
        let mut peers: Vec<String> = members
            .iter()
            .chain(join.then_some(&id))
            .map(|m| format!("{m}={}", self.nodes[m].advertised))
            .collect();
        peers.dedup();
        let routes: Vec<String> = self
            .peer_links
            .iter()
            .filter(|((from, _), _)| *from == id)
            .map(|((_, to), proxy)| format!("{to}={}", proxy.address()))
            .collect();
        let log = self.log_file(&format!("node-{id}"))?;
        let mut command = Command::new(&self.spec.binary);
        command
            .args(["--log-format", "json", "coordinator"])
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &node.grpc.to_string()])
            .args(["--http", &node.http.to_string()])
            .arg("--data-dir")
            .arg(self.node_dir(id))
            .args(["--peers", &peers.join(",")])
            .args(["--route", &routes.join(",")])
            // The checker's clients and workers retry hard through faults
            // on shared connections; per-client limits are not under test.
            .args(["--rate-limit", "0", "--worker-rate-limit", "0"])
            .env("DROVER_PLANTED_BUGS", &self.spec.planted_bugs)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log"))?)
            .stderr(log);
        if join {
            command.arg("--join");
        }
        let child = command.spawn().map_err(io("starting a coordinator"))?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.process = Some(Process {
                child,
                paused: false,
            });
        }
        Ok(())
    }

    /// Starts a new worker process in slot `w`, under a new id.
    pub fn start_worker(&mut self, w: usize) -> Result<(), HarnessError> {
        let Some(worker) = self.workers.get(w) else {
            return Ok(());
        };
        if worker.process.is_some() {
            return Ok(());
        }
        let generation = worker.generation + 1;
        let id = worker_id(w, generation);
        let coordinators: Vec<String> = self
            .worker_links
            .iter()
            .filter(|((slot, _), _)| *slot == w)
            .map(|(_, proxy)| proxy.address().to_string())
            .collect();
        let log = self.log_file(&format!("worker-{w}"))?;
        let child = Command::new(&self.spec.binary)
            .args(["--log-format", "json", "worker"])
            .args(["--coordinators", &coordinators.join(",")])
            .args(["--id", &id])
            .args(["--slots", &self.spec.worker_slots.to_string()])
            .arg("--probe-log")
            .arg(self.spec.run_dir.join("probes"))
            .arg("--data-root")
            .arg(self.spec.run_dir.join("data"))
            .arg("--work-dir")
            .arg(self.spec.run_dir.join("work").join(&id))
            .args(["--drain-timeout", "2"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("starting a worker"))?;
        self.workers[w] = Worker {
            generation,
            process: Some(Process {
                child,
                paused: false,
            }),
        };
        Ok(())
    }

    /// kill -9 of coordinator `id`.
    pub fn kill_node(&mut self, id: u64) {
        if let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.process.take()) {
            p.kill();
        }
    }

    /// kill -9 of the worker in slot `w`.
    pub fn kill_worker(&mut self, w: usize) {
        if let Some(p) = self.workers.get_mut(w).and_then(|n| n.process.take()) {
            p.kill();
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT of coordinator `id`.
    pub fn pause_node(&mut self, id: u64, pause: bool) {
        if let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.process.as_mut()) {
            p.signal(if pause { "-STOP" } else { "-CONT" });
            p.paused = pause;
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT of the worker in slot `w`.
    pub fn pause_worker(&mut self, w: usize, pause: bool) {
        if let Some(p) = self.workers.get_mut(w).and_then(|n| n.process.as_mut()) {
            p.signal(if pause { "-STOP" } else { "-CONT" });
            p.paused = pause;
        }
    }

    /// Sets the faults of the link `from` → `to` between coordinators.
    pub fn set_peer_link(&self, from: u64, to: u64, faults: LinkFaults) {
        if let Some(p) = self.peer_links.get(&(from, to)) {
            p.set(faults);
        }
    }

    /// Sets the faults of every link of worker `w`.
    pub fn set_worker_links(&self, w: usize, faults: LinkFaults) {
        for ((slot, _), proxy) in &self.worker_links {
            if *slot == w {
                proxy.set(faults);
            }
        }
    }

    /// Closes every open connection on every link.
    pub fn close_all_connections(&self) {
        for p in self.peer_links.values().chain(self.worker_links.values()) {
            p.close_connections();
        }
    }

    /// Heals every link, resumes every paused process, restarts every dead
    /// member and worker slot. Processes that exited on their own are
    /// restarted too.
    pub fn heal(&mut self) -> Result<(), HarnessError> {
        for p in self.peer_links.values().chain(self.worker_links.values()) {
            p.set(LinkFaults::default());
        }
        for id in self.members() {
            self.pause_node(id, false);
            if let Some(node) = self.nodes.get_mut(&id)
                && node.process.as_mut().is_some_and(Process::exited)
            {
                node.process = None;
            }
            self.start_node(id, false)?;
        }
        for w in 0..self.workers.len() {
            self.pause_worker(w, false);
            if let Some(worker) = self.workers.get_mut(w)
                && worker.process.as_mut().is_some_and(Process::exited)
            {
                worker.process = None;
            }
            self.start_worker(w)?;
        }
        Ok(())
    }

    /// Stops every worker gracefully (they drain and hand tasks back).
    pub fn stop_workers(&mut self) {
        for worker in &mut self.workers {
            if let Some(p) = worker.process.take() {
                p.stop(Duration::from_secs(5));
            }
        }
    }

    /// Stops everything.
    pub fn stop(&mut self) {
        self.stop_workers();
        for node in self.nodes.values_mut() {
            if let Some(p) = node.process.take() {
                p.stop(Duration::from_secs(5));
            }
        }
    }

    /// A channel straight to node `id` (not through a proxy).
    pub async fn channel(&self, id: u64) -> Result<Channel, HarnessError> {
        let endpoint = drover_proto::endpoint(&self.address(id))
            .map_err(|e| HarnessError::Rpc(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        endpoint
            .connect()
            .await
            .map_err(|e| HarnessError::Rpc(format!("node {id}: {e}")))
    }

    /// The leader as the members see it, if one is known and running.
    pub async fn leader(&self) -> Option<u64> {
        for id in self.members() {
            let Ok(channel) = self.channel(id).await else {
                continue;
            };
            let Ok(status) = AdminServiceClient::new(channel)
                .cluster_status(ClusterStatusRequest::default())
                .await
            else {
                continue;
            };
            let leader = status.into_inner().leader_id;
            if leader != 0 && self.members().contains(&leader) {
                return Some(leader);
            }
        }
        None
    }

    /// Waits until a leader is known.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<u64, HarnessError> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(HarnessError::Timeout("no leader was elected".into()))
    }

    /// Waits until every member answers; fails at once, with the end of
    /// its log, when a member's process has exited.
    pub async fn wait_for_members(&mut self, within: Duration) -> Result<(), HarnessError> {
        let until = Instant::now() + within;
        loop {
            let mut silent = Vec::new();
            for id in self.members() {
                let exited = self
                    .nodes
                    .get_mut(&id)
                    .and_then(|n| n.process.as_mut())
                    .is_some_and(Process::exited);
                if exited {
                    return Err(HarnessError::Rpc(format!(
                        "node {id} exited; its log ends:\n{}",
                        self.log_tail(&format!("node-{id}"), 10)
                    )));
                }
                let answered = match self.channel(id).await {
                    Ok(channel) => AdminServiceClient::new(channel)
                        .cluster_status(ClusterStatusRequest::default())
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                if !answered {
                    silent.push(id);
                }
            }
            if silent.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(HarnessError::Timeout(format!(
                    "nodes {silent:?} did not answer"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `lines` lines of a process's log.
    fn log_tail(&self, name: &str, lines: usize) -> String {
        let path = self.spec.run_dir.join("logs").join(format!("{name}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A job client on the leader.
    pub async fn job_client(&self) -> Result<JobServiceClient<Channel>, HarnessError> {
        let leader = self.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(JobServiceClient::new(self.channel(leader).await?))
    }

    async fn admin_on_leader(&self) -> Result<AdminServiceClient<Channel>, HarnessError> {
        let leader = self.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(AdminServiceClient::new(self.channel(leader).await?))
    }

    async fn set_lease_settings(&self) -> Result<(), HarnessError> {
        let mut last = String::new();
        for _ in 0..20 {
            let result = async {
                self.admin_on_leader()
                    .await?
                    .update_settings(UpdateSettingsRequest {
                        settings: Some(Settings {
                            lease_ttl_ms: LEASE_TTL_MS,
                            heartbeat_interval_ms: HEARTBEAT_MS,
                            worker_timeout_ms: WORKER_TIMEOUT_MS,
                            ..Settings::default()
                        }),
                    })
                    .await
                    .map_err(|s| HarnessError::Rpc(s.message().to_owned()))
            }
            .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(HarnessError::Timeout(format!(
            "setting lease settings: {last}"
        )))
    }

    /// Asks the leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), HarnessError> {
        self.admin_on_leader()
            .await?
            .transfer_leader(TransferLeaderRequest { target_node_id: to })
            .await
            .map(|_| ())
            .map_err(|s| HarnessError::Rpc(s.message().to_owned()))
    }

    /// Starts spare node `id` and adds it to the configuration.
    pub async fn add_node(&mut self, id: u64) -> Result<(), HarnessError> {
        // A fresh start: a spare that was removed must not reuse its log.
        let _ = std::fs::remove_dir_all(self.node_dir(id));
        self.start_node(id, true)?;
        let address = self.nodes[&id].advertised.to_string();
        self.admin_on_leader()
            .await?
            .add_node(AddNodeRequest {
                node_id: id,
                address,
            })
            .await
            .map_err(|s| HarnessError::Rpc(s.message().to_owned()))?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.member = true;
        }
        Ok(())
    }

    /// Removes node `id` from the configuration and stops it.
    pub async fn remove_node(&mut self, id: u64) -> Result<(), HarnessError> {
        self.admin_on_leader()
            .await?
            .remove_node(RemoveNodeRequest { node_id: id })
            .await
            .map_err(|s| HarnessError::Rpc(s.message().to_owned()))?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.member = false;
        }
        self.kill_node(id);
        Ok(())
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.spec.run_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(p) = node.process.take() {
                p.kill();
            }
        }
        for worker in &mut self.workers {
            if let Some(p) = worker.process.take() {
                p.kill();
            }
        }
    }
}
