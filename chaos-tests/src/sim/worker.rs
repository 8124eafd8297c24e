//! A simulated worker: registers, leases tasks, "runs" each for a seeded
//! time while heartbeating, then completes it (or fails it, retryably).
//!
//! The nemesis can pause a worker past its lease TTL: it then wakes up and
//! reports with tokens that are stale by now, exactly what fencing must
//! refuse. It can also crash one, which forgets its tasks and registers
//! again.

use std::collections::BTreeMap;

use drover_coordinator::state::attempt::attempt_prefix;
use drover_coordinator::state::{
    Command, HeartbeatStatus, Manifest, Outcome, Rejection, TaskKey, TaskProgress,
};

use super::history::{AckedCompletion, Actor, History, Record};
use super::workload::{Caller, Payload, Reply, Request};
use crate::rng::Rng;

/// Slots per worker.
const SLOTS: u32 = 2;

/// A task the worker runs.
#[derive(Debug, Clone, Copy)]
struct Running {
    /// Its lease's token.
    token: u64,
    /// Its attempt number (with the token, it names the output prefix).
    attempt: u32,
    /// When the work is done.
    done_at_ms: u64,
    /// Whether it ends in a (retryable) failure.
    fails: bool,
}

/// One worker operation.
#[derive(Debug, Clone)]
enum Op {
    Register,
    Lease,
    Heartbeat(Vec<(TaskKey, u64)>),
    Complete(TaskKey, u64),
    Fail(TaskKey, u64),
}

/// A simulated worker.
#[derive(Debug)]
pub struct Worker {
    /// Its number.
    pub index: u32,
    /// Its id at the coordinator.
    name: String,
    /// Its own random stream.
    rng: Rng,
    /// Its requests: numbering, the one in flight, the leader hint.
    caller: Caller<Op>,
    /// Whether the coordinator knows it.
    registered: bool,
    /// The session its leases and heartbeats name.
    epoch: u64,
    /// Tasks it runs.
    running: BTreeMap<TaskKey, Running>,
    /// When it last sent a heartbeat.
    last_heartbeat_ms: u64,
    /// How often it heartbeats.
    heartbeat_interval_ms: u64,
    /// It does nothing until then (SIGSTOP).
    pub paused_until_ms: u64,
}

impl Worker {
    /// A worker that heartbeats every `heartbeat_interval_ms`.
    pub fn new(index: u32, rng: Rng, heartbeat_interval_ms: u64) -> Self {
        Self {
            index,
            name: format!("w{index}"),
            rng,
            caller: Caller::new(Actor::Worker(index)),
            registered: false,
            epoch: 0,
            running: BTreeMap::new(),
            last_heartbeat_ms: 0,
            heartbeat_interval_ms,
            paused_until_ms: 0,
        }
    }

    /// Crashes: forgets its tasks and its registration. A reply to the
    /// operation in flight is ignored.
    pub fn crash(&mut self) {
        self.running.clear();
        self.registered = false;
        self.caller.forget();
    }

    /// Picks the next request, if any.
    pub fn wake(&mut self, now_ms: u64, nodes: &[u64], history: &mut History) -> Option<Request> {
        if self.caller.busy() || now_ms < self.paused_until_ms {
            return None;
        }
        let finished = self
            .running
            .iter()
            .find(|(_, r)| r.done_at_ms <= now_ms)
            .map(|(k, r)| (*k, *r));
        let op = if !self.registered {
            Op::Register
        } else if !self.running.is_empty()
            && now_ms >= self.last_heartbeat_ms + self.heartbeat_interval_ms
        {
            self.last_heartbeat_ms = now_ms;
            Op::Heartbeat(self.running.iter().map(|(k, r)| (*k, r.token)).collect())
        } else if let Some((task, run)) = finished {
            if run.fails {
                Op::Fail(task, run.token)
            } else {
                Op::Complete(task, run.token)
            }
        } else if (self.running.len() as u32) < SLOTS {
            Op::Lease
        } else {
            return None;
        };
        let worker = self.name.clone();
        let epoch = self.epoch;
        let (what, payload) = match &op {
            Op::Register => (
                "register".to_owned(),
                Command::RegisterWorker {
                    worker,
                    slots: SLOTS,
                    labels: BTreeMap::new(),
                    kinds: Vec::new(),
                }
                .into(),
            ),
            Op::Lease => {
                let free = SLOTS - self.running.len() as u32;
                (
                    format!("lease {free}"),
                    Command::LeaseInSession {
                        worker,
                        epoch,
                        max_tasks: free,
                    }
                    .into(),
                )
            }
            Op::Heartbeat(tasks) => (
                format!("heartbeat {}", tasks.len()),
                Payload::Heartbeat {
                    worker,
                    epoch,
                    tasks: tasks
                        .iter()
                        .map(|(task, token)| TaskProgress {
                            task: *task,
                            token: *token,
                            progress_permille: 500,
                        })
                        .collect(),
                },
            ),
            Op::Complete(task, token) => (
                format!("complete {task} token={token}"),
                Command::Complete {
                    worker,
                    task: *task,
                    token: *token,
                    // Written under the attempt's own prefix, which the
                    // state machine checks.
                    manifest: Manifest {
                        prefix: self
                            .running
                            .get(task)
                            .map_or_else(String::new, |r| attempt_prefix(*task, r.attempt, *token)),
                        ..Manifest::default()
                    },
                    skipped: false,
                }
                .into(),
            ),
            Op::Fail(task, token) => (
                format!("fail {task} token={token}"),
                Command::Fail {
                    worker,
                    task: *task,
                    token: *token,
                    retryable: true,
                    message: "sim: a retryable failure".into(),
                }
                .into(),
            ),
        };
        Some(
            self.caller
                .send(&mut self.rng, nodes, now_ms, what, op, payload, history),
        )
    }

