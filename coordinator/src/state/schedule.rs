//! Recurring schedules. A schedule keeps its spec and its last fire time in
//! the replicated state; each fire time it acts on becomes a child job
//! planned as of that time.
//!
//! **Architecture invariant:** the last fire time is replicated, and a fire
//! is decided only inside `Tick`, so a failover neither skips nor doubles a
//! run: the new leader's first tick sees exactly what the old one did.

use std::collections::{BTreeSet, VecDeque};

use chrono_tz::Tz;
use drover_jobspecs::LoadOptions;
use drover_jobspecs::schedule::{Catchup, Overlap};
use serde::{Deserialize, Serialize};

use super::command::SubmitJob;
use super::lifecycle::to_utc;
use super::outcome::{Outcome, Rejection};
use super::types::{JobId, ScheduleId};
use super::{Applied, StateMachine};

/// Notes kept per schedule (fires, skips, errors).
const SCHEDULE_NOTES_MAX: usize = 200;

/// A recurring schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Id.
    pub id: ScheduleId,
    /// Job name from the spec.
    pub name: String,
    /// Namespace from the spec.
    pub namespace: String,
    /// Spec file name, for diagnostics of later plans.
    pub file: String,
    /// The spec, re-planned at each fire time.
    pub spec_yaml: String,
    /// `--param` overrides given at submit.
    pub params: Vec<(String, String)>,
    /// Spec hash at submit.
    pub spec_hash: String,
    /// Cron pattern.
    pub cron: String,
    /// IANA timezone.
    pub timezone: String,
    /// Missed-run policy.
    pub catchup: Catchup,
    /// Bound on missed runs started at once.
    pub max_catchup: u32,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Creation time.
    pub created_ms: i64,
    /// The latest fire time acted on (run or deliberately skipped).
    pub last_fire_ms: Option<i64>,
    /// The next fire time.
    pub next_fire_ms: Option<i64>,
    /// False once cancelled.
    pub active: bool,
    /// Child jobs not yet finished.
    pub running: BTreeSet<JobId>,
    /// Runs started so far.
    pub runs_started: u64,
    /// Fire times skipped (overlap, missed, invalid plan).
    pub runs_skipped: u64,
    /// Recent notes: (time, text).
    pub notes: VecDeque<(i64, String)>,
    /// W3C `traceparent` of the submit that created the schedule. Every run
    /// joins this trace: the state machine cannot draw a fresh trace id per
    /// fire, and the runs' `job_id` tells them apart within it.
    pub trace_parent: Option<String>,
}

impl Schedule {
    /// The spec's schedule, whose fire times follow the DST rule in
    /// `drover_jobspecs::schedule::fire`.
    pub fn spec(&self) -> drover_jobspecs::schedule::Schedule {
        drover_jobspecs::schedule::Schedule {
            cron: self.cron.clone(),
            timezone: self.timezone.parse().unwrap_or(Tz::UTC),
            catchup: self.catchup,
            max_catchup: self.max_catchup,
            overlap: self.overlap,
        }
    }

    /// The next `n` fire times after `after_ms` (Unix ms); none once
    /// cancelled.
    pub fn next_fire_times(&self, after_ms: i64, n: usize) -> Vec<i64> {
        if !self.active {
            return Vec::new();
        }
        self.spec()
            .next_fire_times(to_utc(after_ms), n)
            .into_iter()
            .map(|t| t.timestamp_millis())
            .collect()
    }

    fn note(&mut self, at_ms: i64, text: String) {
        self.notes.push_back((at_ms, text));
        while self.notes.len() > SCHEDULE_NOTES_MAX {
            self.notes.pop_front();
        }
    }
}

impl StateMachine {
    /// Creates a schedule from a validated plan; its first fire is the first
    /// fire time after now.
    pub(super) fn create_schedule(
        &mut self,
        submit: &SubmitJob,
        plan: &drover_jobspecs::Plan,
    ) -> ScheduleId {
        let now = self.core.now_ms;
        let id = self.new_schedule_id(submit.trace_parent.as_deref());
        self.core.next_schedule += 1;
        let spec = plan.spec.schedule.as_ref().expect("a schedule");
        let next = spec
            .next_fire_time(to_utc(now))
            .map(|t| t.timestamp_millis());
        let schedule = Schedule {
            id,
            name: plan.spec.name.clone(),
            namespace: plan.spec.namespace.clone(),
            file: submit.file.clone(),
            spec_yaml: submit.spec_yaml.clone(),
            params: submit.params.clone(),
            spec_hash: plan.spec_hash.clone(),
            cron: spec.cron.clone(),
            timezone: spec.timezone.name().to_owned(),
            catchup: spec.catchup,
            max_catchup: spec.max_catchup,
            overlap: spec.overlap,
            created_ms: now,
            last_fire_ms: None,
            next_fire_ms: next,
            active: true,
            running: BTreeSet::new(),
            runs_started: 0,
            runs_skipped: 0,
            notes: VecDeque::new(),
            trace_parent: submit.trace_parent.clone(),
        };
        if let Some(at) = next {
            self.idx.schedule_due.insert((at, id));
        }
        self.changes.schedules.insert(id);
        self.core.schedules.insert(id, schedule);
        id
    }

