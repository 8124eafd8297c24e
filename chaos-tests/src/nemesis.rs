//! The nemesis: faults drawn from the run's seed, injected one at a time
//! during the safety phase, each healed before the next. Every fault is
//! recorded in the history (process `nemesis`) and counted by type.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use crate::harness::{Cluster, LEASE_TTL_MS};
use crate::history::{History, Op, OpType};
use crate::proxy::LinkFaults;
use crate::rng::Rng;

/// The kinds of fault, with their relative weights.
const FAULTS: &[(&str, u64)] = &[
    ("kill-leader", 3),
    ("kill-follower", 2),
    ("pause-node", 2),
    ("pause-worker", 4),
    ("kill-worker", 3),
    ("partition-isolate", 2),
    ("partition-one-way", 2),
    ("partition-bridge", 1),
    ("partition-worker", 2),
    ("slow-links", 1),
    ("close-connections", 1),
    ("transfer-leader", 2),
    ("membership", 1),
    ("restart-all", 1),
];

/// How long a pause lasts: past the lease TTL, so leases expire and are
/// granted again while the paused process still believes it holds them.
fn pause_for(rng: &mut Rng) -> Duration {
    Duration::from_millis(LEASE_TTL_MS as u64 + rng.between(1_000, 3_000))
}

/// Runs faults until `stop`, then returns how many of each it injected.
pub async fn run(
    cluster: &mut Cluster,
    mut rng: Rng,
    history: &History,
    stop: watch::Receiver<bool>,
    only: Option<&[&str]>,
) -> BTreeMap<String, u64> {
    let mut injected = BTreeMap::new();
    let menu: Vec<(&str, u64)> = FAULTS
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o.contains(name)))
        .copied()
        .collect();
    let total: u64 = menu.iter().map(|(_, w)| w).sum();
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(rng.between(1_000, 3_000))).await;
        if *stop.borrow() {
            break;
        }
        let mut draw = rng.below(total);
        let Some(fault) = menu.iter().find_map(|(name, w)| {
            if draw < *w {
                Some(*name)
            } else {
                draw -= w;
                None
            }
        }) else {
            break;
        };
        let target = inject(cluster, fault, &mut rng, history).await;
        history.record(Op::new("nemesis", OpType::Info, fault).value(target));
        *injected.entry(fault.to_owned()).or_insert(0) += 1;
        // Every fault is healed before the next one.
        if let Err(e) = cluster.heal() {
            history.record(Op::new("nemesis", OpType::Fail, "heal").value(e.to_string()));
        }
    }
    injected
}

