//! The scaling signal as a coordinator serves it: `GET /v1/scaling`, the
//! `drover_scaling_*` gauges, and CloudWatch Embedded Metric Format lines.
//!
//! The numbers come from the replicated state ([`crate::state::scaling`]);
//! this keeps what a process adds: the slots assumed for a pool with no
//! worker yet, and the pools it has seen with work or workers, which keep
//! being reported (at 0 when their work is done) so that an autoscaler or a
//! CloudWatch alarm sees the pool drain rather than go silent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::raft::node::{NodeError, NodeHandle};
use crate::state::scaling::{POOLS_MAX, PoolSignal, ScalingSettings};

/// The signal at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingReport {
    /// The state's time (the latest applied entry), Unix ms.
    pub state_time_ms: i64,
    /// Every pool, default first.
    pub pools: Vec<PoolSignal>,
}

/// The scaling signal of one coordinator; clones share the pools seen.
#[derive(Debug, Clone)]
pub struct Scaling {
    inner: Arc<Mutex<Seen>>,
}

#[derive(Debug)]
struct Seen {
    default_slots: u32,
    pools: BTreeSet<BTreeMap<String, String>>,
}

impl Default for Scaling {
    fn default() -> Self {
        Self::new(ScalingSettings::default().default_slots)
    }
}

impl Scaling {
    /// A signal assuming `default_slots` for pools with no live worker.
    pub fn new(default_slots: u32) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Seen {
                default_slots: default_slots.max(1),
                pools: BTreeSet::new(),
            })),
        }
    }

    /// The slots assumed for a pool with no live worker.
    pub fn set_default_slots(&self, slots: u32) {
        if let Ok(mut seen) = self.inner.lock() {
            seen.default_slots = slots.max(1);
        }
    }

    /// Reads the signal from `node`'s state (local, so any coordinator
    /// answers; a follower's is at most its apply lag behind), reporting
    /// pool `also` too even if it has no work (an autoscaler asking for
    /// its own pool).
    pub async fn read(
        &self,
        node: &NodeHandle,
        also: Option<BTreeMap<String, String>>,
    ) -> Result<ScalingReport, NodeError> {
        let mut settings = match self.inner.lock() {
            Ok(seen) => ScalingSettings {
                default_slots: seen.default_slots,
                known_pools: seen.pools.iter().cloned().collect(),
            },
            Err(_) => ScalingSettings::default(),
        };
        settings.known_pools.extend(also);
        let report = node
            .read_local(move |sm| ScalingReport {
                state_time_ms: sm.core().now_ms,
                pools: sm.scaling(&settings),
            })
            .await?;
        if let Ok(mut seen) = self.inner.lock() {
            // Only pools that had work or workers: a name merely asked for
            // over the unauthenticated HTTP port is answered, not kept.
            let active = report.pools.iter().filter(|p| {
                p.ready_tasks + p.held_back_tasks + p.running_tasks + p.alive_workers > 0
            });
            for pool in active {
                if seen.pools.len() >= POOLS_MAX {
                    break;
                }
                seen.pools.insert(pool.labels.clone());
            }
        }
        Ok(report)
    }
}

/// CloudWatch namespace the EMF lines use unless told otherwise.
pub const EMF_NAMESPACE: &str = "Drover";

/// One CloudWatch Embedded Metric Format line for `pool`: the metrics, with
/// the pool as their dimension, for a target-tracking or step scaling
/// policy on the Auto Scaling group that runs that pool's workers. Written
/// to stdout, a line reaches CloudWatch through the CloudWatch agent (or
/// any log shipper that passes EMF on) without an AWS SDK here.
pub fn emf_line(namespace: &str, timestamp_ms: i64, pool: &PoolSignal) -> String {
    let metric = |name: &str, unit: &str| serde_json::json!({"Name": name, "Unit": unit});
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Pool"]],
                "Metrics": [
                    metric("DesiredWorkers", "Count"),
                    metric("LoadPerWorker", "None"),
                    metric("ReadyTasks", "Count"),
                    metric("HeldBackTasks", "Count"),
                    metric("RunningTasks", "Count"),
                    metric("AliveWorkers", "Count"),
                    metric("OldestReadyTaskAge", "Seconds"),
                ],
            }],
        },
        "Pool": pool.pool,
        "DesiredWorkers": pool.desired_workers,
        "LoadPerWorker": pool.load_per_worker,
        "ReadyTasks": pool.ready_tasks,
        "HeldBackTasks": pool.held_back_tasks,
        "RunningTasks": pool.running_tasks,
        "AliveWorkers": pool.alive_workers,
        "OldestReadyTaskAge": pool.oldest_ready_age_ms as f64 / 1000.0,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_each_metric_with_the_pool_as_dimension() {
        let pool = PoolSignal {
            pool: "pool=gpu".into(),
            labels: BTreeMap::from([("pool".to_owned(), "gpu".to_owned())]),
            desired_workers: 3,
            ready_tasks: 9,
            held_back_tasks: 2,
            running_tasks: 1,
            slots_per_worker: 4,
            alive_workers: 1,
            draining_workers: 0,
            load_per_worker: 2.5,
            oldest_ready_age_ms: 1_500,
            reasons: Vec::new(),
        };
        let line: serde_json::Value =
            serde_json::from_str(&emf_line("Drover", 1_700_000_000_000, &pool)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(directive["Namespace"], "Drover");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Pool"]]));
        // Every declared metric has a value at the top level, as EMF
        // requires, and the dimension too.
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} missing in {line}");
        }
        assert_eq!(line["Pool"], "pool=gpu");
        assert_eq!(line["DesiredWorkers"], 3);
        assert_eq!(line["OldestReadyTaskAge"], 1.5);
    }
}
