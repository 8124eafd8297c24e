//! The coordinator's Prometheus metrics: their definitions, their
//! registration, and the OpenMetrics text a scrape returns.
//!
//! Two kinds of metric live here:
//!
//! - **Observed as they happen**: worker rpc counts and latencies, tasks
//!   granted per lease, and the duration of each synced Raft log write.
//!   The services and the Raft driver hold clones of the handles (each an
//!   `Arc` inside), so recording is an atomic add or a short lock.
//! - **Computed at scrape time** from this node's state machine and Raft
//!   status: tasks per state and namespace, the ready backlog, the oldest
//!   ready task's wait, workers, term, indexes and leadership. They are
//!   local reads, so a follower reports its own (possibly trailing) view;
//!   scrape the leader for the cluster's backlog.
//!
//! Every name starts with `drover_`; `ARCHITECTURE.md` lists them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::raft::node::{NodeHandle, NodeStatus};
use crate::scaling::Scaling;
use crate::state::Stats;
use crate::state::scaling::PoolSignal;
use crate::state::tally::Tally;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets of worker rpcs, 0.5 ms to about 65 s: a lease is a long
/// poll of up to 30 s, the rest are one Raft commit.
fn rpc_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 18)
}

/// Buckets of a synced log write, 50 µs to about 1.6 s: a good disk syncs
/// in well under a millisecond, a struggling one in hundreds.
fn fsync_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.00005, 2.0, 16)
}

/// Buckets of commands packed into one proposed log entry, up to
/// `ENTRY_COMMANDS_MAX` (4096).
fn entry_command_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 13)
}

/// Buckets of tasks granted by one lease call, up to `LEASE_BATCH_MAX`.
fn grant_buckets() -> impl Iterator<Item = f64> {
    [
        0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
    ]
    .into_iter()
}

/// A `WorkerService` method, as the `method` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerRpc {
    /// `Register`.
    Register,
    /// `Lease`.
    Lease,
    /// `Heartbeat`.
    Heartbeat,
    /// `Complete`.
    Complete,
    /// `CompleteBatch`.
    CompleteBatch,
    /// `Fail`.
    Fail,
    /// `Release`.
    Release,
}

impl WorkerRpc {
    fn as_str(self) -> &'static str {
        match self {
            WorkerRpc::Register => "register",
            WorkerRpc::Lease => "lease",
            WorkerRpc::Heartbeat => "heartbeat",
            WorkerRpc::Complete => "complete",
            WorkerRpc::CompleteBatch => "complete_batch",
            WorkerRpc::Fail => "fail",
            WorkerRpc::Release => "release",
        }
    }
}

/// How a worker rpc ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcOutcome {
    /// Answered and, for completions and failures, accepted.
    Ok,
    /// Answered, but the report was refused because the lease had ended
    /// (`accepted = false`): a fenced zombie attempt.
    Rejected,
    /// Answered with an error status (not the leader, stale token, ...).
    Error,
}

impl RpcOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RpcOutcome::Ok => "ok",
            RpcOutcome::Rejected => "rejected",
            RpcOutcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    service: &'static str,
    reason: &'static str,
}

