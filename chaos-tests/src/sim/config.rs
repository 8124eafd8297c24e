//! What a simulation run looks like: cluster size, workload, faults and
//! the time bounds.

use drover_coordinator::planted::PlantedBugs;
use drover_coordinator::state::Config as StateConfig;

use super::network::NetConfig;

/// Relative weights of the nemesis's faults (0 switches one off).
#[derive(Debug, Clone)]
pub struct FaultWeights {
    /// A network partition (split, one-way, bridge, or the leader
    /// isolated), healed after a while.
    pub partition: u64,
    /// One coordinator crashes (often the leader), restarted later.
    pub crash: u64,
    /// A majority of coordinators crash at once, restarted later.
    pub crash_majority: u64,
    /// The leader hands leadership to another node.
    pub transfer_leader: u64,
    /// A worker is paused past its lease TTL, then resumes.
    pub pause_worker: u64,
    /// A worker crashes, forgets its tasks and registers again.
    pub crash_worker: u64,
    /// A node is removed from the cluster and a fresh one added.
    pub replace_node: u64,
}

impl Default for FaultWeights {
    fn default() -> Self {
        Self {
            partition: 30,
            crash: 20,
            crash_majority: 8,
            transfer_leader: 10,
            pause_worker: 20,
            crash_worker: 5,
            // Rarer than the rest: a replacement takes seconds, and the
            // `membership` profile is the one that leans on it.
            replace_node: 8,
        }
    }
}

/// The settings of a run. Everything random in it comes from the seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The named profile these settings come from ([`SimConfig::profile`]),
    /// so a failing seed's replay hint can name it.
    pub profile: &'static str,
    /// Stop a run at its first violation (the planted-bug proofs need only
    /// one).
    pub stop_at_first_violation: bool,
    /// Coordinators: `None` draws 3 or 5 from the seed.
    pub nodes: Option<usize>,
    /// Clients submitting jobs.
    pub clients: u32,
    /// New submissions per client.
    pub submits_per_client: u32,
    /// Workers.
    pub workers: u32,
    /// How long faults are injected, in virtual ms.
    pub chaos_ms: u64,
    /// Longest the cluster may take, after the heal, to converge and end
    /// every job.
    pub heal_bound_ms: u64,
    /// Mean time between faults.
    pub fault_interval_ms: u64,
    /// Which faults, how often.
    pub faults: FaultWeights,
    /// The network's misbehaviour during the chaos phase.
    pub net: NetConfig,
    /// Replies to callers (out of 1000) lost on the way back, leaving the
    /// caller not knowing the outcome.
    pub reply_drop_per_mille: u64,
    /// Applied entries between checkpoints (small, so compaction and
    /// catch-up by snapshot happen).
    pub checkpoint_entries: u64,
    /// The scheduler's settings (short leases, so expiry happens).
    pub state: StateConfig,
    /// Bugs planted in every node.
    pub planted: PlantedBugs,
    /// Node 1's wall clock is off by this much besides the usual few
    /// hundred milliseconds (an operator's wrong clock), in ms.
    pub skewed_clock_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let state = StateConfig {
            lease_ttl_ms: 3_000,
            heartbeat_interval_ms: 1_000,
            worker_timeout_ms: 10_000,
            ..StateConfig::default()
        };
        Self {
            profile: "default",
            stop_at_first_violation: false,
            nodes: None,
            clients: 3,
            submits_per_client: 5,
            workers: 3,
            chaos_ms: 25_000,
            heal_bound_ms: 60_000,
            fault_interval_ms: 1_500,
            faults: FaultWeights::default(),
            net: NetConfig::default(),
            reply_drop_per_mille: 30,
            checkpoint_entries: 60,
            state,
            planted: PlantedBugs::default(),
            skewed_clock_ms: 0,
        }
    }
}

impl SimConfig {
    /// The default run with `planted` bugs switched on.
    pub fn with_planted(planted: PlantedBugs) -> Self {
        Self {
            planted,
            ..Self::default()
        }
    }

    /// A named profile: `default`; `membership` (nodes are removed and
    /// fresh ones added, besides the other faults); `fast-clock` and
    /// `slow-clock` (node 1's wall clock an hour ahead or behind, whether it
    /// leads or not, across every failover).
    pub fn profile(name: &str) -> Option<Self> {
        const HOUR_MS: i64 = 3_600_000;
        match name {
            "default" => Some(Self::default()),
            "fast-clock" | "slow-clock" => Some(Self {
                profile: if name == "fast-clock" {
                    "fast-clock"
                } else {
                    "slow-clock"
                },
                skewed_clock_ms: if name == "fast-clock" {
                    HOUR_MS
                } else {
                    -HOUR_MS
                },
                ..Self::default()
            }),
            "membership" => {
                let mut config = Self {
                    profile: "membership",
                    nodes: Some(3),
                    ..Self::default()
                };
                config.faults.replace_node = 25;
                Some(config)
            }
            _ => None,
        }
    }
}
