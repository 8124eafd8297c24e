//! Directed runs: one fault placed at the moment it hurts, for a bug whose
//! window the seeded nemesis hits only by luck. A directed run ends as a
//! campaign does (heal, observe, check), so the same checkers judge it.
//!
//! [`cut_off_past_its_lease`] makes a stale completion. Its steps wait for
//! what the probe logs show, not for fixed times:
//!
//! ```text
//! 0 s      worker A starts the task's only attempt (an 8 s probe)
//! p        A is cut off from every coordinator (p: as soon as its probe
//!          log shows the start); its heartbeats stall
//! ~p+3 s   A's lease expires; the task waits out its 200 ms backoff
//! ~p+4 s   worker B leases the task and starts a second 8 s attempt
//! 8 s      A's attempt ends; its report stalls on the cut
//! heal     once A's attempt ended and B's started: A's report, sent
//!          with the old token, arrives while B still holds the lease
//! ~p+12 s  B's attempt ends
//! ```
//!
//! A's attempt ended before A could hear that its lease was gone, so
//! nothing on the worker stops the report: only the coordinator's fencing
//! can refuse it. B's attempt still runs for about 4 s after the heal (its
//! lag behind A), far longer than the report takes to land.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::campaign::{self, Summary};
use crate::harness::{Cluster, ClusterSpec, HarnessError};
use crate::history::{Op, OpType};
use crate::observation::ProbeRecord;
use crate::proxy::LinkFaults;
use crate::workload;

/// How long each attempt of the directed job's task lasts: past the lease
/// TTL (3 s), so that the first attempt outlives its lease.
const PROBE_MS: u64 = 8_000;

/// Longest wait for each step (an attempt to start, to end).
const STEP_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long the job may take to end after the heal.
const HEAL_BOUND: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct DirectedConfig {
    /// Planted bugs for the coordinators (`DROVER_PLANTED_BUGS`).
    pub planted_bugs: String,
    /// Where the run's files go.
    pub run_dir: PathBuf,
    /// The `drover` binary.
    pub binary: PathBuf,
}

/// Cuts the worker holding a task's attempt off from the cluster until the
/// attempt has ended and another worker holds the task, then heals (the
/// timeline is in the module's docs).
pub async fn cut_off_past_its_lease(config: DirectedConfig) -> Result<Summary, HarnessError> {
    let history = campaign::open_run_dir(&config.run_dir)?;
    // Two workers of one slot: the second is idle and takes the task as
    // soon as the first one's lease expires.
    let cluster = Cluster::start(ClusterSpec {
        nodes: 3,
        spare_nodes: 0,
        workers: 2,
        worker_slots: 1,
        run_dir: config.run_dir.clone(),
        binary: config.binary.clone(),
        planted_bugs: config.planted_bugs.clone(),
    })
    .await?;
    let client = workload::client(cluster.client_addresses());
    let key = "directed-cut-off-past-its-lease";
    if workload::submit("client-0", &client, &history, key, &one_probe_spec(key))
        .await
        .is_none()
    {
        return Err(HarnessError::Rpc(
            "the directed job was not accepted".into(),
        ));
    }

    let probes = cluster.run_dir().join("probes");
    let first = wait_for(&probes, "the first attempt to start", |records| {
        records.iter().find(|r| r.event == "start").cloned()
    })
    .await?;
    let holder = holder_slot(&cluster, &first)?;
    history.record(Op::new("nemesis", OpType::Invoke, "partition-worker"));
    cluster.set_worker_links(holder, LinkFaults::partitioned());
    wait_for(&probes, "the first attempt to end", |records| {
        records
            .iter()
            .find(|r| r.token == first.token && r.event != "start")
            .map(|_| ())
    })
    .await?;
    wait_for(&probes, "a second attempt to start", |records| {
        records
            .iter()
            .find(|r| r.event == "start" && r.token > first.token)
            .map(|_| ())
    })
    .await?;
    history.record(
        Op::new("nemesis", OpType::Info, "partition-worker").value(format!("worker {holder}")),
    );

    let faults = BTreeMap::from([("partition-worker".to_owned(), 1)]);
    campaign::conclude(cluster, &history, 0, faults, HEAL_BOUND).await
}

/// A job of one probe task.
fn one_probe_spec(key: &str) -> String {
    workload::probe_job(
        key,
        &format!("    - name: only\n      kind: probe\n      config: {{ms: {PROBE_MS}}}\n"),
    )
}

/// The worker slot that ran `attempt`.
fn holder_slot(cluster: &Cluster, attempt: &ProbeRecord) -> Result<usize, HarnessError> {
    (0..cluster.worker_count())
        .find(|w| cluster.worker_id(*w) == attempt.worker_id)
        .ok_or_else(|| {
            HarnessError::Timeout(format!(
                "no worker slot runs {}, which ran the first attempt",
                attempt.worker_id
            ))
        })
}

/// Polls the probe logs in `dir` until `found` finds something in them.
async fn wait_for<T>(
    dir: &std::path::Path,
    what: &str,
    found: impl Fn(&[ProbeRecord]) -> Option<T>,
) -> Result<T, HarnessError> {
    let until = Instant::now() + STEP_WAIT_MAX;
    while Instant::now() < until {
        if let Some(t) = found(&campaign::read_probes(dir)) {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(HarnessError::Timeout(format!(
        "waiting {STEP_WAIT_MAX:?} for {what}"
    )))
}
