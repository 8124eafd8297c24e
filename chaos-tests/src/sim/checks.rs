//! The checker: replays the committed log to check the lease protocol and
//! restore equivalence, then checks the callers' history against the final
//! state.
//!
//! Lease liveness is modelled exactly as the state machine defines it: a
//! grant is live from the entry that grants it until a completion, a
//! failure or a cancel ends it, or until a `Tick` applies at or after its
//! deadline (the lease deadline, moved by accepted heartbeats, or the
//! attempt's timeout, whichever is first). The state machine expires
//! leases only on ticks, so a grant past its deadline but not yet ticked
//! is still live.

use std::collections::{BTreeMap, BTreeSet};

use drover_coordinator::planted::PlantedBugs;
use drover_coordinator::raft::backend::BOOTSTRAP_INDEX;
use drover_coordinator::raft::cluster_clock::AGREEMENT_MS;
use drover_coordinator::state::{
    Applied, Command, Config, Grant, HeartbeatStatus, JobId, LogEntry, Outcome, StateMachine,
    Submitted, TaskKey,
};

use super::history::History;
use super::ledger::{Ledger, Slot};
use super::node::EPOCH_UNIX_MS;
use super::report::Findings;

/// Entries between the shadow state's snapshot-and-restore round trips.
const RESTORE_EVERY_ENTRIES: u64 = 37;

/// A live grant.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// Its token.
    token: u64,
    /// Lease deadline (moved by heartbeats).
    lease_deadline_ms: i64,
    /// Attempt timeout deadline.
    timeout_deadline_ms: i64,
    /// The term of the entry that granted it, and when that entry first
    /// applied (virtual time): the granting leader's timer starts then.
    granted: (u64, u64),
}

/// Where in the log a command is replayed.
#[derive(Debug, Clone, Copy)]
struct At {
    /// Log index.
    index: u64,
    /// Term of its entry: which leader proposed it.
    term: u64,
    /// When its entry first applied (virtual time).
    applied_ms: u64,
    /// When the check runs (virtual time), for findings.
    check_ms: u64,
}

/// What the replay knows about one task.
#[derive(Debug, Default)]
struct Track {
    /// The latest token granted.
    last_token: u64,
    /// The live grant, if any.
    live: Option<Live>,
    /// The token of the accepted completion, if any.
    accepted: Option<u64>,
}

/// The replay of the committed log.
#[derive(Debug)]
pub struct Replay {
    /// A state machine fed the committed log, restored from its own
    /// snapshot every few entries; `None` once a gap in the ledger stops
    /// it.
    shadow: Option<StateMachine>,
    /// The bugs the replicas run with (the shadow must run them too).
    planted: PlantedBugs,
    /// The state machine's clock: the latest entry time.
    now_ms: i64,
    /// Per task.
    tasks: BTreeMap<TaskKey, Track>,
    /// The next index to replay.
    next_index: u64,
    /// Where a gap stopped the replay, if it did.
    pub gap_at: Option<u64>,
    /// Per idempotency key, the jobs the log's submits returned.
    key_jobs: BTreeMap<String, BTreeSet<JobId>>,
    /// Heartbeats that renewed a lease: per (task, token), the terms and
    /// virtual times of the leaders that renewed it.
    renewals: BTreeMap<(TaskKey, u64), Vec<(u64, u64)>>,
    /// The lease TTL, in virtual milliseconds.
    lease_ttl_ms: u64,
}

impl Replay {
    /// A replay from an empty state with `config`.
    pub fn new(config: Config, planted: PlantedBugs) -> Self {
        let lease_ttl_ms = config.lease_ttl_ms;
        let mut shadow = StateMachine::new(config);
        shadow.plant(planted);
        Self {
            shadow: Some(shadow),
            planted,
            now_ms: 0,
            tasks: BTreeMap::new(),
            // The bootstrap snapshot is the empty state; entries follow it.
            next_index: BOOTSTRAP_INDEX + 1,
            gap_at: None,
            key_jobs: BTreeMap::new(),
            renewals: BTreeMap::new(),
            lease_ttl_ms,
        }
    }

    /// Records that the leader of `term` renewed the lease of `task` with
    /// `token` at virtual time `at_ms` (a heartbeat it answered OK).
    pub fn renewed(&mut self, task: TaskKey, token: u64, term: u64, at_ms: u64) {
        self.renewals
            .entry((task, token))
            .or_default()
            .push((term, at_ms));
    }

    /// The shadow state and the index it reached, if it is still running.
    pub fn shadow(&self) -> Option<(&StateMachine, u64)> {
        self.shadow.as_ref().map(|sm| (sm, self.next_index - 1))
    }

