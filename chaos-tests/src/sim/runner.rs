//! The event loop of one run: nodes, network, callers and nemesis on one
//! thread in virtual time, every choice drawn from the seed.
//!
//! A run has two phases. In the chaos phase clients submit jobs, workers
//! run them, and the nemesis injects faults. In the heal phase every fault
//! is undone (partitions healed, nodes restarted, workers resumed, the
//! network made reliable) and the run waits, up to a bound, for the
//! replicas to converge and every job to end. Then the checker runs.

use std::collections::BTreeMap;

use drover_coordinator::raft::driver::{conf_change, reply};
use drover_coordinator::raft::node::{NodeConfig, NodeError};
use drover_coordinator::state::{Applied, HeartbeatStatus, Outcome, StateMachine};
use raft::prelude::{ConfChangeType, Message, MessageType};

use super::checks::{Replay, check_history};
use super::client::Client;
use super::config::SimConfig;
use super::history::{Actor, History};
use super::ledger::Ledger;
use super::network::{Network, PartitionKind};
use super::node::{SimCore, SimNode};
use super::report::{Findings, Summary};
use super::worker::Worker;
use super::workload::{Payload, Reply, Request};
use crate::rng::Rng;

/// How long a caller waits for a reply before calling the outcome unknown.
const CALL_TIMEOUT_MS: u64 = 4_000;

/// How often the cheap invariants run and the heal phase looks for its end.
const CHECK_EVERY_MS: u64 = 1_000;

/// How long a membership change may take before the nemesis gives up on
/// it. (raft-rs silently drops a conf change proposed while another is
/// unapplied, and the driver then never answers; a real caller times out
/// the same way.)
const CHANGE_TIMEOUT_MS: u64 = 10_000;

/// How often sled's background flusher runs on each node.
const FLUSH_EVERY_MS: u64 = 500;

/// Where a caller's reply comes from.
type ReplyWait = reply::Receiver<Result<Vec<Applied>, NodeError>>;

/// Everything that can happen.
#[derive(Debug)]
enum Event {
    /// A Raft message arrives.
    Deliver {
        from: u64,
        to: u64,
        message: Box<Message>,
        /// The sender's wall clock when it sent the message (as a real
        /// batch carries it).
        sent_wall_ms: i64,
    },
    /// A node's Raft tick may be due.
    Tick { node: u64, incarnation: u64 },
    /// A sender learns how a message fared (a snapshot, or an unreachable
    /// peer).
    Report {
        node: u64,
        peer: u64,
        snapshot: Option<bool>,
    },
    /// A caller's request reaches a node.
    Request { actor: Actor, request: Request },
    /// A reply reaches a caller.
    Reply { actor: Actor, op: u64, reply: Reply },
    /// A caller stops waiting.
    Timeout { actor: Actor, op: u64 },
    /// A caller acts.
    Wake(Actor),
    /// The nemesis strikes.
    Nemesis,
    /// A partition ends.
    HealNetwork,
    /// A crashed node starts again.
    Restart(u64),
    /// A fresh node is added (the second half of a replacement).
    AddNode,
    /// The chaos phase ends.
    StartHeal,
    /// Periodic checks.
    Check,
}

/// A membership change in flight.
#[derive(Debug)]
enum Change {
    /// Removing a node.
    Removing(u64, reply::Receiver<Result<(), NodeError>>),
    /// Adding a node.
    Adding(u64, reply::Receiver<Result<(), NodeError>>),
}

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    /// Figures and findings.
    pub summary: Summary,
    /// The callers' history.
    pub history: History,
}

/// Runs one seed.
pub fn run_seed(seed: u64, config: &SimConfig) -> Run {
    let mut sim = Sim::new(seed, config.clone());
    sim.run();
    sim.finish()
}

