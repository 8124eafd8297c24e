//! What simulated callers send and hear, and the job specs clients submit.
//!
//! Callers ([`client`](super::client), [`worker`](super::worker)) talk to
//! one node at a time like the real ones: they follow leader hints, and
//! treat every outcome they cannot be sure of as unknown.

use drover_coordinator::raft::node::NodeError;
use drover_coordinator::state::{Applied, Command, TaskProgress, WorkerId};

use super::history::{Actor, History, Record};
use crate::rng::Rng;

/// What clients and workers share about their requests: one in flight at
/// a time, numbered, sent to the leader last heard of.
#[derive(Debug)]
pub struct Caller<Op> {
    /// Who calls, for the history.
    pub actor: Actor,
    /// The leader it was last told of.
    leader: Option<u64>,
    /// Its next operation number.
    next_op: u64,
    /// The operation in flight, if any.
    inflight: Option<(u64, Op)>,
}

impl<Op> Caller<Op> {
    /// A caller with nothing sent yet.
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            leader: None,
            next_op: 1,
            inflight: None,
        }
    }

    /// Whether an operation is in flight.
    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The number the next operation gets.
    pub fn next_op(&self) -> u64 {
        self.next_op
    }

    /// Forgets the operation in flight (a crash): its reply is ignored.
    pub fn forget(&mut self) {
        self.inflight = None;
    }

    /// Records `op` as invoked and in flight, and builds its request to
    /// the leader last heard of (else a node drawn from `nodes`).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        rng: &mut Rng,
        nodes: &[u64],
        now_ms: u64,
        what: String,
        op: Op,
        payload: Payload,
        history: &mut History,
    ) -> Request {
        let op_id = self.next_op;
        self.next_op += 1;
        let node = pick_node(rng, self.leader, nodes);
        history.push(Record::Invoke {
            at_ms: now_ms,
            actor: self.actor,
            op: op_id,
            node,
            what,
        });
        self.inflight = Some((op_id, op));
        Request {
            op: op_id,
            node,
            payload,
        }
    }

    /// Takes the operation in flight if `reply` answers it (a late reply
    /// to an earlier, timed-out one is ignored), and learns the leader
    /// from it.
    pub fn take_reply(&mut self, op: u64, reply: &Reply) -> Option<Op> {
        if self.inflight.as_ref().is_none_or(|(id, _)| *id != op) {
            return None;
        }
        if let Some(hint) = leader_hint(reply) {
            self.leader = Some(hint);
        } else if !matches!(reply, Reply::Applied(_)) {
            self.leader = None;
        }
        self.inflight.take().map(|(_, pending)| pending)
    }
}

/// A request a caller sends.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller's operation number.
    pub op: u64,
    /// The node it goes to.
    pub node: u64,
    /// What it asks.
    pub payload: Payload,
}

impl From<Command> for Payload {
    fn from(command: Command) -> Self {
        Payload::Propose(vec![command])
    }
}

/// What a request asks of a node.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Commands to commit (one per request in this workload).
    Propose(Vec<Command>),
    /// A heartbeat, answered by the leader without a log entry, as
    /// `WorkerService.Heartbeat` is.
    Heartbeat {
        /// The worker.
        worker: WorkerId,
        /// Its session.
        epoch: u64,
        /// The leases it holds.
        tasks: Vec<TaskProgress>,
    },
}

/// What a caller hears back.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Committed and applied: one result per command.
    Applied(Vec<Applied>),
    /// Definitely not applied (not the leader, bad request, overloaded).
    Refused(NodeError),
    /// The node could not be reached: definitely not applied.
    Unreachable,
    /// Perhaps applied, perhaps not.
    Unknown(String),
}

impl Reply {
    /// Sorts a node's answer into the three kinds of end.
    pub fn from_node(result: Result<Vec<Applied>, NodeError>) -> Reply {
        match result {
            Ok(applied) => Reply::Applied(applied),
            Err(
                e @ (NodeError::NotLeader { .. } | NodeError::Overloaded | NodeError::Invalid(_)),
            ) => Reply::Refused(e),
            Err(e) => Reply::Unknown(e.to_string()),
        }
    }
}

/// Where a caller sends next: the leader it was told of, else any node.
pub fn pick_node(rng: &mut Rng, hint: Option<u64>, nodes: &[u64]) -> u64 {
    match hint {
        Some(node) if nodes.contains(&node) => node,
        _ => nodes[rng.index(nodes.len())],
    }
}

/// The leader a refusal names, if any.
pub fn leader_hint(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Refused(NodeError::NotLeader {
            leader: Some((id, _)),
        }) => Some(*id),
        _ => None,
    }
}

/// Retry policy of every task: many quick retries, so lease expiries
/// caused by faults do not fail jobs.
const RETRIES: &str =
    "retries: {max: 60, backoff: constant, initialDelay: 300ms, maxDelay: 300ms}, timeout: 2m";

/// A small DAG job named `name`, in one of a few shapes, each task with
/// one to three partitions.
pub fn job_spec(rng: &mut Rng, name: &str) -> String {
    let shape = rng.below(3);
    let mut p = || 1 + rng.below(3);
    let tasks = match shape {
        // a -> b -> c
        0 => vec![
            format!(
                "{{name: a, kind: noop, partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!(
                "{{name: b, kind: noop, dependsOn: [a], partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!("{{name: c, kind: noop, dependsOn: [b], {RETRIES}}}"),
        ],
        // a -> (b, c) -> d
        1 => vec![
            format!(
                "{{name: a, kind: noop, partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!(
                "{{name: b, kind: noop, dependsOn: [a], partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!("{{name: c, kind: noop, dependsOn: [a], {RETRIES}}}"),
            format!(
                "{{name: d, kind: noop, dependsOn: [b, c], partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
        ],
        // (a, b) -> c
        _ => vec![
            format!(
                "{{name: a, kind: noop, partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!(
                "{{name: b, kind: noop, partitions: {{shards: {}}}, {RETRIES}}}",
                p()
            ),
            format!("{{name: c, kind: noop, dependsOn: [a, b], {RETRIES}}}"),
        ],
    };
    let mut yaml = format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}, namespace: sim}}\nspec:\n  tasks:\n"
    );
    for t in tasks {
        yaml.push_str("    - ");
        yaml.push_str(&t);
        yaml.push('\n');
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_coordinator::state::{Config, LogEntry, Outcome, StateMachine, SubmitJob};

    #[test]
    fn every_spec_shape_is_accepted() {
        let mut rng = Rng::new(5);
        let mut sm = StateMachine::new(Config::default());
        for i in 0..30 {
            let yaml = job_spec(&mut rng, &format!("j{i}"));
            let out = sm.apply(&LogEntry {
                now_ms: 1,
                commands: vec![Command::SubmitJob(SubmitJob {
                    file: "sim.yaml".into(),
                    spec_yaml: yaml.clone(),
                    params: Vec::new(),
                    idempotency_key: None,
                    trace_parent: None,
                })],
            });
            assert!(
                matches!(out[0], Ok(Outcome::Submitted { .. })),
                "{yaml}\n{:?}",
                out[0]
            );
        }
    }
}
