//! The scaling signal as CloudWatch embedded-metric-format lines on
//! stdout, for a log agent to turn into metrics an AWS scaling policy
//! follows.

use std::io::Write;
use std::time::Duration;

use drover_coordinator::raft::node::NodeHandle;
use drover_coordinator::scaling::{Scaling, emf_line};

/// Prints the scaling signal as EMF lines every `interval` while this node
/// leads (followers stay quiet, so each pool gets one line per interval).
/// Runs until aborted.
pub async fn print(node: NodeHandle, scaling: Scaling, interval: Duration, namespace: String) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !node.status().is_leader {
            continue;
        }
        match scaling.read(&node, None).await {
            Ok(report) => {
                let now = chrono::Utc::now().timestamp_millis();
                let mut out = std::io::stdout().lock();
                for pool in &report.pools {
                    let _ = writeln!(out, "{}", emf_line(&namespace, now, pool));
                }
                let _ = out.flush();
            }
            Err(e) => tracing::warn!(error = %e, "EMF: the scaling signal could not be read"),
        }
    }
}