struct Sim {
    seed: u64,
    config: SimConfig,
    /// The nemesis's and the scheduler's choices.
    rng: Rng,
    /// The network's draws (a separate stream, so fault choices do not
    /// shift message fates and the other way round).
    net_rng: Rng,
    sched: super::scheduler::Scheduler<Event>,
    net: Network,
    nodes: BTreeMap<u64, SimNode>,
    /// Current cluster members (what callers may dial).
    members: Vec<u64>,
    next_node_id: u64,
    clients: Vec<Client>,
    workers: Vec<Worker>,
    /// Replies not yet sent by the nodes, per caller operation.
    waiting: BTreeMap<(Actor, u64), ReplyWait>,
    change: Option<Change>,
    /// When the change in flight is given up on.
    change_deadline_ms: u64,
    history: History,
    ledger: Ledger,
    replay: Replay,
    findings: Findings,
    faults: BTreeMap<String, u64>,
    healing: bool,
    done: bool,
}

/// The extra wall clock skew of node `id` (node 1's, when the profile
/// gives it a wrong clock).
fn skewed(config: &SimConfig, id: u64) -> i64 {
    if id == 1 { config.skewed_clock_ms } else { 0 }
}

impl Sim {
    fn new(seed: u64, config: SimConfig) -> Self {
        let mut rng = Rng::new(seed);
        let net_rng = rng.fork();
        let count = config
            .nodes
            .unwrap_or(if rng.per_mille(500) { 3 } else { 5 });
        let members: Vec<u64> = (1..=count as u64).collect();
        let mut nodes = BTreeMap::new();
        for id in &members {
            let skew = rng.range(0, 401) as i64 - 200 + skewed(&config, *id);
            nodes.insert(
                *id,
                SimNode::new(*id, node_config(&config, *id, &members, true), skew),
            );
        }
        let clients = (0..config.clients)
            .map(|i| Client::new(i, rng.fork(), config.submits_per_client))
            .collect();
        let workers = (0..config.workers)
            .map(|i| Worker::new(i, rng.fork(), config.state.heartbeat_interval_ms))
            .collect();
        let replay = Replay::new(config.state.clone(), config.planted);
        Self {
            seed,
            net: Network::new(config.net.clone()),
            config,
            rng,
            net_rng,
            sched: super::scheduler::Scheduler::new(),
            nodes,
            next_node_id: count as u64 + 1,
            members,
            clients,
            workers,
            waiting: BTreeMap::new(),
            change: None,
            change_deadline_ms: 0,
            history: History::default(),
            ledger: Ledger::default(),
            replay,
            findings: Findings::default(),
            faults: BTreeMap::new(),
            healing: false,
            done: false,
        }
    }

    fn now(&self) -> u64 {
        self.sched.now_ms()
    }

    fn run(&mut self) {
        let ids: Vec<u64> = self.members.clone();
        for id in ids {
            self.start_node(id);
        }
        for i in 0..self.clients.len() as u32 {
            let at = self.rng.range(0, 500);
            self.sched.at(at, Event::Wake(Actor::Client(i)));
        }
        for i in 0..self.workers.len() as u32 {
            let at = self.rng.range(0, 500);
            self.sched.at(at, Event::Wake(Actor::Worker(i)));
        }
        let first = self.rng.range(1_000, 3_000);
        self.sched.at(first, Event::Nemesis);
        self.sched.at(self.config.chaos_ms, Event::StartHeal);
        self.sched.at(CHECK_EVERY_MS, Event::Check);
        let end_ms = self.config.chaos_ms + self.config.heal_bound_ms;
        while !self.done {
            let Some(event) = self.sched.pop() else {
                break;
            };
            if self.now() > end_ms {
                break;
            }
            self.handle(event);
            if self.config.stop_at_first_violation && !self.findings.violations.is_empty() {
                break;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                to,
                message,
                sent_wall_ms,
            } => self.deliver(from, to, *message, sent_wall_ms),
            Event::Tick { node, incarnation } => self.tick(node, incarnation),
            Event::Report {
                node,
                peer,
                snapshot,
            } => self.with_node(node, |core| match snapshot {
                Some(ok) => core.report_snapshot(peer, ok),
                None => core.report_unreachable(peer),
            }),
            Event::Request { actor, request } => self.request(actor, request),
            Event::Reply { actor, op, reply } => {
                let now = self.now();
                match actor {
                    Actor::Client(i) => {
                        self.clients[i as usize].on_reply(now, op, reply, &mut self.history)
                    }
                    Actor::Worker(i) => {
                        self.workers[i as usize].on_reply(now, op, reply, &mut self.history)
                    }
                }
            }
            Event::Timeout { actor, op } => {
                self.waiting.remove(&(actor, op));
                self.handle(Event::Reply {
                    actor,
                    op,
                    reply: Reply::Unknown("timed out".into()),
                });
            }
            Event::Wake(actor) => self.wake(actor),
            Event::Nemesis => self.nemesis(),
            Event::HealNetwork => {
                if self.net.partitioned() {
                    self.net.heal();
                    self.history.fault(self.now(), "partition healed");
                }
            }
            Event::Restart(id) => self.start_node(id),
            Event::AddNode => self.add_node(),
            Event::StartHeal => self.start_heal(),
            Event::Check => self.check(),
        }
    }