    /// Replays every ledger entry not yet replayed, up to the first
    /// missing index (which some replica may still fill in).
    pub fn advance(&mut self, ledger: &Ledger, at_ms: u64, findings: &mut Findings) {
        if self.gap_at.is_some() {
            return;
        }
        while let Some(slot) = ledger.slots.get(&self.next_index) {
            self.replay_slot(self.next_index, slot, at_ms, findings);
            self.next_index += 1;
        }
    }

    /// Ends the replay: an index still missing below the ledger's last one
    /// is a gap no replica filled (its checks cannot run past it).
    pub fn finish(&mut self, ledger: &Ledger, at_ms: u64, findings: &mut Findings) {
        self.advance(ledger, at_ms, findings);
        if ledger.last_index() >= self.next_index {
            self.gap_at = Some(self.next_index);
            self.shadow = None;
            // Every committed entry is applied by the leader that commits
            // it or by a later one, so no replica may skip it all the way
            // through; and past a gap the log's checks would go silent.
            findings.check("replicas-agree", at_ms, false, || {
                format!(
                    "no replica applied index {}, below the last applied {}: the log's checks stop there",
                    self.next_index,
                    ledger.last_index()
                )
            });
        }
    }

    fn replay_slot(&mut self, index: u64, slot: &Slot, at_ms: u64, findings: &mut Findings) {
        let Slot::Entry {
            entry,
            outcomes,
            term,
            applied_at_ms,
            ..
        } = slot
        else {
            return;
        };
        let at = At {
            index,
            term: *term,
            applied_ms: *applied_at_ms,
            check_ms: at_ms,
        };
        // The replicated clock never runs ahead of true time by more than
        // the agreement window, whatever one node's wall clock says (it is
        // stamped before it applies, so it cannot be late to the apply).
        let true_ms = EPOCH_UNIX_MS + *applied_at_ms as i64;
        findings.check(
            "cluster-time-true",
            at_ms,
            entry.now_ms <= true_ms + AGREEMENT_MS,
            || {
                format!(
                    "index {index} is stamped {} ms ahead of true time",
                    entry.now_ms - true_ms
                )
            },
        );
        if let Some(shadow) = &mut self.shadow {
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mine = shadow.apply(entry);
                let _ = shadow.take_changes();
                mine
            }));
            let Ok(mine) = applied else {
                // The replicas hit the same panic; the replay goes on
                // without a shadow state.
                findings.violation(
                    "state-invariants",
                    at_ms,
                    format!("the state machine panicked applying index {index}"),
                );
                self.shadow = None;
                return self.replay_commands(at, entry, outcomes, findings);
            };
            findings.check("restore-equivalent", at_ms, mine == *outcomes, || {
                format!(
                    "at index {index}, a state restored from snapshots returned {mine:?} where the replicas returned {outcomes:?}"
                )
            });
            if index.is_multiple_of(RESTORE_EVERY_ENTRIES) {
                let bytes = shadow.snapshot();
                match StateMachine::restore(&bytes) {
                    Ok(mut restored) => {
                        restored.plant(self.planted);
                        findings.check(
                            "restore-equivalent",
                            at_ms,
                            restored.snapshot() == bytes,
                            || format!("at index {index}, restore(snapshot) snapshots differently"),
                        );
                        *shadow = restored;
                    }
                    Err(e) => findings.violation(
                        "restore-equivalent",
                        at_ms,
                        format!("at index {index}, the snapshot does not restore: {e}"),
                    ),
                }
            }
        }
        self.replay_commands(at, entry, outcomes, findings);
    }

    fn replay_commands(
        &mut self,
        at: At,
        entry: &LogEntry,
        outcomes: &[Applied],
        findings: &mut Findings,
    ) {
        self.now_ms = self.now_ms.max(entry.now_ms);
        for (command, outcome) in entry.commands.iter().zip(outcomes) {
            self.replay_command(at, command, outcome, findings);
        }
    }

    fn replay_command(
        &mut self,
        at: At,
        command: &Command,
        outcome: &Applied,
        findings: &mut Findings,
    ) {
        let now = self.now_ms;
        let (index, at_ms) = (at.index, at.check_ms);
        match (command, outcome) {
            (Command::SubmitJob(submit), Ok(Outcome::Submitted { id, .. })) => {
                if let (Some(key), Submitted::Job(job)) = (&submit.idempotency_key, id) {
                    self.key_jobs.entry(key.clone()).or_default().insert(*job);
                }
            }
            (Command::Tick, Ok(_)) => {
                // A tick ends only attempts past their timeout; leases end
                // by the leader's expiry entries.
                for track in self.tasks.values_mut() {
                    if track.live.is_some_and(|l| l.timeout_deadline_ms <= now) {
                        track.live = None;
                    }
                }
            }
            (Command::ExpireLeases { tasks }, Ok(Outcome::LeasesExpired(expired))) => {
                self.replay_expiry(at, tasks, expired, findings);
            }
            (
                Command::Lease { .. } | Command::LeaseInSession { .. },
                Ok(Outcome::Leased(grants)),
            ) => self.replay_grants(at, grants, findings),
            (Command::Heartbeat { tasks, .. }, Ok(Outcome::Heartbeat(reply))) => {
                for (progress, (task, status)) in tasks.iter().zip(&reply.tasks) {
                    if let HeartbeatStatus::Ok { lease_deadline_ms } = status
                        && let Some(live) = self
                            .tasks
                            .get_mut(task)
                            .and_then(|t| t.live.as_mut())
                            .filter(|l| l.token == progress.token)
                    {
                        live.lease_deadline_ms = *lease_deadline_ms;
                    }
                }
            }
            (Command::Complete { task, token, .. }, Ok(Outcome::Completed { duplicate })) => {
                let track = self.tasks.entry(*task).or_default();
                if *duplicate {
                    findings.check("single-completion", at_ms, track.accepted == Some(*token), || {
                        format!(
                            "at index {index}, a completion of task {task} with token {token} was taken as a repeat, but the accepted one is {:?}",
                            track.accepted
                        )
                    });
                } else {
                    let live = track.live.map(|l| l.token);
                    findings.check("fenced-completion", at_ms, live == Some(*token), || {
                        format!(
                            "at index {index}, a completion of task {task} with token {token} was accepted; the live grant is {live:?} and the latest token {}",
                            track.last_token
                        )
                    });
                    findings.check("single-completion", at_ms, track.accepted.is_none(), || {
                        format!(
                            "at index {index}, task {task} completed again with token {token} after token {:?}",
                            track.accepted
                        )
                    });
                    track.accepted = Some(*token);
                    track.live = None;
                }
            }
            (Command::Fail { task, token, .. }, Ok(Outcome::FailRecorded { .. })) => {
                let track = self.tasks.entry(*task).or_default();
                let live = track.live.map(|l| l.token);
                findings.check("fenced-completion", at_ms, live == Some(*token), || {
                    format!(
                        "at index {index}, a failure of task {task} with token {token} was accepted; the live grant is {live:?}"
                    )
                });
                track.live = None;
            }
            (Command::Release { tasks, .. }, Ok(Outcome::Released { not_held, .. })) => {
                for (task, token) in tasks {
                    if !not_held.contains(task)
                        && let Some(track) = self.tasks.get_mut(task)
                        && track.live.is_some_and(|l| l.token == *token)
                    {
                        track.live = None;
                    }
                }
            }
            (Command::CancelJob { job, .. }, Ok(_)) => {
                for (_, track) in self.tasks.range_mut(job_range(*job)) {
                    track.live = None;
                }
            }
            _ => {}
        }
    }

    /// Leases the leader expired: none before one TTL after the expiring
    /// leader's own grant or renewal.
    fn replay_expiry(
        &mut self,
        at: At,
        tasks: &[(TaskKey, u64)],
        expired: &[TaskKey],
        findings: &mut Findings,
    ) {
        let (index, at_ms) = (at.index, at.check_ms);
        for (task, token) in tasks {
            if !expired.contains(task) {
                continue;
            }
            let Some(track) = self.tasks.get_mut(task) else {
                continue;
            };
            let Some(live) = track.live.filter(|l| l.token == *token) else {
                continue;
            };
            // The expiring leader timed the lease from its own
            // grant or its own last renewal: one TTL must have
            // passed since, in real (virtual) time, whatever the
            // wall clocks say. Renewals by other leaders do not
            // bind it (it restarted every timer when it took over).
            let grant = (live.granted.0 == at.term).then_some(live.granted.1);
            let renewed = self
                .renewals
                .get(&(*task, *token))
                .into_iter()
                .flatten()
                .filter(|(term, t)| *term == at.term && *t <= at.applied_ms)
                .map(|(_, t)| *t)
                .max();
            if let Some(last) = grant.max(renewed) {
                findings.check(
                    "leases-not-expired-early",
                    at_ms,
                    at.applied_ms >= last + self.lease_ttl_ms,
                    || {
                        format!(
                            "at index {index}, the lease of task {task} with token {token} expired at {} ms, {} ms after the leader of term {} last granted or renewed it (the TTL is {} ms)",
                            at.applied_ms,
                            at.applied_ms - last,
                            at.term,
                            self.lease_ttl_ms
                        )
                    },
                );
            }
            track.live = None;
        }
    }

    /// Grants: tokens increase, never two live grants of one task or a
    /// grant after its success, never before its upstream succeeded.
    fn replay_grants(&mut self, at: At, grants: &[Grant], findings: &mut Findings) {
        let now = self.now_ms;
        let (index, at_ms) = (at.index, at.check_ms);
        for grant in grants {
            let upstream = self.upstream_unfinished(grant.task);
            let track = self.tasks.entry(grant.task).or_default();
            findings.check(
                "tokens-increase",
                at_ms,
                grant.token > track.last_token,
                || {
                    format!(
                        "at index {index}, task {} was granted token {} after token {}",
                        grant.task, grant.token, track.last_token
                    )
                },
            );
            findings.check("no-overlapping-grants", at_ms, track.live.is_none(), || {
                format!(
                    "at index {index}, task {} was granted token {} while token {} was live",
                    grant.task,
                    grant.token,
                    track.live.map_or(0, |l| l.token)
                )
            });
            findings.check("no-overlapping-grants", at_ms, track.accepted.is_none(), || {
                format!(
                    "at index {index}, task {} was granted token {} after it succeeded with token {}",
                    grant.task,
                    grant.token,
                    track.accepted.unwrap_or(0)
                )
            });
            if let Some(unfinished) = upstream {
                findings.check("dag-order", at_ms, unfinished.is_empty(), || {
                    format!(
                        "at index {index}, task {} was granted before upstream tasks {unfinished:?} succeeded",
                        grant.task
                    )
                });
            }
            track.last_token = track.last_token.max(grant.token);
            track.live = Some(Live {
                token: grant.token,
                lease_deadline_ms: grant.lease_deadline_ms,
                timeout_deadline_ms: now.saturating_add(grant.timeout_ms as i64),
                granted: (at.term, at.applied_ms),
            });
        }
    }

    /// Upstream tasks of `task` without an accepted completion (`None` when
    /// the shadow state is gone and the job's graph is unknown).
    fn upstream_unfinished(&self, task: TaskKey) -> Option<Vec<TaskKey>> {
        let shadow = self.shadow.as_ref()?;
        let job = shadow.job(task.job)?;
        let template = job.templates.get(task.template as usize)?;
        let mut unfinished = Vec::new();
        for up in &template.def.depends_on {
            let count = job.templates.get(*up as usize).map_or(0, |t| t.def.count);
            for partition in 0..count {
                let key = TaskKey {
                    job: task.job,
                    template: *up,
                    partition,
                };
                if self.tasks.get(&key).and_then(|t| t.accepted).is_none() {
                    unfinished.push(key);
                }
            }
        }
        Some(unfinished)
    }

    /// The accepted completion's token of a task, if any.
    pub fn accepted_token(&self, task: TaskKey) -> Option<u64> {
        self.tasks.get(&task).and_then(|t| t.accepted)
    }
}

