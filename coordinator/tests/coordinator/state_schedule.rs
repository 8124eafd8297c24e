//! Cron schedules in the state machine: runs as child jobs, catch-up and
//! overlap policies, DST, and failover (a restored replica neither skips nor
//! doubles a run).

use crate::support::H;
use chrono::{TimeZone, Utc};
use drover_coordinator::state::{Command, JobState, Outcome, ScheduleId, StateMachine, Submitted};

pub(crate) fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp_millis()
}

fn scheduled(cron: &str, tz: &str, catchup: &str, overlap: &str, extra: &str) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: nightly, namespace: maps}}\nspec:\n  params: {{day: \"${{run.yesterday}}\"}}\n  schedule: {{cron: \"{cron}\", timezone: {tz}, catchup: {catchup}, maxCatchup: 3, overlap: {overlap}}}\n  tasks:\n    - name: features\n      kind: sleep\n      partitions: {{daily: {{start: \"${{params.day}}\", end: \"${{params.day}}\"}}}}\n      config: {{ms: 1}}\n{extra}"
    )
}

pub(crate) fn submit_schedule(h: &mut H, yaml: &str) -> ScheduleId {
    match h.submit_with_key(yaml, None).unwrap() {
        Outcome::Submitted {
            id: Submitted::Schedule(id),
            created: true,
        } => id,
        other => panic!("{other:?}"),
    }
}

/// Child jobs of the schedule with their fire times, in id order.
fn runs(h: &H, id: ScheduleId) -> Vec<(i64, JobState)> {
    h.sm.core()
        .jobs
        .values()
        .filter(|j| j.schedule == Some(id))
        .map(|j| (j.fire_time_ms.unwrap(), j.state))
        .collect()
}

#[test]
fn a_schedule_fires_child_jobs_planned_at_their_fire_time() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 12, 0);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 3 * * *", "America/Los_Angeles", "latest", "allow", ""),
    );
    assert!(
        h.sm.core().jobs.is_empty(),
        "a schedule runs nothing until it fires"
    );
    // 03:00 PDT on 2 June is 10:00 UTC.
    let fire = ms(2026, 6, 2, 10, 0);
    h.now = fire - 1;
    assert_eq!(h.tick().fired, 0);
    h.now = fire + 500;
    assert_eq!(h.tick().fired, 1);
    let job = h.sm.core().jobs.values().next().unwrap();
    assert_eq!(job.schedule, Some(id));
    assert_eq!(job.fire_time_ms, Some(fire));
    // `${run.yesterday}` was rendered for the fire time in Los Angeles.
    assert_eq!(
        job.templates[0].def.partitions.key(0).unwrap(),
        "2026-06-01"
    );
    assert_eq!(h.tick().fired, 0, "the same fire time never fires twice");
    let schedule = &h.sm.core().schedules[&id];
    assert_eq!(schedule.last_fire_ms, Some(fire));
    assert_eq!(schedule.next_fire_ms, Some(ms(2026, 6, 3, 10, 0)));
}

#[test]
fn catchup_latest_runs_only_the_most_recent_missed_time() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 * * * *", "UTC", "latest", "allow", ""),
    );
    // Down for five hours: fire times 01:00..05:00 were missed.
    h.now = ms(2026, 6, 1, 5, 20);
    assert_eq!(h.tick().fired, 1);
    assert_eq!(
        runs(&h, id).iter().map(|r| r.0).collect::<Vec<_>>(),
        [ms(2026, 6, 1, 5, 0)]
    );
}

#[test]
fn catchup_all_runs_missed_times_up_to_max_catchup() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(&mut h, &scheduled("0 * * * *", "UTC", "all", "allow", ""));
    h.now = ms(2026, 6, 1, 5, 20);
    assert_eq!(h.tick().fired, 3, "maxCatchup is 3");
    let fired: Vec<i64> = runs(&h, id).iter().map(|r| r.0).collect();
    assert_eq!(
        fired,
        [
            ms(2026, 6, 1, 3, 0),
            ms(2026, 6, 1, 4, 0),
            ms(2026, 6, 1, 5, 0)
        ]
    );
    assert!(
        h.sm.core().schedules[&id]
            .notes
            .iter()
            .any(|(_, n)| n.contains("skipped"))
    );
}

#[test]
fn catchup_none_skips_missed_runs_but_not_on_time_ones() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(&mut h, &scheduled("0 * * * *", "UTC", "none", "allow", ""));
    h.now = ms(2026, 6, 1, 5, 20);
    assert_eq!(h.tick().fired, 0, "05:00 is 20 minutes late");
    h.now = ms(2026, 6, 1, 6, 0) + 2_000;
    assert_eq!(h.tick().fired, 1, "06:00 processed 2 s late is on time");
    assert_eq!(runs(&h, id).len(), 1);
}

#[test]
fn overlap_forbid_skips_while_a_run_is_going() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 * * * *", "UTC", "latest", "forbid", ""),
    );
    h.now = ms(2026, 6, 1, 1, 0);
    assert_eq!(h.tick().fired, 1);
    h.now = ms(2026, 6, 1, 2, 0);
    assert_eq!(h.tick().fired, 0, "the 01:00 run is still pending");
    // Finish it; the next fire time runs.
    h.worker("w", 10, &[]);
    h.drain_all("w");
    h.now = ms(2026, 6, 1, 3, 0);
    assert_eq!(h.tick().fired, 1);
    assert_eq!(h.sm.core().schedules[&id].runs_skipped, 1);
}

