//! The deterministic simulation tier: a sweep over many seeds, the proof
//! that a seed replays byte for byte, and the proofs that each planted bug
//! is caught.
//!
//! - `DROVER_SIM_SEEDS`: how many seeds the sweep runs (default 20; long
//!   runs on demand), from `DROVER_SIM_FIRST_SEED` (default 1).
//! - `DROVER_SIM_SEED` (+ `DROVER_SIM_PROFILE`, `DROVER_PLANTED_BUGS`):
//!   the `replay` test runs that one seed and prints its summary, and its
//!   history with `DROVER_SIM_HISTORY=1`.

use std::collections::BTreeSet;

use drover_chaos::sim::{SimConfig, Summary, run_seed};
use drover_coordinator::planted::PlantedBugs;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The seeds CI runs: `DROVER_SIM_SEEDS` of them, 20 by default.
fn seeds(default: u64) -> std::ops::Range<u64> {
    let first = env_u64("DROVER_SIM_FIRST_SEED").unwrap_or(1);
    first..first + env_u64("DROVER_SIM_SEEDS").unwrap_or(default)
}

#[test]
fn every_seed_keeps_every_invariant() {
    let mut failed: Vec<Summary> = Vec::new();
    for seed in seeds(20) {
        let run = run_seed(seed, &SimConfig::default());
        eprint!("{}", run.summary);
        if !run.summary.passed() {
            failed.push(run.summary);
        }
    }
    let report: String = failed.iter().map(ToString::to_string).collect();
    assert!(
        failed.is_empty(),
        "{} seeds failed:\n{report}",
        failed.len()
    );
}

#[test]
fn a_seed_replays_byte_for_byte() {
    for seed in [3, 11] {
        let first = run_seed(seed, &SimConfig::default());
        let second = run_seed(seed, &SimConfig::default());
        let (a, b) = (first.history.render(), second.history.render());
        assert!(a.lines().count() > 200, "a real workload ran:\n{a}");
        if a != b {
            let line = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "seed {seed} diverged at history line {line}:\n{}\n{}",
                a.lines().nth(line).unwrap_or("(end)"),
                b.lines().nth(line).unwrap_or("(end)")
            );
        }
        assert_eq!(first.summary.to_string(), second.summary.to_string());
    }
    // And different seeds are different runs.
    assert_ne!(
        run_seed(1, &SimConfig::default()).history.render(),
        run_seed(2, &SimConfig::default()).history.render()
    );
}

/// Runs the CI seeds with `bug` planted until one of them violates one of
/// `expected`; fails if none does.
fn caught(bug: &str, expected: &[&str]) {
    let planted: PlantedBugs = bug.parse().unwrap();
    let mut seen = Vec::new();
    for seed in seeds(20) {
        let run = run_seed(seed, &SimConfig::with_planted(planted));
        let kinds: BTreeSet<&str> = run.summary.violations.iter().map(|v| v.invariant).collect();
        if expected.iter().any(|e| kinds.contains(e)) {
            eprint!("{bug} caught:\n{}", run.summary);
            return;
        }
        seen.push((seed, kinds));
    }
    panic!("no seed caught the planted bug {bug} as one of {expected:?}; seen: {seen:?}");
}

#[test]
fn a_skipped_fencing_check_is_caught() {
    caught("skip-fencing", &["fenced-completion"]);
}

#[test]
fn a_double_lease_is_caught() {
    caught("double-lease", &["no-overlapping-grants"]);
}

#[test]
fn an_ack_before_fsync_is_caught() {
    caught(
        "ack-before-fsync",
        &[
            "acked-submit-durable",
            "acked-completion-durable",
            "replicas-agree",
            "nodes-restart",
        ],
    );
}

/// Known bug: a node that joins with `--join` and catches up by log (the
/// leader has not compacted past the join) never learns the voters the
/// cluster was bootstrapped with, which live only in each bootstrap node's
/// stored ConfState, not in the log. It ends up believing it is the only
/// voter, elects itself when the leader goes quiet, and commits alone:
/// replicas diverge and acknowledged writes are lost. Remove `ignore` once
/// it is fixed.
#[test]
#[ignore = "known bug: a node joining by log replay believes it is the only voter"]
fn membership_changes_keep_every_invariant() {
    let config = SimConfig::profile("membership").unwrap();
    let mut failed = Vec::new();
    for seed in seeds(12) {
        let run = run_seed(seed, &config);
        eprint!("{}", run.summary);
        if !run.summary.passed() {
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

#[test]
fn replay() {
    let Some(seed) = env_u64("DROVER_SIM_SEED") else {
        return;
    };
    let profile = std::env::var("DROVER_SIM_PROFILE").unwrap_or_else(|_| "default".into());
    let mut config = SimConfig::profile(&profile).expect("profile is default or membership");
    config.planted = PlantedBugs::from_env().unwrap();
    let started = std::time::Instant::now();
    let run = run_seed(seed, &config);
    if std::env::var("DROVER_SIM_HISTORY").is_ok() {
        println!("{}", run.history.render());
    }
    println!("{}real time: {:?}", run.summary, started.elapsed());
    assert!(run.summary.passed(), "{}", run.summary);
}

/// The known bug above, reduced: three bootstrapped nodes and a fourth
/// that joins while the log is uncompacted. Every node should list the
/// four voters; the joiner lists only itself.
#[test]
#[ignore = "known bug: a node joining by log replay believes it is the only voter"]
fn a_node_joining_by_log_learns_every_voter() {
    use drover_chaos::sim::node::SimNode;
    use drover_coordinator::raft::driver::{conf_change, reply};
    use drover_coordinator::raft::node::NodeConfig;
    use raft::prelude::ConfChangeType;

    let config = |id: u64, members: &[u64], bootstrap: bool| {
        let mut c = NodeConfig::new(id, "/nonexistent/drover-sim");
        c.peers = members.iter().map(|m| (*m, format!("sim:{m}"))).collect();
        c.bootstrap = bootstrap;
        c
    };
    let mut nodes: Vec<SimNode> = (1..=3)
        .map(|id| SimNode::new(id, config(id, &[1, 2, 3], true), 0))
        .collect();
    nodes.push(SimNode::new(4, config(4, &[1, 2, 3, 4], false), 0));
    for node in &mut nodes {
        node.start(0, 7).unwrap();
    }
    let mut added = None;
    // A perfect network: every message arrives within the same 10 ms step.
    for now_ms in (0..8_000u64).step_by(10) {
        for _ in 0..4 {
            let messages: Vec<_> = nodes.iter().flat_map(SimNode::take_outbox).collect();
            for m in messages {
                let to = (m.to - 1) as usize;
                nodes[to].call(|core| core.step(m));
            }
            for node in &mut nodes {
                let now = node.now(now_ms);
                node.call(|core| core.turn(now).unwrap());
            }
        }
        if now_ms == 3_000 {
            let leader = nodes
                .iter()
                .position(|n| n.core().is_some_and(|c| c.status().is_leader))
                .expect("a leader within 3 s");
            let (tx, rx) = reply::channel();
            added = Some(rx);
            let cc = conf_change(ConfChangeType::AddLearnerNode, 4);
            nodes[leader].call(|core| core.change_members(cc, Some((4, "sim:4".into())), tx));
        }
    }
    assert!(
        matches!(added.unwrap().try_recv(), Ok(Ok(()))),
        "node 4 was added"
    );
    for node in &nodes {
        let voters: Vec<u64> = node
            .core()
            .unwrap()
            .status()
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        assert_eq!(voters, [1, 2, 3, 4], "node {}'s voters", node.id);
    }
}
