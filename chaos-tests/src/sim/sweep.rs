//! Many seeds of the simulation in a row, and what they add up to: the
//! `drover-chaos --sim` command.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::config::SimConfig;
use super::report::Summary;
use super::runner::run_seed;

/// The totals of a sweep, and the summaries of the seeds that failed.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Seeds run.
    pub seeds: u64,
    /// Virtual time simulated, over all seeds.
    pub virtual_ms: u64,
    /// Client and worker operations invoked, and how they ended.
    pub ops_invoked: u64,
    /// ... `ok`.
    pub ops_ok: u64,
    /// ... `fail`.
    pub ops_fail: u64,
    /// ... `info` (unknown outcome).
    pub ops_info: u64,
    /// Entries committed and applied.
    pub committed_entries: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Invariant checks made, by invariant.
    pub checks: BTreeMap<&'static str, u64>,
    /// The seeds that broke an invariant.
    pub failed: Vec<Summary>,
    /// Wall-clock time the sweep took.
    pub elapsed: Duration,
}

impl Sweep {
    /// Runs `count` seeds from `first` with `config`; `progress` hears
    /// each seed's summary as it ends.
    pub fn run(
        first: u64,
        count: u64,
        config: &SimConfig,
        mut progress: impl FnMut(&Summary),
    ) -> Self {
        let started = Instant::now();
        let mut sweep = Sweep::default();
        for seed in first..first.saturating_add(count) {
            let run = run_seed(seed, config);
            progress(&run.summary);
            sweep.add(run.summary);
        }
        sweep.elapsed = started.elapsed();
        sweep
    }

    /// Adds one seed's figures.
    pub fn add(&mut self, summary: Summary) {
        self.seeds += 1;
        self.virtual_ms += summary.virtual_ms;
        self.ops_invoked += summary.ops_invoked;
        self.ops_ok += summary.ops_ok;
        self.ops_fail += summary.ops_fail;
        self.ops_info += summary.ops_info;
        self.committed_entries += summary.committed_entries;
        for (kind, n) in &summary.faults {
            *self.faults.entry(kind.clone()).or_default() += n;
        }
        for (invariant, n) in &summary.checks {
            *self.checks.entry(invariant).or_default() += n;
        }
        if !summary.passed() {
            self.failed.push(summary);
        }
    }

    /// Whether every seed kept every invariant.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} seeds, {:.1} virtual hours in {:.1} s",
            self.seeds,
            self.virtual_ms as f64 / 3_600_000.0,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "\nfaults injected")?;
        for (kind, n) in &self.faults {
            writeln!(f, "  {kind:<28}{n:>8}")?;
        }
        writeln!(
            f,
            "\noperations {} ({} ok, {} fail, {} info), {} entries committed",
            self.ops_invoked, self.ops_ok, self.ops_fail, self.ops_info, self.committed_entries
        )?;
        writeln!(f, "\ninvariants checked")?;
        for (invariant, n) in &self.checks {
            let broken = self.failed.iter().filter(|s| s.violates(invariant)).count();
            let mark = if broken == 0 { "ok  " } else { "FAIL" };
            writeln!(
                f,
                "  {mark} {invariant:<26}{n:>10} checks, {broken} seeds broke it"
            )?;
        }
        writeln!(f, "\nseeds that failed: {}", self.failed.len())?;
        for summary in &self.failed {
            write!(f, "{summary}")?;
        }
        Ok(())
    }
}
