//! What the simulated clients and workers did and heard, in order.
//!
//! Each operation has an invoke and one end: `ok` (applied, and the caller
//! heard it), `fail` (definitely not applied), or `info` (unknown: the
//! reply was lost, the node crashed or leadership moved). The typed lists
//! next to the records are what the checker needs from the callers' side;
//! everything else it takes from what the replicas applied.

use std::fmt::Write as _;

use drover_coordinator::state::{JobId, TaskKey};

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    /// A client submitting and cancelling jobs.
    Client(u32),
    /// A worker leasing and running tasks.
    Worker(u32),
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A request left its caller for a node.
    Invoke {
        /// Virtual time.
        at_ms: u64,
        /// The caller.
        actor: Actor,
        /// The caller's operation number.
        op: u64,
        /// The node asked.
        node: u64,
        /// What was asked.
        what: String,
    },
    /// Applied, and the caller heard so.
    Ok {
        /// Virtual time.
        at_ms: u64,
        /// The caller.
        actor: Actor,
        /// The operation.
        op: u64,
        /// The result.
        what: String,
    },
    /// Definitely not applied (or applied as a refusal).
    Fail {
        /// Virtual time.
        at_ms: u64,
        /// The caller.
        actor: Actor,
        /// The operation.
        op: u64,
        /// Why.
        why: String,
    },
    /// Unknown whether it was applied.
    Info {
        /// Virtual time.
        at_ms: u64,
        /// The caller.
        actor: Actor,
        /// The operation.
        op: u64,
        /// Why it is unknown.
        why: String,
    },
    /// A fault the nemesis injected or healed.
    Fault {
        /// Virtual time.
        at_ms: u64,
        /// What happened.
        what: String,
    },
}

/// A submission the client heard was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedSubmit {
    /// When the client heard it.
    pub at_ms: u64,
    /// The idempotency key.
    pub key: String,
    /// The job the reply named.
    pub job: JobId,
}

/// A completion the worker heard was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedCompletion {
    /// When the worker heard it.
    pub at_ms: u64,
    /// The task.
    pub task: TaskKey,
    /// The token it carried.
    pub token: u64,
}

/// The whole history of a run.
#[derive(Debug, Default)]
pub struct History {
    /// Every record, in order.
    pub records: Vec<Record>,
    /// Submissions acknowledged to clients.
    pub acked_submits: Vec<AckedSubmit>,
    /// Completions acknowledged to workers.
    pub acked_completions: Vec<AckedCompletion>,
}

impl History {
    /// Appends a record.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Records a fault.
    pub fn fault(&mut self, at_ms: u64, what: impl Into<String>) {
        self.records.push(Record::Fault {
            at_ms,
            what: what.into(),
        });
    }

    /// Operations by end: (invoked, ok, fail, info).
    pub fn op_counts(&self) -> (u64, u64, u64, u64) {
        let mut counts = (0, 0, 0, 0);
        for r in &self.records {
            match r {
                Record::Invoke { .. } => counts.0 += 1,
                Record::Ok { .. } => counts.1 += 1,
                Record::Fail { .. } => counts.2 += 1,
                Record::Info { .. } => counts.3 += 1,
                Record::Fault { .. } => {}
            }
        }
        counts
    }

    /// The history as text, one record per line: what two runs of the same
    /// seed must agree on byte for byte.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            let _ = match r {
                Record::Invoke {
                    at_ms,
                    actor,
                    op,
                    node,
                    what,
                } => writeln!(out, "{at_ms:>8} {actor:?}#{op} invoke n{node} {what}"),
                Record::Ok {
                    at_ms,
                    actor,
                    op,
                    what,
                } => writeln!(out, "{at_ms:>8} {actor:?}#{op} ok {what}"),
                Record::Fail {
                    at_ms,
                    actor,
                    op,
                    why,
                } => writeln!(out, "{at_ms:>8} {actor:?}#{op} fail {why}"),
                Record::Info {
                    at_ms,
                    actor,
                    op,
                    why,
                } => writeln!(out, "{at_ms:>8} {actor:?}#{op} info {why}"),
                Record::Fault { at_ms, what } => writeln!(out, "{at_ms:>8} nemesis {what}"),
            };
        }
        out
    }
}
