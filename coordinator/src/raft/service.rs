//! The `RaftService` server: messages and snapshots from peers into the
//! local node, and commands forwarded by followers.

use drover_net::PeerIdentity;
use drover_proto::v1::raft_service_server::RaftService;
use drover_proto::v1::{
    ForwardRequest, ForwardResponse, RaftMessageBatch, SendResponse, SendSnapshotResponse,
    SnapshotChunk,
};
use protobuf::Message as _;
use raft::prelude::Message;
use tonic::{Request, Response, Status, Streaming};

use super::node::{NodeError, NodeHandle};
use crate::state::Command;

/// Largest snapshot accepted from a peer.
pub const SNAPSHOT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// Version of the `Forward` payload encoding. Version 2: `SubmitJob` and
/// lease grants carry a `traceparent`.
pub const FORWARD_FORMAT: u32 = 2;

/// Bytes reserved up front for an incoming snapshot: the announced size is
/// the peer's word, so memory grows with the data that actually arrives.
const SNAPSHOT_RESERVE_MAX: u64 = 64 * 1024 * 1024;

/// Serves Raft traffic for one node.
#[derive(Debug, Clone)]
pub struct RaftServer {
    node: NodeHandle,
    /// Whether callers must hold a node certificate (a TLS cluster).
    nodes_only: bool,
}

impl RaftServer {
    /// A server stepping messages into `node`, from anyone who can connect
    /// (a plaintext cluster, on a network only its members reach).
    pub fn new(node: NodeHandle) -> Self {
        Self {
            node,
            nodes_only: false,
        }
    }

    /// Only callers whose TLS certificate names a node may speak Raft, and
    /// a node may send messages only in its own name.
    pub fn nodes_only(mut self) -> Self {
        self.nodes_only = true;
        self
    }

    /// The calling node's id under [`RaftServer::nodes_only`]; `None` when
    /// anyone may call.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<u64>, Status> {
        if !self.nodes_only {
            return Ok(None);
        }
        match PeerIdentity::of_request(request) {
            Some(PeerIdentity::Node(id)) => Ok(Some(id)),
            Some(other) => Err(Status::permission_denied(format!(
                "only coordinators speak Raft; this connection's certificate is for {other}"
            ))),
            None => Err(Status::permission_denied(
                "only coordinators speak Raft; this connection has no node certificate",
            )),
        }
    }
}

/// Refuses a message a node sends in another node's name.
fn check_sender(caller: Option<u64>, message: &Message) -> Result<(), Status> {
    match caller {
        Some(id) if message.from != id => Err(Status::permission_denied(format!(
            "node {id}'s certificate cannot send messages from node {}",
            message.from
        ))),
        _ => Ok(()),
    }
}

fn status_of(e: NodeError) -> Status {
    match e {
        NodeError::Overloaded => Status::resource_exhausted(e.to_string()),
        NodeError::NotLeader { .. }
        | NodeError::Indeterminate
        | NodeError::Timeout
        | NodeError::CatchingUp => Status::unavailable(e.to_string()),
        // gRPC's code for a concurrency conflict the caller may retry.
        NodeError::ChangeInProgress | NodeError::ChangeRefused => Status::aborted(e.to_string()),
        NodeError::Invalid(_) => Status::invalid_argument(e.to_string()),
        NodeError::Stopped | NodeError::Storage(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn send(
        &self,
        request: Request<RaftMessageBatch>,
    ) -> Result<Response<SendResponse>, Status> {
        let caller = self.caller(&request)?;
        let batch = request.into_inner();
        // Only a batch from a known sender counts as its clock's reading.
        if batch.sent_unix_ms > 0 && caller.is_none_or(|id| id == batch.from_id) {
            self.node
                .observe_clock(batch.from_id, batch.sent_unix_ms)
                .map_err(status_of)?;
        }
        for bytes in batch.messages {
            let message = Message::parse_from_bytes(&bytes)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            check_sender(caller, &message)?;
            self.node.step(message).map_err(status_of)?;
        }
        Ok(Response::new(SendResponse {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SendSnapshotResponse>, Status> {
        let caller = self.caller(&request)?;
        let mut stream = request.into_inner();
        let mut header: Option<Message> = None;
        let mut data: Vec<u8> = Vec::new();
        let mut expected = 0u64;
        while let Some(chunk) = stream.message().await? {
            if header.is_none() {
                if chunk.total_bytes > SNAPSHOT_BYTES_MAX {
                    return Err(Status::resource_exhausted(format!(
                        "snapshot of {} bytes exceeds the {SNAPSHOT_BYTES_MAX}-byte limit",
                        chunk.total_bytes
                    )));
                }
                let message = Message::parse_from_bytes(&chunk.message)
                    .map_err(|e| Status::invalid_argument(format!("bad snapshot header: {e}")))?;
                check_sender(caller, &message)?;
                data.reserve(chunk.total_bytes.min(SNAPSHOT_RESERVE_MAX) as usize);
                expected = chunk.total_bytes;
                header = Some(message);
            }
            if chunk.offset != data.len() as u64 {
                return Err(Status::invalid_argument("snapshot chunks out of order"));
            }
            if data.len() as u64 + chunk.data.len() as u64 > expected {
                return Err(Status::invalid_argument("snapshot longer than announced"));
            }
            data.extend_from_slice(&chunk.data);
            if chunk.last {
                break;
            }
        }
        let Some(mut message) = header else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        if data.len() as u64 != expected {
            return Err(Status::invalid_argument("snapshot stream ended early"));
        }
        let received = data.len() as u64;
        message.mut_snapshot().set_data(data.into());
        self.node.step(message).map_err(status_of)?;
        Ok(Response::new(SendSnapshotResponse {
            received_bytes: received,
        }))
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        self.caller(&request)?;
        let request = request.into_inner();
        if request.format_version != FORWARD_FORMAT {
            return Err(Status::failed_precondition(format!(
                "forward format {} is not supported (this node speaks {FORWARD_FORMAT})",
                request.format_version
            )));
        }
        let commands: Vec<Command> = postcard::from_bytes(&request.commands)
            .map_err(|e| Status::invalid_argument(format!("bad forwarded commands: {e}")))?;
        let outcomes = self.node.propose(commands).await.map_err(status_of)?;
        let bytes = postcard::to_stdvec(&outcomes)
            .map_err(|e| Status::internal(format!("encoding outcomes: {e}")))?;
        Ok(Response::new(ForwardResponse {
            outcomes: bytes.into(),
        }))
    }
}
