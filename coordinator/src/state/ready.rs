//! Which job leases next: the ready index.
//!
//! # Policy
//!
//! 1. **Priority first.** A job of higher priority leases before any job of
//!    lower priority. Priority is a strict order, meant for urgent work.
//! 2. **Weighted fair share between namespaces at the same priority.** The
//!    namespace with the fewest running tasks per unit of weight leases next,
//!    so a team with a 100,000-partition backfill and a team with a nightly
//!    cron at the same priority split the workers by weight: neither starves,
//!    and an idle namespace's share goes to the others.
//! 3. **FIFO within a namespace**: the earliest-submitted job first, and
//!    within a job the earliest template (topological order), retries before
//!    fresh partitions.
//!
//! Jobs at their `maxParallel`, and templates at theirs, are out of the
//! index until a slot frees, so leasing never walks over work that cannot
//! run. Only label constraints are checked per worker while walking, and that
//! walk is bounded ([`SCAN_MAX`]).
//!
//! Everything here is derived from the jobs and rebuilt on restore; it is
//! never serialised.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::types::{DEFAULT_NAMESPACE_WEIGHT, JobId};

/// Entries a single lease call may pass over (label mismatches) before it
/// stops looking; bounds the cost of one lease call.
pub const SCAN_MAX: usize = 4096;

/// Scale of the fair-share key, so integer division keeps precision.
const SHARE_SCALE: u64 = 1_000_000;

#[derive(Debug, Clone, Default)]
struct Level {
    /// Jobs with leasable work, per namespace, in submit order.
    queues: BTreeMap<String, BTreeSet<(u64, JobId)>>,
    /// Namespaces of this level by fair-share key, lowest first.
    order: BTreeSet<(u64, String)>,
}

/// Where a job sits in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    priority: u8,
    namespace: String,
    submit_seq: u64,
}

/// The ready index.
#[derive(Debug, Clone, Default)]
pub struct ReadyIndex {
    levels: BTreeMap<Reverse<u8>, Level>,
    /// Running tasks per namespace, across all priorities.
    ns_running: BTreeMap<String, u64>,
    /// Fair-share weights.
    weights: BTreeMap<String, u32>,
    /// Jobs in the index.
    members: BTreeMap<JobId, Membership>,
    /// Templates with leasable partitions, per job (whether or not the job
    /// itself is in the index).
    templates: BTreeMap<JobId, BTreeSet<u32>>,
}

impl ReadyIndex {
    /// An empty index with these namespace weights.
    pub fn new(weights: BTreeMap<String, u32>) -> Self {
        Self {
            weights,
            ..Self::default()
        }
    }

    fn share_key(&self, namespace: &str) -> u64 {
        let running = self.ns_running.get(namespace).copied().unwrap_or(0);
        let weight = self
            .weights
            .get(namespace)
            .copied()
            .unwrap_or(DEFAULT_NAMESPACE_WEIGHT)
            .max(1);
        running.saturating_mul(SHARE_SCALE) / u64::from(weight)
    }

    /// Sets a namespace's weight.
    pub fn set_weight(&mut self, namespace: &str, weight: u32) {
        self.reorder(namespace, |index| {
            index.weights.insert(namespace.to_owned(), weight.max(1));
        });
    }

    /// Changes a namespace's running count by `delta`.
    pub fn add_running(&mut self, namespace: &str, delta: i64) {
        self.reorder(namespace, |index| {
            let running = index.ns_running.entry(namespace.to_owned()).or_insert(0);
            *running = running.saturating_add_signed(delta);
            if *running == 0 {
                index.ns_running.remove(namespace);
            }
        });
    }

    /// Applies `change` to a namespace's share inputs, moving it in the
    /// order of every level it appears in.
    fn reorder(&mut self, namespace: &str, change: impl FnOnce(&mut Self)) {
        let before = self.share_key(namespace);
        change(self);
        let after = self.share_key(namespace);
        if before == after {
            return;
        }
        for level in self.levels.values_mut() {
            if level.order.remove(&(before, namespace.to_owned())) {
                level.order.insert((after, namespace.to_owned()));
            }
        }
    }

    /// Running tasks of a namespace.
    pub fn running(&self, namespace: &str) -> u64 {
        self.ns_running.get(namespace).copied().unwrap_or(0)
    }

    /// Records whether template `t` of `job` has leasable partitions.
    pub fn set_template(&mut self, job: JobId, t: u32, leasable: bool) {
        if leasable {
            self.templates.entry(job).or_default().insert(t);
        } else if let Some(set) = self.templates.get_mut(&job) {
            set.remove(&t);
            if set.is_empty() {
                self.templates.remove(&job);
            }
        }
    }

