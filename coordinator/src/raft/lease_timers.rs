//! Leader-local lease and session timers: extending a lease is not a log
//! entry.
//!
//! A heartbeat renews the leases it names on the leader's monotonic clock
//! and writes nothing; only when a timer runs out does the leader propose
//! the lease's end ([`Command::ExpireLeases`]) or the session's
//! ([`Command::WorkersLost`]), and the state machine applies it only if the
//! lease (or session) is still the one that was timed. A wall clock plays
//! no part, so a node whose clock is an hour off can neither hasten nor
//! stall an expiry.
//!
//! **Architecture invariant:** a new leader gives every live lease and
//! session a fresh TTL from its own start. No lease expires early after a
//! failover (the old leader's timers are gone, and the new one starts
//! afresh), and none outlives its last heartbeat by more than one TTL plus
//! the election. (Nomad keeps heartbeats as leader-only timers the same
//! way.)
//!
//! What heartbeats report (progress, when a worker was last heard) is folded
//! into one small [`Command::Heard`] entry every [`HEARD_EVERY_MS`], so
//! readers on every node see it; stale heartbeats become audit events
//! through [`Command::StaleHeartbeats`].

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{
    Command, Grant, Outcome, StateMachine, TaskKey, TaskProgress, WorkerId, WorkerState,
};

/// How long after proposing an expiry the leader proposes it again if the
/// lease is still live (the first proposal may have been lost).
pub const REPROPOSE_MS: u64 = 5_000;

/// How often the leader writes down what heartbeats said.
pub const HEARD_EVERY_MS: u64 = 5_000;

/// Most leases or sessions one expiry command names.
pub const EXPIRIES_MAX: usize = 10_000;

/// One lease's timer.
#[derive(Debug, Clone, Copy)]
struct Timer {
    /// The lease's token: the timer is for this grant only.
    token: u64,
    /// When it runs out (monotonic ms).
    due_ms: u64,
}

/// One session's timer.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// The session's epoch.
    epoch: u64,
    /// When it runs out (monotonic ms).
    due_ms: u64,
}

/// What the leader proposes when timers run out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Leases to end, with their tokens.
    pub leases: Vec<(TaskKey, u64)>,
    /// Sessions to declare lost.
    pub sessions: Vec<(WorkerId, u64)>,
}

/// The leader's timers. Empty on a follower.
#[derive(Debug, Default)]
pub struct LeaseTimers {
    /// Live leases by task.
    leases: BTreeMap<TaskKey, Timer>,
    /// The same, by when they run out.
    lease_due: BTreeSet<(u64, TaskKey)>,
    /// Live sessions by worker.
    sessions: BTreeMap<WorkerId, Session>,
    /// The same, by when they run out.
    session_due: BTreeSet<(u64, WorkerId)>,
    /// Progress heartbeats reported since the last [`Command::Heard`].
    progress: BTreeMap<TaskKey, TaskProgress>,
    /// Sessions heard since the last [`Command::Heard`].
    heard: BTreeMap<WorkerId, u64>,
    /// When the last [`Command::Heard`] was proposed.
    heard_at_ms: u64,
}

impl LeaseTimers {
    /// Starts leading: every live lease and session gets a fresh TTL from
    /// now.
    pub fn start(&mut self, sm: &StateMachine, now_ms: u64) {
        *self = Self {
            heard_at_ms: now_ms,
            ..Self::default()
        };
        let config = &sm.core().config;
        let (ttl, timeout) = (config.lease_ttl_ms, config.worker_timeout_ms);
        for held in sm.indexes().worker_tasks.values() {
            for &key in held {
                if let Some(token) = sm.live_token(key) {
                    self.arm_lease(key, token, now_ms + ttl);
                }
            }
        }
        for (id, worker) in &sm.core().workers {
            if worker.state != WorkerState::Lost {
                self.arm_session(id, worker.epoch, now_ms + timeout);
            }
        }
    }

