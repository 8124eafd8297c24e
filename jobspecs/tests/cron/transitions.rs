//! Named fire times on real daylight-saving transitions, and crontab details.
//!
//! 2026 transitions used: America/Los_Angeles springs forward on 8 March
//! (02:00 PST -> 03:00 PDT) and falls back on 1 November (02:00 PDT -> 01:00
//! PST); Europe/Berlin springs forward on 29 March (02:00 -> 03:00) and falls
//! back on 25 October (03:00 -> 02:00).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use drover_jobspecs::schedule::{Catchup, Overlap, Schedule};

fn schedule(cron: &str, tz: Tz) -> Schedule {
    Schedule {
        cron: cron.to_owned(),
        timezone: tz,
        catchup: Catchup::Latest,
        max_catchup: 24,
        overlap: Overlap::Forbid,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn fires(cron: &str, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    schedule(cron, tz)
        .next_fire_times(after, n)
        .into_iter()
        .map(|t| t.with_timezone(&Utc))
        .collect()
}

const LA: Tz = chrono_tz::America::Los_Angeles;
const BERLIN: Tz = chrono_tz::Europe::Berlin;

#[test]
fn spring_forward_fixed_time_in_the_gap_fires_once_after_it() {
    // 02:30 does not exist in Los Angeles on 8 March 2026.
    let got = fires("30 2 * * *", LA, utc(2026, 3, 7, 20, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 8, 10, 0), // 03:00 PDT, the first instant after the gap
            utc(2026, 3, 9, 9, 30), // 02:30 PDT
            utc(2026, 3, 10, 9, 30),
        ]
    );
    let berlin = fires("30 2 * * *", BERLIN, utc(2026, 3, 28, 12, 0), 2);
    assert_eq!(
        berlin,
        vec![utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    );
}

#[test]
fn fall_back_fixed_time_in_the_repeated_hour_fires_once() {
    // 01:30 happens twice in Los Angeles on 1 November 2026.
    let got = fires("30 1 * * *", LA, utc(2026, 10, 31, 20, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 11, 1, 8, 30), // 01:30 PDT, the first occurrence only
            utc(2026, 11, 2, 9, 30), // 01:30 PST
            utc(2026, 11, 3, 9, 30),
        ]
    );
    let berlin = fires("30 2 * * *", BERLIN, utc(2026, 10, 24, 12, 0), 2);
    assert_eq!(
        berlin,
        vec![utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    );
}

#[test]
fn interval_patterns_follow_real_time_through_both_transitions() {
    // Spring forward: 01:30 PST, then straight to 03:00 PDT.
    let got = fires("*/30 * * * *", LA, utc(2026, 3, 8, 9, 15), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 8, 9, 30),
            utc(2026, 3, 8, 10, 0),
            utc(2026, 3, 8, 10, 30)
        ]
    );
    // Fall back: both halves of the repeated hour run, half an hour apart.
    let got = fires("*/30 * * * *", LA, utc(2026, 11, 1, 7, 45), 5);
    let expected: Vec<DateTime<Utc>> = (0..5)
        .map(|i| utc(2026, 11, 1, 8, 0) + Duration::minutes(30 * i))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn hourly_fires_every_real_hour_of_a_dst_year() {
    let start = utc(2026, 1, 1, 8, 0) - Duration::seconds(1);
    let times = fires("0 * * * *", LA, start, 8760);
    assert_eq!(times.len(), 8760);
    assert_eq!(times[0], utc(2026, 1, 1, 8, 0));
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            Duration::hours(1),
            "gap after {}",
            pair[0]
        );
    }
}