/// Injects one fault and lets it last; returns what it hit.
async fn inject(cluster: &mut Cluster, fault: &str, rng: &mut Rng, history: &History) -> String {
    let members = cluster.members();
    let leader = cluster.leader().await;
    let follower = rng
        .pick(
            &members
                .iter()
                .filter(|m| Some(**m) != leader)
                .copied()
                .collect::<Vec<_>>(),
        )
        .copied();
    let any_node = rng.pick(&members).copied().unwrap_or(1);
    // A worker in the middle of an attempt, when there is one: pausing or
    // cutting off an idle worker tests nothing about fencing.
    let busy = cluster.busy_workers();
    let worker = match rng.pick(&busy) {
        Some(w) => *w,
        None => rng.below(cluster.worker_count() as u64) as usize,
    };
    let hold = Duration::from_millis(rng.between(2_000, 6_000));
    history.record(Op::new("nemesis", OpType::Invoke, fault));
    match fault {
        "kill-leader" | "kill-follower" => {
            let node = if fault == "kill-leader" {
                leader
            } else {
                follower
            }
            .unwrap_or(any_node);
            cluster.kill_node(node);
            tokio::time::sleep(Duration::from_millis(rng.between(500, 4_000))).await;
            let _ = cluster.start_node(node, false);
            format!("node {node}")
        }
        "pause-node" => {
            cluster.pause_node(any_node, true);
            tokio::time::sleep(pause_for(rng)).await;
            cluster.pause_node(any_node, false);
            format!("node {any_node}")
        }
        "pause-worker" => {
            cluster.pause_worker(worker, true);
            tokio::time::sleep(pause_for(rng)).await;
            cluster.pause_worker(worker, false);
            // Give the resumed worker time to report with its stale tokens
            // before the next fault.
            tokio::time::sleep(Duration::from_secs(1)).await;
            format!("worker {worker}")
        }
        "kill-worker" => {
            cluster.kill_worker(worker);
            tokio::time::sleep(Duration::from_millis(rng.between(200, 2_000))).await;
            format!("worker {worker}")
        }
        "partition-isolate" | "partition-one-way" | "partition-bridge" | "slow-links" => {
            let target = Target {
                members: &members,
                leader,
                any_node,
            };
            let hit = cut_links(cluster, fault, &target, rng);
            tokio::time::sleep(hold).await;
            hit
        }
        "partition-worker" => {
            // The worker cannot reach any coordinator; its leases expire
            // while it keeps running.
            cluster.set_worker_links(worker, LinkFaults::partitioned());
            tokio::time::sleep(pause_for(rng)).await;
            format!("worker {worker}")
        }
        "close-connections" => {
            cluster.close_all_connections();
            "all links".to_owned()
        }
        "transfer-leader" => match follower {
            Some(to) => {
                let outcome = cluster.transfer_leader(to).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                format!(
                    "to node {to}: {}",
                    outcome.map_or_else(|e| e.to_string(), |_| "asked".into())
                )
            }
            None => "no follower".to_owned(),
        },
        "membership" => {
            // Add a spare while the load runs, let it catch up, remove it.
            match cluster.spares().first().copied() {
                Some(spare) => {
                    let added = cluster.add_node(spare).await;
                    tokio::time::sleep(hold).await;
                    let removed = if added.is_ok() {
                        cluster.remove_node(spare).await
                    } else {
                        Ok(())
                    };
                    if removed.is_err() {
                        // Still a member: leave it running so the cluster
                        // keeps its quorum arithmetic honest.
                        let _ = cluster.start_node(spare, false);
                    }
                    format!("node {spare}: add {added:?}, remove {removed:?}")
                }
                None => "no spare".to_owned(),
            }
        }
        "restart-all" => {
            for id in &members {
                cluster.kill_node(*id);
            }
            for w in 0..cluster.worker_count() {
                cluster.kill_worker(w);
            }
            tokio::time::sleep(Duration::from_millis(rng.between(200, 1_500))).await;
            "every process".to_owned()
        }
        _ => String::new(),
    }
}

/// The nodes a network fault picks from.
struct Target<'a> {
    members: &'a [u64],
    leader: Option<u64>,
    any_node: u64,
}

/// Cuts or slows the links between nodes as `fault` says; returns what it
/// hit. The links heal when the nemesis heals the cluster.
fn cut_links(cluster: &mut Cluster, fault: &str, target: &Target<'_>, rng: &mut Rng) -> String {
    match fault {
        "partition-isolate" => {
            // Symmetric: one node (often the leader) cut from all others.
            let node = if rng.chance(0.5) {
                target.leader.unwrap_or(target.any_node)
            } else {
                target.any_node
            };
            for other in target.members.iter().filter(|m| **m != node) {
                cluster.set_peer_link(node, *other, LinkFaults::partitioned());
                cluster.set_peer_link(*other, node, LinkFaults::partitioned());
            }
            format!("node {node} isolated")
        }
        "partition-one-way" => {
            // Asymmetric: the leader hears the others, they do not hear it
            // (or the reverse).
            let node = target.leader.unwrap_or(target.any_node);
            let outbound = rng.chance(0.5);
            for other in target.members.iter().filter(|m| **m != node) {
                if outbound {
                    cluster.set_peer_link(node, *other, LinkFaults::partitioned());
                } else {
                    cluster.set_peer_link(*other, node, LinkFaults::partitioned());
                }
            }
            format!(
                "node {node} {}",
                if outbound {
                    "cannot send"
                } else {
                    "cannot receive"
                }
            )
        }
        "partition-bridge" => {
            // Two sides that only a bridge node connects (a majority on
            // each side of the bridge).
            let mut shuffled = target.members.to_vec();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let bridge = shuffled[0];
            let half = (shuffled.len() - 1) / 2;
            let (left, right) = shuffled[1..].split_at(half);
            for a in left {
                for b in right {
                    cluster.set_peer_link(*a, *b, LinkFaults::partitioned());
                    cluster.set_peer_link(*b, *a, LinkFaults::partitioned());
                }
            }
            format!("bridge {bridge}: {left:?} | {right:?}")
        }
        "slow-links" => {
            let delay = rng.between(20, 200);
            for from in target.members {
                for to in target.members.iter().filter(|t| *t != from) {
                    cluster.set_peer_link(
                        *from,
                        *to,
                        LinkFaults {
                            delay_ms: delay,
                            ..LinkFaults::default()
                        },
                    );
                }
            }
            format!("{delay} ms")
        }
        _ => String::new(),
    }
}
