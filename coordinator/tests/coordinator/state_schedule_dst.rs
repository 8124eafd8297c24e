//! Schedules across daylight-saving transitions in the replicated state
//! machine: firing tick by tick, catch-up over a transition, `${run.*}` of
//! a run fired at the jump, and the next fire times shown to users, all by
//! the one rule (`drover_jobspecs::schedule::fire`).
//!
//! 2026 transitions: New York springs forward on 8 March at 07:00Z (02:00
//! EST -> 03:00 EDT); Berlin falls back on 25 October at 01:00Z (03:00 CEST
//! -> 02:00 CET).

use crate::state_schedule::{ms, submit_schedule};
use crate::support::H;
use drover_coordinator::state::ScheduleId;

/// A schedule whose single task is partitioned by the run's UTC hour and
/// local date, so a child job shows what `${run.*}` rendered.
fn spec(cron: &str, tz: &str, catchup: &str, max_catchup: u32) -> String {
    format!(
        "apiVersion: drover/v1
kind: Job
metadata: {{name: nightly, namespace: maps}}
spec:
  schedule: {{cron: \"{cron}\", timezone: {tz}, catchup: {catchup}, maxCatchup: {max_catchup}, overlap: allow}}
  tasks:
    - name: by-hour
      kind: sleep
      partitions: {{hourly: {{start: \"${{run.hour}}\", end: \"${{run.hour}}\"}}}}
      config: {{ms: 1}}
    - name: by-date
      kind: sleep
      partitions: {{daily: {{start: \"${{run.date}}\", end: \"${{run.date}}\"}}}}
      config: {{ms: 1}}
"
    )
}

/// Fire times of the schedule's child jobs, oldest first.
fn fired(h: &H, id: ScheduleId) -> Vec<i64> {
    let mut times: Vec<i64> =
        h.sm.core()
            .jobs
            .values()
            .filter(|j| j.schedule == Some(id))
            .map(|j| j.fire_time_ms.unwrap())
            .collect();
    times.sort();
    times
}

/// Ticks once a minute from `h.now` to `until`.
fn tick_every_minute(h: &mut H, until: i64) {
    while h.now < until {
        h.now += 60_000;
        h.tick();
    }
}

#[test]
fn a_list_of_hours_fires_by_the_rule_when_ticked_through_both_transitions() {
    // New York, spring forward: the skipped 02:15 runs at 03:00 EDT.
    let mut h = H::new();
    h.now = ms(2026, 3, 7, 12, 0);
    let id = submit_schedule(
        &mut h,
        &spec("15 2,3 * * *", "America/New_York", "latest", 3),
    );
    tick_every_minute(&mut h, ms(2026, 3, 9, 12, 0));
    assert_eq!(
        fired(&h, id),
        [
            ms(2026, 3, 8, 7, 0),
            ms(2026, 3, 8, 7, 15),
            ms(2026, 3, 9, 6, 15),
            ms(2026, 3, 9, 7, 15),
        ]
    );
    // Berlin, fall back: 02:15 runs once, in CEST, never again in CET.
    let mut h = H::new();
    h.now = ms(2026, 10, 24, 12, 0);
    let id = submit_schedule(&mut h, &spec("15 2,3 * * *", "Europe/Berlin", "latest", 3));
    tick_every_minute(&mut h, ms(2026, 10, 26, 12, 0));
    assert_eq!(
        fired(&h, id),
        [
            ms(2026, 10, 25, 0, 15),
            ms(2026, 10, 25, 2, 15),
            ms(2026, 10, 26, 1, 15),
            ms(2026, 10, 26, 2, 15),
        ]
    );
    // A wildcard pattern runs in both halves of the repeated hour.
    let mut h = H::new();
    h.now = ms(2026, 10, 24, 23, 50);
    let id = submit_schedule(&mut h, &spec("*/30 * * * *", "Europe/Berlin", "latest", 3));
    tick_every_minute(&mut h, ms(2026, 10, 25, 2, 10));
    let half_hours: Vec<i64> = (0..=4)
        .map(|i| ms(2026, 10, 25, 0, 0) + i * 1_800_000)
        .collect();
    assert_eq!(fired(&h, id), half_hours);
}

#[test]
fn catch_up_over_a_transition_runs_the_fire_times_the_rule_names() {
    // Down from 01:00 CEST to 03:30 CET across Berlin's fall back: the
    // missed fire times are 02:15 CEST and 03:15 CET, not 02:15 CET.
    let outage = (ms(2026, 10, 24, 23, 0), ms(2026, 10, 25, 2, 30));
    let missed = [ms(2026, 10, 25, 0, 15), ms(2026, 10, 25, 2, 15)];
    for (catchup, max, expected) in [
        ("all", 3, &missed[..]),
        ("all", 1, &missed[1..]),
        ("latest", 3, &missed[1..]),
        ("none", 3, &[][..]),
    ] {
        let mut h = H::new();
        h.now = outage.0;
        let id = submit_schedule(&mut h, &spec("15 2,3 * * *", "Europe/Berlin", catchup, max));
        h.now = outage.1;
        h.tick();
        assert_eq!(
            fired(&h, id),
            expected,
            "catchup {catchup}, maxCatchup {max}"
        );
        assert_eq!(
            h.sm.core().schedules[&id].next_fire_ms,
            Some(ms(2026, 10, 26, 1, 15)),
            "catchup {catchup}: next is 02:15 CET on the 26th"
        );
    }
    // Down across New York's spring forward: 02:15 (at the jump) and 03:15.
    let mut h = H::new();
    h.now = ms(2026, 3, 8, 6, 0);
    let id = submit_schedule(&mut h, &spec("15 2,3 * * *", "America/New_York", "all", 5));
    h.now = ms(2026, 3, 8, 7, 30);
    h.tick();
    assert_eq!(fired(&h, id), [ms(2026, 3, 8, 7, 0), ms(2026, 3, 8, 7, 15)]);
    // A wildcard pattern catches up on real time: four half hours in two.
    let mut h = H::new();
    h.now = ms(2026, 10, 25, 0, 10);
    let id = submit_schedule(&mut h, &spec("*/30 * * * *", "Europe/Berlin", "all", 10));
    h.now = ms(2026, 10, 25, 2, 10);
    h.tick();
    let half_hours: Vec<i64> = (1..=4)
        .map(|i| ms(2026, 10, 25, 0, 0) + i * 1_800_000)
        .collect();
    assert_eq!(fired(&h, id), half_hours);
}

#[test]
fn a_run_fired_at_the_jump_renders_run_values_for_the_jump() {
    let mut h = H::new();
    h.now = ms(2026, 3, 8, 6, 0);
    let id = submit_schedule(&mut h, &spec("15 2 * * *", "America/New_York", "latest", 3));
    tick_every_minute(&mut h, ms(2026, 3, 8, 7, 5));
    let job =
        h.sm.core()
            .jobs
            .values()
            .find(|j| j.schedule == Some(id))
            .expect("the skipped 02:15 ran");
    // Its logical time is the instant it fired, 03:00 EDT: `${run.hour}` is
    // that UTC hour and `${run.date}` the local day.
    assert_eq!(job.fire_time_ms, Some(ms(2026, 3, 8, 7, 0)));
    assert_eq!(
        job.templates[0].def.partitions.key(0).unwrap(),
        "2026-03-08T07"
    );
    assert_eq!(
        job.templates[1].def.partitions.key(0).unwrap(),
        "2026-03-08"
    );
}

#[test]
fn next_fire_times_shown_to_users_follow_the_rule() {
    // What `job status`, `schedule status` and the console show: the
    // schedule's next fire times from the cluster's time.
    let mut h = H::new();
    h.now = ms(2026, 3, 8, 0, 0);
    let id = submit_schedule(
        &mut h,
        &spec("15 2,3 * * *", "America/New_York", "latest", 3),
    );
    let schedule = &h.sm.core().schedules[&id];
    assert_eq!(schedule.next_fire_ms, Some(ms(2026, 3, 8, 7, 0)));
    assert_eq!(
        schedule.next_fire_times(h.now, 3),
        [
            ms(2026, 3, 8, 7, 0),
            ms(2026, 3, 8, 7, 15),
            ms(2026, 3, 9, 6, 15)
        ]
    );
    let mut h = H::new();
    h.now = ms(2026, 10, 24, 23, 0);
    let id = submit_schedule(&mut h, &spec("15 2,3 * * *", "Europe/Berlin", "latest", 3));
    assert_eq!(
        h.sm.core().schedules[&id].next_fire_times(h.now, 3),
        [
            ms(2026, 10, 25, 0, 15),
            ms(2026, 10, 25, 2, 15),
            ms(2026, 10, 26, 1, 15)
        ]
    );
}
