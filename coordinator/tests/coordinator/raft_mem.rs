//! The Raft driver on an in-memory network: election, replication, failover,
//! restart from disk, and a partitioned leader stepping down. (The same
//! scenarios over real gRPC are in `raft_grpc.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use drover_coordinator::raft::backend::BOOTSTRAP_INDEX;
use drover_coordinator::raft::node::{self, NodeConfig, NodeError, NodeHandle, Transport};
use drover_coordinator::state::{Command, Outcome, SubmitJob, Submitted};
use raft::prelude::{Message, MessageType};

#[derive(Clone, Default)]
struct Net {
    nodes: Arc<RwLock<BTreeMap<u64, NodeHandle>>>,
    /// Directed links that drop messages.
    cut: Arc<Mutex<BTreeSet<(u64, u64)>>>,
}

struct MemTransport {
    from: u64,
    net: Net,
}

impl Transport for MemTransport {
    fn send(&self, messages: Vec<Message>) {
        let nodes = self.net.nodes.read().unwrap();
        let cut = self.net.cut.lock().unwrap();
        for m in messages {
            if cut.contains(&(self.from, m.to)) {
                continue;
            }
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let to = m.to;
            if let Some(node) = nodes.get(&to) {
                let _ = node.step(m);
                if snapshot && let Some(me) = nodes.get(&self.from) {
                    me.report_snapshot(to, true);
                }
            }
        }
    }
    fn set_peer(&self, _id: u64, _address: Option<String>) {}
}

struct Cluster {
    net: Net,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    threads: BTreeMap<u64, std::thread::JoinHandle<()>>,
    checkpoint_entries: u64,
}

fn config(id: u64, dir: &std::path::Path, voters: &[u64], checkpoint_entries: u64) -> NodeConfig {
    let mut c = NodeConfig::new(id, dir);
    c.tick_ms = 20;
    c.state_tick_ms = 200;
    c.checkpoint_entries = checkpoint_entries;
    c.peers = voters.iter().map(|v| (*v, format!("mem:{v}"))).collect();
    c
}

impl Cluster {
    fn new(voters: &[u64]) -> Self {
        Self::with_checkpoints(voters, 1_000_000)
    }

    fn with_checkpoints(voters: &[u64], checkpoint_entries: u64) -> Self {
        let mut cluster = Cluster {
            net: Net::default(),
            dirs: BTreeMap::new(),
            threads: BTreeMap::new(),
            checkpoint_entries,
        };
        for id in voters {
            cluster.dirs.insert(*id, tempfile::tempdir().unwrap());
            cluster.start(*id, voters);
        }
        cluster
    }

    fn start(&mut self, id: u64, voters: &[u64]) {
        let dir = self.dirs.get(&id).unwrap().path().to_owned();
        let transport = MemTransport {
            from: id,
            net: self.net.clone(),
        };
        let (handle, thread) = node::start(
            config(id, &dir, voters, self.checkpoint_entries),
            Box::new(transport),
        )
        .unwrap();
        self.net.nodes.write().unwrap().insert(id, handle);
        self.threads.insert(id, thread);
    }

    fn stop(&mut self, id: u64) {
        if let Some(handle) = self.net.nodes.write().unwrap().remove(&id) {
            handle.shutdown();
        }
        if let Some(thread) = self.threads.remove(&id) {
            thread.join().unwrap();
        }
    }

    fn node(&self, id: u64) -> NodeHandle {
        self.net.nodes.read().unwrap()[&id].clone()
    }