/// Why a request was refused, for `drover_requests_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or a bad, revoked or expired token.
    Unauthenticated,
    /// The caller's role or namespaces, or the namespace's policy, do not
    /// allow it.
    PermissionDenied,
    /// Over the caller's rate limit.
    RateLimited,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::PermissionDenied => "permission_denied",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabels {
    state: &'static str,
    namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkerLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobEndLabels {
    namespace: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    namespace: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

/// Counters that follow the state machine's running totals ([`Tally`]).
#[derive(Debug, Default)]
struct TallyCounters {
    jobs_finished: Family<JobEndLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    stale_rejections: Family<NamespaceLabels, Counter>,
    /// The totals at the previous scrape; counters advance by the
    /// difference.
    last: std::sync::Mutex<Tally>,
}

impl TallyCounters {
    fn follow(&self, now: &Tally) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // A total below the last one means the state was replaced (a
        // snapshot installed): count what it has done since.
        let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
        for (namespace, states) in &now.jobs_finished {
            for (state, n) in states {
                let before = last
                    .jobs_finished
                    .get(namespace)
                    .and_then(|m| m.get(state))
                    .copied()
                    .unwrap_or(0);
                self.jobs_finished
                    .get_or_create(&JobEndLabels {
                        namespace: namespace.clone(),
                        state: state.as_str(),
                    })
                    .inc_by(delta(*n, before));
            }
        }
        for (namespace, outcomes) in &now.attempts {
            for (outcome, n) in outcomes {
                let before = last
                    .attempts
                    .get(namespace)
                    .and_then(|m| m.get(outcome))
                    .copied()
                    .unwrap_or(0);
                self.attempts
                    .get_or_create(&AttemptLabels {
                        namespace: namespace.clone(),
                        outcome: outcome.as_str(),
                    })
                    .inc_by(delta(*n, before));
            }
        }
        for (namespace, n) in &now.stale_rejections {
            let before = last.stale_rejections.get(namespace).copied().unwrap_or(0);
            self.stale_rejections
                .get_or_create(&NamespaceLabels {
                    namespace: namespace.clone(),
                })
                .inc_by(delta(*n, before));
        }
        *last = now.clone();
    }
}

/// The scaling signal per pool, set at each scrape.
#[derive(Debug, Default)]
struct ScalingGauges {
    desired_workers: Family<PoolLabels, Gauge>,
    load_per_worker: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    ready_tasks: Family<PoolLabels, Gauge>,
    held_back_tasks: Family<PoolLabels, Gauge>,
    running_tasks: Family<PoolLabels, Gauge>,
    alive_workers: Family<PoolLabels, Gauge>,
    oldest_ready_age: Family<PoolLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// Gauges set from the state machine at each scrape.
#[derive(Debug, Default)]
struct StateGauges {
    tasks: Family<TaskLabels, Gauge>,
    ready_tasks: Gauge,
    ready_jobs: Gauge,
    oldest_ready_age: Gauge<f64, AtomicU64>,
    workers: Family<WorkerLabels, Gauge>,
    workers_alive: Gauge,
    read_failures: Counter,
    totals: TallyCounters,
}

/// Gauges set from the Raft status at each scrape.
#[derive(Debug, Default)]
struct RaftGauges {
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    apply_lag: Gauge,
    snapshot_index: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// One scrape at a time: a scrape rewrites the state gauges (clearing
    /// namespaces that are gone) and then encodes, and a concurrent scrape
    /// must not encode in between.
    scrape: tokio::sync::Mutex<()>,
    state: StateGauges,
    raft: RaftGauges,
    pools: ScalingGauges,
    scaling: Scaling,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<MethodLabels, Histogram>,
    refused: Family<RefusalLabels, Counter>,
    lease_granted: Histogram,
    log_fsync: Histogram,
    entry_commands: Histogram,
}

/// Registers the scaling signal's gauges (per pool).
fn register_scaling(registry: &mut Registry, pools: &ScalingGauges) {
    for (name, help, family) in [
        (
            "scaling_desired_workers",
            "Workers each pool should have: ceil((ready tasks that can run now + running tasks) / slots per worker); see GET /v1/scaling for the reasons",
            &pools.desired_workers,
        ),
        (
            "scaling_ready_tasks",
            "Ready tasks per pool that a free slot would lease now (not those held back by maxParallel)",
            &pools.ready_tasks,
        ),
        (
            "scaling_held_back_tasks",
            "Ready tasks per pool held back by a job's or template's maxParallel; they ask for no workers",
            &pools.held_back_tasks,
        ),
        (
            "scaling_running_tasks",
            "Leased tasks per pool",
            &pools.running_tasks,
        ),
        (
            "scaling_alive_workers",
            "Live workers whose labels include the pool's",
            &pools.alive_workers,
        ),
    ] {
        registry.register(name, help, family.clone());
    }
    registry.register(
        "scaling_load_per_worker",
        "(ready + running tasks) / (slots per worker x live workers, at least one) per pool: the metric for a target-tracking policy, target 1",
        pools.load_per_worker.clone(),
    );
    registry.register_with_unit(
        "scaling_oldest_ready_task_age",
        "How long each pool's oldest leasable ready task has waited",
        Unit::Seconds,
        pools.oldest_ready_age.clone(),
    );
}

/// Registers the gauges and totals read from the state machine.
fn register_state(registry: &mut Registry, state: &StateGauges) {
    registry.register(
        "tasks",
        "Tasks per state and namespace, over the jobs this node's state holds (finished jobs count until they are collected)",
        state.tasks.clone(),
    );
    registry.register(
        "ready_tasks",
        "Tasks ready to be leased: the backlog that more workers would drain",
        state.ready_tasks.clone(),
    );
    registry.register(
        "ready_jobs",
        "Jobs with a template that can lease now",
        state.ready_jobs.clone(),
    );
    registry.register_with_unit(
        "oldest_ready_task_age",
        "How long the longest-waiting ready task has waited, measured on the state machine's clock (the latest applied entry's time, at most about a second behind the leader's wall clock); 0 with no ready task",
        Unit::Seconds,
        state.oldest_ready_age.clone(),
    );
    registry.register(
        "workers",
        "Registered workers per state (alive, draining, lost)",
        state.workers.clone(),
    );
    registry.register(
        "workers_alive",
        "Registered workers not lost (alive or draining)",
        state.workers_alive.clone(),
    );
    registry.register(
        "metrics_state_read_failures",
        "Scrapes that could not read the state machine (node stopped or overloaded) and showed the previous scrape's state gauges",
        state.read_failures.clone(),
    );
    registry.register(
        "jobs_finished",
        "Jobs that reached a terminal state, by namespace and state, as applied by this node since it started (every replica counts the same jobs: aggregate with max, not sum)",
        state.totals.jobs_finished.clone(),
    );
    registry.register(
        "task_attempts_finished",
        "Task attempts that ended, by namespace and outcome (succeeded, skipped, failed, lease_expired, timed_out, released), as applied by this node since it started",
        state.totals.attempts.clone(),
    );
    registry.register(
        "stale_token_rejections",
        "Completions, failures and heartbeats refused for a stale fencing token, by namespace: fencing doing its job",
        state.totals.stale_rejections.clone(),
    );
}

/// Registers the Raft gauges and histograms.
fn register_raft(
    registry: &mut Registry,
    raft: &RaftGauges,
    log_fsync: &Histogram,
    entry_commands: &Histogram,
) {
    registry.register("raft_term", "Current Raft term", raft.term.clone());
    registry.register(
        "raft_commit_index",
        "Highest log index this node knows to be committed",
        raft.commit_index.clone(),
    );
    registry.register(
        "raft_applied_index",
        "Highest log index applied to this node's state machine",
        raft.applied_index.clone(),
    );
    registry.register(
        "raft_apply_lag_entries",
        "Committed entries not yet applied on this node (commit index minus applied index)",
        raft.apply_lag.clone(),
    );
    registry.register(
        "raft_snapshot_index",
        "Index of the latest checkpoint; the log is compacted up to it",
        raft.snapshot_index.clone(),
    );
    registry.register(
        "raft_is_leader",
        "1 when this node is the Raft leader, else 0",
        raft.is_leader.clone(),
    );
    registry.register(
        "raft_leader_id",
        "Id of the leader this node knows, 0 when none",
        raft.leader_id.clone(),
    );
    registry.register_with_unit(
        "raft_log_fsync",
        "Duration of each synced raft-engine write (one per Raft Ready that must be durable: its entries and hard state, then fsync)",
        Unit::Seconds,
        log_fsync.clone(),
    );
    registry.register(
        "raft_entry_commands",
        "Commands packed into each log entry this node proposed as leader: how well concurrent requests are batched",
        entry_commands.clone(),
    );
}

/// The coordinator's metrics; clones share one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every coordinator metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("drover");
        let state = StateGauges::default();
        let raft = RaftGauges::default();
        let pools = ScalingGauges::default();
        register_scaling(&mut registry, &pools);
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let refused = Family::<RefusalLabels, Counter>::default();
        let rpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(rpc_buckets())) as fn() -> Histogram,
        );
        let lease_granted = Histogram::new(grant_buckets());
        let log_fsync = Histogram::new(fsync_buckets());
        let entry_commands = Histogram::new(entry_command_buckets());

        register_state(&mut registry, &state);
        register_raft(&mut registry, &raft, &log_fsync, &entry_commands);
        registry.register(
            "worker_rpc_requests",
            "WorkerService calls answered, by method and outcome (ok, rejected: a completion or failure fenced off, error: an error status)",
            rpc_requests.clone(),
        );
        registry.register_with_unit(
            "worker_rpc_duration",
            "WorkerService call latency by method; a lease includes its long-poll wait",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        registry.register(
            "requests_refused",
            "gRPC requests refused, by service (job, worker, admin, ...) and reason (unauthenticated, permission_denied: a role, namespace or namespace policy, rate_limited)",
            refused.clone(),
        );
        registry.register(
            "lease_granted_tasks",
            "Tasks granted by one successful lease call",
            lease_granted.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                scrape: tokio::sync::Mutex::new(()),
                state,
                raft,
                pools,
                scaling: Scaling::default(),
                rpc_requests,
                rpc_duration,
                refused,
                lease_granted,
                log_fsync,
                entry_commands,
            }),
        }
    }

    /// Records one answered worker rpc.
    pub fn observe_rpc(&self, rpc: WorkerRpc, outcome: RpcOutcome, elapsed: Duration) {
        let method = rpc.as_str();
        self.inner
            .rpc_requests
            .get_or_create(&RpcLabels {
                method,
                outcome: outcome.as_str(),
            })
            .inc();
        self.inner
            .rpc_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one refused request to `service` (a label such as `job`).
    pub fn observe_refusal(&self, service: &'static str, reason: Refusal) {
        self.inner
            .refused
            .get_or_create(&RefusalLabels {
                service,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Records how many tasks one lease call granted.
    pub fn observe_lease_grants(&self, granted: usize) {
        self.inner.lease_granted.observe(granted as f64);
    }

    /// The histogram the Raft driver records each synced log write in.
    pub fn log_fsync_seconds(&self) -> Histogram {
        self.inner.log_fsync.clone()
    }

    /// The histogram the Raft driver records each proposed entry's command
    /// count in.
    pub fn entry_commands(&self) -> Histogram {
        self.inner.entry_commands.clone()
    }

    /// Sets the scrape-time gauges: Raft from `status`, the rest from
    /// `stats` (`None` when the state could not be read, which keeps the
    /// previous values and counts a read failure).
    pub fn update(&self, status: &NodeStatus, stats: Option<&Stats>) {
        let raft = &self.inner.raft;
        raft.term.set(gauge_value(status.term));
        raft.commit_index.set(gauge_value(status.commit_index));
        raft.applied_index.set(gauge_value(status.applied_index));
        raft.apply_lag.set(gauge_value(
            status.commit_index.saturating_sub(status.applied_index),
        ));
        raft.snapshot_index.set(gauge_value(status.snapshot_index));
        raft.is_leader.set(i64::from(status.is_leader));
        raft.leader_id.set(gauge_value(status.leader_id));

        let state = &self.inner.state;
        let Some(stats) = stats else {
            state.read_failures.inc();
            return;
        };
        // Namespaces whose jobs were all collected disappear from the
        // output instead of staying at their last value.
        state.tasks.clear();
        for (namespace, counts) in &stats.tasks {
            for (task_state, n) in counts.by_state() {
                state
                    .tasks
                    .get_or_create(&TaskLabels {
                        state: task_state.as_str(),
                        namespace: namespace.clone(),
                    })
                    .set(gauge_value(n));
            }
        }
        state.ready_tasks.set(gauge_value(stats.ready_tasks));
        state.ready_jobs.set(gauge_value(stats.ready_jobs));
        state
            .oldest_ready_age
            .set(stats.oldest_ready_age_ms() as f64 / 1000.0);
        for (label, n) in [
            ("alive", stats.workers_alive),
            ("draining", stats.workers_draining),
            ("lost", stats.workers_lost),
        ] {
            state
                .workers
                .get_or_create(&WorkerLabels { state: label })
                .set(gauge_value(n));
        }
        state
            .workers_alive
            .set(gauge_value(stats.workers_alive + stats.workers_draining));
        state.totals.follow(&stats.tally);
    }

    /// The OpenMetrics text of every metric as last set.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// A scrape: reads `node`'s status and state, updates the gauges and
    /// returns the OpenMetrics text (see [`CONTENT_TYPE`]).
    pub async fn render(&self, node: &NodeHandle) -> String {
        let _one_at_a_time = self.inner.scrape.lock().await;
        let status = node.status();
        let stats = match node.read_local(|sm| sm.stats()).await {
            Ok(stats) => Some(stats),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the state machine could not be read");
                None
            }
        };
        self.update(&status, stats.as_ref());
        match self.inner.scaling.read(node, None).await {
            Ok(report) => self.update_scaling(&report.pools),
            Err(e) => tracing::warn!(error = %e, "metrics: the scaling signal could not be read"),
        }
        self.encode()
    }

    /// The scaling signal these metrics report (and `GET /v1/scaling`
    /// serves), sharing the pools seen.
    pub fn scaling(&self) -> &Scaling {
        &self.inner.scaling
    }

    /// Sets the per-pool gauges.
    pub fn update_scaling(&self, pools: &[PoolSignal]) {
        let g = &self.inner.pools;
        for pool in pools {
            let labels = PoolLabels {
                pool: pool.pool.clone(),
            };
            for (family, n) in [
                (&g.desired_workers, pool.desired_workers),
                (&g.ready_tasks, pool.ready_tasks),
                (&g.held_back_tasks, pool.held_back_tasks),
                (&g.running_tasks, pool.running_tasks),
                (&g.alive_workers, pool.alive_workers),
            ] {
                family.get_or_create(&labels).set(gauge_value(n));
            }
            g.load_per_worker
                .get_or_create(&labels)
                .set(pool.load_per_worker);
            g.oldest_ready_age
                .get_or_create(&labels)
                .set(pool.oldest_ready_age_ms as f64 / 1000.0);
        }
    }
}

/// A count as a gauge value; counts beyond `i64::MAX` do not occur, and
/// would show as the maximum rather than wrap.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Counts;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn totals_become_counters_that_only_go_up() {
        use crate::state::JobState;
        use crate::state::tally::AttemptOutcome;
        let metrics = Metrics::new();
        let status = NodeStatus::default();
        let mut stats = Stats::default();
        let set = |stats: &mut Stats, failed: u64, timed_out: u64| {
            stats
                .tally
                .jobs_finished
                .entry("etl".into())
                .or_default()
                .insert(JobState::Failed, failed);
            stats
                .tally
                .attempts
                .entry("etl".into())
                .or_default()
                .insert(AttemptOutcome::TimedOut, timed_out);
        };
        set(&mut stats, 2, 5);
        metrics.update(&status, Some(&stats));
        set(&mut stats, 3, 5);
        metrics.update(&status, Some(&stats));
        let text = metrics.encode();
        assert_eq!(
            line(&text, "drover_jobs_finished_total{"),
            Some("drover_jobs_finished_total{namespace=\"etl\",state=\"failed\"} 3"),
            "{text}"
        );
        // The state was replaced (a snapshot installed) and counts afresh:
        // the counter goes on from where it was.
        set(&mut stats, 1, 1);
        metrics.update(&status, Some(&stats));
        let text = metrics.encode();
        assert_eq!(
            line(&text, "drover_jobs_finished_total{"),
            Some("drover_jobs_finished_total{namespace=\"etl\",state=\"failed\"} 4")
        );
        assert_eq!(
            line(&text, "drover_task_attempts_finished_total{"),
            Some("drover_task_attempts_finished_total{namespace=\"etl\",outcome=\"timed_out\"} 6")
        );
    }

    #[test]
    fn state_gauges_follow_the_latest_stats_and_drop_gone_namespaces() {
        let metrics = Metrics::new();
        let status = NodeStatus {
            id: 1,
            leader_id: 1,
            term: 3,
            commit_index: 10,
            applied_index: 7,
            is_leader: true,
            ..NodeStatus::default()
        };
        let mut stats = Stats {
            now_ms: 20_000,
            oldest_ready_ms: Some(12_500),
            ready_tasks: 4,
            workers_alive: 2,
            workers_draining: 1,
            ..Stats::default()
        };
        stats.tasks.insert(
            "etl".to_owned(),
            Counts {
                ready: 4,
                succeeded: 6,
                ..Counts::default()
            },
        );
        metrics.update(&status, Some(&stats));
        let text = metrics.encode();
        assert_eq!(
            line(&text, "drover_tasks{state=\"succeeded\",namespace=\"etl\"}"),
            Some("drover_tasks{state=\"succeeded\",namespace=\"etl\"} 6")
        );
        assert_eq!(
            line(&text, "drover_ready_tasks "),
            Some("drover_ready_tasks 4")
        );
        assert_eq!(
            line(&text, "drover_oldest_ready_task_age_seconds "),
            Some("drover_oldest_ready_task_age_seconds 7.5")
        );
        assert_eq!(
            line(&text, "drover_raft_apply_lag_entries "),
            Some("drover_raft_apply_lag_entries 3")
        );
        assert_eq!(
            line(&text, "drover_raft_is_leader "),
            Some("drover_raft_is_leader 1")
        );
        assert_eq!(
            line(&text, "drover_workers_alive "),
            Some("drover_workers_alive 3")
        );
        assert!(text.ends_with("# EOF\n"));

        // The namespace's jobs were collected: its series go away.
        metrics.update(&status, Some(&Stats::default()));
        let text = metrics.encode();
        assert_eq!(line(&text, "drover_tasks{"), None, "{text}");
        assert_eq!(
            line(&text, "drover_oldest_ready_task_age_seconds "),
            Some("drover_oldest_ready_task_age_seconds 0.0")
        );
    }

    #[test]
    fn a_failed_state_read_keeps_the_state_gauges_and_counts_it() {
        let metrics = Metrics::new();
        let stats = Stats {
            ready_tasks: 5,
            ..Stats::default()
        };
        metrics.update(&NodeStatus::default(), Some(&stats));
        metrics.update(&NodeStatus::default(), None);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "drover_ready_tasks "),
            Some("drover_ready_tasks 5")
        );
        assert_eq!(
            line(&text, "drover_metrics_state_read_failures_total "),
            Some("drover_metrics_state_read_failures_total 1")
        );
    }

    #[test]
    fn rpc_observations_count_per_method_and_outcome() {
        let metrics = Metrics::new();
        metrics.observe_rpc(
            WorkerRpc::Complete,
            RpcOutcome::Ok,
            Duration::from_millis(3),
        );
        metrics.observe_rpc(
            WorkerRpc::Complete,
            RpcOutcome::Ok,
            Duration::from_millis(4),
        );
        metrics.observe_rpc(
            WorkerRpc::Complete,
            RpcOutcome::Rejected,
            Duration::from_millis(2),
        );
        metrics.observe_lease_grants(3);
        metrics.log_fsync_seconds().observe(0.001);
        let text = metrics.encode();
        assert_eq!(
            line(
                &text,
                "drover_worker_rpc_requests_total{method=\"complete\",outcome=\"ok\"}"
            ),
            Some("drover_worker_rpc_requests_total{method=\"complete\",outcome=\"ok\"} 2")
        );
        assert_eq!(
            line(
                &text,
                "drover_worker_rpc_duration_seconds_count{method=\"complete\"}"
            ),
            Some("drover_worker_rpc_duration_seconds_count{method=\"complete\"} 3")
        );
        assert_eq!(
            line(&text, "drover_lease_granted_tasks_count "),
            Some("drover_lease_granted_tasks_count 1")
        );
        assert_eq!(
            line(&text, "drover_raft_log_fsync_seconds_count "),
            Some("drover_raft_log_fsync_seconds_count 1")
        );
    }
}
