//! How a node is set up: its settings, and the transport its Raft
//! messages leave through.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::metrics::histogram::Histogram;
use raft::prelude::Message;

use crate::state::Config as StateConfig;

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// Where the Raft log, the state store and checkpoints live.
    pub data_dir: PathBuf,
    /// Known members and their addresses (this node included). With
    /// `bootstrap`, they become the voters of a new cluster when the log is
    /// blank; without it (a node joining an existing cluster) they are only
    /// where to reach the others until the log says otherwise.
    pub peers: BTreeMap<u64, String>,
    /// Create a new cluster from `peers` if the log is blank.
    pub bootstrap: bool,
    /// Raft tick length.
    pub tick_ms: u64,
    /// Ticks without a leader before an election (randomised up to 2x).
    pub election_ticks: usize,
    /// Leader heartbeat period in ticks.
    pub heartbeat_ticks: usize,
    /// How often the leader proposes a state machine `Tick`.
    pub state_tick_ms: u64,
    /// Applied entries between checkpoints (and log compaction).
    pub checkpoint_entries: u64,
    /// Longest the state store may lag the applied state. Applied changes
    /// are written to it together, so a record changed by many entries in
    /// that time is written once; the log still holds every entry after
    /// the store's applied index, so a crash loses nothing (recovery
    /// replays them).
    pub state_write_ms: u64,
    /// State machine settings for a new cluster.
    pub state_config: StateConfig,
    /// Where the driver records how long each synced log write took (the
    /// fsync latency metric); `None` records nothing.
    pub log_fsync_seconds: Option<Histogram>,
    /// Where the leader records how many commands each proposed entry
    /// packs; `None` records nothing.
    pub entry_commands: Option<Histogram>,
    /// Draw election timeouts from this seed instead of raft-rs's
    /// thread-local RNG, so a run is a function of its seed (the
    /// deterministic simulation). `None` in a real node.
    pub election_seed: Option<u64>,
    /// Bugs planted for the chaos suite's proofs.
    #[cfg(feature = "planted-bugs")]
    pub planted: crate::planted::PlantedBugs,
}

impl NodeConfig {
    /// Defaults for a node with `id` storing under `data_dir`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            data_dir: data_dir.into(),
            peers: BTreeMap::new(),
            bootstrap: true,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            state_tick_ms: 1000,
            checkpoint_entries: 10_000,
            state_write_ms: 100,
            state_config: StateConfig::default(),
            log_fsync_seconds: None,
            entry_commands: None,
            election_seed: None,
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::default(),
        }
    }
}

/// Sends Raft messages to peers; implemented by the gRPC transport (and by
/// in-memory networks in tests). Must not block.
pub trait Transport: Send + 'static {
    /// Queues messages for delivery; delivery is best effort (Raft retries).
    fn send(&self, messages: Vec<Message>);
    /// Learns a peer's address (membership changed).
    fn set_peer(&self, id: u64, address: Option<String>);
}
