//! Writing changed records and loading the whole state back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional, Tree};

use super::keys;
use crate::state::changes::Changes;
use crate::state::events::{Event, EventLog};
use crate::state::history::{self, JobHistory, TemplateHistory};
use crate::state::job::{Counts, TaskRecord, Template, TemplateDef, TemplateStatus};
use crate::state::outputs::{Output, Outputs};
use crate::state::schedule::Schedule;
use crate::state::{
    Config, Core, Job, JobId, JobState, ScheduleId, StateMachine, Submitted, TaskKey, Worker,
};

/// Version of the on-disk layout. A binary refuses a store written in a
/// version it does not know.
///
/// Version 2: jobs keep their `traceparent`, templates their open time.
/// Version 3: task records, outputs and events are stored in chunks.
/// Version 4: API tokens, in `meta/security`.
/// Version 5: namespace policies, also in `meta/security`.
/// Version 6: task history (template headers in the job header, task
/// records in `history`), 128-bit job and schedule ids in keys.
pub const STORAGE_FORMAT_VERSION: u32 = 6;

/// Task records, outputs or events per stored value. One sled value per
/// chunk rather than per record: sled's per-insert cost dominated the
/// coordinator's profile under load (`drover bench`), and records change in
/// runs (leases walk a template's partitions in order, events append), so
/// a chunk rewritten is mostly records that changed anyway.
pub const CHUNK_RECORDS: u64 = 256;

/// The first index of the chunk holding index `i`.
fn chunk_start(i: u64) -> u64 {
    i - i % CHUNK_RECORDS
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled reported an error (IO, corruption, full disk).
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    /// A record does not decode.
    #[error("state store record {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// Written by a binary with another layout.
    #[error(
        "state store format version {found} is not supported by this binary (it reads version {STORAGE_FORMAT_VERSION})"
    )]
    UnsupportedFormat {
        /// The version found.
        found: u32,
    },
}

/// The scalar part of [`Core`].
#[derive(Serialize, Deserialize)]
struct CoreMeta {
    config: Config,
    now_ms: i64,
    next_job: u64,
    next_schedule: u64,
    next_token: u64,
    next_epoch: u64,
    id_seed: u64,
}

/// A job without its task records, outputs and events, which have trees of
/// their own. Field order is the encoding: change it only with a format bump.
#[derive(Serialize, Deserialize)]
struct JobHeader {
    id: JobId,
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    priority: u8,
    max_parallel: u32,
    spec_hash: String,
    idempotency_key: Option<String>,
    schedule: Option<ScheduleId>,
    fire_time_ms: Option<i64>,
    submit_seq: u64,
    state: JobState,
    created_ms: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    counts: Counts,
    cancel_reason: Option<String>,
    trace_parent: Option<String>,
    last_event_seq: u64,
    templates: Vec<TemplateHeader>,
    history: Vec<history::TemplateHeader>,
}

#[derive(Serialize, Deserialize)]
struct TemplateHeader {
    def: TemplateDef,
    status: TemplateStatus,
    remaining_upstream: u32,
    cursor: u64,
    requeued: BTreeSet<u64>,
    counts: Counts,
    opened_ms: i64,
}

impl JobHeader {
    fn of(job: &Job, history: Option<&JobHistory>) -> Self {
        Self {
            id: job.id,
            name: job.name.clone(),
            namespace: job.namespace.clone(),
            labels: job.labels.clone(),
            priority: job.priority,
            max_parallel: job.max_parallel,
            spec_hash: job.spec_hash.clone(),
            idempotency_key: job.idempotency_key.clone(),
            schedule: job.schedule,
            fire_time_ms: job.fire_time_ms,
            submit_seq: job.submit_seq,
            state: job.state,
            created_ms: job.created_ms,
            started_ms: job.started_ms,
            finished_ms: job.finished_ms,
            counts: job.counts,
            cancel_reason: job.cancel_reason.clone(),
            trace_parent: job.trace_parent.clone(),
            last_event_seq: job.events.last_seq(),
            templates: job
                .templates
                .iter()
                .map(|t| TemplateHeader {
                    def: t.def.clone(),
                    status: t.status,
                    remaining_upstream: t.remaining_upstream,
                    cursor: t.cursor,
                    requeued: t.requeued.clone(),
                    counts: t.counts,
                    opened_ms: t.opened_ms,
                })
                .collect(),
            history: history
                .map(|h| h.templates.iter().map(TemplateHistory::header).collect())
                .unwrap_or_default(),
        }
    }

