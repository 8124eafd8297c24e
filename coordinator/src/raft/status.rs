//! What a node publishes about itself after every turn, and how a
//! storage failure is told.

/// A member as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Address for Raft and clients.
    pub address: String,
    /// Voter or learner.
    pub voter: bool,
    /// Highest index known replicated there (leader's view).
    pub match_index: u64,
    /// How the leader replicates to it (leader's view).
    pub replication: Replication,
    /// Time since the leader last heard from it; `None` when not the
    /// leader's view, for the leader itself, or never heard from.
    pub last_contact_age_ms: Option<u64>,
}

/// How the leader replicates to a member (raft-rs's progress state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replication {
    /// Not the leader's view, or the leader itself.
    #[default]
    Unknown,
    /// Probing for the last matching entry.
    Probe,
    /// Streaming entries.
    Replicate,
    /// Sending a snapshot.
    Snapshot,
}

/// A snapshot of the node's Raft state, published after every loop turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: u64,
    /// Current leader (0 when none known).
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed index known.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Members and, on the leader, their progress.
    pub members: Vec<MemberStatus>,
    /// Index of the latest checkpoint (log compacted up to it).
    pub snapshot_index: u64,
    /// Time of the last fsync'd write, in microseconds (for metrics).
    pub last_fsync_us: u64,
    /// Why the node stopped, when its storage failed (a full disk): it
    /// then serves nothing more, and the server exits so a supervisor can
    /// restart it once the cause is fixed.
    pub failure: Option<String>,
}

/// What clients and `/readyz` are told when node `id`'s storage in
/// `data_dir` failed with `error`: a full disk says so in words.
pub fn storage_failure(id: u64, data_dir: &std::path::Path, error: &str) -> String {
    if is_no_space(error) {
        format!(
            "node {id} has no space left on device for its data directory {} ({error}); free space and restart it",
            data_dir.display()
        )
    } else {
        format!(
            "node {id} cannot write its data directory {} ({error}); fix the disk and restart it",
            data_dir.display()
        )
    }
}

/// Whether a storage error's text is a full disk (ENOSPC) or quota.
pub fn is_no_space(error: &str) -> bool {
    // raft-engine words its own ENOSPC as `nospace`.
    error.contains("No space left on device")
        || error.contains("nospace")
        || error.contains("os error 28")
        || error.contains("Disk quota exceeded")
        || error.contains("os error 122")
}
