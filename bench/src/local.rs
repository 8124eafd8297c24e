//! A local cluster for the bench: `drover coordinator` child processes of
//! this very binary on loopback, each with its own data dir and log file,
//! which the bench can SIGKILL and restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::error::{Context, Result, bail};
use drover_proto::v1::ClusterStatusRequest;
use drover_proto::v1::admin_service_client::AdminServiceClient;

/// One coordinator process.
#[derive(Debug)]
struct Node {
    id: u64,
    grpc: SocketAddr,
    http: SocketAddr,
    child: Option<Child>,
}

/// Coordinators started by the bench; stopped (SIGKILL) when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    exe: PathBuf,
    root: PathBuf,
    peers: String,
    nodes: Vec<Node>,
}

/// Free loopback ports, found by binding port 0. Another process could
/// take one before the coordinator binds it; the bench then fails to start
/// with that coordinator's "address in use" in its log.
fn free_addresses(n: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|l| l.local_addr().context("reading a bound port"))
        .collect()
}

impl LocalCluster {
    /// Starts `n` coordinators under `root` and waits for a leader.
    pub async fn start(n: usize, root: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the drover binary")?;
        let addresses = free_addresses(2 * n)?;
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: i as u64 + 1,
                grpc: addresses[2 * i],
                http: addresses[2 * i + 1],
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.grpc))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            exe,
            root: root.to_owned(),
            peers,
            nodes,
        };
        for id in 1..=n as u64 {
            cluster.spawn(id)?;
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn node(&mut self, id: u64) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no coordinator {id}"))
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let exe = self.exe.clone();
        let root = self.root.clone();
        let peers = self.peers.clone();
        let node = self.node(id)?;
        let log_path = root.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = std::process::Command::new(exe)
            .arg("coordinator")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &node.grpc.to_string()])
            .args(["--http", &node.http.to_string()])
            .args(["--peers", &peers])
            .arg("--data-dir")
            .arg(root.join(format!("node-{id}")))
            // Simulated workers share a few connections and run flat out:
            // the bench measures the scheduler, not the per-client limits.
            .args(["--rate-limit", "0", "--worker-rate-limit", "0"])
            .env("DROVER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a coordinator")?;
        node.child = Some(child);
        Ok(())
    }

    /// Every coordinator's gRPC address.
    pub fn grpc_addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.to_string()).collect()
    }

    /// Id, pid and metrics address of each running coordinator.
    pub fn running(&self) -> Vec<(u64, u32, SocketAddr)> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| (n.id, c.id(), n.http)))
            .collect()
    }

    /// SIGKILLs coordinator `id` and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.node(id)?;
        if let Some(mut child) = node.child.take() {
            child.kill().context("killing a coordinator")?;
            child.wait().context("reaping a coordinator")?;
        }
        Ok(())
    }

    /// Starts coordinator `id` again on its data dir.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.spawn(id)
    }

    /// The leader every running coordinator agrees on, once there is one.
    pub async fn wait_for_leader(&self, patience: Duration) -> Result<u64> {
        self.poll_until(patience, "no leader", async || self.agreed_leader().await)
            .await
    }

    /// Asks `check` every 20 ms until it answers, for at most `patience`;
    /// then fails with `what`, pointing at the coordinators' logs.
    async fn poll_until<T>(
        &self,
        patience: Duration,
        what: &str,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(found) = check().await {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{what} within {patience:?}; see the logs in {}",
                    self.root.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running coordinator has applied within
    /// [`CAUGHT_UP_ENTRIES`] of the highest commit index any of them
    /// knows: a restarted node that is still loading its state or replaying
    /// its log cannot vote, and killing the leader then would stop the
    /// cluster until it can, which is two failures, not one.
    pub async fn wait_caught_up(&self, patience: Duration) -> Result<()> {
        self.poll_until(patience, "the coordinators did not catch up", async || {
            self.caught_up().await.then_some(())
        })
        .await
    }

    async fn caught_up(&self) -> bool {
        let mut indexes = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Some(status) = status_of(node.grpc).await else {
                return false;
            };
            indexes.push((status.commit_index, status.applied_index));
        }
        let committed = indexes.iter().map(|(c, _)| *c).max().unwrap_or(0);
        indexes
            .iter()
            .all(|(_, applied)| applied + CAUGHT_UP_ENTRIES >= committed)
    }

    /// The highest Raft term any running coordinator reports: it moves
    /// only with an election, so two readings tell whether the leader
    /// changed between them.
    pub async fn term(&self) -> Option<u64> {
        let mut term = None;
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            if let Some(status) = status_of(node.grpc).await {
                term = term.max(Some(status.term));
            }
        }
        term
    }

    async fn agreed_leader(&self) -> Option<u64> {
        let mut seen = None;
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let leader = status_of(node.grpc).await?.leader_id;
            let alive = self
                .nodes
                .iter()
                .any(|n| n.id == leader && n.child.is_some());
            if leader == 0 || !alive || seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen
    }
}

/// How far behind the highest commit index a coordinator may be and still
/// count as caught up (the readiness probe's bound).
const CAUGHT_UP_ENTRIES: u64 = 100;

/// One coordinator's `ClusterStatus`, if it answers.
async fn status_of(grpc: SocketAddr) -> Option<drover_proto::v1::ClusterStatusResponse> {
    let endpoint = drover_proto::endpoint(&grpc.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.ok()?;
    AdminServiceClient::new(channel)
        .cluster_status(ClusterStatusRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