    /// Runs `f` on a node's core, then a turn; collects what it applied
    /// and sent, and answers callers whose replies are ready.
    fn with_node(&mut self, id: u64, f: impl FnOnce(&mut SimCore)) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let node_now = node.now(now);
        let result = node.call(|core| {
            f(core);
            let turn = core.turn(node_now);
            (turn, core.take_applies())
        });
        match result {
            None => return,
            Some(Err(panic)) => {
                self.findings
                    .violation("nodes-restart", now, format!("node {id} {panic}"));
                self.history.fault(now, format!("node {id} died: {panic}"));
            }
            Some(Ok((turn, applies))) => {
                self.ledger.ingest(id, now, applies, &mut self.findings);
                if let Err(e) = turn {
                    // A storage error stops a real node; here it crashes.
                    self.findings.violation(
                        "nodes-restart",
                        now,
                        format!("node {id} stopped: {e}"),
                    );
                    self.crash_node(id, "storage error");
                }
            }
        }
        let messages = self
            .nodes
            .get(&id)
            .map(SimNode::take_outbox)
            .unwrap_or_default();
        for message in messages {
            self.send(id, message);
        }
        self.poll_replies();
    }

    fn send(&mut self, from: u64, message: Message) {
        let to = message.to;
        let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let delays = self.net.route(&mut self.net_rng, from, to);
        if delays.is_empty() {
            let delay = self.net.delay(&mut self.net_rng);
            if snapshot {
                self.sched.after(
                    delay,
                    Event::Report {
                        node: from,
                        peer: to,
                        snapshot: Some(false),
                    },
                );
            } else if !self.net.link_up(from, to) {
                self.sched.after(
                    delay,
                    Event::Report {
                        node: from,
                        peer: to,
                        snapshot: None,
                    },
                );
            }
            return;
        }
        let sent_wall_ms = self
            .nodes
            .get(&from)
            .map_or(0, |n| n.now(self.sched.now_ms()).wall_ms);
        for delay in delays {
            self.sched.after(
                delay,
                Event::Deliver {
                    from,
                    to,
                    message: Box::new(message.clone()),
                    sent_wall_ms,
                },
            );
        }
    }

    fn deliver(&mut self, from: u64, to: u64, message: Message, sent_wall_ms: i64) {
        let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let up = self.nodes.get(&to).is_some_and(SimNode::is_up);
        let arrived = up && self.net.link_up(from, to);
        if arrived {
            let now = self.now();
            let receiver_now = self.nodes.get(&to).map(|n| n.now(now));
            self.with_node(to, |core| {
                if let Some(receiver_now) = receiver_now {
                    core.observe_clock(from, sent_wall_ms, receiver_now);
                }
                core.step(message);
            });
        }
        if snapshot {
            let delay = self.net.delay(&mut self.net_rng);
            self.sched.after(
                delay,
                Event::Report {
                    node: from,
                    peer: to,
                    snapshot: Some(arrived),
                },
            );
        }
    }

    fn tick(&mut self, id: u64, incarnation: u64) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.incarnation != incarnation || !node.is_up() {
            return;
        }
        if now >= node.last_flush_ms + FLUSH_EVERY_MS {
            node.last_flush_ms = now;
            let _ = node.call(|core| core.state_backend_mut().background_flush());
        }
        self.with_node(id, |_| {});
        if let Some(next) = self
            .nodes
            .get(&id)
            .and_then(|n| n.core().map(|c| c.next_tick_ms()))
        {
            self.sched.at(
                next,
                Event::Tick {
                    node: id,
                    incarnation,
                },
            );
        }
    }

    fn start_node(&mut self, id: u64) {
        let now = self.now();
        let seed = self.seed;
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.is_up() || node.dead.is_some() {
            return;
        }
        match node.start(now, seed) {
            Ok(()) => {
                let incarnation = node.incarnation;
                let next = node.core().map_or(now, |c| c.next_tick_ms());
                if incarnation > 1 {
                    self.history.fault(now, format!("node {id} restarted"));
                }
                self.sched.at(
                    next,
                    Event::Tick {
                        node: id,
                        incarnation,
                    },
                );
                // The first turn sends what opening queued (a single
                // voter's campaign).
                self.with_node(id, |_| {});
            }
            Err(e) => {
                self.findings
                    .violation("nodes-restart", now, format!("node {id} {e}"));
                self.history
                    .fault(now, format!("node {id} cannot start: {e}"));
            }
        }
    }

    fn crash_node(&mut self, id: u64, why: &str) -> bool {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(loss) = node.crash(&mut self.rng) else {
            return false;
        };
        self.history.fault(
            now,
            format!(
                "node {id} crashed ({why}): kept {} of {} unsynced log batches, latest state {}",
                loss.kept_batches,
                loss.unsynced_batches,
                if loss.kept_latest_state {
                    "kept"
                } else {
                    "lost"
                }
            ),
        );
        self.poll_replies();
        true
    }

    fn request(&mut self, actor: Actor, request: Request) {
        let up = self.members.contains(&request.node)
            && self.nodes.get(&request.node).is_some_and(SimNode::is_up);
        if !up {
            let delay = self.net.delay(&mut self.net_rng);
            self.sched.after(
                delay,
                Event::Reply {
                    actor,
                    op: request.op,
                    reply: Reply::Unreachable,
                },
            );
            return;
        }
        let (tx, rx) = reply::channel();
        self.waiting.insert((actor, request.op), rx);
        match request.payload {
            Payload::Propose(commands) => {
                self.with_node(request.node, move |core| core.propose(commands, tx));
            }
            Payload::Heartbeat {
                worker,
                epoch,
                tasks,
            } => {
                // Answered at once, without a log entry, as the real
                // service does; the renewals it makes are recorded for the
                // checker.
                let now = self.now();
                let Some(node_now) = self.nodes.get(&request.node).map(|n| n.now(now)) else {
                    return;
                };
                let mut renewed = Vec::new();
                self.with_node(request.node, |core| {
                    let term = core.status().term;
                    let answer = core.heartbeat(worker, epoch, tasks.clone(), node_now);
                    if let Ok(Ok(reply)) = &answer {
                        for ((task, status), sent) in reply.tasks.iter().zip(&tasks) {
                            if matches!(status, HeartbeatStatus::Ok { .. }) {
                                renewed.push((*task, sent.token, term));
                            }
                        }
                    }
                    let _ = tx.send(answer.map(|r| vec![r.map(Outcome::Heartbeat)]));
                });
                for (task, token, term) in renewed {
                    self.replay.renewed(task, token, term, now);
                }
            }
        }
    }

    /// Sends callers the replies their nodes produced (losing a few on the
    /// way, which leaves the caller not knowing).
    fn poll_replies(&mut self) {
        let mut ready = Vec::new();
        self.waiting.retain(|key, rx| match rx.try_recv() {
            Ok(result) => {
                ready.push((*key, Reply::from_node(result)));
                false
            }
            Err(reply::error::TryRecvError::Empty) => true,
            Err(reply::error::TryRecvError::Closed) => {
                ready.push((*key, Reply::Unknown("the node crashed".into())));
                false
            }
        });
        for ((actor, op), reply) in ready {
            if self.rng.per_mille(self.config.reply_drop_per_mille) {
                continue;
            }
            let delay = self.net.delay(&mut self.net_rng);
            self.sched.after(delay, Event::Reply { actor, op, reply });
        }
        self.poll_change();
    }

    fn wake(&mut self, actor: Actor) {
        let now = self.now();
        let request = match actor {
            Actor::Client(i) => {
                self.clients[i as usize].wake(now, &self.members, &mut self.history)
            }
            Actor::Worker(i) => {
                self.workers[i as usize].wake(now, &self.members, &mut self.history)
            }
        };
        if let Some(request) = request {
            let op = request.op;
            let delay = self.net.delay(&mut self.net_rng);
            self.sched.after(delay, Event::Request { actor, request });
            self.sched
                .after(CALL_TIMEOUT_MS, Event::Timeout { actor, op });
        }
        let next = match actor {
            Actor::Client(_) => self.rng.range(100, 700),
            Actor::Worker(_) => self.rng.range(50, 250),
        };
        self.sched.after(next, Event::Wake(actor));
    }

    /// The node that leads in the highest term, if any.
    /// The leader with the highest term among the running nodes. Every
    /// node counts, not only the believed members: a node whose addition's
    /// outcome was unknown may have been added, and may even lead.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(id, node)| {
                let status = node.core()?.status();
                status.is_leader.then_some((status.term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn fault(&mut self, kind: &str, what: String) {
        *self.faults.entry(kind.to_owned()).or_insert(0) += 1;
        let now = self.now();
        self.history.fault(now, what);
    }

    fn nemesis(&mut self) {
        if self.healing {
            return;
        }
        let w = &self.config.faults;
        let choices = [
            (w.partition, 0),
            (w.crash, 1),
            (w.crash_majority, 2),
            (w.transfer_leader, 3),
            (w.pause_worker, 4),
            (w.crash_worker, 5),
            (w.replace_node, 6),
        ];
        let total: u64 = choices.iter().map(|(w, _)| w).sum();
        let mut roll = self.rng.below(total);
        let mut kind = 0;
        for (weight, k) in choices {
            if roll < weight {
                kind = k;
                break;
            }
            roll -= weight;
        }
        match kind {
            0 => self.partition(),
            1 => self.crash_one(),
            2 => self.crash_majority(),
            3 => self.transfer_leader(),
            4 => self.pause_worker(),
            5 => {
                let i = self.rng.index(self.workers.len());
                if let Some(w) = self.workers.get_mut(i) {
                    w.crash();
                    self.fault("crash-worker", format!("worker w{i} crashed"));
                }
            }
            _ => self.replace_node(),
        }
        let mean = self.config.fault_interval_ms;
        let next = self.rng.range(mean / 3, mean * 5 / 3 + 1);
        self.sched.after(next, Event::Nemesis);
    }

    fn partition(&mut self) {
        if self.net.partitioned() {
            return;
        }
        let members = self.members.clone();
        let roll = self.rng.below(4);
        let (name, what) = if roll == 3 {
            let Some(leader) = self.leader() else {
                return;
            };
            self.net.isolate(leader, &members);
            ("partition-leader", format!("leader {leader} isolated"))
        } else {
            let (name, kind) = match roll {
                0 => ("partition-split", PartitionKind::Split),
                1 => ("partition-one-way", PartitionKind::OneWay),
                _ if members.len() >= 3 => ("partition-bridge", PartitionKind::Bridge),
                _ => ("partition-split", PartitionKind::Split),
            };
            (name, self.net.partition(&mut self.rng, &members, kind))
        };
        self.fault(name, format!("partition: {what}"));
        let heal = self.rng.range(500, 5_000);
        self.sched.after(heal, Event::HealNetwork);
    }

    fn crash_one(&mut self) {
        let up: Vec<u64> = self.up_members();
        if up.is_empty() {
            return;
        }
        let id = match self.leader() {
            Some(leader) if self.rng.per_mille(500) => leader,
            _ => up[self.rng.index(up.len())],
        };
        if self.crash_node(id, "nemesis") {
            *self.faults.entry("crash".into()).or_insert(0) += 1;
            let after = self.rng.range(300, 6_000);
            self.sched.after(after, Event::Restart(id));
        }
    }

    fn crash_majority(&mut self) {
        let mut up = self.up_members();
        let majority = self.members.len() / 2 + 1;
        if up.len() < majority {
            return;
        }
        for i in (1..up.len()).rev() {
            up.swap(i, self.rng.index(i + 1));
        }
        let victims: Vec<u64> = up.into_iter().take(majority).collect();
        for id in &victims {
            self.crash_node(*id, "nemesis, majority");
            let after = self.rng.range(300, 3_000);
            self.sched.after(after, Event::Restart(*id));
        }
        *self.faults.entry("crash-majority".into()).or_insert(0) += 1;
    }

    fn transfer_leader(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let others: Vec<u64> = self
            .members
            .iter()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        if others.is_empty() {
            return;
        }
        let to = others[self.rng.index(others.len())];
        self.with_node(leader, |core| core.transfer_leader(to));
        self.fault(
            "transfer-leader",
            format!("leader {leader} asked to hand over to {to}"),
        );
    }

    fn pause_worker(&mut self) {
        let now = self.now();
        let ttl = self.config.state.lease_ttl_ms;
        let i = self.rng.index(self.workers.len());
        let pause = self.rng.range(ttl * 6 / 5, ttl * 3);
        let Some(worker) = self.workers.get_mut(i) else {
            return;
        };
        if worker.paused_until_ms > now {
            return;
        }
        worker.paused_until_ms = now + pause;
        self.fault("pause-worker", format!("worker w{i} paused for {pause} ms"));
    }

    /// Removes a follower from the cluster; [`Sim::add_node`] then adds a
    /// fresh one.
    fn replace_node(&mut self) {
        if self.change.is_some() || self.members.len() < 3 {
            return;
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let followers: Vec<u64> = self
            .members
            .iter()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        let id = followers[self.rng.index(followers.len())];
        let (tx, rx) = reply::channel();
        self.change = Some(Change::Removing(id, rx));
        self.change_deadline_ms = self.now() + CHANGE_TIMEOUT_MS;
        self.fault("replace-node", format!("removing node {id}"));
        self.with_node(leader, |core| {
            core.change_members(conf_change(ConfChangeType::RemoveNode, id), None, tx)
        });
    }

    fn add_node(&mut self) {
        if self.change.is_some() {
            return;
        }
        let Some(leader) = self.leader() else {
            self.sched.after(500, Event::AddNode);
            return;
        };
        // An id is never reused, as etcd requires: a removed node's id
        // leaves with it (a change whose outcome was unknown may have added
        // and later removed it without this counter moving).
        while self
            .nodes
            .get(&self.next_node_id)
            .is_some_and(SimNode::is_gone)
        {
            self.next_node_id += 1;
        }
        let id = self.next_node_id;
        if !self.nodes.contains_key(&id) {
            let mut peers = self.members.clone();
            peers.push(id);
            let skew = self.rng.range(0, 401) as i64 - 200;
            self.nodes.insert(
                id,
                SimNode::new(id, node_config(&self.config, id, &peers, false), skew),
            );
            self.start_node(id);
        }
        let (tx, rx) = reply::channel();
        self.change = Some(Change::Adding(id, rx));
        self.change_deadline_ms = self.now() + CHANGE_TIMEOUT_MS;
        let now = self.now();
        self.history.fault(now, format!("adding node {id}"));
        self.with_node(leader, |core| {
            core.change_members(
                conf_change(ConfChangeType::AddLearnerNode, id),
                Some((id, format!("sim:{id}"))),
                tx,
            )
        });
    }

    fn poll_change(&mut self) {
        let Some(change) = &mut self.change else {
            return;
        };
        let (adding, id, result) = match change {
            Change::Removing(id, rx) => (false, *id, rx.try_recv()),
            Change::Adding(id, rx) => (true, *id, rx.try_recv()),
        };
        let result = match result {
            Err(reply::error::TryRecvError::Empty) => return,
            Ok(result) => result,
            Err(reply::error::TryRecvError::Closed) => Err(NodeError::Stopped),
        };
        self.change = None;
        let now = self.now();
        match (adding, result) {
            (false, Ok(())) => {
                self.members.retain(|m| *m != id);
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.retire("removed from the cluster");
                }
                self.history.fault(now, format!("node {id} removed"));
                self.sched.after(200, Event::AddNode);
            }
            (false, Err(e)) => {
                // It may still be applied later; if it is, the node simply
                // stops hearing from the others and stays a bystander.
                self.history
                    .fault(now, format!("removing node {id} did not finish: {e}"));
            }
            (true, Ok(())) => {
                self.members.push(id);
                self.next_node_id += 1;
                self.history.fault(now, format!("node {id} added"));
            }
            (true, Err(e)) => {
                self.history.fault(
                    now,
                    format!("adding node {id} did not finish: {e}; retrying"),
                );
                self.sched.after(1_000, Event::AddNode);
            }
        }
    }

    /// Takes the membership from the leader's configuration when no
    /// change is in flight: a change whose outcome was unknown may have
    /// been applied after all. A node no longer in it is retired.
    fn sync_members(&mut self) {
        if self.change.is_some() {
            return;
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(status) = self
            .nodes
            .get(&leader)
            .and_then(|n| n.core())
            .map(|c| c.status())
        else {
            return;
        };
        let members: Vec<u64> = status
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| self.nodes.contains_key(id))
            .collect();
        if members == self.members {
            return;
        }
        let now = self.now();
        for id in self.members.clone() {
            if !members.contains(&id)
                && let Some(node) = self.nodes.get_mut(&id)
            {
                node.retire("removed from the cluster");
                self.history
                    .fault(now, format!("node {id} is no longer a member"));
            }
        }
        self.members = members;
    }

    fn up_members(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| self.nodes.get(id).is_some_and(SimNode::is_up))
            .collect()
    }

    fn start_heal(&mut self) {
        self.healing = true;
        self.net.heal();
        self.net.config.drop_per_mille = 0;
        self.net.config.dup_per_mille = 0;
        self.config.reply_drop_per_mille = 0;
        let now = self.now();
        self.history.fault(
            now,
            "heal: network healed, nodes restarted, workers resumed",
        );
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.start_node(id);
        }
        for w in &mut self.workers {
            w.paused_until_ms = w.paused_until_ms.min(now);
        }
        for c in &mut self.clients {
            c.stop_new_work();
        }
    }

    /// Cheap invariants on every replica, and, once healed, whether the
    /// run is over.
    fn check(&mut self) {
        let now = self.now();
        self.sync_members();
        let mut by_index: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for id in self.members.clone() {
            let Some(core) = self.nodes.get(&id).and_then(SimNode::core) else {
                continue;
            };
            let sm = core.state_machine();
            let invariants = sm.check_invariants();
            self.findings
                .check("state-invariants", now, invariants.is_ok(), || {
                    format!("node {id}: {}", invariants.unwrap_err())
                });
            by_index
                .entry(core.status().applied_index)
                .or_default()
                .push((id, sm.snapshot()));
        }
        for (index, snapshots) in &by_index {
            for pair in snapshots.windows(2) {
                self.findings.check(
                    "replica-snapshots-equal",
                    now,
                    pair[0].1 == pair[1].1,
                    || {
                        format!(
                            "nodes {} and {} differ at applied index {index}",
                            pair[0].0, pair[1].0
                        )
                    },
                );
            }
        }
        self.replay.advance(&self.ledger, now, &mut self.findings);
        if let Some(change) = &self.change
            && now >= self.change_deadline_ms
        {
            let (adding, id) = match change {
                Change::Removing(id, _) => (false, *id),
                Change::Adding(id, _) => (true, *id),
            };
            self.change = None;
            self.history
                .fault(now, format!("membership change for node {id} timed out"));
            if adding {
                self.sched.after(1_000, Event::AddNode);
            }
        }
        if self.healing && self.quiescent(&by_index) {
            self.done = true;
            return;
        }
        self.sched.after(CHECK_EVERY_MS, Event::Check);
    }

    /// Whether the healed cluster is done: every member up at one applied
    /// index, every caller done, every job ended.
    fn quiescent(&self, by_index: &BTreeMap<u64, Vec<(u64, Vec<u8>)>>) -> bool {
        if by_index.len() != 1 || self.change.is_some() {
            return false;
        }
        if self.up_members().len() != self.members.len() {
            return false;
        }
        if !self.clients.iter().all(Client::done) {
            return false;
        }
        let Some(sm) = self.final_state() else {
            return false;
        };
        sm.core().jobs.values().all(|j| j.state.is_terminal())
    }

    fn final_state(&self) -> Option<&StateMachine> {
        let id = self
            .leader()
            .or_else(|| self.up_members().first().copied())?;
        self.nodes.get(&id)?.core().map(SimCore::state_machine)
    }

    fn finish(mut self) -> Run {
        let now = self.now();
        self.replay.finish(&self.ledger, now, &mut self.findings);
        // Liveness: converged and every job ended, within the bound.
        let mut by_index: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in self.up_members() {
            if let Some(core) = self.nodes.get(&id).and_then(SimNode::core) {
                by_index
                    .entry(core.status().applied_index)
                    .or_default()
                    .push(id);
            }
        }
        let converged = by_index.len() == 1 && self.up_members().len() == self.members.len();
        let unfinished: Vec<String> = self
            .final_state()
            .map(|sm| {
                sm.core()
                    .jobs
                    .values()
                    .filter(|j| !j.state.is_terminal())
                    .map(|j| format!("{} ({})", j.id, j.state.as_str()))
                    .collect()
            })
            .unwrap_or_else(|| vec!["no replica is up".to_owned()]);
        let clients_done = self.clients.iter().all(Client::done);
        self.findings.check(
            "liveness-after-heal",
            now,
            self.done && converged && unfinished.is_empty() && clients_done,
            || {
                format!(
                    "{} ms after the heal: replicas by applied index {by_index:?} (members {:?}), unfinished jobs {unfinished:?}, clients done: {clients_done}",
                    self.config.heal_bound_ms, self.members
                )
            },
        );
        // The shadow replay against the replicas' final state.
        if let (Some((shadow, index)), Some((applied, sm))) = (
            self.replay.shadow(),
            self.final_state().map(|sm| (self.final_index(), sm)),
        ) && index == applied
        {
            self.findings.check(
                "restore-equivalent",
                now,
                shadow.snapshot() == sm.snapshot(),
                || {
                    format!(
                        "at index {index}, the restored shadow state differs from the replicas'"
                    )
                },
            );
        }
        let final_sm = self.final_state().cloned();
        check_history(
            &self.history,
            &self.replay,
            final_sm.as_ref(),
            now,
            &mut self.findings,
        );
        let (invoked, ok, fail, info) = self.history.op_counts();
        let summary = Summary {
            seed: self.seed,
            profile: self.config.profile,
            planted: planted_names(&self.config),
            nodes: self.members.len(),
            virtual_ms: now,
            ops_invoked: invoked,
            ops_ok: ok,
            ops_fail: fail,
            ops_info: info,
            faults: self.faults,
            checks: self.findings.checks,
            committed_entries: self.ledger.last_index(),
            jobs_acked: self
                .history
                .acked_submits
                .iter()
                .map(|a| a.job)
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u64,
            messages_dropped: self.net.dropped,
            violations: self.findings.violations,
        };
        Run {
            summary,
            history: self.history,
        }
    }

    fn final_index(&self) -> u64 {
        let id = self.leader().or_else(|| self.up_members().first().copied());
        id.and_then(|id| {
            self.nodes
                .get(&id)?
                .core()
                .map(|c| c.status().applied_index)
        })
        .unwrap_or(0)
    }
}

/// The planted bugs as `DROVER_PLANTED_BUGS` spells them.
fn planted_names(config: &SimConfig) -> String {
    let p = config.planted;
    [
        (p.skip_fencing, "skip-fencing"),
        (p.double_lease, "double-lease"),
        (p.ack_before_fsync, "ack-before-fsync"),
        (p.wall_clock_time, "wall-clock-time"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(",")
}

/// The settings of simulated node `id` in a cluster of `members`.
fn node_config(config: &SimConfig, id: u64, members: &[u64], bootstrap: bool) -> NodeConfig {
    // The data directory is never touched: the stores are in memory.
    let mut c = NodeConfig::new(id, "/nonexistent/drover-sim");
    c.peers = members.iter().map(|m| (*m, format!("sim:{m}"))).collect();
    c.bootstrap = bootstrap;
    c.tick_ms = 100;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.state_tick_ms = 500;
    c.checkpoint_entries = config.checkpoint_entries;
    c.state_config = config.state.clone();
    c.planted = config.planted;
    c
}
