//! The audit trail of a job: every lease, expiry, rejection, retry,
//! completion and cancel, in order, with bounded retention.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::types::{JobState, TaskKey, WorkerId};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The job was accepted.
    Submitted,
    /// A task was leased.
    Leased {
        /// Task.
        task: TaskKey,
        /// To whom.
        worker: WorkerId,
        /// The grant's fencing token.
        token: u64,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// A completion was accepted; its manifest is canonical.
    Completed {
        /// Task.
        task: TaskKey,
        /// Token of the accepted completion.
        token: u64,
        /// The worker whose completion was accepted.
        worker: WorkerId,
        /// Which attempt it was, from 1.
        attempt: u32,
    },
    /// An attempt failed; `retry_at_ms` says when it runs again, if at all.
    Failed {
        /// Task.
        task: TaskKey,
        /// Token of the failed attempt.
        token: u64,
        /// The worker's message, truncated.
        message: String,
        /// When the retry becomes ready; `None` when the failure is final.
        retry_at_ms: Option<i64>,
    },
    /// A lease ran out: no heartbeat within the TTL, or the attempt ran past
    /// its timeout.
    Expired {
        /// Task.
        task: TaskKey,
        /// Token of the expired lease.
        token: u64,
        /// `lease` or `timeout`.
        reason: ExpiryReason,
        /// When the retry becomes ready; `None` when retries are exhausted.
        retry_at_ms: Option<i64>,
    },
    /// A request carried a token that no longer holds the task.
    StaleRejected {
        /// Task.
        task: TaskKey,
        /// The token presented.
        token: u64,
        /// What was attempted: `complete`, `fail`, `heartbeat`, `release`.
        action: String,
        /// Who sent it.
        worker: WorkerId,
    },
    /// A worker handed a task back (drain); it is ready again at once.
    Released {
        /// Task.
        task: TaskKey,
        /// Token released.
        token: u64,
    },
    /// A downstream task will not run because an upstream failed.
    UpstreamFailed {
        /// Index of the template that will not run.
        template: u32,
    },
    /// Failed tasks were reset for another try.
    Retried {
        /// How many tasks were reset.
        tasks: u64,
    },
    /// The job was cancelled.
    CancelRequested {
        /// Why, as given.
        reason: String,
    },
    /// The job reached a terminal state.
    Finished {
        /// The state.
        state: JobState,
    },
}

/// Why a lease ended without a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryReason {
    /// No heartbeat within the lease TTL.
    Lease,
    /// The attempt ran longer than the task's timeout.
    Timeout,
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the job's trail, from 1, never reused.
    pub seq: u64,
    /// Leader time of the command that caused it.
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
}

/// The newest events of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventLog {
    /// Retained events, oldest first.
    events: VecDeque<Event>,
    /// Sequence number of the next event.
    next_seq: u64,
}

impl EventLog {
    /// Rebuilds a log from stored events (oldest first) and the sequence
    /// number of the newest event ever appended.
    pub fn from_parts(events: VecDeque<Event>, last_seq: u64) -> Self {
        Self {
            events,
            next_seq: last_seq,
        }
    }

    /// Appends an event, dropping the oldest past `max`.
    pub fn push(&mut self, at_ms: i64, kind: EventKind, max: usize) {
        self.next_seq += 1;
        self.events.push_back(Event {
            seq: self.next_seq,
            at_ms,
            kind,
        });
        while self.events.len() > max.max(1) {
            self.events.pop_front();
        }
    }

    /// Events with `seq > after`, at most `limit` of them.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Event> {
        let start = self.events.partition_point(|e| e.seq <= after);
        self.events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect()
    }

    /// All retained events, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.iter()
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sequence number of the newest event (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_drops_oldest_and_keeps_sequence_numbers() {
        let mut log = EventLog::default();
        for i in 0..5 {
            log.push(i, EventKind::Submitted, 3);
        }
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(log.after(3, 10).len(), 2);
        assert_eq!(log.after(0, 1)[0].seq, 3);
        assert_eq!(log.last_seq(), 5);
    }
}
