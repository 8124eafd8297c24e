//! What one run reports: its figures and the invariants it found broken.

use std::collections::BTreeMap;
use std::fmt;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (one of [`INVARIANTS`]).
    pub invariant: &'static str,
    /// Virtual time it was found at.
    pub at_ms: u64,
    /// What exactly.
    pub detail: String,
}

/// Every invariant the simulation checks, by name.
pub const INVARIANTS: &[(&str, &str)] = &[
    (
        "replicas-agree",
        "every replica applies the same entry, with the same results, at each index",
    ),
    (
        "replica-snapshots-equal",
        "replicas at the same applied index have byte-identical state snapshots",
    ),
    (
        "restore-equivalent",
        "snapshot, restore and continue gives the same results and state as not restoring",
    ),
    (
        "state-invariants",
        "each replica's state passes the state machine's own invariant check",
    ),
    (
        "acked-submit-durable",
        "every submission acknowledged to a client is in the final state under its key",
    ),
    (
        "one-job-per-key",
        "one idempotency key names one job, in every reply and in the log",
    ),
    (
        "tokens-increase",
        "the fencing tokens granted for a task strictly increase",
    ),
    (
        "no-overlapping-grants",
        "a task is never granted while an earlier grant of it is live, nor after it succeeded",
    ),
    (
        "dag-order",
        "a task is granted only after every partition of its upstream tasks succeeded",
    ),
    (
        "cluster-time-true",
        "no entry is stamped ahead of true time by more than the clock agreement window, whatever one node's wall clock says",
    ),
    (
        "leases-not-expired-early",
        "a lease expires only one TTL (virtual time) after the expiring leader last granted or renewed it, whatever the wall clocks",
    ),
    (
        "fenced-completion",
        "a completion or failure is accepted only with the token of the task's live grant",
    ),
    (
        "single-completion",
        "a task has at most one accepted completion",
    ),
    (
        "acked-completion-durable",
        "every completion acknowledged to a worker is accepted in the committed log",
    ),
    (
        "nodes-restart",
        "a node restarts from what it durably stored, and never panics",
    ),
    (
        "liveness-after-heal",
        "after the heal, the replicas converge and every job ends within the bound",
    ),
];

/// Figures and findings of one run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// The configuration profile.
    pub profile: &'static str,
    /// The planted bugs, as `DROVER_PLANTED_BUGS` names them (empty for
    /// none).
    pub planted: String,
    /// Coordinators in the cluster.
    pub nodes: usize,
    /// Virtual time the run lasted.
    pub virtual_ms: u64,
    /// Client and worker operations invoked.
    pub ops_invoked: u64,
    /// ... that ended `ok`.
    pub ops_ok: u64,
    /// ... that ended `fail`.
    pub ops_fail: u64,
    /// ... that ended `info` (unknown).
    pub ops_info: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// How many times each invariant was checked.
    pub checks: BTreeMap<&'static str, u64>,
    /// Entries the replicas committed and applied.
    pub committed_entries: u64,
    /// Jobs acknowledged to clients.
    pub jobs_acked: u64,
    /// Messages the network dropped.
    pub messages_dropped: u64,
    /// What was found broken (at most a few per invariant).
    pub violations: Vec<Violation>,
}

impl Summary {
    /// Whether no invariant broke.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Whether some violation is of `invariant`.
    pub fn violates(&self, invariant: &str) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }

    /// How to run this seed again.
    pub fn replay_hint(&self) -> String {
        let mut env = format!("DROVER_SIM_SEED={}", self.seed);
        if self.profile != "default" {
            env.push_str(&format!(" DROVER_SIM_PROFILE={}", self.profile));
        }
        if !self.planted.is_empty() {
            env.push_str(&format!(" DROVER_PLANTED_BUGS={}", self.planted));
        }
        format!(
            "replay with: {env} cargo test -p drover-chaos --test sim -- replay --nocapture (DROVER_SIM_HISTORY=1 prints the history)"
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({}{}): {} nodes, {} ms virtual, {} ops ({} ok, {} fail, {} info), {} entries, {} jobs, {} messages dropped",
            self.seed,
            self.profile,
            if self.planted.is_empty() {
                String::new()
            } else {
                format!(", planted {}", self.planted)
            },
            self.nodes,
            self.virtual_ms,
            self.ops_invoked,
            self.ops_ok,
            self.ops_fail,
            self.ops_info,
            self.committed_entries,
            self.jobs_acked,
            self.messages_dropped
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "  faults: {}", faults.join(" "))?;
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "  checks: {}", checks.join(" "))?;
        for v in &self.violations {
            writeln!(
                f,
                "  VIOLATION {} at {} ms: {}",
                v.invariant, v.at_ms, v.detail
            )?;
        }
        if !self.passed() {
            writeln!(f, "  {}", self.replay_hint())?;
        }
        Ok(())
    }
}

/// Collects violations, keeping a few of each kind, and counts checks.
#[derive(Debug, Default)]
pub struct Findings {
    /// Violations kept.
    pub violations: Vec<Violation>,
    /// Checks made, per invariant.
    pub checks: BTreeMap<&'static str, u64>,
}

/// Violations kept per invariant; the first ones say enough.
const KEPT_PER_INVARIANT: usize = 3;

impl Findings {
    /// Counts one check of `invariant`.
    pub fn checked(&mut self, invariant: &'static str) {
        *self.checks.entry(invariant).or_insert(0) += 1;
    }

    /// Records a violation of `invariant`.
    pub fn violation(&mut self, invariant: &'static str, at_ms: u64, detail: impl Into<String>) {
        let kept = self
            .violations
            .iter()
            .filter(|v| v.invariant == invariant)
            .count();
        if kept < KEPT_PER_INVARIANT {
            self.violations.push(Violation {
                invariant,
                at_ms,
                detail: detail.into(),
            });
        }
    }

    /// Checks `ok`, recording a violation when it is false.
    pub fn check(
        &mut self,
        invariant: &'static str,
        at_ms: u64,
        ok: bool,
        detail: impl FnOnce() -> String,
    ) {
        self.checked(invariant);
        if !ok {
            self.violation(invariant, at_ms, detail());
        }
    }
}
