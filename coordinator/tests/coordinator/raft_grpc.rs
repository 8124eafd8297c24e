//! Coordinators replicating over real gRPC on loopback (port 0): election,
//! failover, restart, membership changes under load, a leader losing its
//! quorum, and identical state on every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use drover_coordinator::raft::backend::BOOTSTRAP_INDEX;
use drover_coordinator::raft::node::{NodeError, NodeHandle};
use drover_coordinator::server::{self, ServerConfig, Started};
use drover_coordinator::state::{Applied, Command, JobId, Outcome, SubmitJob, Submitted};
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::{
    AddNodeRequest, BootstrapTokenRequest, ClusterStatusRequest, CreateTokenRequest, MemberRole,
    RemoveNodeRequest, TokenRole, WhoAmIRequest,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;

use crate::auth::with_token;

struct Node {
    started: Option<Started>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

struct Cluster {
    addrs: BTreeMap<u64, SocketAddr>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, Node>,
    voters: BTreeMap<u64, String>,
    /// Every call needs a token (`--auth-required`).
    auth_required: bool,
}

impl Cluster {
    async fn new(n: u64) -> Self {
        Self::with_auth(n, false).await
    }

    async fn with_auth(n: u64, auth_required: bool) -> Self {
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, l);
        }
        let addrs: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let voters = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        let mut cluster = Cluster {
            addrs,
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            voters,
            auth_required,
        };
        for (id, listener) in listeners {
            cluster.dirs.insert(id, tempfile::tempdir().unwrap());
            cluster.start_on(id, listener, true);
        }
        cluster
    }

    fn start_on(&mut self, id: u64, listener: TcpListener, bootstrap: bool) {
        let mut config = ServerConfig::new(id, self.dirs[&id].path());
        config.tick_ms = 50;
        config.checkpoint_entries = 40;
        config.peers = self.voters.clone();
        config.peers.insert(id, self.addrs[&id].to_string());
        config.join = !bootstrap;
        config.auth_required = self.auth_required;
        let (tx, rx) = oneshot::channel();
        let (started, serve) = server::start(config, listener, async {
            let _ = rx.await;
        })
        .unwrap();
        let task = tokio::spawn(async move {
            let _ = serve.await;
        });
        self.nodes.insert(
            id,
            Node {
                started: Some(started),
                stop_server: Some(tx),
                server: Some(task),
            },
        );
    }

    async fn restart(&mut self, id: u64) {
        let listener = bind_again(self.addrs[&id]).await;
        self.start_on(id, listener, true);
    }

    async fn stop(&mut self, id: u64) {
        if let Some(mut node) = self.nodes.remove(&id) {
            if let Some(s) = node.started.take() {
                tokio::time::timeout(Duration::from_secs(20), s.stop())
                    .await
                    .unwrap_or_else(|_| panic!("node {id} did not stop"));
            }
            if let Some(tx) = node.stop_server.take() {
                let _ = tx.send(());
            }
            if let Some(task) = node.server.take() {
                tokio::time::timeout(Duration::from_secs(20), task)
                    .await
                    .unwrap_or_else(|_| panic!("server {id} did not stop"))
                    .unwrap();
            }
        }
    }

    fn handle(&self, id: u64) -> NodeHandle {
        self.nodes[&id].started.as_ref().unwrap().node.clone()
    }

    async fn leader(&self) -> u64 {
        for _ in 0..300 {
            for id in self.nodes.keys() {
                if self.handle(*id).status().is_leader {
                    return *id;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within 15 s");
    }

    async fn propose(&self, commands: Vec<Command>) -> Vec<Applied> {
        for _ in 0..200 {
            let leader = self.leader().await;
            match self.handle(leader).propose(commands.clone()).await {
                Ok(out) => return out,
                Err(
                    NodeError::NotLeader { .. }
                    | NodeError::Indeterminate
                    | NodeError::Stopped
                    | NodeError::Overloaded,
                ) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("proposal never landed");
    }

    async fn converge(&self) -> Vec<u8> {
        for _ in 0..400 {
            let mut snaps = Vec::new();
            for id in self.nodes.keys() {
                snaps.push(
                    self.handle(*id)
                        .read_local(|sm| sm.snapshot())
                        .await
                        .unwrap(),
                );
            }
            if snaps.windows(2).all(|w| w[0] == w[1]) {
                return snaps.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replicas did not converge");
    }

    async fn admin(&self, id: u64) -> AdminServiceClient<tonic::transport::Channel> {
        AdminServiceClient::connect(format!("http://{}", self.addrs[&id]))
            .await
            .unwrap()
    }

    async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not rebind {addr}");
}

fn submit(name: &str) -> Command {
    Command::SubmitJob(SubmitJob {
        file: "t.yaml".into(),
        spec_yaml: format!(
            "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  tasks: [{{name: a, kind: noop, partitions: {{shards: 2}}}}]\n"
        ),
        params: vec![],
        idempotency_key: Some(name.into()),
        trace_parent: None,
    })
}

fn job_of(out: &[Applied]) -> JobId {
    match &out[0] {
        Ok(Outcome::Submitted {
            id: Submitted::Job(id),
            ..
        }) => *id,
        other => panic!("{other:?}"),
    }
}

async fn jobs_on(handle: &NodeHandle) -> BTreeSet<JobId> {
    handle
        .read_local(|sm| sm.core().jobs.keys().copied().collect())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_replicate_and_fail_over() {
    let mut cluster = Cluster::new(3).await;
    let first = cluster.leader().await;
    let status = cluster
        .admin(first)
        .await
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leader_id, first);
    assert_eq!(status.members.len(), 3);
    assert!(
        status
            .members
            .iter()
            .all(|m| m.role == MemberRole::Voter as i32)
    );

    let mut acked = BTreeSet::new();
    for i in 0..30 {
        acked.insert(job_of(
            &cluster.propose(vec![submit(&format!("a{i}"))]).await,
        ));
    }
    cluster.converge().await;

    // The leader dies; a new one serves within a few election timeouts.
    let killed_at = std::time::Instant::now();
    cluster.stop(first).await;
    let second = cluster.leader().await;
    let failover = killed_at.elapsed();
    assert_ne!(first, second);
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    for i in 30..90 {
        acked.insert(job_of(
            &cluster.propose(vec![submit(&format!("a{i}"))]).await,
        ));
    }
    // The old leader rejoins; with 40-entry checkpoints it catches up from a
    // snapshot streamed in chunks over gRPC.
    cluster.restart(first).await;
    cluster.converge().await;
    let rejoined = cluster.handle(first);
    assert_eq!(
        jobs_on(&rejoined).await,
        acked,
        "no acknowledged submission lost"
    );
    assert!(
        rejoined.status().snapshot_index > BOOTSTRAP_INDEX,
        "caught up by snapshot"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_write_loses_nothing_acknowledged() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader().await;
    let victim = (1..=3).find(|n| *n != leader).unwrap();
    let writer_handles: Vec<NodeHandle> = (1..=3).map(|i| cluster.handle(i)).collect();
    // Write continuously while a follower is killed and restarted.
    let writer = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        for i in 0..120 {
            let command = submit(&format!("w{i}"));
            'retry: for _ in 0..200 {
                for h in &writer_handles {
                    if let Ok(out) = h.propose(vec![command.clone()]).await {
                        acked.insert(job_of(&out));
                        break 'retry;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop(victim).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart(victim).await;
    let acked = writer.await.unwrap();
    assert_eq!(acked.len(), 120);
    cluster.converge().await;
    for id in 1..=3 {
        assert_eq!(jobs_on(&cluster.handle(id)).await, acked, "node {id}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed_while_writes_continue() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader().await;
    // A fourth node starts empty and joins.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cluster.addrs.insert(4, addr);
    cluster.dirs.insert(4, tempfile::tempdir().unwrap());
    cluster.start_on(4, listener, false);

    let handles: Vec<NodeHandle> = (1..=3).map(|i| cluster.handle(i)).collect();
    let writer = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        for i in 0..80 {
            let command = submit(&format!("m{i}"));
            'retry: for _ in 0..300 {
                for h in &handles {
                    if let Ok(out) = h.propose(vec![command.clone()]).await {
                        acked.insert(job_of(&out));
                        break 'retry;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        acked
    });
    let mut admin = cluster.admin(leader).await;
    admin
        .add_node(AddNodeRequest {
            node_id: 4,
            address: addr.to_string(),
        })
        .await
        .unwrap();
    // The learner is promoted once caught up.
    let mut promoted = false;
    for _ in 0..200 {
        let status = admin
            .cluster_status(ClusterStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status
            .members
            .iter()
            .any(|m| m.node_id == 4 && m.role == MemberRole::Voter as i32)
        {
            promoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(promoted, "node 4 became a voter");
    // Remove a follower that is not the leader.
    let leader = cluster.leader().await;
    let removed = (1..=3).find(|n| *n != leader).unwrap();
    cluster
        .admin(leader)
        .await
        .remove_node(RemoveNodeRequest { node_id: removed })
        .await
        .unwrap();
    let acked = writer.await.unwrap();
    cluster.stop(removed).await;
    cluster.converge().await;
    let status = cluster
        .admin(cluster.leader().await)
        .await
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
    assert!(!ids.contains(&removed) && ids.contains(&4), "{ids:?}");
    assert_eq!(jobs_on(&cluster.handle(4)).await, acked);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_its_quorum_steps_down_and_fails_pending_writes() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader().await;
    cluster.propose(vec![submit("before")]).await;
    for id in 1..=3 {
        if id != leader {
            cluster.stop(id).await;
        }
    }
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        cluster.handle(leader).propose(vec![submit("orphan")]),
    )
    .await
    .expect("the proposal is answered, not left hanging");
    assert!(
        matches!(
            result,
            Err(NodeError::Indeterminate | NodeError::NotLeader { .. })
        ),
        "{result:?}"
    );
    // The answer can precede the status update by one loop turn.
    let mut stepped_down = false;
    for _ in 0..100 {
        if !cluster.handle(leader).status().is_leader {
            stepped_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stepped_down, "check_quorum stepped it down");
    // A follower's answer names no leader; a client gets UNAVAILABLE.
    let status = cluster
        .admin(leader)
        .await
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leader_id, 0);
    cluster.shutdown().await;
}

/// The one leader-following client (`drover_net::Coordinators`, used by the
/// CLI, the console, workers and the chaos workload), against real nodes:
/// given a follower first it reaches the leader through the follower's
/// hint, keeps that channel, finds the next leader when its leader dies,
/// and tells a cluster that is not there within its patience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_client_follows_the_leader_and_finds_the_next_one() {
    use drover_net::{CallError, Coordinators, Policy};
    use drover_proto::v1::SubmitJobRequest;

    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader().await;
    // A follower first, so the first call is refused with a hint.
    let mut order: Vec<u64> = cluster.addrs.keys().copied().collect();
    order.sort_by_key(|id| *id == leader);
    let client = Coordinators::new(
        order
            .iter()
            .map(|id| cluster.addrs[id].to_string())
            .collect(),
    );
    let submit = |name: &'static str| {
        let client = client.clone();
        async move {
            client
                .jobs(|mut c| {
                    let request = SubmitJobRequest {
                        spec_yaml: format!(
                            "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  tasks: [{{name: a, kind: noop}}]\n"
                        ),
                        source_name: format!("{name}.yaml"),
                        idempotency_key: name.to_owned(),
                        ..SubmitJobRequest::default()
                    };
                    async move { c.submit_job(request).await.map(|r| r.into_inner()) }
                })
                .await
        }
    };
    let first = submit("before")
        .await
        .expect("reached the leader via the hint");
    assert!(first.created);

    // The leader dies: the client's kept channel fails, and it finds the
    // new leader among the others (an election is waited out).
    cluster.stop(leader).await;
    let second = submit("after").await.expect("found the next leader");
    assert!(second.created);
    let again = submit("after").await.expect("a repeat is answered");
    assert!(!again.created, "the idempotency key names the same job");
    assert_eq!(again.job_id, second.job_id);

    // Nothing listening: told within the patience, naming the address.
    let gone = cluster.addrs[&leader].to_string();
    let nobody = Coordinators::new(vec![gone.clone()]).with_policy(Policy {
        unreachable_patience: Duration::from_millis(500),
        ..Policy::INTERACTIVE
    });
    let started = std::time::Instant::now();
    let err = nobody
        .admin(|mut c| async move {
            c.cluster_status(ClusterStatusRequest {})
                .await
                .map(|r| r.into_inner())
        })
        .await
        .expect_err("no coordinator there");
    assert!(
        matches!(&err, CallError::Unreachable(why) if why.contains(&gone)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after {:?}",
        started.elapsed()
    );
    cluster.shutdown().await;
}

/// A token the leader created is never called unknown by a follower that
/// has not applied its creation: the follower confirms a miss against the
/// cluster's commit. Here the follower missed the entry while stopped and
/// comes back alone, so it cannot confirm: it answers UNAVAILABLE (a client
/// tries another node) rather than "unknown or was revoked" (final). Once
/// its peers are back it catches up and accepts the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leader_does_not_call_a_new_token_unknown() {
    let mut cluster = Cluster::with_auth(3, true).await;
    let leader = cluster.leader().await;
    let operator = cluster
        .admin(leader)
        .await
        .bootstrap_token(BootstrapTokenRequest {
            name: "first".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (behind, other) = (others[0], others[1]);
    cluster.converge().await;
    cluster.stop(behind).await;
    let created = cluster
        .admin(leader)
        .await
        .create_token(with_token(
            CreateTokenRequest {
                name: "ci".into(),
                role: TokenRole::Submitter as i32,
                namespaces: vec!["team-a".into()],
                ttl_ms: 0,
            },
            Some(&operator),
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    cluster.stop(leader).await;
    cluster.stop(other).await;
    cluster.restart(behind).await;

    let alone = cluster
        .admin(behind)
        .await
        .who_am_i(with_token(WhoAmIRequest {}, Some(&created)))
        .await
        .unwrap_err();
    assert_eq!(alone.code(), Code::Unavailable, "{alone:?}");
    // Its own state still lacks the token: the answer came from the
    // confirmation, not from a catch-up.
    let known = cluster
        .handle(behind)
        .read_local(|sm| sm.core().security.tokens.len())
        .await
        .unwrap();
    assert_eq!(known, 1, "only the bootstrap token");

    cluster.restart(leader).await;
    cluster.restart(other).await;
    let mut last = None;
    for _ in 0..300 {
        match cluster
            .admin(behind)
            .await
            .who_am_i(with_token(WhoAmIRequest {}, Some(&created)))
            .await
        {
            Ok(me) => {
                assert_eq!(me.into_inner().role, "submitter");
                cluster.shutdown().await;
                return;
            }
            Err(status) => {
                assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
                last = Some(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the token never worked on node {behind}: {last:?}");
}