    /// Handles the reply to operation `op` (ignored unless it is the one in
    /// flight).
    pub fn on_reply(&mut self, now_ms: u64, op: u64, reply: Reply, history: &mut History) {
        let Some(pending) = self.caller.take_reply(op, &reply) else {
            return;
        };
        let actor = self.caller.actor;
        let result = match reply {
            Reply::Applied(mut out) => out.pop(),
            Reply::Refused(e) => {
                history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: e.to_string(),
                });
                return;
            }
            Reply::Unreachable => {
                history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: "unreachable".into(),
                });
                return;
            }
            Reply::Unknown(why) => {
                history.push(Record::Info {
                    at_ms: now_ms,
                    actor,
                    op,
                    why,
                });
                return;
            }
        };
        let what = match &result {
            Some(Ok(outcome)) => format!("{outcome:?}"),
            Some(Err(rejection)) => format!("{rejection:?}"),
            None => "no result".to_owned(),
        };
        let ok = matches!(result, Some(Ok(_)));
        if let Some(Err(Rejection::UnknownWorker(_) | Rejection::UnknownSession { .. })) = result {
            // Forgotten, or its session declared lost: register again and
            // go on in the new session with the tasks it holds.
            self.registered = false;
        }
        match (pending, result) {
            (Op::Register, Some(Ok(Outcome::Registered { epoch, .. }))) => {
                self.registered = true;
                self.epoch = epoch;
            }
            (Op::Lease, Some(Ok(Outcome::Leased(grants)))) => {
                for g in grants {
                    // Most tasks are quick; some run for several TTLs, so a
                    // paused worker's stale report meets a live newer lease.
                    let run_ms = if self.rng.per_mille(300) {
                        self.rng.range(2_000, 9_000)
                    } else {
                        self.rng.range(100, 1_500)
                    };
                    self.running.insert(
                        g.task,
                        Running {
                            token: g.token,
                            attempt: g.attempt,
                            done_at_ms: now_ms + run_ms,
                            fails: self.rng.per_mille(80),
                        },
                    );
                }
            }
            (Op::Heartbeat(sent), Some(Ok(Outcome::Heartbeat(reply)))) => {
                for (task, status) in reply.tasks {
                    let lost = matches!(
                        status,
                        HeartbeatStatus::LeaseLost | HeartbeatStatus::JobCancelled
                    );
                    let token = sent.iter().find(|(t, _)| *t == task).map(|(_, tok)| *tok);
                    if lost && self.running.get(&task).map(|r| r.token) == token {
                        self.running.remove(&task);
                    }
                }
            }
            (Op::Complete(task, token), Some(Ok(Outcome::Completed { .. }))) => {
                history.acked_completions.push(AckedCompletion {
                    at_ms: now_ms,
                    task,
                    token,
                });
                self.forget(task, token);
            }
            (Op::Complete(task, token) | Op::Fail(task, token), _) => self.forget(task, token),
            _ => {}
        }
        history.push(if ok {
            Record::Ok {
                at_ms: now_ms,
                actor,
                op,
                what,
            }
        } else {
            Record::Fail {
                at_ms: now_ms,
                actor,
                op,
                why: what,
            }
        });
    }

    fn forget(&mut self, task: TaskKey, token: u64) {
        if self.running.get(&task).map(|r| r.token) == Some(token) {
            self.running.remove(&task);
        }
    }
}
