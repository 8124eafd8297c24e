//! Invariants of the state machine. Debug builds (every test, the
//! deterministic simulation, the chaos suite's nodes) check them after
//! applying each entry and panic naming what broke; property tests, the
//! fuzzers and the simulation also check them explicitly (a loaded state
//! included). Release builds never run them.

use std::collections::{BTreeMap, BTreeSet};

use super::StateMachine;
use super::job::TemplateStatus;
use super::types::{JobId, TaskKey, TaskState};

/// Task records up to which debug builds check after every entry; a
/// larger state is checked every `records / DEBUG_CHECK_RECORDS`-th entry,
/// so checking costs a bounded amount per entry however large the state.
#[cfg(debug_assertions)]
const DEBUG_CHECK_RECORDS: usize = 1_000;

/// When debug builds next check the invariants.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Default)]
pub(super) struct DebugChecks {
    /// Entries still to apply before the next check (0: the next one).
    entries_until_check: usize,
}

/// What the checks have seen so far across jobs.
#[derive(Default)]
struct Seen<'a> {
    tokens: BTreeMap<u64, TaskKey>,
    leased_by_ns: BTreeMap<&'a str, u64>,
    leased_keys: BTreeSet<(i64, TaskKey)>,
}

impl StateMachine {
    /// In debug builds, checks the invariants (after `what`) and panics
    /// with the first violation; a no-op in release builds. Skipped while
    /// the chaos suite's planted bugs are on: they break invariants on
    /// purpose, for its checker to find.
    pub(super) fn debug_check_invariants(&mut self, what: &str) {
        #[cfg(debug_assertions)]
        {
            #[cfg(feature = "planted-bugs")]
            if self.planted.any() {
                return;
            }
            if self.invariant_checks.entries_until_check > 0 {
                self.invariant_checks.entries_until_check -= 1;
                return;
            }
            if let Err(violation) = self.check_invariants() {
                panic!("state machine invariant broken after {what}: {violation}");
            }
            let records: usize = self
                .core
                .jobs
                .values()
                .flat_map(|j| &j.templates)
                .map(|t| t.tasks.len())
                .sum();
            self.invariant_checks.entries_until_check = records / DEBUG_CHECK_RECORDS;
        }
        #[cfg(not(debug_assertions))]
        let _ = what;
    }

