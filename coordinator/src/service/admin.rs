//! `AdminService`: cluster membership and status, and worker operations.

use std::time::Duration;

use drover_proto::v1::admin_service_server::AdminService;
use drover_proto::v1::{
    AddNodeRequest, AddNodeResponse, BackupChunk, BackupRequest, ClusterStatusRequest,
    ClusterStatusResponse, DrainWorkerRequest, DrainWorkerResponse, ListWorkersRequest,
    ListWorkersResponse, Member, MemberRole, RemoveNodeRequest, RemoveNodeResponse,
    ReplicationState, SchedulerStats, Settings, StateDigestRequest, StateDigestResponse,
    TransferLeaderRequest, TransferLeaderResponse, UpdateSettingsRequest, UpdateSettingsResponse,
    WorkerInfo, WorkerState as WireWorkerState,
};
use drover_proto::v1::{
    BindCertificateRequest, BindCertificateResponse, ListCertificateBindingsRequest,
    ListCertificateBindingsResponse, ListNamespacePoliciesRequest, ListNamespacePoliciesResponse,
    SetNamespacePolicyRequest, SetNamespacePolicyResponse,
};
use drover_proto::v1::{
    BootstrapTokenRequest, CreateTokenRequest, CreateTokenResponse, ListTokensRequest,
    ListTokensResponse, RevokeTokenRequest, RevokeTokenResponse, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use super::node_status;
use super::policies::Policies;
use super::tokens::Tokens;
use crate::auth::Caller;
use crate::backup;
use crate::raft::node::{MemberStatus, NodeHandle, NodeStatus, Replication};
use crate::state::{Command, JobState, Rejection, StateMachine, TaskKey, WorkerState};

/// How long membership changes and reads may take before the caller hears
/// "unavailable".
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Namespace weights one UpdateSettings may set.
const WEIGHTS_PER_REQUEST_MAX: usize = 64;

/// Namespace weights a cluster keeps.
const NAMESPACE_WEIGHTS_MAX: usize = 10_000;

/// Largest fair-share weight.
const WEIGHT_MAX: u32 = 1000;

/// Validates the namespace weights of an UpdateSettings request (here, not
/// in the state machine, whose `SetNamespaceWeight` predates these limits
/// and must apply old entries as it always did).
fn check_weights(
    weights: &std::collections::BTreeMap<String, u32>,
) -> Result<std::collections::BTreeMap<String, u32>, Status> {
    if weights.len() > WEIGHTS_PER_REQUEST_MAX {
        return Err(Status::invalid_argument(format!(
            "at most {WEIGHTS_PER_REQUEST_MAX} namespace weights per request"
        )));
    }
    let mut sorted = std::collections::BTreeMap::new();
    for (namespace, weight) in weights {
        if !drover_net::identity::valid_name(namespace) {
            return Err(Status::invalid_argument(format!(
                "namespace `{}` must be 1 to 63 lowercase letters, digits and '-'",
                crate::state::types::shown(namespace)
            )));
        }
        if !(1..=WEIGHT_MAX).contains(weight) {
            return Err(Status::invalid_argument(format!(
                "namespace `{namespace}`: a weight is 1 to {WEIGHT_MAX}"
            )));
        }
        sorted.insert(namespace.clone(), *weight);
    }
    Ok(sorted)
}

/// How long a backup's read may wait for its ReadIndex and its turn on the
/// driver thread.
const BACKUP_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The most bytes one backup chunk carries (the stream stays far under
/// gRPC's message limit).
const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;

/// Serves `AdminService` for one node.
#[derive(Debug, Clone)]
pub struct AdminServer {
    node: NodeHandle,
    tokens: Tokens,
    policies: Policies,
}

impl AdminServer {
    /// A server for `node`, on a cluster that does not require credentials.
    pub fn new(node: NodeHandle) -> Self {
        Self {
            tokens: Tokens::new(node.clone(), false),
            policies: Policies::new(node.clone()),
            node,
        }
    }

    /// Reports (in WhoAmI) that this node requires credentials.
    pub fn with_auth_required(mut self, required: bool) -> Self {
        self.tokens = Tokens::new(self.node.clone(), required);
        self
    }
}

mod convert {
    use super::*;

    pub fn member(m: &MemberStatus, status: &NodeStatus) -> Member {
        Member {
            node_id: m.id,
            address: m.address.clone(),
            role: if m.voter {
                MemberRole::Voter
            } else {
                MemberRole::Learner
            } as i32,
            is_leader: status.leader_id == m.id,
            match_index: if status.is_leader { m.match_index } else { 0 },
            lag_entries: if status.is_leader {
                status.commit_index.saturating_sub(m.match_index)
            } else {
                0
            },
            replication: match m.replication {
                Replication::Unknown => ReplicationState::Unspecified,
                Replication::Probe => ReplicationState::Probe,
                Replication::Replicate => ReplicationState::Replicate,
                Replication::Snapshot => ReplicationState::Snapshot,
            } as i32,
            last_contact_age_ms: m
                .last_contact_age_ms
                .map_or(0, |age| i64::try_from(age).unwrap_or(i64::MAX)),
        }
    }

    pub fn scheduler(sm: &StateMachine) -> SchedulerStats {
        let now = sm.now_ms();
        let mut stats = SchedulerStats::default();
        let mut oldest: Option<i64> = None;
        for job in sm.core().jobs.values().filter(|j| !j.state.is_terminal()) {
            stats.ready_tasks += job.counts.ready;
            stats.leased_tasks += job.counts.leased;
            if job.counts.ready > 0 {
                oldest = Some(oldest.map_or(job.created_ms, |o| o.min(job.created_ms)));
            }
        }
        stats.oldest_ready_age_ms = oldest.map_or(0, |o| (now - o).max(0));
        for worker in sm
            .core()
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
        {
            stats.alive_workers += 1;
            stats.total_slots += u64::from(worker.slots);
        }
        stats.free_slots = stats.total_slots.saturating_sub(stats.leased_tasks);
        stats
    }

    pub fn workers(sm: &StateMachine) -> Vec<WorkerInfo> {
        let mut running = std::collections::BTreeMap::<&str, Vec<String>>::new();
        for job in sm
            .core()
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
        {
            for (t, template) in (0u32..).zip(&job.templates) {
                for (p, record) in &template.tasks {
                    if let Some(w) = &record.worker {
                        let key = TaskKey {
                            job: job.id,
                            template: t,
                            partition: *p,
                        };
                        running.entry(w.as_str()).or_default().push(key.to_string());
                    }
                }
            }
        }
        sm.core()
            .workers
            .iter()
            .map(|(id, w)| WorkerInfo {
                worker_id: id.clone(),
                slots: w.slots,
                labels: w.labels.clone().into_iter().collect(),
                running_tasks: running
                    .get(id.as_str())
                    .map_or(0, |t| u32::try_from(t.len()).unwrap_or(u32::MAX)),
                running_task_ids: running.remove(id.as_str()).unwrap_or_default(),
                last_heartbeat_unix_ms: w.last_seen_ms,
                session_epoch: w.epoch,
                registered_unix_ms: w.registered_ms,
                state: match w.state {
                    WorkerState::Alive => WireWorkerState::Alive,
                    WorkerState::Draining => WireWorkerState::Draining,
                    WorkerState::Lost => WireWorkerState::Lost,
                } as i32,
                ..WorkerInfo::default()
            })
            .collect()
    }
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let status = self.node.status();
        let scheduler = if status.is_leader {
            self.node.read_local(convert::scheduler).await.ok()
        } else {
            None
        };
        let mut members: Vec<Member> = status
            .members
            .iter()
            .map(|m| convert::member(m, &status))
            .collect();
        members.sort_by_key(|m| (m.role != MemberRole::Voter as i32, m.node_id));
        Ok(Response::new(ClusterStatusResponse {
            node_id: status.id,
            leader_id: status.leader_id,
            leader_address: self.node.leader().map(|(_, a)| a).unwrap_or_default(),
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            members,
            scheduler,
            last_fsync_us: status.last_fsync_us,
            snapshot_index: status.snapshot_index,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<AddNodeResponse>, Status> {
        let request = request.into_inner();
        if request.node_id == 0 || request.address.is_empty() {
            return Err(Status::invalid_argument(
                "a node needs a non-zero id and an address",
            ));
        }
        if self
            .node
            .status()
            .members
            .iter()
            .any(|m| m.id == request.node_id)
        {
            return Err(Status::already_exists(format!(
                "node {} is already a member",
                request.node_id
            )));
        }
        super::require_leader(&self.node)?;
        tokio::time::timeout(
            ADMIN_TIMEOUT,
            self.node.add_node(request.node_id, request.address.clone()),
        )
        .await
        .map_err(|_| Status::deadline_exceeded("the membership change did not commit in time"))?
        .map_err(node_status)?;
        let status = self.node.status();
        let member = status
            .members
            .iter()
            .find(|m| m.id == request.node_id)
            .map(|m| convert::member(m, &status));
        Ok(Response::new(AddNodeResponse { member }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let id = request.into_inner().node_id;
        let members = self.node.status().members;
        if !members.iter().any(|m| m.id == id) {
            return Err(Status::not_found(format!("node {id} is not a member")));
        }
        // admin.proto promises FAILED_PRECONDITION here; raft-rs would only
        // say "invalid configuration".
        if members.iter().filter(|m| m.voter).all(|m| m.id == id) {
            return Err(Status::failed_precondition(format!(
                "removing node {id} would leave the cluster without a voter"
            )));
        }
        super::require_leader(&self.node)?;
        tokio::time::timeout(ADMIN_TIMEOUT, self.node.remove_node(id))
            .await
            .map_err(|_| Status::deadline_exceeded("the membership change did not commit in time"))?
            .map_err(node_status)?;
        let status = self.node.status();
        Ok(Response::new(RemoveNodeResponse {
            members: status
                .members
                .iter()
                .map(|m| convert::member(m, &status))
                .collect(),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        super::require_leader(&self.node)?;
        let status = self.node.status();
        let mut target = request.into_inner().target_node_id;
        if target == 0 {
            // The most up-to-date other voter.
            target = status
                .members
                .iter()
                .filter(|m| m.voter && m.id != status.id)
                .max_by_key(|m| (m.match_index, std::cmp::Reverse(m.id)))
                .map(|m| m.id)
                .ok_or_else(|| Status::failed_precondition("no other voter to transfer to"))?;
        }
        if !status.members.iter().any(|m| m.id == target && m.voter) {
            return Err(Status::not_found(format!("node {target} is not a voter")));
        }
        self.node.transfer_leader(target).map_err(node_status)?;
        let mut watch = self.node.watch_status();
        let changed = tokio::time::timeout(ADMIN_TIMEOUT, async {
            loop {
                if watch.borrow().leader_id == target {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if changed.is_err() {
            return Err(Status::deadline_exceeded(format!(
                "node {target} did not take over in time"
            )));
        }
        Ok(Response::new(TransferLeaderResponse {
            leader_id: target,
            leader_address: self.node.address_of(target).unwrap_or_default(),
        }))
    }

    async fn state_digest(
        &self,
        _request: Request<StateDigestRequest>,
    ) -> Result<Response<StateDigestResponse>, Status> {
        use sha2::Digest;
        let (index, bytes) = self
            .node
            .read_local_at_index(|sm, index| (index, sm.snapshot()))
            .await
            .map_err(node_status)?;
        let hash = sha2::Sha256::digest(&bytes);
        Ok(Response::new(StateDigestResponse {
            node_id: self.node.status().id,
            applied_index: index,
            sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
            state_bytes: bytes.len() as u64,
        }))
    }

    type BackupStream = tokio_stream::Iter<std::vec::IntoIter<Result<BackupChunk, Status>>>;

    async fn backup(
        &self,
        _request: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let node_id = self.node.status().id;
        let now_unix_ms = crate::clock::wall_now_ms();
        let (header, state) = self
            .node
            .read_at_index(BACKUP_READ_TIMEOUT, move |sm, index| {
                backup::capture(sm, index, node_id, now_unix_ms)
            })
            .await
            .map_err(node_status)?;
        let applied_index = header.applied_index;
        // Hashing a large state is kept off the async workers.
        let file = tokio::task::spawn_blocking(move || backup::encode(&header, &state))
            .await
            .map_err(|e| Status::internal(format!("encoding the backup: {e}")))?;
        let file = bytes::Bytes::from(file);
        let total_bytes = file.len() as u64;
        let chunks: Vec<Result<BackupChunk, Status>> = (0..file.len())
            .step_by(BACKUP_CHUNK_BYTES)
            .map(|at| {
                Ok(BackupChunk {
                    data: file.slice(at..(at + BACKUP_CHUNK_BYTES).min(file.len())),
                    total_bytes,
                    applied_index,
                    node_id,
                })
            })
            .collect();
        tracing::info!(
            node = node_id,
            applied_index,
            bytes = total_bytes,
            "backup taken"
        );
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn update_settings(
        &self,
        request: Request<UpdateSettingsRequest>,
    ) -> Result<Response<UpdateSettingsResponse>, Status> {
        let wanted = request.into_inner().settings.unwrap_or_default();
        if wanted.lease_ttl_ms < 0
            || wanted.heartbeat_interval_ms < 0
            || wanted.worker_timeout_ms < 0
        {
            return Err(Status::invalid_argument("settings cannot be negative"));
        }
        let weights = check_weights(&wanted.namespace_weights)?;
        let set = |v: i64| (v > 0).then_some(v as u64);
        let mut commands = Vec::new();
        if (
            wanted.lease_ttl_ms,
            wanted.heartbeat_interval_ms,
            wanted.worker_timeout_ms,
        ) != (0, 0, 0)
        {
            commands.push(Command::SetLeaseSettings {
                lease_ttl_ms: set(wanted.lease_ttl_ms),
                heartbeat_interval_ms: set(wanted.heartbeat_interval_ms),
                worker_timeout_ms: set(wanted.worker_timeout_ms),
            });
        }
        if !weights.is_empty() {
            let new = weights.clone();
            let total = self
                .node
                .read_local(move |sm| {
                    let known = &sm.core().config.namespace_weights;
                    known.len() + new.keys().filter(|n| !known.contains_key(*n)).count()
                })
                .await
                .map_err(node_status)?;
            if total > NAMESPACE_WEIGHTS_MAX {
                return Err(Status::resource_exhausted(format!(
                    "a cluster keeps at most {NAMESPACE_WEIGHTS_MAX} namespace weights"
                )));
            }
        }
        commands.extend(
            weights
                .into_iter()
                .map(|(namespace, weight)| Command::SetNamespaceWeight { namespace, weight }),
        );
        if !commands.is_empty() {
            super::require_leader(&self.node)?;
            // One entry: the lease settings and the weights change together.
            let out = self.node.propose(commands).await.map_err(node_status)?;
            for outcome in out {
                if let Err(e) = outcome {
                    return Err(Status::invalid_argument(e.to_string()));
                }
            }
        }
        // Linearizable, so a read right after a change sees it.
        let settings = self
            .node
            .read(ADMIN_TIMEOUT, |sm: &StateMachine| {
                let c = &sm.core().config;
                Settings {
                    lease_ttl_ms: c.lease_ttl_ms as i64,
                    heartbeat_interval_ms: c.heartbeat_interval_ms as i64,
                    worker_timeout_ms: c.worker_timeout_ms as i64,
                    namespace_weights: c
                        .namespace_weights
                        .iter()
                        .map(|(n, w)| (n.clone(), *w))
                        .collect(),
                }
            })
            .await
            .map_err(node_status)?;
        Ok(Response::new(UpdateSettingsResponse {
            settings: Some(settings),
        }))
    }

    async fn drain_worker(
        &self,
        request: Request<DrainWorkerRequest>,
    ) -> Result<Response<DrainWorkerResponse>, Status> {
        let worker = request.into_inner().worker_id;
        let out = self
            .node
            .propose(vec![Command::DrainWorker {
                worker: worker.clone(),
            }])
            .await
            .map_err(node_status)?;
        match out.into_iter().next() {
            Some(Ok(_)) => {
                let info = self
                    .node
                    .read_local(move |sm| {
                        convert::workers(sm)
                            .into_iter()
                            .find(|w| w.worker_id == worker)
                    })
                    .await
                    .map_err(node_status)?;
                Ok(Response::new(DrainWorkerResponse { worker: info }))
            }
            Some(Err(Rejection::UnknownWorker(id))) => Err(Status::not_found(format!(
                "unknown worker `{}`",
                crate::state::types::shown(&id)
            ))),
            Some(Err(e)) => Err(Status::failed_precondition(e.to_string())),
            None => Err(Status::internal("no outcome")),
        }
    }

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        let workers = self
            .node
            .read(ADMIN_TIMEOUT, convert::workers)
            .await
            .map_err(node_status)?;
        Ok(Response::new(ListWorkersResponse {
            workers,
            ..ListWorkersResponse::default()
        }))
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = Caller::of(&request);
        let created = self.tokens.create(&caller, request.into_inner()).await?;
        Ok(Response::new(created))
    }

    async fn list_tokens(
        &self,
        _request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        Ok(Response::new(self.tokens.list().await?))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.tokens.revoke(request.into_inner()).await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn bootstrap_token(
        &self,
        request: Request<BootstrapTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        Ok(Response::new(
            self.tokens.bootstrap(request.into_inner()).await?,
        ))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        Ok(Response::new(self.tokens.who_am_i(&Caller::of(&request))))
    }

    async fn set_namespace_policy(
        &self,
        request: Request<SetNamespacePolicyRequest>,
    ) -> Result<Response<SetNamespacePolicyResponse>, Status> {
        let caller = Caller::of(&request);
        let set = self.policies.set(&caller, request.into_inner()).await?;
        Ok(Response::new(set))
    }

    async fn bind_certificate(
        &self,
        request: Request<BindCertificateRequest>,
    ) -> Result<Response<BindCertificateResponse>, Status> {
        let caller = Caller::of(&request);
        let bound = self.tokens.bind(&caller, request.into_inner()).await?;
        Ok(Response::new(bound))
    }

    async fn list_certificate_bindings(
        &self,
        _request: Request<ListCertificateBindingsRequest>,
    ) -> Result<Response<ListCertificateBindingsResponse>, Status> {
        Ok(Response::new(self.tokens.bindings().await?))
    }

    async fn list_namespace_policies(
        &self,
        _request: Request<ListNamespacePoliciesRequest>,
    ) -> Result<Response<ListNamespacePoliciesResponse>, Status> {
        Ok(Response::new(self.policies.list().await?))
    }
}