    fn into_job(self) -> (Job, u64, JobHistory) {
        let history = JobHistory {
            templates: self
                .history
                .into_iter()
                .map(TemplateHistory::from_header)
                .collect(),
        };
        let job = Job {
            id: self.id,
            name: self.name,
            namespace: self.namespace,
            labels: self.labels,
            priority: self.priority,
            max_parallel: self.max_parallel,
            spec_hash: self.spec_hash,
            idempotency_key: self.idempotency_key,
            schedule: self.schedule,
            fire_time_ms: self.fire_time_ms,
            submit_seq: self.submit_seq,
            state: self.state,
            created_ms: self.created_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            templates: self
                .templates
                .into_iter()
                .map(|t| Template {
                    def: t.def,
                    status: t.status,
                    remaining_upstream: t.remaining_upstream,
                    cursor: t.cursor,
                    tasks: BTreeMap::new(),
                    requeued: t.requeued,
                    counts: t.counts,
                    outputs: Outputs::default(),
                    opened_ms: t.opened_ms,
                })
                .collect(),
            counts: self.counts,
            events: EventLog::default(),
            cancel_reason: self.cancel_reason,
            trace_parent: self.trace_parent,
        };
        (job, self.last_event_seq, history)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    postcard::to_stdvec(value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// The state machine's sled database.
#[derive(Debug, Clone)]
pub struct StateStore {
    db: sled::Db,
    meta: Tree,
    jobs: Tree,
    tasks: Tree,
    outputs: Tree,
    history: Tree,
    events: Tree,
    workers: Tree,
    schedules: Tree,
    idempotency: Tree,
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(Self {
            meta: db.open_tree("meta")?,
            jobs: db.open_tree("jobs")?,
            tasks: db.open_tree("tasks")?,
            outputs: db.open_tree("outputs")?,
            history: db.open_tree("history")?,
            events: db.open_tree("events")?,
            workers: db.open_tree("workers")?,
            schedules: db.open_tree("schedules")?,
            idempotency: db.open_tree("idempotency")?,
            db,
        })
    }

    /// Writes the records `changes` names, as they are in `sm`, and the
    /// applied index, in one atomic transaction.
    pub fn persist(
        &self,
        sm: &StateMachine,
        changes: &Changes,
        applied_index: u64,
    ) -> Result<(), StorageError> {
        let core = sm.core();
        let mut meta = Batch::default();
        let mut jobs = Batch::default();
        let mut tasks = Batch::default();
        let mut outputs = Batch::default();
        let mut histories = Batch::default();
        let mut events = Batch::default();
        let mut workers = Batch::default();
        let mut schedules = Batch::default();
        let mut idempotency = Batch::default();

        meta.insert("format", &STORAGE_FORMAT_VERSION.to_be_bytes());
        meta.insert(
            "core",
            encode(&CoreMeta {
                config: core.config.clone(),
                now_ms: core.now_ms,
                next_job: core.next_job,
                next_schedule: core.next_schedule,
                next_token: core.next_token,
                next_epoch: core.next_epoch,
                id_seed: core.id_seed,
            }),
        );
        meta.insert("applied_index", &applied_index.to_be_bytes());
        if changes.security {
            meta.insert("security", encode(&core.security));
        }

        for id in &changes.jobs {
            match core.jobs.get(id) {
                Some(job) => jobs.insert(
                    &keys::job(*id),
                    encode(&JobHeader::of(job, core.history.get(id))),
                ),
                None => {
                    // Collected: drop every record of the job.
                    jobs.remove(&keys::job(*id));
                    let prefix = id.0.to_be_bytes();
                    for tree_and_batch in [
                        (&self.tasks, &mut tasks),
                        (&self.outputs, &mut outputs),
                        (&self.history, &mut histories),
                        (&self.events, &mut events),
                    ] {
                        for key in tree_and_batch.0.scan_prefix(prefix).keys() {
                            tree_and_batch.1.remove(key?);
                        }
                    }
                }
            }
        }
        write_chunks(core, &changes.tasks, &mut tasks, |t, range| {
            t.tasks.range(range).map(|(p, r)| (*p, r)).collect()
        });
        write_chunks(core, &changes.outputs, &mut outputs, |t, range| {
            t.outputs.range(range).collect()
        });
        write_history_chunks(core, &changes.history, &mut histories);
        self.write_events(core, &changes.events_from, &mut events)?;
        for id in &changes.workers {
            match core.workers.get(id) {
                Some(w) => workers.insert(id.as_bytes(), encode(w)),
                None => workers.remove(id.as_bytes()),
            }
        }
        for id in &changes.schedules {
            match core.schedules.get(id) {
                Some(s) => schedules.insert(&keys::schedule(*id), encode(s)),
                None => schedules.remove(&keys::schedule(*id)),
            }
        }
        for entry in &changes.idempotency {
            let key = keys::idempotency(&entry.0, &entry.1);
            match core.idempotency.get(entry) {
                Some(v) => idempotency.insert(key, encode(v)),
                None => idempotency.remove(key),
            }
        }

        self.commit([
            meta,
            jobs,
            tasks,
            outputs,
            histories,
            events,
            workers,
            schedules,
            idempotency,
        ])
    }

    /// Rewrites the event chunks of each job in `events_from` from the
    /// first changed event on, and drops chunks out of retention.
    fn write_events(
        &self,
        core: &Core,
        events_from: &BTreeMap<JobId, u64>,
        events: &mut Batch,
    ) -> Result<(), StorageError> {
        for (id, from) in events_from {
            let Some(job) = core.jobs.get(id) else {
                continue;
            };
            let Some(oldest) = job.events.iter().next().map(|e| e.seq) else {
                for key in self.events.scan_prefix(id.0.to_be_bytes()).keys() {
                    events.remove(key?);
                }
                continue;
            };
            // The chunk holding the oldest event is rewritten too: events
            // that fell out of retention may have left its head.
            let mut dirty: BTreeSet<u64> = BTreeSet::from([chunk_start(oldest)]);
            let newest = job.events.iter().next_back().map_or(oldest, |e| e.seq);
            let mut chunk = chunk_start((*from).max(oldest));
            while chunk <= newest {
                dirty.insert(chunk);
                chunk += CHUNK_RECORDS;
            }
            for chunk in dirty {
                let first = chunk.max(oldest);
                let end = chunk + CHUNK_RECORDS;
                // Sequence numbers are consecutive, so the chunk's first
                // event sits `first - oldest` places in.
                let chunk_events: Vec<&Event> = job
                    .events
                    .iter()
                    .skip((first - oldest) as usize)
                    .take_while(|e| e.seq < end)
                    .filter(|e| e.seq >= chunk)
                    .collect();
                events.insert(&keys::event(*id, chunk), encode(&chunk_events));
            }
            // Chunks wholly out of retention.
            for key in self
                .events
                .range(keys::event(*id, 0)..keys::event(*id, chunk_start(oldest)))
                .keys()
            {
                events.remove(key?);
            }
        }
        Ok(())
    }

    /// Applies one batch to each tree, all in one transaction.
    fn commit(&self, batches: [Batch; 9]) -> Result<(), StorageError> {
        let trees = [
            &self.meta,
            &self.jobs,
            &self.tasks,
            &self.outputs,
            &self.history,
            &self.events,
            &self.workers,
            &self.schedules,
            &self.idempotency,
        ];
        trees[..]
            .transaction(|views| {
                for (view, batch) in views.iter().zip(&batches) {
                    view.apply_batch(batch)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StorageError::Sled(e),
                TransactionError::Abort(()) => StorageError::Corrupt {
                    what: "transaction".into(),
                    detail: "aborted".into(),
                },
            })
    }

    /// Replaces the whole stored state with `sm` at `applied_index` (after
    /// a snapshot from the leader). Not atomic across the clear; a crash in
    /// between leaves the checkpoint file, written first, to restore from.
    pub fn replace(&self, sm: &StateMachine, applied_index: u64) -> Result<(), StorageError> {
        self.clear()?;
        self.persist(sm, &sm.all_changes(), applied_index)
    }

    /// Empties every tree: the store then loads as `None`, and the node
    /// rebuilds it from its checkpoint and log.
    pub fn clear(&self) -> Result<(), StorageError> {
        for tree in [
            &self.meta,
            &self.jobs,
            &self.tasks,
            &self.outputs,
            &self.history,
            &self.events,
            &self.workers,
            &self.schedules,
            &self.idempotency,
        ] {
            tree.clear()?;
        }
        Ok(())
    }

    /// The format version of the stored state; `None` when nothing was
    /// stored.
    pub fn stored_format(&self) -> Result<Option<u32>, StorageError> {
        if self.meta.get("core")?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.meta
                .get("format")?
                .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
                .unwrap_or(0),
        ))
    }

    /// Flushes sled's buffers to the OS (not an fsync; see the module doc).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// The stored applied index, if any state was stored.
    pub fn applied_index(&self) -> Result<Option<u64>, StorageError> {
        Ok(self
            .meta
            .get("applied_index")?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Loads the stored state and its applied index; `None` for an empty
    /// store. Indexes are rebuilt as on snapshot restore.
    pub fn load(&self) -> Result<Option<(StateMachine, u64)>, StorageError> {
        let Some(core_bytes) = self.meta.get("core")? else {
            return Ok(None);
        };
        let format = self.stored_format()?.unwrap_or(0);
        if format != STORAGE_FORMAT_VERSION {
            return Err(StorageError::UnsupportedFormat { found: format });
        }
        let meta: CoreMeta = decode("meta/core", &core_bytes)?;
        let applied_index = self.applied_index()?.unwrap_or(0);

        let mut jobs = BTreeMap::new();
        let mut last_seqs = BTreeMap::new();
        let mut histories = BTreeMap::new();
        for item in self.jobs.iter() {
            let (_, value) = item?;
            let (job, last_seq, history) = decode::<JobHeader>("jobs", &value)?.into_job();
            last_seqs.insert(job.id, last_seq);
            histories.insert(job.id, history);
            jobs.insert(job.id, job);
        }
        for item in self.history.iter() {
            let (key, value) = item?;
            let chunk = keys::parse_task(&key).ok_or_else(|| corrupt_key("history"))?;
            let records: history::Chunk = decode("history", &value)?;
            if let Some(t) = histories
                .get_mut(&chunk.job)
                .and_then(|h: &mut JobHistory| h.templates.get_mut(chunk.template as usize))
            {
                t.load(records);
            }
        }
        for item in self.tasks.iter() {
            let (key, value) = item?;
            let chunk = keys::parse_task(&key).ok_or_else(|| corrupt_key("tasks"))?;
            let records: Vec<(u64, TaskRecord)> = decode("tasks", &value)?;
            if let Some(t) = jobs
                .get_mut(&chunk.job)
                .and_then(|j: &mut Job| j.templates.get_mut(chunk.template as usize))
            {
                t.tasks.extend(records);
            }
        }
        for item in self.outputs.iter() {
            let (key, value) = item?;
            let chunk = keys::parse_task(&key).ok_or_else(|| corrupt_key("outputs"))?;
            let records: Vec<(u64, Output)> = decode("outputs", &value)?;
            if let Some(t) = jobs
                .get_mut(&chunk.job)
                .and_then(|j: &mut Job| j.templates.get_mut(chunk.template as usize))
            {
                t.outputs.extend(records);
            }
        }
        let mut events: BTreeMap<JobId, VecDeque<Event>> = BTreeMap::new();
        for item in self.events.iter() {
            let (key, value) = item?;
            let (job, _) = keys::parse_event(&key).ok_or_else(|| corrupt_key("events"))?;
            let chunk: Vec<Event> = decode("events", &value)?;
            events.entry(job).or_default().extend(chunk);
        }
        for (id, job) in jobs.iter_mut() {
            let log = events.remove(id).unwrap_or_default();
            job.events = EventLog::from_parts(log, last_seqs.get(id).copied().unwrap_or(0));
        }
        let mut workers = BTreeMap::new();
        for item in self.workers.iter() {
            let (key, value) = item?;
            let id = String::from_utf8(key.to_vec()).map_err(|_| corrupt_key("workers"))?;
            workers.insert(id, decode::<Worker>("workers", &value)?);
        }
        let mut schedules = BTreeMap::new();
        for item in self.schedules.iter() {
            let (_, value) = item?;
            let schedule: Schedule = decode("schedules", &value)?;
            schedules.insert(schedule.id, schedule);
        }
        let mut idempotency = BTreeMap::new();
        for item in self.idempotency.iter() {
            let (key, value) = item?;
            let entry = keys::parse_idempotency(&key).ok_or_else(|| corrupt_key("idempotency"))?;
            idempotency.insert(entry, decode::<(Submitted, String)>("idempotency", &value)?);
        }
        let security = match self.meta.get("security")? {
            Some(bytes) => decode("meta/security", &bytes)?,
            None => Default::default(),
        };
        let core = Core {
            security,
            config: meta.config,
            now_ms: meta.now_ms,
            next_job: meta.next_job,
            next_schedule: meta.next_schedule,
            next_token: meta.next_token,
            next_epoch: meta.next_epoch,
            jobs,
            workers,
            schedules,
            idempotency,
            history: histories,
            id_seed: meta.id_seed,
        };
        Ok(Some((StateMachine::from_core(core), applied_index)))
    }
}

/// Rewrites (or removes, once empty) every chunk holding a changed key,
/// from the records `records_of` a template as they are now.
fn write_chunks<'a, V: Serialize>(
    core: &'a Core,
    changed: &BTreeSet<TaskKey>,
    batch: &mut Batch,
    records_in: impl Fn(&'a Template, Range<u64>) -> Vec<(u64, V)>,
) {
    rewrite_chunks(changed, batch, |chunk, range| {
        let records = template_of(core, chunk)
            .map(|t| records_in(t, range))
            .unwrap_or_default();
        (!records.is_empty()).then(|| encode(&records))
    });
}

/// Rewrites (or removes, once empty) every history chunk holding a
/// changed key.
fn write_history_chunks(core: &Core, changed: &BTreeSet<TaskKey>, batch: &mut Batch) {
    rewrite_chunks(changed, batch, |chunk, range| {
        let records = core
            .history
            .get(&chunk.job)
            .and_then(|h| h.templates.get(chunk.template as usize))
            .map(|t| t.chunk(range))
            .unwrap_or_default();
        (!records.is_empty()).then(|| encode(&records))
    });
}

/// For every chunk holding a key of `changed`, writes what `encoded`
/// gives for the chunk's key and partition range, or removes the chunk
/// when it gives nothing.
fn rewrite_chunks(
    changed: &BTreeSet<TaskKey>,
    batch: &mut Batch,
    encoded: impl Fn(TaskKey, Range<u64>) -> Option<Vec<u8>>,
) {
    let chunks: BTreeSet<TaskKey> = changed
        .iter()
        .map(|k| TaskKey {
            partition: chunk_start(k.partition),
            ..*k
        })
        .collect();
    for chunk in chunks {
        let range = chunk.partition..chunk.partition.saturating_add(CHUNK_RECORDS);
        match encoded(chunk, range) {
            Some(bytes) => batch.insert(&keys::task(chunk), bytes),
            None => batch.remove(&keys::task(chunk)),
        }
    }
}

/// The template a task key points into, if its job still exists.
fn template_of(core: &Core, key: crate::state::TaskKey) -> Option<&Template> {
    core.jobs
        .get(&key.job)?
        .templates
        .get(key.template as usize)
}

fn corrupt_key(tree: &str) -> StorageError {
    StorageError::Corrupt {
        what: tree.to_owned(),
        detail: "malformed key".to_owned(),
    }
}
