//! Committed commands per second and commit latency of a 3-node cluster on
//! this machine: three coordinators in one process, talking real gRPC over
//! loopback, each with its own raft-engine log (fsync'd) and sled store.
//!
//! Concurrency 1 is the reference (no batching possible: one command per
//! entry per round trip); higher concurrency shows what batching buys. Each
//! proposal is one small command (`SetNamespaceWeight`).
//!
//! Run: `cargo bench -p drover-coordinator --bench raft_commit`
//! (`RAFT_BENCH_SECS` sets seconds per level, default 3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drover_coordinator::raft::node::NodeHandle;
use drover_coordinator::server::{self, ServerConfig};
use drover_coordinator::state::Command;

async fn cluster(dir: &std::path::Path) -> (Vec<NodeHandle>, Vec<server::Started>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut handles = Vec::new();
    let mut started = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let mut config = ServerConfig::new(id, dir.join(format!("n{id}")));
        config.peers = peers.clone();
        config.checkpoint_entries = 1_000_000;
        let (s, serve) = server::start(config, listener, std::future::pending()).unwrap();
        tokio::spawn(serve);
        handles.push(s.node.clone());
        started.push(s);
    }
    (handles, started)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::var("RAFT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _started) = cluster(dir.path()).await;
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| n.status().is_leader) {
            break n.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("3-node cluster, real gRPC on loopback, fsync'd raft-engine logs, {secs} s per level");
    println!(
        "{:>12} {:>14} {:>10} {:>10} {:>10} {:>14}",
        "concurrency", "commands/s", "p50", "p99", "p999", "cmds/entry"
    );
    let mut reference = None;
    for concurrency in [1usize, 16, 256, 1024] {
        let stop = Arc::new(AtomicBool::new(false));
        let applied_before = leader.status().applied_index;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..concurrency {
            let node = leader.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let command = Command::SetNamespaceWeight {
                        namespace: format!("bench-{c}"),
                        weight: 1 + (i % 100),
                    };
                    i += 1;
                    let t = Instant::now();
                    if node.propose(vec![command]).await.is_ok() {
                        latencies.push(t.elapsed());
                    }
                }
                latencies
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let entries = leader.status().applied_index - applied_before;
        latencies.sort();
        let rate = latencies.len() as f64 / elapsed;
        let ratio = match reference {
            None => {
                reference = Some(rate);
                String::new()
            }
            Some(r) => format!("  ({:.1}x reference)", rate / r),
        };
        println!(
            "{:>12} {:>14.0} {:>10.2?} {:>10.2?} {:>10.2?} {:>14.1}{ratio}",
            concurrency,
            rate,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            latencies.len() as f64 / entries.max(1) as f64,
        );
    }
    println!(
        "leader fsync of the last Ready: {} µs",
        leader.status().last_fsync_us
    );
}
