//! A simulated client: submits small DAG jobs with idempotency keys,
//! retries every submit whose outcome it does not know with the same key,
//! sometimes resubmits a key it already saw succeed, and sometimes cancels
//! a job.

use drover_coordinator::state::{Command, JobId, Outcome, SubmitJob, Submitted};

use super::history::{AckedSubmit, Actor, History, Record};
use super::workload::{Reply, Request, job_spec, leader_hint, pick_node};
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
    /// The leader it was last told of.
    leader: Option<u64>,
    /// New submissions it still makes.
    submits_left: u32,
    /// Its next operation number.
    next_op: u64,
    /// The operation in flight, if any.
    inflight: Option<(u64, Op)>,
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
            leader: None,
            submits_left: submits,
            next_op: 1,
            inflight: None,
            retry: None,
            acked: Vec::new(),
        }
    }

    fn actor(&self) -> Actor {
        Actor::Client(self.index)
    }

    /// Whether it has nothing left to do.
    pub fn done(&self) -> bool {
        self.submits_left == 0 && self.inflight.is_none() && self.retry.is_none()
    }

    /// Stops making new submissions (the heal phase); retries go on.
    pub fn stop_new_work(&mut self) {
        self.submits_left = 0;
    }

    /// Picks the next request, if any.
    pub fn wake(&mut self, now_ms: u64, nodes: &[u64], history: &mut History) -> Option<Request> {
        if self.inflight.is_some() {
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
                let key = format!("c{}-k{}", self.index, self.next_op);
                let yaml = job_spec(&mut self.rng, &format!("c{}-j{}", self.index, self.next_op));
                Op::Submit { key, yaml }
            }
        } else {
            return None;
        };
        let op_id = self.next_op;
        self.next_op += 1;
        let node = pick_node(&mut self.rng, self.leader, nodes);
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
        history.push(Record::Invoke {
            at_ms: now_ms,
            actor: self.actor(),
            op: op_id,
            node,
            what,
        });
        self.inflight = Some((op_id, op));
        Some(Request {
            op: op_id,
            node,
            commands: vec![command],
        })
    }

    /// Handles the reply to operation `op` (ignored if it is not the one in
    /// flight: a late reply after a timeout).
    pub fn on_reply(&mut self, now_ms: u64, op: u64, reply: Reply, history: &mut History) {
        let Some((op_id, pending)) = self.inflight.take() else {
            return;
        };
        if op_id != op {
            self.inflight = Some((op_id, pending));
            return;
        }
        let actor = self.actor();
        if let Some(hint) = leader_hint(&reply) {
            self.leader = Some(hint);
        } else if !matches!(reply, Reply::Applied(_)) {
            self.leader = None;
        }
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
