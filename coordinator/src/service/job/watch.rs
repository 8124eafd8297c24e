//! WatchJob: polls a job's events on the leader and streams them until
//! the job ends or the client goes away.

use std::collections::{BTreeMap, BTreeSet};

use drover_proto::v1::{Job as WireJob, WatchJobResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::scan::events_page;
use super::*;
use crate::raft::node::{NodeError, NodeHandle};
use crate::service::node_status;
use crate::state::ids::JobRef;
use crate::state::{ScheduleId, StateMachine};

/// What one WatchJob poll saw.
#[derive(Debug)]
pub(super) struct WatchPoll {
    /// The job now.
    pub(super) job: WireJob,
    /// New events since the cursor.
    pub(super) events: Vec<drover_proto::v1::JobEvent>,
    /// The cursor for the next poll.
    pub(super) cursor: u64,
    /// Events between the old cursor and the oldest retained were pruned.
    pub(super) dropped: bool,
    /// The job is terminal.
    pub(super) terminal: bool,
    /// More events wait beyond this poll's bound.
    pub(super) more: bool,
}

pub(super) fn watch_poll(
    sm: &StateMachine,
    job_ref: JobRef,
    cursor: u64,
    kinds: &BTreeSet<i32>,
) -> Result<WatchPoll, Status> {
    match job_ref {
        JobRef::Job(id) => {
            let job = sm.job(id).ok_or_else(|| not_found(job_ref))?;
            let page = events_page(job, cursor, WATCH_EVENTS_PER_MESSAGE, None, kinds);
            Ok(WatchPoll {
                job: convert::job(sm, job, true, false),
                dropped: cursor > 0 && page.oldest_seq > cursor + 1,
                events: page.events,
                cursor: page.next_after_seq,
                terminal: job.state.is_terminal(),
                more: page.more,
            })
        }
        JobRef::Schedule(id) => {
            let schedule = sm
                .core()
                .schedules
                .get(&id)
                .ok_or_else(|| not_found(job_ref))?;
            Ok(WatchPoll {
                job: convert::schedule_job(sm, schedule, false, false),
                events: Vec::new(),
                cursor,
                dropped: false,
                terminal: schedule_state(schedule).is_terminal(),
                more: false,
            })
        }
    }
}

/// What a schedule's spec says about its job header (labels, priority,
/// parallelism), which the schedule record does not keep.
#[derive(Debug, Clone, Default)]
pub(super) struct ScheduleHeader {
    /// Labels from the spec.
    pub(super) labels: BTreeMap<String, String>,
    /// Priority from the spec.
    pub(super) priority: u32,
    /// `maxParallel` from the spec.
    pub(super) max_parallel: u32,
}

impl ScheduleHeader {
    pub(super) fn apply(&self, job: &mut WireJob) {
        job.labels = self.labels.clone();
        job.priority = self.priority;
        job.max_parallel = self.max_parallel;
    }
}

/// Re-plans a schedule's spec (as of its creation) for its header; off the
/// Raft thread and off the async threads.
pub(super) async fn schedule_header(
    node: &NodeHandle,
    id: ScheduleId,
) -> Result<ScheduleHeader, Status> {
    let source = node
        .read_local(move |sm| {
            sm.core().schedules.get(&id).map(|s| {
                (
                    s.file.clone(),
                    s.spec_yaml.clone(),
                    s.params.clone(),
                    s.created_ms,
                )
            })
        })
        .await
        .map_err(node_status)?;
    let Some((file, yaml, params, created_ms)) = source else {
        return Ok(ScheduleHeader::default());
    };
    let (_, plan) = plan_blocking(file, yaml, params, created_ms).await?;
    Ok(plan
        .map(|p| ScheduleHeader {
            labels: p.spec.labels.clone(),
            priority: u32::from(p.spec.priority),
            max_parallel: p.spec.max_parallel,
        })
        .unwrap_or_default())
}

/// Sends WatchJob messages until the job is terminal, the client leaves,
/// the node loses leadership or the job disappears.
pub(super) async fn watch_loop(
    node: NodeHandle,
    job_ref: JobRef,
    kinds: BTreeSet<i32>,
    header: Option<ScheduleHeader>,
    first: WatchPoll,
    tx: mpsc::Sender<Result<WatchJobResponse, Status>>,
) {
    let mut last: Option<WireJob> = None;
    let mut poll = first;
    loop {
        if let Some(header) = &header {
            header.apply(&mut poll.job);
        }
        let changed = last.as_ref() != Some(&poll.job) || !poll.events.is_empty() || poll.dropped;
        if changed {
            let message = WatchJobResponse {
                job: Some(poll.job.clone()),
                events: std::mem::take(&mut poll.events),
                events_dropped: poll.dropped,
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
        if poll.terminal && !poll.more {
            return;
        }
        let cursor = poll.cursor;
        last = Some(poll.job);
        if !poll.more {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
        }
        if !node.status().is_leader {
            let _ = tx
                .send(Err(node_status(NodeError::NotLeader {
                    leader: node.leader(),
                })))
                .await;
            return;
        }
        let kinds = kinds.clone();
        poll = match node
            .read_local(move |sm| watch_poll(sm, job_ref, cursor, &kinds))
            .await
        {
            Ok(Ok(poll)) => poll,
            Ok(Err(status)) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(node_status(e))).await;
                return;
            }
        };
    }
}
