//! Why the node or its log failed a request.

use crate::storage::StorageError;

/// Why the log store failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// raft-engine reported an error (IO, full disk, corruption).
    #[error("raft log: {0}")]
    Engine(#[from] raft_engine::Error),
    /// A stored protobuf does not decode.
    #[error("raft log: corrupt {0}")]
    Corrupt(&'static str),
}

/// Why a request to the node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader; the leader, if known, is given.
    #[error("not the leader (leader: {})", leader.as_ref().map_or("unknown".to_owned(), |(id, addr)| format!("{id} at {addr}")))]
    NotLeader {
        /// Leader id and address, when known.
        leader: Option<(u64, String)>,
    },
    /// Leadership changed while the command was in flight: it may or may not
    /// have been applied. Retry (with an idempotency key for submits).
    #[error(
        "leadership changed while the request was in flight; it may or may not have been applied"
    )]
    Indeterminate,
    /// The node's inbox is full.
    #[error("the node is overloaded; retry")]
    Overloaded,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A read or change did not complete in time (no leader, partition).
    #[error("timed out waiting for the cluster")]
    Timeout,
    /// A membership change was asked for while another is still being
    /// committed or applied; Raft runs one at a time. Retry once it has.
    #[error(
        "another membership change is still in progress (a learner being added or promoted, or a removal); retry once it has applied"
    )]
    ChangeInProgress,
    /// A proposed membership change did not take effect: its log slot was
    /// taken by another leader's entry, or Raft refused it. It is safe to
    /// retry.
    #[error(
        "the membership change did not take effect (leadership changed or Raft refused it); retry"
    )]
    ChangeRefused,
    /// The request is invalid (bad membership change, too large).
    #[error("{0}")]
    Invalid(String),
    /// Storage failed; the node stops.
    #[error("storage: {0}")]
    Storage(String),
    /// This node has just become leader and has not yet applied its log
    /// up to what it committed, so it cannot answer from its state yet.
    #[error("the leader is still applying its log; retry")]
    CatchingUp,
}

impl From<LogStoreError> for NodeError {
    fn from(e: LogStoreError) -> Self {
        NodeError::Storage(e.to_string())
    }
}

impl From<StorageError> for NodeError {
    fn from(e: StorageError) -> Self {
        NodeError::Storage(e.to_string())
    }
}