#[test]
fn daily_fires_once_per_local_day_all_year() {
    let times = schedule("0 3 * * *", LA).next_fire_times(utc(2026, 1, 1, 0, 0), 365);
    let mut days: Vec<_> = times.iter().map(|t| t.date_naive()).collect();
    days.dedup();
    assert_eq!(days.len(), 365, "one run per local day");
    assert!(
        times
            .iter()
            .all(|t| t.format("%H:%M").to_string() == "03:00")
    );
    // The UTC hour moves with the offset: 11:00 UTC in winter, 10:00 in summer.
    assert_eq!(times[0].with_timezone(&Utc), utc(2026, 1, 1, 11, 0));
    let july = times.iter().find(|t| t.month() == 7).unwrap();
    assert_eq!(july.with_timezone(&Utc).format("%H").to_string(), "10");
}

#[test]
fn day_of_week_follows_crontab_numbering() {
    // 1-5 is Monday to Friday; 0 and 7 are both Sunday.
    let weekdays = schedule("0 9 * * 1-5", Tz::UTC).next_fire_times(utc(2026, 6, 1, 0, 0), 10);
    assert!(
        weekdays
            .iter()
            .all(|t| !matches!(t.weekday(), Weekday::Sat | Weekday::Sun))
    );
    assert_eq!(weekdays[0].weekday(), Weekday::Mon);
    for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
        let t = schedule(sunday, Tz::UTC).next_fire_times(utc(2026, 6, 1, 0, 0), 3);
        assert!(
            t.iter().all(|t| t.weekday() == Weekday::Sun),
            "{sunday}: {t:?}"
        );
    }
}

#[test]
fn day_of_month_and_day_of_week_combine_with_or() {
    // As in every Unix cron: the 13th of each month, and every Friday.
    // Feb and Mar 13th 2026 are Fridays; April 13th is a Monday.
    let times = schedule("0 0 13 * 5", Tz::UTC).next_fire_times(utc(2026, 2, 1, 0, 0), 12);
    assert!(
        times
            .iter()
            .all(|t| t.day() == 13 || t.weekday() == Weekday::Fri)
    );
    assert!(
        times
            .iter()
            .any(|t| t.day() == 13 && t.weekday() != Weekday::Fri)
    );
    assert!(
        times
            .iter()
            .any(|t| t.weekday() == Weekday::Fri && t.day() != 13)
    );
}

#[test]
fn nicknames_and_seconds() {
    let daily = fires("@daily", BERLIN, utc(2026, 6, 1, 12, 0), 1);
    assert_eq!(daily, vec![utc(2026, 6, 1, 22, 0)]); // midnight CEST
    let hourly = fires("@hourly", Tz::UTC, utc(2026, 6, 1, 12, 10), 1);
    assert_eq!(hourly, vec![utc(2026, 6, 1, 13, 0)]);
    let seconds = schedule("*/20 * * * * *", Tz::UTC).next_fire_times(utc(2026, 6, 1, 12, 0), 3);
    let gaps: Vec<i64> = seconds
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    assert_eq!(gaps, vec![20, 20]);
}

#[test]
fn fire_times_are_strictly_after_the_given_instant() {
    let at = utc(2026, 6, 1, 3, 0);
    let times = fires("0 3 * * *", Tz::UTC, at, 1);
    assert_eq!(times, vec![utc(2026, 6, 2, 3, 0)]);
}

const NEW_YORK: Tz = chrono_tz::America::New_York;

/// The fire times the issue named, on both 2026 transitions of both zones:
/// a list of hours is a fixed-time pattern like a single hour.
#[test]
fn a_list_of_hours_follows_the_fixed_time_rule_on_every_transition() {
    // New York springs forward on 8 March (02:00 EST -> 03:00 EDT): the
    // skipped 02:15 fires at 03:00 EDT, then 03:15 EDT.
    let got = fires("15 2,3 * * *", NEW_YORK, utc(2026, 3, 8, 0, 0), 4);
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 8, 7, 15),
            utc(2026, 3, 9, 6, 15),
            utc(2026, 3, 9, 7, 15),
        ]
    );
    // ... and falls back on 1 November (02:00 EDT -> 01:00 EST): 02:15 and
    // 03:15 are outside the repeated hour, once each.
    let got = fires("15 2,3 * * *", NEW_YORK, utc(2026, 11, 1, 0, 0), 2);
    assert_eq!(got, vec![utc(2026, 11, 1, 7, 15), utc(2026, 11, 1, 8, 15)]);
    // Berlin springs forward on 29 March (02:00 CET -> 03:00 CEST).
    let got = fires("15 2,3 * * *", BERLIN, utc(2026, 3, 28, 23, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 29, 1, 15),
            utc(2026, 3, 30, 0, 15),
        ]
    );
    // Berlin falls back on 25 October (03:00 CEST -> 02:00 CET): 02:15 runs
    // once, in CEST; 03:15 is CET.
    let got = fires("15 2,3 * * *", BERLIN, utc(2026, 10, 24, 23, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 10, 25, 0, 15),
            utc(2026, 10, 25, 2, 15),
            utc(2026, 10, 26, 1, 15),
        ]
    );
}

