//! What each task did, for people: how many attempts it took, which worker
//! ran it last, when it first started and when it finished; and when each
//! template started and finished.
//!
//! Kept beside the scheduling state rather than in it: nothing here decides
//! what runs next, except the attempts a task had before a `job retry`,
//! which its fresh retry budget is counted from.
//!
//! Cost. A task that has started and not finished keeps a [`Running`]
//! entry (about 60 bytes, as many as are leased or waiting to retry). A
//! finished task is packed with its neighbours in runs of [`RUN`]: a
//! presence bit and four varints (attempts, the worker's index in the
//! template's worker table, the start as milliseconds after the template's
//! start, and the duration), about 7 to 9 bytes for tasks of seconds to
//! hours. Finishing a task re-encodes its run (at most 64 records). `cargo bench -p drover-coordinator --bench state_memory` measures
//! it at 1M and 10M partitions (see docs/development.md, Performance).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::StateMachine;
use super::types::{JobId, TaskKey, WorkerId};

/// Partitions per packed run: one bit each in a `u64`.
pub const RUN: u64 = 64;

/// One task's history, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    /// Attempts started, across every `job retry`.
    pub attempts: u32,
    /// The worker of the latest attempt.
    pub worker: Option<WorkerId>,
    /// When the first attempt was leased.
    pub started_ms: i64,
    /// When the task last became terminal (succeeded, failed, cancelled);
    /// `None` while it can still run.
    pub finished_ms: Option<i64>,
}

/// A task that has started and is not terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// When its first attempt was leased.
    pub first_start_ms: i64,
    /// Index of the latest attempt's worker in the template's table.
    pub worker: u32,
    /// Attempts it had before the latest `job retry`: its retry budget
    /// counts from there, its attempt numbers go on from there.
    pub retry_base: u32,
}

/// Finished tasks of partitions `RUN * n .. RUN * (n + 1)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Bit `i`: partition `start + i` has a record.
    present: u64,
    /// The present offsets' records, in order, as [`Encoded`] tuples.
    bytes: Vec<u8>,
}

/// A finished task's fields, as packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    attempts: u32,
    worker: Option<u32>,
    started_ms: i64,
    finished_ms: i64,
}

/// A finished task as encoded: attempts, worker index + 1 (0 for none),
/// start after the template's start, duration. postcard writes integers
/// as varints (and signed ones zigzagged), so small values take a byte or
/// two.
type Encoded = (u32, u32, i64, u64);

impl Run {
    /// Every record, in offset order, with `base` the template's start.
    fn decode(&self, base: i64) -> Vec<(u8, Packed)> {
        // Written by `encode` below; a record that does not decode (a bug)
        // reads as no records rather than stopping the state machine.
        let encoded: Vec<Encoded> = postcard::from_bytes(&self.bytes).unwrap_or_default();
        (0..RUN as u8)
            .filter(|o| self.present & (1u64 << o) != 0)
            .zip(encoded)
            .map(|(offset, (attempts, worker, start, duration))| {
                let started_ms = base.saturating_add(start);
                (
                    offset,
                    Packed {
                        attempts,
                        worker: worker.checked_sub(1),
                        started_ms,
                        finished_ms: started_ms.saturating_add(duration as i64),
                    },
                )
            })
            .collect()
    }

    fn encode(records: &[(u8, Packed)], base: i64) -> Self {
        let present = records.iter().fold(0u64, |bits, (o, _)| bits | (1u64 << o));
        let encoded: Vec<Encoded> = records
            .iter()
            .map(|(_, p)| {
                (
                    p.attempts,
                    p.worker.map_or(0, |w| w + 1),
                    p.started_ms.saturating_sub(base),
                    p.finished_ms.saturating_sub(p.started_ms).max(0) as u64,
                )
            })
            .collect();
        // Encoding plain integers into a Vec cannot fail.
        let mut bytes = postcard::to_stdvec(&encoded).unwrap_or_default();
        // The encoder grows its buffer by doubling; a run is kept for the
        // job's life, so it keeps only what it uses.
        bytes.shrink_to_fit();
        Run { present, bytes }
    }
}

/// The history of one template's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHistory {
    /// When its first task was leased.
    pub started_ms: Option<i64>,
    /// When its last task became terminal; cleared by `job retry`.
    pub finished_ms: Option<i64>,
    /// Workers that ran its tasks, indexed by the records.
    workers: Vec<WorkerId>,
    /// Tasks started and not terminal.
    running: BTreeMap<u64, Running>,
    /// Terminal tasks, packed by run.
    finished: BTreeMap<u64, Run>,
    /// The retry base of terminal tasks that were retried (few), so their
    /// budget still reads right.
    retried: BTreeMap<u64, u32>,
}

