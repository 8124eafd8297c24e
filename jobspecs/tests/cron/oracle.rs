//! Drover's fire times against two independent evaluators, over generated
//! lines, zones and transitions: the minute-by-minute model of Debian's
//! daemon ([`super::model`]) in every test run, and cronsim (the evaluator
//! healthchecks.io runs, which follows Debian's rules) from CI.

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Utc};
use drover_jobspecs::schedule::{CronPattern, TimeOfDay};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use super::cases::{Case, case};
use super::model::Line;

/// Drover's fire times in `[from, until)`, checked against its own
/// backwards search: each fire time is the latest at or before itself, and
/// the one before it is the latest at or before a second earlier. A
/// pattern that never fires is rejected, and has none.
fn drover(case: &Case) -> Vec<DateTime<Utc>> {
    let pattern = match CronPattern::parse(&case.expr) {
        Ok(pattern) => pattern,
        Err(e) if e.to_string().contains("never fires") => return Vec::new(),
        Err(e) => panic!("`{}` does not parse: {e}", case.expr),
    };
    let second = Duration::seconds(1);
    let times: Vec<DateTime<Utc>> =
        std::iter::successors(pattern.next_after(case.tz, case.from - second), |t| {
            pattern.next_after(case.tz, *t)
        })
        .take_while(|t| *t < case.until)
        .collect();
    for (i, t) in times.iter().enumerate() {
        assert_eq!(
            pattern.previous_at_or_before(case.tz, *t),
            Some(*t),
            "{case:?}: the latest fire time at or before {t}"
        );
        if i > 0 {
            assert_eq!(
                pattern.previous_at_or_before(case.tz, *t - second),
                Some(times[i - 1]),
                "{case:?}: the latest fire time before {t}"
            );
        }
    }
    times
}

proptest! {
    #![proptest_config(Config { cases: 1_000, ..Config::default() })]

    #[test]
    fn fire_times_agree_with_a_minute_by_minute_model_of_debian_cron(case in case()) {
        let expected = Line::parse(&case.expr).runs(case.tz, case.from, case.until);
        let got = drover(&case);
        prop_assert!(got == expected, "{:?}: {}", case, first_difference(&got, &expected));
    }
}

/// Where two lists of fire times part, with a little context.
fn first_difference<T: std::fmt::Debug + PartialEq>(drover: &[T], other: &[T]) -> String {
    let at = drover
        .iter()
        .zip(other)
        .position(|(a, b)| a != b)
        .unwrap_or(drover.len().min(other.len()));
    let from = at.saturating_sub(2);
    format!(
        "from fire time {at}: drover {:?}, oracle {:?}",
        &drover[from..(at + 3).min(drover.len())],
        &other[from..(at + 3).min(other.len())]
    )
}

/// What cronsim answered for one case.
struct Answer {
    /// Fire times (Unix seconds), or `None` if cronsim gave up or refused
    /// the pattern.
    fires: Option<Vec<i64>>,
    /// Why cronsim refused the pattern.
    rejected: Option<String>,
    /// The fire times whose wall-clock time the zone never shows.
    imaginary: Vec<i64>,
}

fn cronsim(python: &str, cases: &[Case]) -> Vec<Answer> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cronsim-oracle.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(chrono_tz::IANA_TZDB_VERSION)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
    let mut input = String::new();
    for c in cases {
        let line = serde_json::json!({
            "expr": c.expr,
            "tz": c.tz.name(),
            "from": c.from.timestamp(),
            "until": c.until.timestamp(),
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "cronsim-oracle.py failed");
    let seconds = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
            .unwrap_or_default()
    };
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Answer {
                fires: v.get("fires").map(seconds),
                rejected: v
                    .get("rejected")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned),
                imaginary: v.get("imaginary").map(seconds).unwrap_or_default(),
            }
        })
        .collect()
}

/// Why cronsim's answer differs from Drover's where Debian's daemon (the
/// model) sides with Drover: two known departures of cronsim from that
/// daemon, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CronsimOff {
    /// It fires a wildcard pattern at a wall-clock time the zone never
    /// shows (midnight on a day whose clock starts at 01:00).
    NeverShown,
    /// It steps hours in real time from the top of a wall-clock hour, so on
    /// the day after a change that is not a whole hour (Lord Howe's half
    /// hour), or one that repeats part of an hour (Chatham's 02:45 to 03:45),
    /// it passes over wall-clock times of a wildcard pattern.
    SteppedOver,
    Unexplained,
}