#[test]
fn skipped_times_that_land_on_the_jump_are_one_run() {
    // 02:00, 02:30 and 03:00 all land on 03:00 PDT in Los Angeles.
    let got = fires("0,30 2,3 * * *", LA, utc(2026, 3, 8, 9, 45), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 8, 10, 0),  // 03:00 PDT: 02:00, 02:30 and 03:00
            utc(2026, 3, 8, 10, 30), // 03:30 PDT
            utc(2026, 3, 9, 9, 0),   // 02:00 PDT the next day
        ]
    );
}

#[test]
fn seconds_fields_follow_the_rule_of_their_minute_and_hour() {
    // `*/30 15 2 * * *` is fixed-time (its minute and hour are fixed): in
    // the gap both 02:15:00 and 02:15:30 land on 03:00 PDT, one run.
    let got = fires("*/30 15 2 * * *", LA, utc(2026, 3, 8, 9, 0), 2);
    assert_eq!(got, vec![utc(2026, 3, 8, 10, 0), utc(2026, 3, 9, 9, 15)]);
    // In the repeated hour, only the first occurrences run.
    let got = fires("*/30 30 1 * * *", LA, utc(2026, 11, 1, 8, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 11, 1, 8, 30),
            utc(2026, 11, 1, 8, 30) + Duration::seconds(30),
            utc(2026, 11, 2, 9, 30),
        ]
    );
}

#[test]
fn a_pattern_is_fixed_time_unless_its_minute_or_hour_starts_with_a_star() {
    use drover_jobspecs::schedule::{CronPattern, TimeOfDay};
    for (pattern, kind) in [
        ("30 2 * * *", TimeOfDay::Fixed),
        ("15 2,3 * * *", TimeOfDay::Fixed),
        ("0 1-4/2 * * 1-5", TimeOfDay::Fixed),
        ("@daily", TimeOfDay::Fixed),
        ("@weekly", TimeOfDay::Fixed),
        ("*/30 15 2 * * *", TimeOfDay::Fixed),
        ("*/15 * * * *", TimeOfDay::Wildcard),
        ("0 * * * *", TimeOfDay::Wildcard),
        ("* 2 * * *", TimeOfDay::Wildcard),
        ("0 */6 * * *", TimeOfDay::Wildcard),
        ("@hourly", TimeOfDay::Wildcard),
    ] {
        assert_eq!(
            CronPattern::parse(pattern).unwrap().time_of_day(),
            kind,
            "{pattern}"
        );
    }
    assert!(CronPattern::parse("@fortnightly").is_err());
    assert!(CronPattern::parse("0 3 * *").is_err());
}

#[test]
fn day_fields_starting_with_a_star_combine_with_and() {
    // Debian cron: `*/2` starts with `*`, so the day must be both odd and a
    // Monday; 2026-06-01 and 2026-06-15 are Mondays, 06-08 and 06-22 even.
    let got = fires("0 0 */2 * 1", Tz::UTC, utc(2026, 5, 31, 0, 0), 3);
    assert_eq!(
        got,
        vec![
            utc(2026, 6, 1, 0, 0),
            utc(2026, 6, 15, 0, 0),
            utc(2026, 6, 29, 0, 0)
        ]
    );
}
