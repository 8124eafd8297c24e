//! The clocks, read only here and by the driver's thread shell: the state
//! machine and the Raft core get the time as a [`Now`] value, so they stay
//! deterministic.

use std::time::Instant;

/// The time as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds from any origin: schedules ticks, the state
    /// tick cadence and read timeouts.
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds: this node's reading, one of the
    /// voters' readings the leader stamps entries from
    /// ([`ClusterClock`](crate::raft::cluster_clock::ClusterClock)); it may be wrong.
    pub wall_ms: i64,
}

/// The real clocks, read only here.
pub(crate) struct Clock {
    /// The monotonic origin.
    started: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            wall_ms: wall_now_ms(),
        }
    }
}

/// This node's wall clock in Unix milliseconds (it may be wrong; the
/// cluster's time does not trust it alone).
pub fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
