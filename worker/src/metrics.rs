//! The worker's Prometheus metrics: their definitions, their registration,
//! and the OpenMetrics text a scrape returns.
//!
//! The lease loop records as things happen; clones of [`Metrics`] share
//! one registry, so the process that runs the worker keeps a clone to
//! serve `/metrics`. Every name starts with `drover_worker_`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How an attempt ended for this worker, as the `outcome` label names it;
/// the same four ends as [`WorkerReport`](crate::runner::WorkerReport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The coordinator accepted its completion.
    Completed,
    /// The coordinator accepted its failure report.
    Failed,
    /// Stopped (lease lost, job cancelled) or its report was fenced off.
    Stopped,
    /// Handed back unfinished while draining.
    Released,
}

impl AttemptOutcome {
    /// Lowercase name, as the label shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Stopped => "stopped",
            AttemptOutcome::Released => "released",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    running: Gauge,
    finished: Family<OutcomeLabels, Counter>,
    attempt_duration: Family<KindLabels, Histogram>,
    lease_duration: Histogram,
    heartbeat_failures: Counter,
}

/// A worker's metrics; clones share one registry.
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
    /// A registry with every worker metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("drover_worker");
        let running = Gauge::default();
        let finished = Family::<OutcomeLabels, Counter>::default();
        // Attempts run from milliseconds (noop) to hours (backfills).
        let attempt_duration = Family::<KindLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 4.0, 12))) as fn() -> Histogram,
        );
        // A lease is a long poll of up to 30 s; an answer with work comes
        // in a Raft commit.
        let lease_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let heartbeat_failures = Counter::default();
        registry.register(
            "tasks_running",
            "Attempts running on this worker now",
            running.clone(),
        );
        registry.register(
            "attempts_finished",
            "Attempts ended, by outcome (completed, failed, stopped: lease lost or report fenced off, released: handed back when draining)",
            finished.clone(),
        );
        registry.register_with_unit(
            "attempt_duration",
            "Time an attempt's executor ran, by task kind",
            Unit::Seconds,
            attempt_duration.clone(),
        );
        registry.register_with_unit(
            "lease_call_duration",
            "Latency of Lease calls, long-poll wait included",
            Unit::Seconds,
            lease_duration.clone(),
        );
        registry.register(
            "heartbeat_failures",
            "Heartbeat calls that got no answer from any coordinator",
            heartbeat_failures.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                running,
                finished,
                attempt_duration,
                lease_duration,
                heartbeat_failures,
            }),
        }
    }

    /// Sets the number of attempts running.
    pub fn set_running(&self, n: usize) {
        self.inner.running.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts `n` attempts that ended with `outcome`.
    pub fn attempts_finished(&self, outcome: AttemptOutcome, n: u64) {
        self.inner
            .finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc_by(n);
    }

    /// Records how long an attempt of `kind` ran.
    pub fn attempt_ran(&self, kind: &'static str, elapsed: Duration) {
        self.inner
            .attempt_duration
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one Lease call's latency.
    pub fn lease_call(&self, elapsed: Duration) {
        self.inner.lease_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a heartbeat that failed.
    pub fn heartbeat_failed(&self) {
        self.inner.heartbeat_failures.inc();
    }

    /// The OpenMetrics text of every metric (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn records_show_in_the_rendered_text() {
        let m = Metrics::new();
        m.set_running(2);
        m.attempts_finished(AttemptOutcome::Completed, 3);
        m.attempts_finished(AttemptOutcome::Released, 1);
        m.attempt_ran("sleep", Duration::from_millis(250));
        m.lease_call(Duration::from_millis(5));
        m.heartbeat_failed();
        let text = m.render();
        assert_eq!(
            sample(&text, "drover_worker_tasks_running").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "drover_worker_attempts_finished_total{outcome=\"completed\"}"
            )
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            sample(
                &text,
                "drover_worker_attempts_finished_total{outcome=\"released\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "drover_worker_attempt_duration_seconds_sum{kind=\"sleep\"}"
            )
            .as_deref(),
            Some("0.25")
        );
        assert_eq!(
            sample(&text, "drover_worker_lease_call_duration_seconds_count").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "drover_worker_heartbeat_failures_total").as_deref(),
            Some("1")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
