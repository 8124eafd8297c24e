//! The typed, validated job spec: what a YAML file means once every field has
//! been checked. Nothing here refers to YAML or positions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kinds::KindConfig;
use crate::partitions::PartitionSet;
use crate::schedule::Schedule;

/// A validated job spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Job name, unique per namespace for humans (ids are assigned on submit).
    pub name: String,
    /// Namespace for fair share, quotas and access control.
    pub namespace: String,
    /// Free-form labels for filtering.
    pub labels: BTreeMap<String, String>,
    /// Human description shown by `job status` and the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 0..=100; higher leases first.
    pub priority: u8,
    /// Tasks of this job leased at once.
    pub max_parallel: u32,
    /// Re-run partitions even when an identical output manifest exists.
    pub recompute: bool,
    /// Parameters after CLI overrides, as strings.
    pub params: BTreeMap<String, String>,
    /// Present when the job is recurring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The tasks in declaration order.
    pub tasks: Vec<TaskSpec>,
}

/// One task template of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Unique within the job.
    pub name: String,
    /// Shown by `job status` and the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the worker runs, with its validated configuration.
    pub kind: KindConfig,
    /// Upstream tasks that must fully succeed first.
    pub depends_on: Vec<String>,
    /// How the task fans out; a single partition when absent.
    pub partitions: PartitionSet,
    /// Retry policy after defaults are applied.
    pub retries: RetryPolicy,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: u64,
    /// Per-task cap on concurrently leased partitions, below the job's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// What one attempt needs from a worker slot.
    pub resources: Resources,
    /// Worker labels that must all match for a worker to lease this task.
    pub constraints: BTreeMap<String, String>,
}

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub max: u32,
    /// How the delay grows between attempts.
    pub backoff: Backoff,
    /// Delay before the first retry, in milliseconds.
    pub initial_delay_ms: u64,
    /// Upper bound on any delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry).
    /// Exponential backoff doubles from `initial_delay_ms`, capped.
    pub fn delay_ms(&self, retry: u32) -> u64 {
        let delay = match self.backoff {
            Backoff::Constant => self.initial_delay_ms,
            Backoff::Exponential => {
                let shift = retry.saturating_sub(1).min(62);
                self.initial_delay_ms.saturating_mul(1u64 << shift)
            }
        };
        delay.min(self.max_delay_ms)
    }
}

impl Default for RetryPolicy {
    /// Three retries with exponential backoff from 5 s to 5 min: enough to
    /// ride out a worker loss or a flaky store, short enough to notice.
    fn default() -> Self {
        Self {
            max: 3,
            backoff: Backoff::Exponential,
            initial_delay_ms: 5_000,
            max_delay_ms: 300_000,
        }
    }
}

/// Backoff shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Delay doubles each retry.
    Exponential,
    /// Delay stays at the initial delay.
    Constant,
}

/// Default per-attempt timeout: one hour.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_600_000;

/// Default job `maxParallel`.
pub const DEFAULT_MAX_PARALLEL: u32 = 64;

/// Default priority, the middle of 0..=100.
pub const DEFAULT_PRIORITY: u8 = 50;

/// What one attempt needs from a worker slot; used for placement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: 1.0,
            memory_mb: 512,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_and_never_overflows() {
        let policy = RetryPolicy {
            max: 100,
            backoff: Backoff::Exponential,
            initial_delay_ms: 1_000,
            max_delay_ms: 60_000,
        };
        let delays: Vec<u64> = (1..=8).map(|r| policy.delay_ms(r)).collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(policy.delay_ms(u32::MAX), 60_000);
        let constant = RetryPolicy {
            backoff: Backoff::Constant,
            ..policy
        };
        assert_eq!(constant.delay_ms(7), 1_000);
    }
}