#[test]
fn overlap_replace_cancels_the_running_run() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 * * * *", "UTC", "latest", "replace", ""),
    );
    h.now = ms(2026, 6, 1, 1, 0);
    h.tick();
    h.now = ms(2026, 6, 1, 2, 0);
    h.tick();
    let states: Vec<JobState> = runs(&h, id).iter().map(|r| r.1).collect();
    assert_eq!(states, [JobState::Cancelled, JobState::Pending]);
}

#[test]
fn overlap_allow_runs_side_by_side() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 * * * *", "UTC", "latest", "allow", ""),
    );
    for hour in 1..=3 {
        h.now = ms(2026, 6, 1, hour, 0);
        h.tick();
    }
    assert_eq!(runs(&h, id).len(), 3);
}

#[test]
fn dst_spring_forward_fires_once_after_the_gap() {
    let mut h = H::new();
    h.now = ms(2026, 3, 7, 12, 0);
    let id = submit_schedule(
        &mut h,
        &scheduled("30 2 * * *", "America/Los_Angeles", "latest", "allow", ""),
    );
    // Tick every minute through 8 and 9 March.
    while h.now < ms(2026, 3, 9, 18, 0) {
        h.now += 60_000;
        h.tick();
    }
    let fired: Vec<i64> = runs(&h, id).iter().map(|r| r.0).collect();
    assert_eq!(
        fired,
        [ms(2026, 3, 8, 10, 0), ms(2026, 3, 9, 9, 30)],
        "03:00 PDT on the 8th (the gap), 02:30 PDT on the 9th"
    );
}

#[test]
fn a_restored_replica_neither_skips_nor_doubles_a_run() {
    let mut leader = H::new();
    leader.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut leader,
        &scheduled("0 * * * *", "UTC", "all", "allow", ""),
    );
    leader.now = ms(2026, 6, 1, 1, 0);
    leader.tick();
    // The leader dies right after the 01:00 fire; a follower with the same
    // log (here: restored from its snapshot) takes over.
    let mut follower = H {
        sm: StateMachine::restore(&leader.sm.snapshot()).unwrap(),
        now: leader.now,
    };
    for h in [&mut leader, &mut follower] {
        h.now = ms(2026, 6, 1, 1, 0) + 30_000;
        assert_eq!(h.tick().fired, 0, "01:00 already ran");
        h.now = ms(2026, 6, 1, 2, 0);
        assert_eq!(h.tick().fired, 1, "02:00 runs exactly once");
    }
    assert_eq!(runs(&follower, id).len(), 2);
    assert_eq!(leader.sm.snapshot(), follower.sm.snapshot());
}

#[test]
fn cancelled_schedules_stop_firing() {
    let mut h = H::new();
    h.now = ms(2026, 6, 1, 0, 30);
    let id = submit_schedule(
        &mut h,
        &scheduled("0 * * * *", "UTC", "latest", "allow", ""),
    );
    h.run(Command::CancelSchedule {
        schedule: id,
        reason: "replaced".into(),
    })
    .unwrap();
    h.now = ms(2026, 6, 1, 3, 0);
    assert_eq!(h.tick().fired, 0);
    assert!(!h.sm.core().schedules[&id].active);
}

#[test]
fn a_scheduled_spec_submitted_once_runs_as_one_job_and_leaves_no_schedule() {
    use drover_coordinator::state::SubmitJob;

    let mut h = H::new();
    h.now = ms(2026, 6, 1, 12, 0);
    let yaml = scheduled("0 3 * * *", "America/Los_Angeles", "latest", "allow", "");
    // A backfill of the nightly over a range of days, given as params.
    let out = h.run(Command::SubmitOnce(SubmitJob {
        file: "nightly.yaml".into(),
        spec_yaml: yaml.clone(),
        params: vec![("day".into(), "2026-05-20".into())],
        idempotency_key: None,
        trace_parent: None,
    }));
    let Ok(Outcome::Submitted {
        id: Submitted::Job(job),
        created: true,
    }) = out
    else {
        panic!("{out:?}");
    };
    assert!(h.sm.core().schedules.is_empty(), "no schedule was created");
    let j = h.job(job);
    assert_eq!(j.schedule, None);
    assert_eq!(j.templates[0].def.partitions.key(0).unwrap(), "2026-05-20");
    // Without the param, `${run.yesterday}` is as of the submit.
    let out = h.run(Command::SubmitOnce(SubmitJob {
        file: "nightly.yaml".into(),
        spec_yaml: yaml.clone(),
        params: vec![],
        idempotency_key: None,
        trace_parent: None,
    }));
    let Ok(Outcome::Submitted {
        id: Submitted::Job(manual),
        ..
    }) = out
    else {
        panic!("{out:?}");
    };
    assert_eq!(
        h.job(manual).templates[0].def.partitions.key(0).unwrap(),
        "2026-05-31"
    );
    // The same spec submitted plainly still makes a schedule.
    submit_schedule(&mut h, &yaml);
    assert_eq!(h.sm.core().schedules.len(), 1);
}