fn split(partition: u64) -> (u64, u8) {
    // The remainder is below RUN (64), so it fits a u8.
    (partition / RUN, (partition % RUN) as u8)
}

impl TemplateHistory {
    /// The template's start, the base of packed start times.
    fn base(&self) -> i64 {
        self.started_ms.unwrap_or(0)
    }

    fn worker_index(&mut self, worker: &WorkerId) -> u32 {
        match self.workers.iter().position(|w| w == worker) {
            Some(i) => i as u32,
            None => {
                self.workers.push(worker.clone());
                (self.workers.len() - 1) as u32
            }
        }
    }

    fn packed(&self, partition: u64) -> Option<Packed> {
        let (run, offset) = split(partition);
        self.finished
            .get(&run)?
            .decode(self.base())
            .into_iter()
            .find(|(o, _)| *o == offset)
            .map(|(_, p)| p)
    }

    fn set_packed(&mut self, partition: u64, record: Option<Packed>) {
        let (run, offset) = split(partition);
        let base = self.base();
        let mut records = self
            .finished
            .get(&run)
            .map(|r| r.decode(base))
            .unwrap_or_default();
        records.retain(|(o, _)| *o != offset);
        if let Some(p) = record {
            let at = records.partition_point(|(o, _)| *o < offset);
            records.insert(at, (offset, p));
        }
        if records.is_empty() {
            self.finished.remove(&run);
        } else {
            self.finished.insert(run, Run::encode(&records, base));
        }
    }

    /// An attempt of `partition` was leased to `worker` at `now`.
    pub fn leased(&mut self, partition: u64, worker: &WorkerId, now: i64) {
        self.started_ms.get_or_insert(now);
        let worker = self.worker_index(worker);
        self.running
            .entry(partition)
            .and_modify(|r| r.worker = worker)
            .or_insert(Running {
                first_start_ms: now,
                worker,
                retry_base: 0,
            });
    }

    /// `partition` became terminal at `now` after `attempts` attempts.
    /// A task that never started keeps no record.
    pub fn finished(&mut self, partition: u64, attempts: u32, now: i64) {
        let Some(running) = self.running.remove(&partition) else {
            return;
        };
        if running.retry_base > 0 {
            self.retried.insert(partition, running.retry_base);
        }
        self.set_packed(
            partition,
            Some(Packed {
                attempts,
                worker: Some(running.worker),
                started_ms: running.first_start_ms,
                finished_ms: now,
            }),
        );
    }

    /// `partition` runs again after `job retry`: returns the attempts it
    /// had, which its next attempt number and its new budget count from.
    pub fn retried(&mut self, partition: u64) -> u32 {
        let Some(p) = self.packed(partition) else {
            return self.running.get(&partition).map_or(0, |r| r.retry_base);
        };
        self.set_packed(partition, None);
        self.retried.remove(&partition);
        self.running.insert(
            partition,
            Running {
                first_start_ms: p.started_ms,
                worker: p.worker.unwrap_or(0),
                retry_base: p.attempts,
            },
        );
        p.attempts
    }

    /// Attempts `partition` had before the latest `job retry`.
    pub fn retry_base(&self, partition: u64) -> u32 {
        match self.running.get(&partition) {
            Some(r) => r.retry_base,
            None => self.retried.get(&partition).copied().unwrap_or(0),
        }
    }

    /// The history of `partition`; `attempt` is its task record's current
    /// attempt number, when it has one (a task not yet terminal).
    pub fn task(&self, partition: u64, attempt: Option<u32>) -> Option<TaskHistory> {
        if let Some(r) = self.running.get(&partition) {
            return Some(TaskHistory {
                attempts: attempt.unwrap_or(r.retry_base),
                worker: self.workers.get(r.worker as usize).cloned(),
                started_ms: r.first_start_ms,
                finished_ms: None,
            });
        }
        let p = self.packed(partition)?;
        Some(TaskHistory {
            attempts: p.attempts,
            worker: p.worker.and_then(|w| self.workers.get(w as usize).cloned()),
            started_ms: p.started_ms,
            finished_ms: Some(p.finished_ms),
        })
    }