    /// Stops leading: the next leader times everything afresh.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Follows what one applied command did, on the leader: grants start
    /// timers, registrations and leases are a session heard, and ends stop
    /// timers (others are dropped when they run out and the lease is gone).
    pub fn applied(
        &mut self,
        sm: &StateMachine,
        command: &Command,
        outcome: &Outcome,
        now_ms: u64,
    ) {
        let config = &sm.core().config;
        let (ttl, timeout) = (config.lease_ttl_ms, config.worker_timeout_ms);
        match (command, outcome) {
            (Command::Lease { worker, .. } | Command::LeaseInSession { worker, .. }, _) => {
                if let Outcome::Leased(grants) = outcome {
                    for Grant { task, token, .. } in grants {
                        self.arm_lease(*task, *token, now_ms + ttl);
                    }
                }
                if let Some(w) = sm.core().workers.get(worker) {
                    self.arm_session(worker, w.epoch, now_ms + timeout);
                }
            }
            (Command::RegisterWorker { worker, .. }, Outcome::Registered { epoch, .. }) => {
                self.arm_session(worker, *epoch, now_ms + timeout);
            }
            (Command::Complete { task, .. } | Command::Fail { task, .. }, _) => {
                self.disarm_lease(*task);
            }
            (Command::DeregisterWorker { worker }, _) => {
                if let Some(s) = self.sessions.remove(worker) {
                    self.session_due.remove(&(s.due_ms, worker.clone()));
                }
            }
            _ => {}
        }
    }

    /// A heartbeat the state machine found good: the leases it names that
    /// are live, and the session, run on for another TTL from now.
    pub fn heartbeat(
        &mut self,
        sm: &StateMachine,
        worker: &WorkerId,
        epoch: u64,
        live: impl IntoIterator<Item = TaskProgress>,
        now_ms: u64,
    ) {
        let config = &sm.core().config;
        let (ttl, timeout) = (config.lease_ttl_ms, config.worker_timeout_ms);
        for progress in live {
            self.arm_lease(progress.task, progress.token, now_ms + ttl);
            self.progress.insert(progress.task, progress);
        }
        self.arm_session(worker, epoch, now_ms + timeout);
        self.heard.insert(worker.clone(), epoch);
    }

    /// The leases and sessions whose timers ran out by `now_ms` and that
    /// the state machine still holds, at most [`EXPIRIES_MAX`] of each.
    /// Their timers are re-armed [`REPROPOSE_MS`] ahead, in case the
    /// proposal is lost; timers of leases that ended otherwise are dropped.
    pub fn due(&mut self, sm: &StateMachine, now_ms: u64) -> Due {
        let mut due = Due::default();
        let ran_out: Vec<(u64, TaskKey)> = self
            .lease_due
            .range(..(now_ms.saturating_add(1), TaskKey::MIN))
            .take(EXPIRIES_MAX)
            .copied()
            .collect();
        for (at, key) in ran_out {
            self.lease_due.remove(&(at, key));
            let Some(timer) = self.leases.remove(&key) else {
                continue;
            };
            if sm.live_token(key) == Some(timer.token) {
                due.leases.push((key, timer.token));
                self.arm_lease(key, timer.token, now_ms + REPROPOSE_MS);
            }
        }
        let ran_out: Vec<(u64, WorkerId)> = self
            .session_due
            .range(..(now_ms.saturating_add(1), WorkerId::new()))
            .take(EXPIRIES_MAX)
            .cloned()
            .collect();
        for (at, id) in ran_out {
            self.session_due.remove(&(at, id.clone()));
            let Some(session) = self.sessions.remove(&id) else {
                continue;
            };
            let current = sm
                .core()
                .workers
                .get(&id)
                .is_some_and(|w| w.epoch == session.epoch && w.state != WorkerState::Lost);
            if current {
                due.sessions.push((id.clone(), session.epoch));
                self.arm_session(&id, session.epoch, now_ms + REPROPOSE_MS);
            }
        }
        due
    }

