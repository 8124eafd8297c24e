//! Which records an apply changed, so storage writes only those.
//!
//! Derived bookkeeping, like the indexes: never serialised, and reset by
//! whoever persists ([`super::StateMachine::take_changes`]). A record missed
//! here would be lost on restart; the storage round-trip property test
//! reloads after random histories and compares snapshots to catch that.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{JobId, ScheduleId, TaskKey, WorkerId};

/// Records changed since the last [`super::StateMachine::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Jobs whose header (everything but task records, outputs and events)
    /// changed, or that were removed.
    pub jobs: BTreeSet<JobId>,
    /// Task records written or removed.
    pub tasks: BTreeSet<TaskKey>,
    /// Outputs written.
    pub outputs: BTreeSet<TaskKey>,
    /// Per job, the first event sequence number appended.
    pub events_from: BTreeMap<JobId, u64>,
    /// Workers written or removed.
    pub workers: BTreeSet<WorkerId>,
    /// Schedules written.
    pub schedules: BTreeSet<ScheduleId>,
    /// Idempotency entries written or removed.
    pub idempotency: BTreeSet<(String, String)>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}