    /// Partitions with a record (running or finished) in `range`.
    pub fn partitions_in(&self, range: Range<u64>) -> Vec<u64> {
        let mut out: Vec<u64> = self.running.range(range.clone()).map(|(p, _)| *p).collect();
        let first = range.start / RUN;
        let last = range.end.div_ceil(RUN).max(first);
        for (n, run) in self.finished.range(first..last) {
            for o in 0..RUN as u8 {
                let p = n * RUN + u64::from(o);
                if run.present & (1u64 << o) != 0 && range.contains(&p) {
                    out.push(p);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Tasks with a record.
    pub fn len(&self) -> usize {
        self.running.len()
            + self
                .finished
                .values()
                .map(|r| r.present.count_ones() as usize)
                .sum::<usize>()
    }

    /// Whether no task has a record.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.finished.is_empty()
    }
}

/// A template's history without its tasks' records, which storage keeps
/// in chunks of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHeader {
    /// When its first task was leased.
    pub started_ms: Option<i64>,
    /// When its last task became terminal.
    pub finished_ms: Option<i64>,
    /// Workers that ran its tasks.
    pub workers: Vec<WorkerId>,
}

/// The records of the partitions in one range, as storage keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    running: Vec<(u64, Running)>,
    finished: Vec<(u64, Run)>,
    retried: Vec<(u64, u32)>,
}

impl Chunk {
    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.finished.is_empty() && self.retried.is_empty()
    }
}

impl TemplateHistory {
    /// Everything but the tasks' records.
    pub fn header(&self) -> TemplateHeader {
        TemplateHeader {
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            workers: self.workers.clone(),
        }
    }

    /// A history with `header` and no task records yet.
    pub fn from_header(header: TemplateHeader) -> Self {
        Self {
            started_ms: header.started_ms,
            finished_ms: header.finished_ms,
            workers: header.workers,
            ..Self::default()
        }
    }

    /// The records of partitions in `range`, whose bounds are multiples of
    /// [`RUN`].
    pub fn chunk(&self, range: Range<u64>) -> Chunk {
        debug_assert!(range.start.is_multiple_of(RUN));
        Chunk {
            running: self
                .running
                .range(range.clone())
                .map(|(p, r)| (*p, *r))
                .collect(),
            finished: self
                .finished
                .range(range.start / RUN..range.end / RUN)
                .map(|(n, run)| (*n, run.clone()))
                .collect(),
            retried: self.retried.range(range).map(|(p, b)| (*p, *b)).collect(),
        }
    }

    /// Adds the records of a stored chunk.
    pub fn load(&mut self, chunk: Chunk) {
        self.running.extend(chunk.running);
        self.finished.extend(chunk.finished);
        self.retried.extend(chunk.retried);
    }
}

/// The history of one job's templates, by template index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHistory {
    /// One per template.
    pub templates: Vec<TemplateHistory>,
}

impl JobHistory {
    /// An empty history for a job of `templates` templates.
    pub fn new(templates: usize) -> Self {
        Self {
            templates: vec![TemplateHistory::default(); templates],
        }
    }
}

impl StateMachine {
    /// The history of `key`'s template, marked as changed for storage.
    fn task_history(&mut self, key: TaskKey) -> Option<&mut TemplateHistory> {
        self.changes.history.insert(key);
        self.changes.jobs.insert(key.job);
        self.core
            .history
            .get_mut(&key.job)?
            .templates
            .get_mut(key.template as usize)
    }

    /// An attempt of `key` was leased to `worker`.
    pub(super) fn history_leased(&mut self, key: TaskKey, worker: &WorkerId) {
        let now = self.core.now_ms;
        if let Some(h) = self.task_history(key) {
            h.leased(key.partition, worker, now);
        }
    }

    /// `key` became terminal after `attempts` attempts.
    pub(super) fn history_finished(&mut self, key: TaskKey, attempts: u32) {
        let now = self.core.now_ms;
        if let Some(h) = self.task_history(key) {
            h.finished(key.partition, attempts, now);
        }
    }

    /// `key` runs again after `job retry`; returns the attempts it had.
    pub(super) fn history_retried(&mut self, key: TaskKey) -> u32 {
        self.task_history(key)
            .map_or(0, |h| h.retried(key.partition))
    }

    /// Attempts `key` had before the latest `job retry`.
    pub fn retry_base_of(&self, key: TaskKey) -> u32 {
        self.retry_base(key)
    }

    /// Attempts `key` had before the latest `job retry`.
    pub(super) fn retry_base(&self, key: TaskKey) -> u32 {
        self.core
            .history
            .get(&key.job)
            .and_then(|h| h.templates.get(key.template as usize))
            .map_or(0, |h| h.retry_base(key.partition))
    }

    /// Template `t` of `job` finished (`Some(now)`) or runs again (`None`).
    pub(super) fn history_template_finished(&mut self, job: JobId, t: u32, at: Option<i64>) {
        self.changes.jobs.insert(job);
        if let Some(h) = self
            .core
            .history
            .get_mut(&job)
            .and_then(|h| h.templates.get_mut(t as usize))
        {
            h.finished_ms = at;
        }
    }

