//! A simulated client: submits small DAG jobs with idempotency keys,
//! retries every submit whose outcome it does not know with the same key,
//! sometimes resubmits a key it already saw succeed, and sometimes cancels
//! a job.

use drover_coordinator::state::{Command, JobId, Outcome, SubmitJob, Submitted};

use super::history::{AckedSubmit, Actor, History, Record};
use super::workload::{Caller, Reply, Request, job_spec};
use crate::rng::Rng;

/// One client operation.
#[derive(Debug, Clone)]
enum Op {
    /// Submit `yaml` under `key`.
    Submit {
        /// Idempotency key.
        key: String,
        /// The spec.
        yaml: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job.
        job: JobId,
    },
}

/// A simulated client.
#[derive(Debug)]
pub struct Client {
    /// Its number.
    pub index: u32,
    /// Its own random stream.
    rng: Rng,
    /// Its requests: numbering, the one in flight, the leader hint.
    caller: Caller<Op>,
    /// New submissions it still makes.
    submits_left: u32,
    /// A submission to send again (its outcome was unknown, or it was
    /// refused before being applied).
    retry: Option<Op>,
    /// Submissions it saw succeed: key, spec and job.
    acked: Vec<(String, String, JobId)>,
}

impl Client {
    /// A client that makes `submits` submissions.
    pub fn new(index: u32, rng: Rng, submits: u32) -> Self {
        Self {
            index,
            rng,
            caller: Caller::new(Actor::Client(index)),
            submits_left: submits,
            retry: None,
            acked: Vec::new(),
        }
    }

    /// Whether it has nothing left to do.
    pub fn done(&self) -> bool {
        self.submits_left == 0 && !self.caller.busy() && self.retry.is_none()
    }

    /// Stops making new submissions (the heal phase); retries go on.
    pub fn stop_new_work(&mut self) {
        self.submits_left = 0;
    }

    /// Picks the next request, if any.
    pub fn wake(&mut self, now_ms: u64, nodes: &[u64], history: &mut History) -> Option<Request> {
        if self.caller.busy() {
            return None;
        }
        let op = if let Some(op) = self.retry.take() {
            op
        } else if self.submits_left > 0 {
            let roll = self.rng.below(100);
            if roll < 8 && !self.acked.is_empty() {
                let (_, _, job) = self.acked[self.rng.index(self.acked.len())];
                Op::Cancel { job }
            } else if roll < 20 && !self.acked.is_empty() {
                // The same key and spec again: must name the same job.
                let (key, yaml, _) = self.acked[self.rng.index(self.acked.len())].clone();
                Op::Submit { key, yaml }
            } else {
                self.submits_left -= 1;
                let key = format!("c{}-k{}", self.index, self.caller.next_op());
                let yaml = job_spec(
                    &mut self.rng,
                    &format!("c{}-j{}", self.index, self.caller.next_op()),
                );
                Op::Submit { key, yaml }
            }
        } else {
            return None;
        };
        let (what, command) = match &op {
            Op::Submit { key, yaml } => (
                format!("submit key={key}"),
                Command::SubmitJob(SubmitJob {
                    file: "sim.yaml".into(),
                    spec_yaml: yaml.clone(),
                    params: Vec::new(),
                    idempotency_key: Some(key.clone()),
                    trace_parent: None,
                }),
            ),
            Op::Cancel { job } => (
                format!("cancel {job}"),
                Command::CancelJob {
                    job: *job,
                    reason: "sim".into(),
                },
            ),
        };
        Some(self.caller.send(
            &mut self.rng,
            nodes,
            now_ms,
            what,
            op,
            command.into(),
            history,
        ))
    }

    /// Handles the reply to operation `op` (ignored if it is not the one in
    /// flight: a late reply after a timeout).
    pub fn on_reply(&mut self, now_ms: u64, op: u64, reply: Reply, history: &mut History) {
        let Some(pending) = self.caller.take_reply(op, &reply) else {
            return;
        };
        let actor = self.caller.actor;
        match (reply, pending) {
            (Reply::Applied(mut out), Op::Submit { key, yaml }) => match out.pop() {
                Some(Ok(Outcome::Submitted {
                    id: Submitted::Job(job),
                    created,
                })) => {
                    history.push(Record::Ok {
                        at_ms: now_ms,
                        actor,
                        op,
                        what: format!("submitted {job} created={created}"),
                    });
                    history.acked_submits.push(AckedSubmit {
                        at_ms: now_ms,
                        key: key.clone(),
                        job,
                    });
                    if !self.acked.iter().any(|(k, _, _)| *k == key) {
                        self.acked.push((key, yaml, job));
                    }
                }
                other => history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: format!("{other:?}"),
                }),
            },
            (Reply::Applied(mut out), Op::Cancel { .. }) => match out.pop() {
                Some(Ok(outcome)) => history.push(Record::Ok {
                    at_ms: now_ms,
                    actor,
                    op,
                    what: format!("{outcome:?}"),
                }),
                other => history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: format!("{other:?}"),
                }),
            },
            (Reply::Refused(e), op_kind) => {
                history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: e.to_string(),
                });
                if let Op::Submit { .. } = op_kind {
                    self.retry = Some(op_kind);
                }
            }
            (Reply::Unreachable, op_kind) => {
                history.push(Record::Fail {
                    at_ms: now_ms,
                    actor,
                    op,
                    why: "unreachable".into(),
                });
                if let Op::Submit { .. } = op_kind {
                    self.retry = Some(op_kind);
                }
            }
            (Reply::Unknown(why), op_kind) => {
                history.push(Record::Info {
                    at_ms: now_ms,
                    actor,
                    op,
                    why,
                });
                // The same key makes the retry safe: it finds the job if
                // the first attempt was applied after all.
                if let Op::Submit { .. } = op_kind {
                    self.retry = Some(op_kind);
                }
            }
        }
    }
}