fn cronsim_off(case: &Case, drover: &[i64], cronsim: &[i64], imaginary: &[i64]) -> CronsimOff {
    let only_cronsim: Vec<i64> = cronsim
        .iter()
        .copied()
        .filter(|t| !drover.contains(t))
        .collect();
    let only_drover: Vec<i64> = drover
        .iter()
        .copied()
        .filter(|t| !cronsim.contains(t))
        .collect();
    let wildcard = CronPattern::parse(&case.expr).unwrap().time_of_day() == TimeOfDay::Wildcard;
    let day_after_the_change = |t: &i64| {
        case.transition.is_some_and(|change| {
            let change = change.timestamp();
            (change..change + 26 * 3600).contains(t)
        })
    };
    if !wildcard {
        CronsimOff::Unexplained
    } else if only_drover.is_empty() && only_cronsim.iter().all(|t| imaginary.contains(t)) {
        CronsimOff::NeverShown
    } else if only_cronsim.is_empty() && only_drover.iter().all(day_after_the_change) {
        CronsimOff::SteppedOver
    } else {
        CronsimOff::Unexplained
    }
}

/// Run by CI with the pinned cronsim (`DROVER_CRONSIM_PYTHON` names a
/// Python that has it; `DROVER_CRONSIM_CASES` sets how many cases).
///
/// Every case must agree with the model of Debian's daemon. Where cronsim
/// differs, the difference must be one of its known departures from that
/// daemon ([`CronsimOff`]); cases cronsim loops on (its limit is 5 s) are
/// counted.
#[test]
#[ignore = "needs Python with cronsim: run by .ci/run"]
fn fire_times_agree_with_cronsim() {
    let python = std::env::var("DROVER_CRONSIM_PYTHON").expect("DROVER_CRONSIM_PYTHON");
    let count: usize = std::env::var("DROVER_CRONSIM_CASES")
        .map(|n| n.parse().expect("a number of cases"))
        .unwrap_or(4_000);
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let cases: Vec<Case> = (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let answers = cronsim(&python, &cases);
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    let (mut compared, mut agreed, mut gave_up, mut both_refused) = (0, 0, 0, 0);
    let mut refused_by_one = Vec::new();
    let mut model_differs = Vec::new();
    let mut differences: Vec<(CronsimOff, String)> = Vec::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let got: Vec<i64> = drover(case).iter().map(DateTime::timestamp).collect();
        let model: Vec<i64> = Line::parse(&case.expr)
            .runs(case.tz, case.from, case.until)
            .iter()
            .map(DateTime::timestamp)
            .collect();
        let describe = |other: &[i64]| {
            format!(
                "{} in {} from {}: {}",
                case.expr,
                case.tz.name(),
                case.from.to_rfc3339(),
                first_difference(&got, other)
            )
        };
        if got != model {
            model_differs.push(describe(&model));
        }
        let never_fires = CronPattern::parse(&case.expr).is_err();
        if answer.rejected.is_some() || never_fires {
            // Both must refuse it: cronsim names a day no month has.
            if answer.rejected.is_some() && never_fires {
                both_refused += 1;
            } else {
                refused_by_one.push(format!("{}: cronsim {:?}", case.expr, answer.rejected));
            }
            continue;
        }
        let Some(expected) = &answer.fires else {
            gave_up += 1;
            continue;
        };
        compared += got.len().max(expected.len());
        if &got == expected {
            agreed += 1;
        } else {
            let why = cronsim_off(case, &got, expected, &answer.imaginary);
            differences.push((why, describe(expected)));
        }
    }
    let fixed = cases
        .iter()
        .filter(|c| CronPattern::parse(&c.expr).is_ok_and(|p| p.time_of_day() == TimeOfDay::Fixed))
        .count();
    let count_of = |why: CronsimOff| differences.iter().filter(|(w, _)| *w == why).count();
    println!(
        "cronsim oracle: {} cases ({fixed} fixed-time, {} wildcard) over {} zones and the years {}-{}, \
         {compared} fire times compared\n  \
         {agreed} cases agree; cronsim differs in {}: it fires at a time the clock never shows in {}, \
         steps over wall-clock times in {}, unexplained {}; cronsim gave up on {gave_up}; \
         both refuse {both_refused} patterns that never fire, one of them refuses {}\n  \
         the model of Debian's daemon differs from Drover in {}",
        cases.len(),
        cases.len() - fixed,
        super::cases::ZONES.len(),
        super::cases::YEARS.start(),
        super::cases::YEARS.end(),
        differences.len(),
        count_of(CronsimOff::NeverShown),
        count_of(CronsimOff::SteppedOver),
        count_of(CronsimOff::Unexplained),
        refused_by_one.len(),
        model_differs.len(),
    );
    for (why, line) in &differences {
        println!("  {why:?}: {line}");
    }
    assert!(
        model_differs.is_empty(),
        "Drover differs from the model of Debian's daemon:\n{}",
        model_differs.join("\n")
    );
    assert_eq!(
        count_of(CronsimOff::Unexplained),
        0,
        "differences from cronsim without a known cause"
    );
}