    /// The history of task `key`, if it ever started.
    pub fn task_history_of(&self, key: TaskKey) -> Option<TaskHistory> {
        let attempt = self
            .core
            .jobs
            .get(&key.job)?
            .templates
            .get(key.template as usize)?
            .tasks
            .get(&key.partition)
            .map(|r| r.attempt);
        self.core
            .history
            .get(&key.job)?
            .templates
            .get(key.template as usize)?
            .task(key.partition, attempt)
    }

    /// When template `t` of `job` started and finished.
    pub fn template_times(&self, job: JobId, t: u32) -> (Option<i64>, Option<i64>) {
        self.core
            .history
            .get(&job)
            .and_then(|h| h.templates.get(t as usize))
            .map_or((None, None), |h| (h.started_ms, h.finished_ms))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_task_keeps_its_first_start_last_worker_and_attempts_across_retry() {
        let mut h = TemplateHistory::default();
        h.leased(7, &"w1".to_owned(), 1_000);
        h.leased(7, &"w2".to_owned(), 5_000);
        assert_eq!(
            h.task(7, Some(2)),
            Some(TaskHistory {
                attempts: 2,
                worker: Some("w2".into()),
                started_ms: 1_000,
                finished_ms: None,
            })
        );
        h.finished(7, 2, 9_000);
        assert_eq!(h.task(7, None).unwrap().finished_ms, Some(9_000));
        assert_eq!(h.task(7, None).unwrap().attempts, 2);
        // `job retry`: the count goes on from 2, the first start stays.
        assert_eq!(h.retried(7), 2);
        assert_eq!(h.retry_base(7), 2);
        h.leased(7, &"w3".to_owned(), 20_000);
        h.finished(7, 3, 21_000);
        let t = h.task(7, None).unwrap();
        assert_eq!(
            (t.attempts, t.worker.as_deref(), t.started_ms, t.finished_ms),
            (3, Some("w3"), 1_000, Some(21_000))
        );
        // Its budget still counts from the retry once it is done.
        assert_eq!(h.retry_base(7), 2);
        // Never started: no record.
        h.finished(8, 0, 30_000);
        assert_eq!(h.task(8, None), None);
    }

    #[test]
    fn a_finished_task_of_seconds_costs_under_ten_bytes() {
        let mut h = TemplateHistory::default();
        let start = 1_780_272_000_000;
        for p in 0..RUN {
            let at = start + p as i64 * 1_500;
            h.leased(p, &"worker-a".to_owned(), at);
            h.finished(p, 1, at + 2_345);
        }
        let bytes = h.finished[&0].bytes.len();
        assert!(bytes <= 9 * RUN as usize, "{bytes}");
    }

    proptest! {
        /// The packed table answers as a map of plain records would.
        #[test]
        fn packed_records_read_back_as_written(
            ops in prop::collection::vec(
                (0u64..300, 0u8..3, 0i64..10_000_000, 1u32..9),
                0..300,
            ),
        ) {
            let mut h = TemplateHistory::default();
            let mut model: BTreeMap<u64, TaskHistory> = BTreeMap::new();
            let mut now = 1_780_272_000_000i64;
            for (p, op, step, attempts) in ops {
                now += step;
                let worker = format!("w{}", step % 5);
                match op {
                    0 => {
                        h.leased(p, &worker, now);
                        let m = model.entry(p).or_insert(TaskHistory {
                            attempts: 0,
                            worker: None,
                            started_ms: now,
                            finished_ms: None,
                        });
                        if m.finished_ms.is_some() {
                            // A lease of a finished task only follows a
                            // retry in the state machine; model that.
                            h.retried(p);
                            h.leased(p, &worker, now);
                            m.finished_ms = None;
                        }
                        m.worker = Some(worker);
                    }
                    1 => {
                        h.finished(p, attempts, now);
                        if let Some(m) = model.get_mut(&p).filter(|m| m.finished_ms.is_none()) {
                            m.attempts = attempts;
                            m.finished_ms = Some(now);
                        }
                    }
                    _ => {
                        h.retried(p);
                        if let Some(m) = model.get_mut(&p).filter(|m| m.finished_ms.is_some()) {
                            m.finished_ms = None;
                        }
                    }
                }
            }
            for p in 0..300 {
                let got = h.task(p, None).map(|t| (t.worker, t.started_ms, t.finished_ms));
                let want = model.get(&p).map(|t| (t.worker.clone(), t.started_ms, t.finished_ms));
                prop_assert_eq!(got, want);
                if let Some(m) = model.get(&p).filter(|m| m.finished_ms.is_some()) {
                    prop_assert_eq!(h.task(p, None).unwrap().attempts, m.attempts);
                }
            }
            prop_assert_eq!(h.len(), model.len());
            let bytes = postcard::to_stdvec(&h).unwrap();
            let back: TemplateHistory = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, h);
        }
    }
}