fn job_range(job: JobId) -> std::ops::RangeInclusive<TaskKey> {
    TaskKey {
        job,
        template: 0,
        partition: 0,
    }..=TaskKey {
        job,
        template: u32::MAX,
        partition: u64::MAX,
    }
}

/// Checks the callers' history against the replay and the final state
/// `sm` (the state every replica converged to, if they did).
pub fn check_history(
    history: &History,
    replay: &Replay,
    sm: Option<&StateMachine>,
    at_ms: u64,
    findings: &mut Findings,
) {
    let mut jobs_by_key: BTreeMap<&str, BTreeSet<JobId>> = BTreeMap::new();
    for ack in &history.acked_submits {
        jobs_by_key.entry(&ack.key).or_default().insert(ack.job);
        if let Some(sm) = sm {
            let stored = sm
                .core()
                .idempotency
                .get(&("sim".to_owned(), ack.key.clone()))
                .map(|(s, _)| *s);
            findings.check(
                "acked-submit-durable",
                at_ms,
                stored == Some(Submitted::Job(ack.job)) && sm.job(ack.job).is_some(),
                || {
                    format!(
                        "key {} was acknowledged as {} at {} ms, but the final state has {stored:?} under it",
                        ack.key, ack.job, ack.at_ms
                    )
                },
            );
        }
    }
    for (key, jobs) in &jobs_by_key {
        let mut all = jobs.clone();
        if let Some(logged) = replay.key_jobs.get(*key) {
            all.extend(logged);
        }
        findings.check("one-job-per-key", at_ms, all.len() == 1, || {
            format!("key {key} named jobs {all:?}")
        });
    }
    for (key, jobs) in &replay.key_jobs {
        if !jobs_by_key.contains_key(key.as_str()) {
            findings.check("one-job-per-key", at_ms, jobs.len() == 1, || {
                format!("key {key} named jobs {jobs:?} in the log")
            });
        }
    }
    if replay.gap_at.is_none() {
        for ack in &history.acked_completions {
            let accepted = replay.accepted_token(ack.task);
            findings.check(
                "acked-completion-durable",
                at_ms,
                accepted == Some(ack.token),
                || {
                    format!(
                        "the completion of {} with token {} was acknowledged at {} ms, but the log accepted {accepted:?}",
                        ack.task, ack.token, ack.at_ms
                    )
                },
            );
        }
    }
}
