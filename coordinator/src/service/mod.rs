//! The client-facing gRPC services. Wire types are converted to domain types
//! in each service's `convert` functions; the state machine never sees prost
//! types. `trace` reads (or starts) the W3C trace context of requests;
//! [`task_log`] answers GetTaskLog for [`job`]; [`tokens`] and
//! `policies` hold AdminService's token and namespace policy rpcs.

pub mod admin;
pub mod job;
pub(crate) mod policies;
pub mod task_log;
pub mod tokens;
pub(crate) mod trace;
pub mod worker;

use drover_proto::LEADER_METADATA_KEY;
use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::raft::node::NodeError;
use crate::state::Rejection;

/// `Ok` on the leader; otherwise `UNAVAILABLE` naming the leader, so the
/// client retries there.
pub fn require_leader(node: &crate::raft::node::NodeHandle) -> Result<(), Status> {
    if node.status().is_leader {
        Ok(())
    } else {
        Err(node_status(NodeError::NotLeader {
            leader: node.leader(),
        }))
    }
}

/// Proposes one command and maps a rejection to its status: for the rpcs
/// that only need to know it applied.
pub async fn propose_one(
    node: &crate::raft::node::NodeHandle,
    command: crate::state::Command,
) -> Result<crate::state::Outcome, Status> {
    match node
        .propose(vec![command])
        .await
        .map_err(node_status)?
        .into_iter()
        .next()
    {
        Some(Ok(outcome)) => Ok(outcome),
        Some(Err(rejection)) => Err(rejection_status(rejection)),
        None => Err(Status::internal("the state machine returned no outcome")),
    }
}

/// Proposes one command and, once it has applied here, reads what it left
/// in the state: for the admin rpcs that answer with the stored record.
pub async fn propose_then_read<T: Send + 'static>(
    node: &crate::raft::node::NodeHandle,
    command: crate::state::Command,
    read: impl FnOnce(&crate::state::StateMachine) -> T + Send + 'static,
) -> Result<T, Status> {
    propose_one(node, command).await?;
    node.read_local(read).await.map_err(node_status)
}

/// Maps a node error to the protocol's status codes. `NotLeader` becomes
/// `UNAVAILABLE` with the leader's address in `drover-leader`, which clients
/// follow.
pub fn node_status(err: NodeError) -> Status {
    match &err {
        NodeError::NotLeader { leader } => {
            let mut status = Status::unavailable(err.to_string());
            if let Some((_, address)) = leader
                && !address.is_empty()
                && let Ok(value) = MetadataValue::try_from(address.as_str())
            {
                status.metadata_mut().insert(LEADER_METADATA_KEY, value);
            }
            status
        }
        NodeError::Indeterminate
        | NodeError::Timeout
        | NodeError::Stopped
        | NodeError::CatchingUp => Status::unavailable(err.to_string()),
        NodeError::Overloaded => Status::resource_exhausted(err.to_string()),
        // gRPC's code for a concurrency conflict the caller may retry.
        NodeError::ChangeInProgress | NodeError::ChangeRefused => Status::aborted(err.to_string()),
        NodeError::Invalid(_) => Status::invalid_argument(err.to_string()),
        // The node stops on a storage failure; other members can serve.
        NodeError::Storage(reason) => {
            let mut status = if crate::raft::node::is_no_space(reason) {
                Status::resource_exhausted(err.to_string())
            } else {
                Status::unavailable(err.to_string())
            };
            status.metadata_mut().insert(
                drover_proto::NODE_FAILED_METADATA_KEY,
                MetadataValue::from_static("1"),
            );
            status
        }
    }
}

/// The status for a rejected command (other than an invalid spec, which
/// needs its source to render).
pub fn rejection_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match rejection {
        Rejection::UnknownJob(_)
        | Rejection::UnknownSchedule(_)
        | Rejection::UnknownTask(_)
        | Rejection::UnknownWorker(_)
        | Rejection::UnknownSession { .. }
        | Rejection::UnknownToken(_) => Status::not_found(message),
        Rejection::StaleToken { .. }
        | Rejection::LeaseLost { .. }
        | Rejection::JobFinished { .. }
        | Rejection::AlreadyBootstrapped => Status::failed_precondition(message),
        Rejection::IdempotencyConflict { .. } => Status::already_exists(message),
        Rejection::InvalidSpec(_)
        | Rejection::InvalidSettings(_)
        | Rejection::InvalidToken(_)
        | Rejection::InvalidPolicy(_)
        | Rejection::ForeignPrefix { .. } => Status::invalid_argument(message),
        Rejection::PolicyDenied(_) => Status::permission_denied(message),
        Rejection::TooLarge(_) => Status::resource_exhausted(message),
    }
}