    /// Checks every structural invariant; returns the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = Seen::default();
        for (id, job) in &self.core.jobs {
            let mut sum = super::job::Counts::default();
            for (t, template) in job.templates.iter().enumerate() {
                let at = |what: &str| format!("{id} template {t} ({}): {what}", template.def.id);
                let c = template.counts;
                if c.total() != template.def.count {
                    return Err(at(&format!(
                        "counts sum to {} of {}",
                        c.total(),
                        template.def.count
                    )));
                }
                Self::check_records_counted(template).map_err(|e| at(&e))?;
                self.check_history(*id, t, template).map_err(|e| at(&e))?;
                Self::check_status(job, template).map_err(|e| at(&e))?;
                self.check_records(*id, t, template, &mut seen)
                    .map_err(|e| at(&e))?;
                sum.blocked += c.blocked;
                sum.ready += c.ready;
                sum.backoff += c.backoff;
                sum.leased += c.leased;
                sum.succeeded += c.succeeded;
                sum.failed += c.failed;
                sum.cancelled += c.cancelled;
                sum.skipped += c.skipped;
            }
            self.check_job(*id, job, sum, &mut seen)?;
        }
        let Seen {
            leased_keys,
            leased_by_ns,
            ..
        } = seen;
        if leased_keys != self.idx.deadlines {
            return Err(format!(
                "deadline index has {} entries for {} leases",
                self.idx.deadlines.len(),
                leased_keys.len()
            ));
        }
        for (ns, n) in leased_by_ns {
            if self.idx.ready.running(ns) != n {
                return Err(format!(
                    "namespace {ns}: fair share counts {} running, jobs hold {n}",
                    self.idx.ready.running(ns)
                ));
            }
        }
        Ok(())
    }

    /// A template's per-state counts agree with its task records.
    fn check_records_counted(template: &super::job::Template) -> Result<(), String> {
        let c = template.counts;
        let by_state =
            |s: TaskState| template.tasks.values().filter(|r| r.state == s).count() as u64;
        if by_state(TaskState::Leased) != c.leased {
            return Err("leased records disagree with the count".to_owned());
        }
        if by_state(TaskState::Backoff) != c.backoff {
            return Err("backoff records disagree with the count".to_owned());
        }
        let ready_records: BTreeSet<u64> = template
            .tasks
            .iter()
            .filter(|(_, r)| r.state == TaskState::Ready)
            .map(|(p, _)| *p)
            .collect();
        if ready_records != template.requeued {
            return Err(("requeued set disagrees with ready records").to_owned());
        }
        Ok(())
    }

    /// History: a task that can still run and has run has a running
    /// entry, and nothing else has one.
    fn check_history(
        &self,
        id: JobId,
        t: usize,
        template: &super::job::Template,
    ) -> Result<(), String> {
        let Some(h) = self.core.history.get(&id).and_then(|h| h.templates.get(t)) else {
            return Err("no history".to_owned());
        };
        let with_history = h.partitions_in(0..template.def.count);
        let live_records = template.tasks.iter().filter(|(_, r)| {
            matches!(
                r.state,
                TaskState::Leased | TaskState::Backoff | TaskState::Ready
            )
        });
        for (p, _) in live_records {
            if with_history.binary_search(p).is_err() {
                return Err(format!("partition {p} ran but has no history"));
            }
        }
        for p in with_history {
            let record = template.tasks.get(&p);
            let live = record.is_some_and(|r| {
                matches!(
                    r.state,
                    TaskState::Leased | TaskState::Backoff | TaskState::Ready
                )
            });
            let running = h.task(p, None).is_some_and(|t| t.finished_ms.is_none());
            if live != running {
                return Err(format!(
                    "partition {p}: history running {running}, record {:?}",
                    record.map(|r| r.state)
                ));
            }
        }
        Ok(())
    }

    /// A template's status agrees with its counts and its upstreams.
    fn check_status(job: &super::job::Job, template: &super::job::Template) -> Result<(), String> {
        let c = template.counts;
        let unstarted = template.def.count - template.cursor;
        match template.status {
            TemplateStatus::Open => {
                if c.ready != unstarted + template.requeued.len() as u64 || c.blocked != 0 {
                    return Err(format!(
                        "open template counts ready {} blocked {} with {unstarted} unstarted",
                        c.ready, c.blocked
                    ));
                }
                // A template opens only when every upstream succeeded.
                for d in &template.def.depends_on {
                    let up = &job.templates[*d as usize];
                    if up.counts.succeeded + up.counts.skipped != up.def.count {
                        return Err(format!("open while upstream {} is unfinished", up.def.id));
                    }
                }
            }
            TemplateStatus::Blocked => {
                // Nothing of a blocked template has run.
                if template.cursor != 0 || c.blocked != template.def.count {
                    return Err("blocked template has run tasks".to_owned());
                }
            }
            TemplateStatus::Done => {
                if c.finished() != template.def.count {
                    return Err("done template has unfinished tasks".to_owned());
                }
            }
        }
        Ok(())
    }

    /// Each task record and output: below the cursor, tokens unique and
    /// from the past, leases in the worker index.
    fn check_records(
        &self,
        id: JobId,
        t: usize,
        template: &super::job::Template,
        seen: &mut Seen,
    ) -> Result<(), String> {
        for (p, record) in &template.tasks {
            if *p >= template.cursor {
                return Err(format!("record for partition {p} at or above the cursor"));
            }
            let key = TaskKey {
                job: id,
                template: t as u32,
                partition: *p,
            };
            if record.token >= self.core.next_token {
                return Err("token from the future".to_owned());
            }
            if record.token > 0
                && let Some(other) = seen.tokens.insert(record.token, key)
            {
                return Err(format!("token {} held by {other} too", record.token));
            }
            if record.state == TaskState::Leased {
                seen.leased_keys.insert((record.expires_at_ms(), key));
                let Some(w) = &record.worker else {
                    return Err("leased record without a worker".to_owned());
                };
                if !self
                    .idx
                    .worker_tasks
                    .get(w)
                    .is_some_and(|s| s.contains(&key))
                {
                    return Err(format!("lease of {key} missing from {w}'s index"));
                }
            }
        }
        for (p, output) in template.outputs.iter() {
            if p >= template.cursor || template.tasks.contains_key(&p) {
                return Err(format!("output for partition {p} that is not finished"));
            }
            if output.token >= self.core.next_token {
                return Err("output token from the future".to_owned());
            }
        }
        Ok(())
    }

    /// A job's totals, state and caps, and its place in the ready index.
    fn check_job<'a>(
        &self,
        id: JobId,
        job: &'a super::job::Job,
        sum: super::job::Counts,
        seen: &mut Seen<'a>,
    ) -> Result<(), String> {
        if sum != job.counts {
            return Err(format!(
                "{id}: job counts {:?} != template sum {sum:?}",
                job.counts
            ));
        }
        if job.state.is_terminal() != job.finished_ms.is_some() {
            return Err(format!(
                "{id}: state {:?} with finished_ms {:?}",
                job.state, job.finished_ms
            ));
        }
        if job.state.is_terminal() && job.counts.leased > 0 {
            return Err(format!("{id}: finished with leased tasks"));
        }
        if job.counts.leased > u64::from(job.max_parallel) {
            return Err(format!(
                "{id}: {} leased over maxParallel {}",
                job.counts.leased, job.max_parallel
            ));
        }
        if !job.state.is_terminal() {
            *seen.leased_by_ns.entry(job.namespace.as_str()).or_default() += job.counts.leased;
        }
        if self.idx.ready.contains(id) && (job.state.is_terminal() || !job.below_max_parallel()) {
            return Err(format!("{id}: in the ready index but cannot lease"));
        }
        Ok(())
    }
}