    /// Stops a schedule; runs already started go on.
    pub(super) fn cancel_schedule(&mut self, id: ScheduleId, reason: &str) -> Applied {
        let now = self.core.now_ms;
        let schedule = self
            .core
            .schedules
            .get_mut(&id)
            .ok_or(Rejection::UnknownSchedule(id))?;
        if let Some(at) = schedule.next_fire_ms {
            self.idx.schedule_due.remove(&(at, id));
        }
        schedule.active = false;
        self.changes.schedules.insert(id);
        schedule.note(
            now,
            format!(
                "cancelled: {}",
                reason.chars().take(256).collect::<String>()
            ),
        );
        Ok(Outcome::Done)
    }

    /// Acts on every fire time of schedule `id` that is due by now,
    /// following its catch-up and overlap policies. Returns runs started.
    pub(super) fn fire_schedule(&mut self, id: ScheduleId) -> u64 {
        let now = self.core.now_ms;
        let grace = self.core.config.schedule_grace_ms as i64;
        let Some(schedule) = self.core.schedules.get(&id) else {
            return 0;
        };
        let Some(next) = schedule.next_fire_ms.filter(|n| *n <= now) else {
            return 0;
        };
        if !schedule.active {
            return 0;
        }
        let spec = schedule.spec();
        // The latest fire time due: one backwards search, however long the
        // outage was.
        let latest = spec
            .previous_fire_time(to_utc(now))
            .map(|t| t.timestamp_millis())
            .filter(|t| *t >= next)
            .unwrap_or(next);
        let mut due: Vec<i64> = match schedule.catchup {
            Catchup::Latest => vec![latest],
            Catchup::None if now - latest <= grace => vec![latest],
            Catchup::None => Vec::new(),
            Catchup::All => {
                let mut times = vec![latest];
                while times.len() < schedule.max_catchup as usize {
                    let before = times[times.len() - 1] - 1;
                    match spec.previous_fire_time(to_utc(before)) {
                        Some(t) if t.timestamp_millis() >= next => times.push(t.timestamp_millis()),
                        _ => break,
                    }
                }
                times.reverse();
                times
            }
        };
        let skipped_missed = due.first().is_none_or(|first| *first > next);
        let overlap = schedule.overlap;
        let (file, yaml, params, trace_parent) = (
            schedule.file.clone(),
            schedule.spec_yaml.clone(),
            schedule.params.clone(),
            schedule.trace_parent.clone(),
        );
        let mut started = 0;
        let mut notes = Vec::new();
        if skipped_missed {
            notes.push(format!(
                "missed fire times before {} were skipped (catchup {})",
                to_utc(due.first().copied().unwrap_or(latest)).to_rfc3339(),
                schedule.catchup.as_str()
            ));
        }
        for at in due.drain(..) {
            let running: Vec<JobId> = self
                .core
                .schedules
                .get(&id)
                .map(|s| s.running.iter().copied().collect())
                .unwrap_or_default();
            if !running.is_empty() {
                match overlap {
                    Overlap::Forbid => {
                        notes.push(format!(
                            "run at {} skipped: previous run {} still going (overlap forbid)",
                            to_utc(at).to_rfc3339(),
                            running[0]
                        ));
                        continue;
                    }
                    Overlap::Replace => {
                        for job in running {
                            let _ = self.cancel(
                                job,
                                &format!("replaced by the run at {}", to_utc(at).to_rfc3339()),
                            );
                        }
                    }
                    Overlap::Allow => {}
                }
            }
            let opts = LoadOptions {
                params: params.clone(),
                logical_time: to_utc(at),
            };
            let planned = drover_jobspecs::plan(&file, &yaml, &opts);
            // The policy may have changed since the schedule was created:
            // each run is admitted as a fresh submit would be.
            if let Ok(plan) = &planned
                && let Err(denied) = super::policy::admit(&self.core.security.policies, plan)
            {
                notes.push(format!(
                    "run at {} skipped: {denied}",
                    to_utc(at).to_rfc3339()
                ));
                continue;
            }
            match planned {
                Ok(plan) => {
                    let job = self.create_job(&plan, None, Some((id, at)), trace_parent.clone());
                    if let Some(s) = self.core.schedules.get_mut(&id) {
                        s.running.insert(job);
                        s.runs_started += 1;
                    }
                    self.changes.schedules.insert(id);
                    notes.push(format!(
                        "run at {} started as {job}",
                        to_utc(at).to_rfc3339()
                    ));
                    started += 1;
                }
                Err(diagnostics) => {
                    let first = diagnostics
                        .first()
                        .map(|d| d.message.clone())
                        .unwrap_or_default();
                    notes.push(format!(
                        "run at {} skipped: the spec does not plan at that time: {first}",
                        to_utc(at).to_rfc3339()
                    ));
                }
            }
        }
        let next_fire = spec
            .next_fire_time(to_utc(latest))
            .map(|t| t.timestamp_millis());
        self.idx.schedule_due.remove(&(next, id));
        self.changes.schedules.insert(id);
        if let Some(s) = self.core.schedules.get_mut(&id) {
            let skipped = notes.iter().filter(|n| n.contains("skipped")).count() as u64;
            s.runs_skipped += skipped;
            for note in notes {
                s.note(now, note);
            }
            s.last_fire_ms = Some(latest);
            s.next_fire_ms = next_fire;
        }
        if let Some(at) = next_fire {
            self.idx.schedule_due.insert((at, id));
        }
        started
    }
}