    async fn leader(&self) -> u64 {
        for _ in 0..500 {
            let nodes: Vec<NodeHandle> = self.net.nodes.read().unwrap().values().cloned().collect();
            for n in nodes {
                let s = n.status();
                if s.is_leader {
                    return s.id;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader within 10 s");
    }

    /// Proposes on the current leader, following leadership changes.
    async fn propose(&self, commands: Vec<Command>) -> Vec<drover_coordinator::state::Applied> {
        for _ in 0..100 {
            let leader = self.leader().await;
            match self.node(leader).propose(commands.clone()).await {
                Ok(out) => return out,
                Err(
                    NodeError::NotLeader { .. } | NodeError::Indeterminate | NodeError::Stopped,
                ) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("proposal never landed");
    }

    async fn snapshots_converge(&self) -> Vec<u8> {
        for _ in 0..500 {
            let nodes: Vec<NodeHandle> = self.net.nodes.read().unwrap().values().cloned().collect();
            let mut snaps = Vec::new();
            for n in &nodes {
                snaps.push(n.read_local(|sm| sm.snapshot()).await.unwrap());
            }
            if snaps.windows(2).all(|w| w[0] == w[1]) {
                return snaps.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("replicas did not converge");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.threads.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

fn submit(name: &str) -> Command {
    Command::SubmitJob(SubmitJob {
        file: "t.yaml".into(),
        spec_yaml: format!(
            "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  tasks: [{{name: a, kind: noop, partitions: {{shards: 3}}}}]\n"
        ),
        params: vec![],
        idempotency_key: Some(name.into()),
        trace_parent: None,
    })
}

fn job_id(out: &[drover_coordinator::state::Applied]) -> drover_coordinator::state::JobId {
    match &out[0] {
        Ok(Outcome::Submitted {
            id: Submitted::Job(id),
            ..
        }) => *id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_commits_and_restarts_from_disk() {
    let mut cluster = Cluster::new(&[1]);
    let out = cluster.propose(vec![submit("one")]).await;
    let id = job_id(&out);
    let before = cluster.snapshots_converge().await;
    cluster.stop(1);
    cluster.start(1, &[1]);
    cluster.leader().await;
    let after = cluster
        .node(1)
        .read(Duration::from_secs(5), move |sm| sm.job(id).is_some())
        .await
        .unwrap();
    assert!(after, "the job survived a restart");
    // Re-submitting with the same key finds the same job.
    let again = cluster.propose(vec![submit("one")]).await;
    assert_eq!(job_id(&again), id);
    let _ = before;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fail_over_and_the_old_leader_catches_up_by_log() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let first = cluster.leader().await;
    for i in 0..20 {
        cluster.propose(vec![submit(&format!("job-{i}"))]).await;
    }
    cluster.snapshots_converge().await;
    // Stop the leader: the others elect a new one and keep serving.
    cluster.stop(first);
    let second = cluster.leader().await;
    assert_ne!(first, second);
    for i in 20..40 {
        cluster.propose(vec![submit(&format!("job-{i}"))]).await;
    }
    cluster.start(first, &[1, 2, 3]);
    cluster.snapshots_converge().await;
    let jobs = cluster
        .node(first)
        .read_local(|sm| sm.core().jobs.len())
        .await
        .unwrap();
    assert_eq!(jobs, 40);
    assert_eq!(
        cluster.node(first).status().snapshot_index,
        BOOTSTRAP_INDEX,
        "no compaction since the bootstrap snapshot: caught up by log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut cluster = Cluster::with_checkpoints(&[1, 2, 3], 10);
    let leader = cluster.leader().await;
    let behind = [1, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    cluster.stop(behind);
    for i in 0..60 {
        cluster.propose(vec![submit(&format!("job-{i}"))]).await;
    }
    let leader_snapshot = cluster.node(cluster.leader().await).status().snapshot_index;
    assert!(
        leader_snapshot > 10,
        "the leader compacted its log (snapshot at {leader_snapshot})"
    );
    cluster.start(behind, &[1, 2, 3]);
    cluster.snapshots_converge().await;
    let status = cluster.node(behind).status();
    assert!(
        status.snapshot_index > BOOTSTRAP_INDEX,
        "caught up from a snapshot: {status:?}"
    );
    let jobs = cluster
        .node(behind)
        .read_local(|sm| sm.core().jobs.len())
        .await
        .unwrap();
    assert_eq!(jobs, 60);
    // And it survives its own restart after installing the snapshot.
    cluster.stop(behind);
    cluster.start(behind, &[1, 2, 3]);
    cluster.snapshots_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_and_its_proposals_fail() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let leader = cluster.leader().await;
    cluster.propose(vec![submit("before")]).await;
    {
        let mut cut = cluster.net.cut.lock().unwrap();
        for other in [1, 2, 3] {
            if other != leader {
                cut.insert((leader, other));
                cut.insert((other, leader));
            }
        }
    }
    let stale = cluster.node(leader);
    let pending = tokio::spawn(async move { stale.propose(vec![submit("lost")]).await });
    // check_quorum makes the isolated leader step down; its proposal fails
    // with a retryable error rather than a false success.
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            result,
            Err(NodeError::Indeterminate | NodeError::NotLeader { .. })
        ),
        "{result:?}"
    );
    // The answer can precede the status update by one loop turn.
    let mut stepped_down = false;
    for _ in 0..200 {
        if !cluster.node(leader).status().is_leader {
            stepped_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stepped_down,
        "check_quorum stepped the isolated leader down"
    );
    cluster.net.cut.lock().unwrap().clear();
    let out = cluster.propose(vec![submit("after")]).await;
    assert!(out[0].is_ok());
    cluster.snapshots_converge().await;
}
