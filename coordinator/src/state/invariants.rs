//! Invariants of the state machine, checked by tests after every command
//! (and available to the simulation tier). Each check names what broke.

use std::collections::{BTreeMap, BTreeSet};

use super::StateMachine;
use super::job::TemplateStatus;
use super::types::{TaskKey, TaskState};

impl StateMachine {
    /// Checks every structural invariant; returns the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut tokens: BTreeMap<u64, TaskKey> = BTreeMap::new();
        let mut leased_by_ns: BTreeMap<&str, u64> = BTreeMap::new();
        let mut leased_keys: BTreeSet<(i64, TaskKey)> = BTreeSet::new();
        for (id, job) in &self.core.jobs {
            let mut sum = super::job::Counts::default();
            for (t, template) in job.templates.iter().enumerate() {
                let c = template.counts;
                let at = |what: &str| format!("{id} template {t} ({}): {what}", template.def.id);
                if c.total() != template.def.count {
                    return Err(at(&format!(
                        "counts sum to {} of {}",
                        c.total(),
                        template.def.count
                    )));
                }
                let by_state =
                    |s: TaskState| template.tasks.values().filter(|r| r.state == s).count() as u64;
                if by_state(TaskState::Leased) != c.leased {
                    return Err(at("leased records disagree with the count"));
                }
                if by_state(TaskState::Backoff) != c.backoff {
                    return Err(at("backoff records disagree with the count"));
                }
                let ready_records: BTreeSet<u64> = template
                    .tasks
                    .iter()
                    .filter(|(_, r)| r.state == TaskState::Ready)
                    .map(|(p, _)| *p)
                    .collect();
                if ready_records != template.requeued {
                    return Err(at("requeued set disagrees with ready records"));
                }
                // History: a task that can still run and has run has a
                // running entry, and nothing else has one.
                if let Some(h) = self.core.history.get(id).and_then(|h| h.templates.get(t)) {
                    let with_history = h.partitions_in(0..template.def.count);
                    let live_records = template.tasks.iter().filter(|(_, r)| {
                        matches!(
                            r.state,
                            TaskState::Leased | TaskState::Backoff | TaskState::Ready
                        )
                    });
                    for (p, _) in live_records {
                        if with_history.binary_search(p).is_err() {
                            return Err(at(&format!("partition {p} ran but has no history")));
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
                            return Err(at(&format!(
                                "partition {p}: history running {running}, record {:?}",
                                record.map(|r| r.state)
                            )));
                        }
                    }
                } else {
                    return Err(at("no history"));
                }
                let unstarted = template.def.count - template.cursor;
                match template.status {
                    TemplateStatus::Open => {
                        if c.ready != unstarted + template.requeued.len() as u64 || c.blocked != 0 {
                            return Err(at(&format!(
                                "open template counts ready {} blocked {} with {unstarted} unstarted",
                                c.ready, c.blocked
                            )));
                        }
                        // A template opens only when every upstream succeeded.
                        for d in &template.def.depends_on {
                            let up = &job.templates[*d as usize];
                            if up.counts.succeeded + up.counts.skipped != up.def.count {
                                return Err(at(&format!(
                                    "open while upstream {} is unfinished",
                                    up.def.id
                                )));
                            }
                        }
                    }
                    TemplateStatus::Blocked => {
                        // Nothing of a blocked template has run.
                        if template.cursor != 0 || c.blocked != template.def.count {
                            return Err(at("blocked template has run tasks"));
                        }
                    }
                    TemplateStatus::Done => {
                        if c.finished() != template.def.count {
                            return Err(at("done template has unfinished tasks"));
                        }
                    }
                }
                for (p, record) in &template.tasks {
                    if *p >= template.cursor {
                        return Err(at(&format!(
                            "record for partition {p} at or above the cursor"
                        )));
                    }
                    let key = TaskKey {
                        job: *id,
                        template: t as u32,
                        partition: *p,
                    };
                    if record.token >= self.core.next_token {
                        return Err(at("token from the future"));
                    }
                    if record.token > 0
                        && let Some(other) = tokens.insert(record.token, key)
                    {
                        return Err(at(&format!("token {} held by {other} too", record.token)));
                    }
                    if record.state == TaskState::Leased {
                        leased_keys.insert((record.expires_at_ms(), key));
                        let Some(w) = &record.worker else {
                            return Err(at("leased record without a worker"));
                        };
                        if !self
                            .idx
                            .worker_tasks
                            .get(w)
                            .is_some_and(|s| s.contains(&key))
                        {
                            return Err(at(&format!("lease of {key} missing from {w}'s index")));
                        }
                    }
                }
                for (p, output) in template.outputs.iter() {
                    if p >= template.cursor || template.tasks.contains_key(&p) {
                        return Err(at(&format!(
                            "output for partition {p} that is not finished"
                        )));
                    }
                    if output.token >= self.core.next_token {
                        return Err(at("output token from the future"));
                    }
                }
                sum.blocked += c.blocked;
                sum.ready += c.ready;
                sum.backoff += c.backoff;
                sum.leased += c.leased;
                sum.succeeded += c.succeeded;
                sum.failed += c.failed;
                sum.cancelled += c.cancelled;
                sum.skipped += c.skipped;
            }
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
                *leased_by_ns.entry(job.namespace.as_str()).or_default() += job.counts.leased;
            }
            if self.idx.ready.contains(*id)
                && (job.state.is_terminal() || !job.below_max_parallel())
            {
                return Err(format!("{id}: in the ready index but cannot lease"));
            }
        }
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
}
