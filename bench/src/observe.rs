//! What the coordinators did during a measured window: CPU and memory of
//! each process (from `/proc`), and from their `/metrics` the fsyncs and
//! how many commands each proposed log entry packed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::local::LocalCluster;
use super::procfs::{self, Sample};
use super::scrape::{Scrape, scrape};

/// One coordinator at the window's start.
#[derive(Debug)]
struct Start {
    id: u64,
    pid: u32,
    http: SocketAddr,
    proc: Option<Sample>,
    metrics: Option<Scrape>,
}

/// A window being measured.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    nodes: Vec<Start>,
}

/// One coordinator over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFigures {
    /// Its id.
    pub id: u64,
    /// Whether it led at the end.
    pub leader: bool,
    /// CPU used, in cores (1.0 = one core busy all the time).
    pub cpu_cores: f64,
    /// Resident memory at the end.
    pub rss_bytes: u64,
    /// Largest resident memory of its life.
    pub peak_rss_bytes: u64,
    /// Synced log writes per second.
    pub fsyncs_per_second: f64,
    /// Entries it proposed per second (the leader's commit rate).
    pub entries_per_second: f64,
    /// Mean commands per proposed entry (0 on a follower).
    pub commands_per_entry: f64,
}

/// The coordinators over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Length of the window.
    pub elapsed: Duration,
    /// One per coordinator that ran throughout.
    pub nodes: Vec<NodeFigures>,
}

/// Starts a window over every running coordinator of `cluster` (none for
/// a cluster the bench did not start: its processes are not visible).
pub async fn open(cluster: Option<&LocalCluster>) -> Window {
    let mut nodes = Vec::new();
    for (id, pid, http) in cluster.map(LocalCluster::running).unwrap_or_default() {
        nodes.push(Start {
            id,
            pid,
            http,
            proc: procfs::sample(pid),
            metrics: scrape(http).await.ok(),
        });
    }
    Window {
        started: Instant::now(),
        nodes,
    }
}

impl Window {
    /// Ends the window.
    pub async fn close(self) -> Figures {
        let elapsed = self.started.elapsed();
        let mut nodes = Vec::new();
        for start in self.nodes {
            let (Some(p0), Some(p1)) = (start.proc, procfs::sample(start.pid)) else {
                continue;
            };
            let m0 = start.metrics.unwrap_or_default();
            let m1 = scrape(start.http).await.unwrap_or_default();
            let delta = |name: &str| (m1.get(name) - m0.get(name)).max(0.0);
            let secs = elapsed.as_secs_f64().max(1e-9);
            let entries = delta("drover_raft_entry_commands_count");
            nodes.push(NodeFigures {
                id: start.id,
                leader: m1.get("drover_raft_is_leader") >= 1.0,
                cpu_cores: procfs::cores_used(p0, p1, elapsed),
                rss_bytes: p1.rss_bytes,
                peak_rss_bytes: p1.peak_rss_bytes,
                fsyncs_per_second: delta("drover_raft_log_fsync_seconds_count") / secs,
                entries_per_second: entries / secs,
                commands_per_entry: if entries > 0.0 {
                    delta("drover_raft_entry_commands_sum") / entries
                } else {
                    0.0
                },
            });
        }
        Figures { elapsed, nodes }
    }
}

/// Mebibytes, for people.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Figures {
    /// The leader's resident memory per task, `tasks` of them, grown since
    /// `before` (at the end, or at its peak): what a backfill costs it.
    pub fn leader_bytes_per_task(&self, before: &Figures, tasks: u64, peak: bool) -> Option<f64> {
        let leader = self.leader()?;
        let base = before.nodes.iter().find(|n| n.id == leader.id)?;
        let bytes = if peak {
            leader.peak_rss_bytes
        } else {
            leader.rss_bytes
        };
        Some((bytes as f64 - base.rss_bytes as f64) / tasks.max(1) as f64)
    }

    /// Two lines on what a backfill of `tasks` cost the leader in memory:
    /// its RSS before, after the submit (`after_submit`) and drained
    /// (`self`), and the same per task.
    pub fn backfill_memory_lines(
        &self,
        before: &Figures,
        after_submit: &Figures,
        tasks: u64,
    ) -> [String; 2] {
        let rss = |f: &Figures, peak: bool| {
            f.leader().map_or("?".into(), |n| {
                mib(if peak { n.peak_rss_bytes } else { n.rss_bytes })
            })
        };
        let per_task = |f: &Figures, peak: bool| {
            f.leader_bytes_per_task(before, tasks, peak)
                .map_or("?".into(), |b| format!("{b:.1} B"))
        };
        [
            format!(
                "leader rss: {} before · {} after submit · {} drained (peak {})",
                rss(before, false),
                rss(after_submit, false),
                rss(self, false),
                rss(self, true),
            ),
            format!(
                "leader memory per task: {} after submit · {} drained · {} at peak",
                per_task(after_submit, false),
                per_task(self, false),
                per_task(self, true),
            ),
        ]
    }

    /// The leader's figures, if it ran throughout.
    pub fn leader(&self) -> Option<&NodeFigures> {
        self.nodes.iter().find(|n| n.leader)
    }

    /// Table lines, one per coordinator.
    pub fn lines(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            return vec![
                "coordinators: not measured (a cluster the bench did not start)".to_owned(),
            ];
        }
        self.nodes
            .iter()
            .map(|n| {
                let role = if n.leader { "leader" } else { "follower" };
                let batching = if n.leader {
                    format!(
                        " · {:.0} entries/s, {:.1} commands/entry",
                        n.entries_per_second, n.commands_per_entry
                    )
                } else {
                    String::new()
                };
                format!(
                    "node {} ({role}): cpu {:.2} cores · rss {} (peak {}) · {:.0} fsyncs/s{batching}",
                    n.id,
                    n.cpu_cores,
                    mib(n.rss_bytes),
                    mib(n.peak_rss_bytes),
                    n.fsyncs_per_second,
                )
            })
            .collect()
    }

    /// For `--json`.
    pub fn json(&self) -> Value {
        Value::Array(
            self.nodes
                .iter()
                .map(|n| {
                    json!({
                        "node": n.id,
                        "leader": n.leader,
                        "cpuCores": n.cpu_cores,
                        "rssBytes": n.rss_bytes,
                        "peakRssBytes": n.peak_rss_bytes,
                        "fsyncsPerSecond": n.fsyncs_per_second,
                        "entriesPerSecond": n.entries_per_second,
                        "commandsPerEntry": n.commands_per_entry,
                    })
                })
                .collect(),
        )
    }
}
