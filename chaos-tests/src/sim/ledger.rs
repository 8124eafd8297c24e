//! The committed log as the replicas applied it, merged from every
//! replica's apply records, with the check that they all agree.
//!
//! Replicas compact their logs and catch up by snapshot, so no single one
//! applies every entry; together they do. The ledger is what the
//! [`checks`](super::checks) replay.

use std::collections::BTreeMap;

use drover_coordinator::raft::driver::ApplyRecord;
use drover_coordinator::state::{Applied, LogEntry};

use super::report::Findings;

/// One index of the committed log.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// An entry with commands and their results.
    Entry {
        /// Its term.
        term: u64,
        /// The entry.
        entry: LogEntry,
        /// One result per command.
        outcomes: Vec<Applied>,
        /// The first node that applied it.
        node: u64,
        /// When it was first applied (virtual time): no earlier than the
        /// leader proposed it.
        applied_at_ms: u64,
    },
    /// An entry without commands (a leader's empty entry, a conf change).
    Empty {
        /// Its term.
        term: u64,
        /// The first node that applied it.
        node: u64,
    },
}

impl Slot {
    fn term(&self) -> u64 {
        match self {
            Slot::Entry { term, .. } | Slot::Empty { term, .. } => *term,
        }
    }

    fn node(&self) -> u64 {
        match self {
            Slot::Entry { node, .. } | Slot::Empty { node, .. } => *node,
        }
    }
}

/// The merged committed log.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Entries by index.
    pub slots: BTreeMap<u64, Slot>,
    /// Snapshot installs seen (index, node).
    pub snapshot_installs: u64,
}

impl Ledger {
    /// Adds what `node` applied, checking it against what others applied
    /// at the same indexes.
    pub fn ingest(
        &mut self,
        node: u64,
        at_ms: u64,
        records: Vec<ApplyRecord>,
        findings: &mut Findings,
    ) {
        for record in records {
            let (index, slot) = match record {
                ApplyRecord::Entry {
                    index,
                    term,
                    entry,
                    outcomes,
                } => (
                    index,
                    Slot::Entry {
                        term,
                        entry,
                        outcomes,
                        node,
                        applied_at_ms: at_ms,
                    },
                ),
                ApplyRecord::Empty { index, term } => (index, Slot::Empty { term, node }),
                ApplyRecord::Snapshot { .. } => {
                    self.snapshot_installs += 1;
                    continue;
                }
            };
            match self.slots.get(&index) {
                None => {
                    self.slots.insert(index, slot);
                }
                Some(existing) => {
                    let same = match (existing, &slot) {
                        (
                            Slot::Entry {
                                term: t1,
                                entry: e1,
                                outcomes: o1,
                                ..
                            },
                            Slot::Entry {
                                term: t2,
                                entry: e2,
                                outcomes: o2,
                                ..
                            },
                        ) => t1 == t2 && e1 == e2 && o1 == o2,
                        (Slot::Empty { term: t1, .. }, Slot::Empty { term: t2, .. }) => t1 == t2,
                        _ => false,
                    };
                    findings.check("replicas-agree", at_ms, same, || {
                        format!(
                            "at index {index}, node {node} applied {} of term {}, but node {} applied {} of term {}",
                            describe(&slot),
                            slot.term(),
                            existing.node(),
                            describe(existing),
                            existing.term()
                        )
                    });
                }
            }
        }
    }

    /// The highest index some replica applied.
    pub fn last_index(&self) -> u64 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }
}

fn describe(slot: &Slot) -> String {
    match slot {
        Slot::Entry { entry, .. } => {
            let kinds: Vec<String> = entry
                .commands
                .iter()
                .map(|c| {
                    format!("{c:?}")
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            format!("[{}] at {}", kinds.join(", "), entry.now_ms)
        }
        Slot::Empty { .. } => "an empty entry".to_owned(),
    }
}
