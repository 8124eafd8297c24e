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
    caught_in("default", bug, expected);
}

/// [`caught`] in a named profile.
fn caught_in(profile: &str, bug: &str, expected: &[&str]) {
    let planted: PlantedBugs = bug.parse().unwrap();
    let mut seen = Vec::new();
    for seed in seeds(20) {
        let config = SimConfig {
            planted,
            ..SimConfig::profile(profile).unwrap()
        };
        let run = run_seed(seed, &config);
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
fn one_nodes_wall_clock_taken_for_the_clusters_is_caught() {
    caught_in("fast-clock", "wall-clock-time", &["cluster-time-true"]);
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

/// Nodes removed and fresh ones added, among the other faults. This once
/// caught a node that joined by log replay and never learned the bootstrap
/// voters (they lived only in each bootstrap node's stored ConfState): it
/// believed it was the only voter, elected itself and committed alone.
/// Bootstrapped logs now start from a snapshot that holds the voters, so a
/// joiner always receives them.
#[test]
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

/// Three bootstrapped sim nodes and a fourth that may join, on a perfect
/// network: every message arrives within the same 10 ms step.
mod perfect {
    use drover_chaos::sim::node::{EPOCH_UNIX_MS, SimNode};
    use drover_coordinator::raft::node::NodeConfig;

    fn config(id: u64, members: &[u64], bootstrap: bool) -> NodeConfig {
        let mut c = NodeConfig::new(id, "/nonexistent/drover-sim");
        c.peers = members.iter().map(|m| (*m, format!("sim:{m}"))).collect();
        c.bootstrap = bootstrap;
        c
    }

    /// Nodes 1 to 3 bootstrapped together, and `joiners` that know them
    /// but start blank.
    pub fn cluster(joiners: &[u64]) -> Vec<SimNode> {
        cluster_at(joiners, EPOCH_UNIX_MS)
    }

    /// As [`cluster`], with every node's wall clock starting at
    /// `wall_start_ms` (Unix ms) instead of the simulation's epoch.
    pub fn cluster_at(joiners: &[u64], wall_start_ms: i64) -> Vec<SimNode> {
        let skew = wall_start_ms - EPOCH_UNIX_MS;
        let mut all = vec![1, 2, 3];
        all.extend_from_slice(joiners);
        let mut nodes: Vec<SimNode> = (1..=3)
            .map(|id| SimNode::new(id, config(id, &[1, 2, 3], true), skew))
            .collect();
        for id in joiners {
            nodes.push(SimNode::new(*id, config(*id, &all, false), skew));
        }
        for node in &mut nodes {
            node.start(0, 7).unwrap();
        }
        nodes
    }

    /// Runs the cluster from `from_ms` to `to_ms`, delivering every message.
    pub fn run(nodes: &mut [SimNode], from_ms: u64, to_ms: u64) {
        run_steps(nodes, from_ms, to_ms, 10);
    }

    /// As [`run`], in steps of `step_ms`: every node turns (at most one
    /// Raft tick) and every message is delivered within a step.
    pub fn run_steps(nodes: &mut [SimNode], from_ms: u64, to_ms: u64, step_ms: usize) {
        for now_ms in (from_ms..to_ms).step_by(step_ms) {
            for _ in 0..4 {
                let messages: Vec<_> = nodes.iter().flat_map(SimNode::take_outbox).collect();
                for m in messages {
                    if let Some(to) = nodes.iter_mut().find(|n| n.id == m.to) {
                        to.call(|core| core.step(m));
                    }
                }
                for node in nodes.iter_mut() {
                    let now = node.now(now_ms);
                    node.call(|core| core.turn(now).unwrap());
                }
            }
        }
    }

    /// The index of the leader in `nodes`.
    pub fn leader(nodes: &[SimNode]) -> usize {
        find_leader(nodes).expect("a leader")
    }

    /// The index of the leader in `nodes`, if one is up.
    pub fn find_leader(nodes: &[SimNode]) -> Option<usize> {
        nodes
            .iter()
            .position(|n| n.core().is_some_and(|c| c.status().is_leader))
    }

    /// The voters node `node` believes in.
    pub fn voters(node: &SimNode) -> Vec<u64> {
        node.core()
            .unwrap()
            .status()
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect()
    }
}

/// The bug above, reduced: three bootstrapped nodes and a fourth that
/// joins before any checkpoint. Every node must list the four voters; the
/// joiner used to list only itself.
#[test]
fn a_node_joining_by_log_learns_every_voter() {
    use drover_coordinator::raft::driver::{conf_change, reply};
    use raft::prelude::ConfChangeType;

    let mut nodes = perfect::cluster(&[4]);
    perfect::run(&mut nodes, 0, 3_000);
    let leader = perfect::leader(&nodes);
    let (tx, mut added) = reply::channel();
    let cc = conf_change(ConfChangeType::AddLearnerNode, 4);
    nodes[leader].call(|core| core.change_members(cc, Some((4, "sim:4".into())), tx));
    perfect::run(&mut nodes, 3_000, 8_000);
    assert!(matches!(added.try_recv(), Ok(Ok(()))), "node 4 was added");
    for node in &nodes {
        assert_eq!(
            perfect::voters(node),
            [1, 2, 3, 4],
            "node {}'s voters",
            node.id
        );
    }
}

/// Raft runs one membership change at a time. A second change asked for
/// while the first is in flight is refused at once with a retryable error,
/// instead of being turned into an empty entry that its caller waits on
/// until a timeout; once the first has applied, the second goes through.
#[test]
fn a_second_membership_change_waits_for_the_first() {
    use drover_coordinator::raft::driver::{conf_change, reply};
    use drover_coordinator::raft::node::NodeError;
    use raft::prelude::ConfChangeType;

    let mut nodes = perfect::cluster(&[4, 5]);
    perfect::run(&mut nodes, 0, 3_000);
    let leader = perfect::leader(&nodes);
    let add = |id: u64| {
        let (tx, rx) = reply::channel();
        let cc = conf_change(ConfChangeType::AddLearnerNode, id);
        (cc, Some((id, format!("sim:{id}"))), tx, rx)
    };
    let (cc4, member4, tx4, mut rx4) = add(4);
    let (cc5, member5, tx5, mut rx5) = add(5);
    nodes[leader].call(|core| {
        core.change_members(cc4, member4, tx4);
        core.change_members(cc5, member5, tx5);
    });
    assert!(
        matches!(rx5.try_recv(), Ok(Err(NodeError::ChangeInProgress))),
        "the second change is refused at once"
    );
    perfect::run(&mut nodes, 3_000, 6_000);
    assert!(
        matches!(rx4.try_recv(), Ok(Ok(()))),
        "the first change applied"
    );
    // Node 4's promotion to voter is itself a change; retry until free.
    let mut added5 = false;
    for step in 0..20 {
        let (cc5, member5, tx5, mut rx5) = add(5);
        let leader = perfect::leader(&nodes);
        nodes[leader].call(|core| core.change_members(cc5, member5, tx5));
        let from = 6_000 + step * 1_000;
        perfect::run(&mut nodes, from, from + 1_000);
        match rx5.try_recv() {
            Ok(Ok(())) => {
                added5 = true;
                break;
            }
            Ok(Err(NodeError::ChangeInProgress)) => continue,
            other => panic!("adding node 5: {other:?}"),
        }
    }
    assert!(added5, "node 5 was added once node 4's changes applied");
    perfect::run(&mut nodes, 30_000, 34_000);
    for node in &nodes {
        assert_eq!(
            perfect::voters(node),
            [1, 2, 3, 4, 5],
            "node {}'s voters",
            node.id
        );
    }
}

/// One coordinator's wall clock an hour ahead, then (another run) an hour
/// behind, leading or not, across crashes, partitions and leader
/// transfers: no lease expires early (`leases-not-expired-early`), no entry
/// is stamped ahead of true time (`cluster-time-true`), and every job
/// still ends, with every other invariant kept.
#[test]
fn a_wrong_wall_clock_moves_neither_leases_nor_the_clusters_time() {
    for profile in ["fast-clock", "slow-clock"] {
        let config = SimConfig::profile(profile).unwrap();
        let mut failed = Vec::new();
        for seed in seeds(6) {
            let run = run_seed(seed, &config);
            eprint!("{}", run.summary);
            if !run.summary.passed() {
                failed.push(seed);
            }
        }
        assert!(failed.is_empty(), "{profile}: failing seeds: {failed:?}");
    }
}

/// Schedules across a DST transition while the leader fails: it crashes
/// just after a fire, inside the repeated hour (where a fixed-time run must
/// not fire again) and just before the jump (where the skipped run is due),
/// losing what it had not synced, and comes back later. The replicated last
/// fire time decides: every replica ends with exactly the runs the DST rule
/// names, once each.
#[test]
fn a_failover_during_a_dst_transition_neither_skips_nor_doubles_a_run() {
    use drover_chaos::rng::Rng;
    use drover_coordinator::raft::driver::reply;
    use drover_coordinator::state::{Command, SubmitJob};

    let ms = |rfc3339: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    };
    struct Scenario {
        zone: &'static str,
        start: &'static str,
        end: &'static str,
        /// When the leader crashes, and how many seconds it stays down.
        crashes: Vec<(&'static str, u64)>,
        /// Each cron pattern and the fire times it must run, once each.
        schedules: Vec<(&'static str, Vec<&'static str>)>,
    }
    let scenarios = [
        // Berlin falls back at 01:00Z (03:00 CEST -> 02:00 CET).
        Scenario {
            zone: "Europe/Berlin",
            start: "2026-10-25T00:00:00Z",
            end: "2026-10-25T02:30:00Z",
            crashes: vec![
                ("2026-10-25T00:15:02Z", 90),
                ("2026-10-25T01:14:58Z", 60),
                ("2026-10-25T01:30:01Z", 30),
            ],
            schedules: vec![
                (
                    "15 2,3 * * *",
                    vec!["2026-10-25T00:15:00Z", "2026-10-25T02:15:00Z"],
                ),
                ("30 2 * * *", vec!["2026-10-25T00:30:00Z"]),
                (
                    "*/20 * * * *",
                    vec![
                        "2026-10-25T00:20:00Z",
                        "2026-10-25T00:40:00Z",
                        "2026-10-25T01:00:00Z",
                        "2026-10-25T01:20:00Z",
                        "2026-10-25T01:40:00Z",
                        "2026-10-25T02:00:00Z",
                        "2026-10-25T02:20:00Z",
                    ],
                ),
            ],
        },
        // New York springs forward at 07:00Z (02:00 EST -> 03:00 EDT).
        Scenario {
            zone: "America/New_York",
            start: "2026-03-08T06:30:00Z",
            end: "2026-03-08T07:30:00Z",
            crashes: vec![("2026-03-08T06:59:58Z", 30), ("2026-03-08T07:15:03Z", 45)],
            schedules: vec![
                (
                    "15 2,3 * * *",
                    vec!["2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"],
                ),
                ("30 2 * * *", vec!["2026-03-08T07:00:00Z"]),
                (
                    "*/20 * * * *",
                    vec![
                        "2026-03-08T06:40:00Z",
                        "2026-03-08T07:00:00Z",
                        "2026-03-08T07:20:00Z",
                    ],
                ),
            ],
        },
    ];
    for (n, scenario) in scenarios.iter().enumerate() {
        let start_ms = ms(scenario.start);
        let sim_ms = |wall: i64| (wall - start_ms) as u64;
        let mut nodes = perfect::cluster_at(&[], start_ms);
        perfect::run(&mut nodes, 0, 3_000);
        let leader = perfect::leader(&nodes);
        let mut replies = Vec::new();
        for (cron, _) in &scenario.schedules {
            let yaml = format!(
                "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: dst, namespace: sim}}\nspec:\n  \
                 schedule: {{cron: \"{cron}\", timezone: {}, catchup: latest, overlap: allow}}\n  \
                 tasks:\n    - {{name: t, kind: sleep, config: {{ms: 1}}}}\n",
                scenario.zone
            );
            let (tx, rx) = reply::channel();
            let submit = Command::SubmitJob(SubmitJob {
                file: "dst.yaml".into(),
                spec_yaml: yaml,
                params: Vec::new(),
                idempotency_key: None,
                trace_parent: None,
            });
            nodes[leader].call(|core| core.propose(vec![submit], tx));
            replies.push(rx);
        }
        perfect::run(&mut nodes, 3_000, 4_000);
        for mut rx in replies {
            assert!(
                matches!(rx.try_recv(), Ok(Ok(_))),
                "scenario {n}: the schedule was created"
            );
        }
        let mut rng = Rng::new(7 + n as u64);
        let mut restarts: Vec<(u64, usize)> = Vec::new();
        let mut crashed = 0;
        let mut now = 4_000;
        let end = sim_ms(ms(scenario.end));
        let crash_at: Vec<(u64, u64)> = scenario
            .crashes
            .iter()
            .map(|(at, down_s)| (sim_ms(ms(at)), down_s * 1_000))
            .collect();
        while now < end {
            for (at, down_ms) in &crash_at {
                if (now..now + 1_000).contains(at)
                    && let Some(leader) = perfect::find_leader(&nodes)
                {
                    nodes[leader].crash(&mut rng);
                    restarts.push((at + down_ms, leader));
                    crashed += 1;
                }
            }
            restarts.retain(|(when, node)| {
                if *when <= now {
                    nodes[*node].start(now, 7).unwrap();
                    false
                } else {
                    true
                }
            });
            perfect::run_steps(&mut nodes, now, now + 1_000, 1_000);
            now += 1_000;
        }
        for (_, node) in restarts.drain(..) {
            nodes[node].start(now, 7).unwrap();
        }
        assert_eq!(
            crashed,
            crash_at.len(),
            "scenario {n}: a leader was up at each crash"
        );
        // Let every replica catch up with the log.
        perfect::run(&mut nodes, now, now + 3_000);
        for node in &nodes {
            let sm = node.core().expect("every node is up").state_machine();
            let schedules = &sm.core().schedules;
            assert_eq!(schedules.len(), scenario.schedules.len());
            for ((cron, expected), schedule) in scenario.schedules.iter().zip(schedules.values()) {
                assert_eq!(&schedule.cron, cron);
                let mut runs: Vec<i64> = sm
                    .core()
                    .jobs
                    .values()
                    .filter(|j| j.schedule == Some(schedule.id))
                    .filter_map(|j| j.fire_time_ms)
                    .collect();
                runs.sort();
                let expected: Vec<i64> = expected.iter().map(|t| ms(t)).collect();
                assert_eq!(
                    runs, expected,
                    "scenario {n} ({}), node {}: `{cron}` ran once at each fire time of the rule",
                    scenario.zone, node.id
                );
            }
        }
    }
}