    /// The job's leasable templates, in order.
    pub fn templates(&self, job: JobId) -> impl Iterator<Item = u32> + '_ {
        self.templates.get(&job).into_iter().flatten().copied()
    }

    /// Whether the job has any leasable template.
    pub fn has_templates(&self, job: JobId) -> bool {
        self.templates.contains_key(&job)
    }

    /// Puts the job in the index (or leaves it there).
    pub fn insert_job(&mut self, job: JobId, priority: u8, namespace: &str, submit_seq: u64) {
        // Called after every grant and completion: compare before building
        // anything, so the common "already there" case allocates nothing.
        if self.members.get(&job).is_some_and(|m| {
            m.priority == priority && m.submit_seq == submit_seq && m.namespace == namespace
        }) {
            return;
        }
        let membership = Membership {
            priority,
            namespace: namespace.to_owned(),
            submit_seq,
        };
        self.remove_job(job);
        let key = self.share_key(namespace);
        let level = self.levels.entry(Reverse(priority)).or_default();
        let queue = level.queues.entry(namespace.to_owned()).or_default();
        if queue.is_empty() {
            level.order.insert((key, namespace.to_owned()));
        }
        queue.insert((submit_seq, job));
        self.members.insert(job, membership);
    }

    /// Takes the job out of the index.
    pub fn remove_job(&mut self, job: JobId) {
        let Some(m) = self.members.remove(&job) else {
            return;
        };
        let key = self.share_key(&m.namespace);
        let Some(level) = self.levels.get_mut(&Reverse(m.priority)) else {
            return;
        };
        if let Some(queue) = level.queues.get_mut(&m.namespace) {
            queue.remove(&(m.submit_seq, job));
            if queue.is_empty() {
                level.queues.remove(&m.namespace);
                level.order.remove(&(key, m.namespace.clone()));
            }
        }
        if level.queues.is_empty() {
            self.levels.remove(&Reverse(m.priority));
        }
    }

    /// Forgets a job entirely (templates too).
    pub fn forget_job(&mut self, job: JobId) {
        self.remove_job(job);
        self.templates.remove(&job);
    }

    /// Whether the job is in the index.
    pub fn contains(&self, job: JobId) -> bool {
        self.members.contains_key(&job)
    }

    /// Jobs in lease order: priority, then fair share, then submit order.
    /// The order changes as tasks are granted, so callers take the first
    /// job they can use and ask again.
    pub fn in_order(&self) -> impl Iterator<Item = JobId> + '_ {
        self.levels.values().flat_map(|level| {
            level.order.iter().flat_map(move |(_, ns)| {
                level
                    .queues
                    .get(ns)
                    .into_iter()
                    .flatten()
                    .map(|(_, job)| *job)
            })
        })
    }

    /// Number of jobs in the index.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no job is in the index.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_share_then_fifo() {
        let mut index = ReadyIndex::new(BTreeMap::new());
        index.insert_job(JobId(1), 50, "a", 1);
        index.insert_job(JobId(2), 50, "a", 2);
        index.insert_job(JobId(3), 50, "b", 3);
        index.insert_job(JobId(4), 90, "c", 4);
        let order: Vec<u128> = index.in_order().map(|j| j.0).collect();
        assert_eq!(order, [4, 1, 2, 3]);
        // Namespace a now runs 2 tasks, b none: b goes first at priority 50.
        index.add_running("a", 2);
        let order: Vec<u128> = index.in_order().map(|j| j.0).collect();
        assert_eq!(order, [4, 3, 1, 2]);
    }

    #[test]
    fn weights_scale_the_share() {
        let mut index = ReadyIndex::new(BTreeMap::from([("big".to_owned(), 4)]));
        index.insert_job(JobId(1), 50, "big", 1);
        index.insert_job(JobId(2), 50, "small", 2);
        index.add_running("big", 3);
        index.add_running("small", 1);
        // 3/4 < 1/1: the heavier namespace still goes first.
        assert_eq!(index.in_order().next(), Some(JobId(1)));
        index.add_running("big", 2);
        assert_eq!(index.in_order().next(), Some(JobId(2)));
    }

    #[test]
    fn removal_cleans_up_levels() {
        let mut index = ReadyIndex::new(BTreeMap::new());
        index.insert_job(JobId(1), 10, "a", 1);
        index.remove_job(JobId(1));
        assert!(index.is_empty());
        assert_eq!(index.in_order().count(), 0);
        assert!(index.levels.is_empty());
    }
}