    /// What heartbeats said since the last time, once every
    /// [`HEARD_EVERY_MS`] and only when there is something.
    pub fn heard(&mut self, now_ms: u64) -> Option<Command> {
        if now_ms.saturating_sub(self.heard_at_ms) < HEARD_EVERY_MS
            || (self.heard.is_empty() && self.progress.is_empty())
        {
            return None;
        }
        self.heard_at_ms = now_ms;
        Some(Command::Heard {
            workers: std::mem::take(&mut self.heard).into_iter().collect(),
            tasks: std::mem::take(&mut self.progress).into_values().collect(),
        })
    }

    /// Leases being timed.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    fn arm_lease(&mut self, key: TaskKey, token: u64, due_ms: u64) {
        if let Some(old) = self.leases.insert(key, Timer { token, due_ms }) {
            self.lease_due.remove(&(old.due_ms, key));
        }
        self.lease_due.insert((due_ms, key));
    }

    fn disarm_lease(&mut self, key: TaskKey) {
        if let Some(old) = self.leases.remove(&key) {
            self.lease_due.remove(&(old.due_ms, key));
        }
        self.progress.remove(&key);
    }

    fn arm_session(&mut self, id: &WorkerId, epoch: u64, due_ms: u64) {
        match self.sessions.get_mut(id) {
            Some(s) => {
                self.session_due.remove(&(s.due_ms, id.clone()));
                *s = Session { epoch, due_ms };
            }
            None => {
                self.sessions.insert(id.clone(), Session { epoch, due_ms });
            }
        }
        self.session_due.insert((due_ms, id.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Applied, Config, LogEntry, SubmitJob};

    const TTL: u64 = 30_000;
    const WORKER_TIMEOUT: u64 = 60_000;

    /// Applies one command, as the leader would, and lets the timers
    /// follow it at monotonic time `mono_ms`.
    fn apply(sm: &mut StateMachine, timers: &mut LeaseTimers, mono_ms: u64, c: Command) -> Applied {
        let out = sm
            .apply(&LogEntry {
                now_ms: 1_000 + mono_ms as i64,
                commands: vec![c.clone()],
            })
            .remove(0);
        if let Ok(o) = &out {
            timers.applied(sm, &c, o, mono_ms);
        }
        out
    }

    /// A state with one worker `w` holding the lease of one task.
    fn leased() -> (StateMachine, LeaseTimers, TaskKey, u64, u64) {
        let mut sm = StateMachine::new(Config {
            lease_ttl_ms: TTL,
            worker_timeout_ms: WORKER_TIMEOUT,
            ..Config::default()
        });
        let mut timers = LeaseTimers::default();
        timers.start(&sm, 0);
        let yaml = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  tasks:\n    - {name: a, kind: noop}\n";
        apply(
            &mut sm,
            &mut timers,
            0,
            Command::SubmitJob(SubmitJob {
                file: "j.yaml".into(),
                spec_yaml: yaml.into(),
                params: Vec::new(),
                idempotency_key: None,
                trace_parent: None,
            }),
        )
        .unwrap();
        let Ok(Outcome::Registered { epoch, .. }) = apply(
            &mut sm,
            &mut timers,
            0,
            Command::RegisterWorker {
                worker: "w".into(),
                slots: 1,
                labels: Default::default(),
                kinds: Vec::new(),
            },
        ) else {
            panic!("registered");
        };
        let Ok(Outcome::Leased(grants)) = apply(
            &mut sm,
            &mut timers,
            1_000,
            Command::LeaseInSession {
                worker: "w".into(),
                epoch,
                max_tasks: 1,
            },
        ) else {
            panic!("leased");
        };
        (sm, timers, grants[0].task, grants[0].token, epoch)
    }

    fn beat(task: TaskKey, token: u64) -> TaskProgress {
        TaskProgress {
            task,
            token,
            progress_permille: 250,
        }
    }

    #[test]
    fn a_lease_runs_out_one_ttl_after_its_grant_or_last_heartbeat() {
        let (sm, mut timers, task, token, epoch) = leased();
        assert_eq!(timers.due(&sm, 1_000 + TTL - 1), Due::default());
        timers.heartbeat(&sm, &"w".into(), epoch, [beat(task, token)], 20_000);
        assert!(timers.due(&sm, 1_000 + TTL).leases.is_empty(), "renewed");
        assert!(timers.due(&sm, 20_000 + TTL - 1).leases.is_empty());
        assert_eq!(timers.due(&sm, 20_000 + TTL).leases, vec![(task, token)]);
        // Proposed once; again only if it is still live a while later.
        assert!(timers.due(&sm, 20_000 + TTL + 1).leases.is_empty());
        assert_eq!(
            timers.due(&sm, 20_000 + TTL + REPROPOSE_MS).leases,
            vec![(task, token)]
        );
    }

    #[test]
    fn a_new_leader_gives_every_live_lease_and_session_a_fresh_ttl() {
        let (sm, mut old, task, token, epoch) = leased();
        // The old leader heard a heartbeat at 20 s, then lost leadership;
        // the new one starts at 25 s knowing nothing of it.
        old.heartbeat(&sm, &"w".into(), epoch, [beat(task, token)], 20_000);
        old.clear();
        let mut new = LeaseTimers::default();
        new.start(&sm, 25_000);
        assert!(
            new.due(&sm, 25_000 + TTL - 1).leases.is_empty(),
            "not early"
        );
        assert_eq!(new.due(&sm, 25_000 + TTL).leases, vec![(task, token)]);
        assert!(
            new.due(&sm, 25_000 + WORKER_TIMEOUT - 1)
                .sessions
                .is_empty()
        );
        assert_eq!(
            new.due(&sm, 25_000 + WORKER_TIMEOUT).sessions,
            vec![("w".to_owned(), epoch)]
        );
    }

    #[test]
    fn ended_leases_and_replaced_sessions_are_not_expired() {
        let (mut sm, mut timers, task, token, epoch) = leased();
        apply(
            &mut sm,
            &mut timers,
            2_000,
            Command::Complete {
                worker: "w".into(),
                task,
                token,
                manifest: Default::default(),
                skipped: false,
            },
        )
        .unwrap();
        assert_eq!(timers.leases(), 0);
        // The worker registers again: its old session's timer is replaced.
        let Ok(Outcome::Registered { epoch: next, .. }) = apply(
            &mut sm,
            &mut timers,
            3_000,
            Command::RegisterWorker {
                worker: "w".into(),
                slots: 1,
                labels: Default::default(),
                kinds: Vec::new(),
            },
        ) else {
            panic!("registered");
        };
        assert!(next > epoch);
        let due = timers.due(&sm, 3_000 + WORKER_TIMEOUT);
        assert_eq!(due.sessions, vec![("w".to_owned(), next)]);
        assert!(due.leases.is_empty());
    }

    #[test]
    fn what_heartbeats_said_is_written_down_every_few_seconds() {
        let (sm, mut timers, task, token, epoch) = leased();
        assert_eq!(timers.heard(HEARD_EVERY_MS), None, "nothing heard yet");
        timers.heartbeat(&sm, &"w".into(), epoch, [beat(task, token)], 1_000);
        assert_eq!(timers.heard(HEARD_EVERY_MS - 1), None, "not yet");
        assert_eq!(
            timers.heard(HEARD_EVERY_MS),
            Some(Command::Heard {
                workers: vec![("w".to_owned(), epoch)],
                tasks: vec![beat(task, token)],
            })
        );
        assert_eq!(timers.heard(3 * HEARD_EVERY_MS), None, "only what changed");
    }
}
