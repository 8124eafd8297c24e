//! When a cron pattern fires in a timezone whose wall clock jumps.
//!
//! One rule, Debian cron's, for every fire time Drover computes (plans,
//! replicated firing, catch-up, the console):
//! - A **fixed-time** pattern, one whose minute and hour fields do not start
//!   with `*` (`30 2 * * *`, `15 2,3 * * *`, `0 9-17/2 * * 1-5`, `@daily`),
//!   names wall-clock times. A time the clock skips (spring forward) fires
//!   once, at the first instant after the jump; several skipped times that
//!   land on that instant are one run. A time the clock shows twice (fall
//!   back) fires once, at its first occurrence.
//! - A **wildcard** pattern, one whose minute or hour field starts with `*`
//!   (`*/15 * * * *`, `0 * * * *`, `* 2 * * *`, `@hourly`), follows the wall
//!   clock as it is: nothing fires in a skipped interval, and the repeated
//!   interval fires again, since real time passes.
//!
//! Fixed-time fire times are found on the wall clock alone (no timezone) and
//! then placed in time; the placement never moves backwards, so the fire
//! times stay in order and each wall-clock time is one run.
//!
//! Day matching is Debian's too: when the day-of-month or the day-of-week
//! field starts with `*` a day must match both, otherwise either.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Why a cron pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronPatternError(String);

/// Which side of the DST rule a pattern is on (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOfDay {
    /// Minute and hour name wall-clock times: skipped times fire after the
    /// jump, repeated times fire once.
    Fixed,
    /// Minute or hour is a wildcard: fires whenever the wall clock matches.
    Wildcard,
}

/// A parsed cron pattern and its side of the DST rule.
#[derive(Debug, Clone)]
pub struct CronPattern {
    cron: Cron,
    time_of_day: TimeOfDay,
}

/// The crontab nicknames and the five fields each stands for.
const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl CronPattern {
    /// Parses 5 fields, 6 with leading seconds, or a nickname (`@yearly`,
    /// `@monthly`, `@weekly`, `@daily`, `@hourly`).
    pub fn parse(pattern: &str) -> Result<Self, CronPatternError> {
        let text = pattern.trim();
        let expanded = match NICKNAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
            Some((_, fields)) => *fields,
            None if text.starts_with('@') => {
                let names: Vec<&str> = NICKNAMES.iter().map(|(n, _)| *n).collect();
                return Err(CronPatternError(format!(
                    "unknown nickname `{text}`; known: {}",
                    names.join(", ")
                )));
            }
            None => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if !(5..=6).contains(&fields.len()) {
            return Err(CronPatternError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {}",
                fields.len()
            )));
        }
        // Counted from the end, so a leading seconds field shifts nothing.
        let field = |from_end: usize| fields[fields.len() - from_end];
        let (minute, hour, day_of_month, day_of_week) = (field(5), field(4), field(3), field(1));
        let starred = |f: &str| f.starts_with('*') || f.starts_with('?');
        let time_of_day = if starred(minute) || starred(hour) {
            TimeOfDay::Wildcard
        } else {
            TimeOfDay::Fixed
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .dom_and_dow(starred(day_of_month) || starred(day_of_week))
            .build()
            .parse(expanded)
            .map_err(|e| CronPatternError(e.to_string()))?;
        let pattern = Self { cron, time_of_day };
        // A pattern no date satisfies (`0 0 30 2 *`) would register a
        // schedule that never runs; cron rejects it too.
        if pattern.next_after(Tz::UTC, DateTime::UNIX_EPOCH).is_none() {
            return Err(CronPatternError(
                "it never fires: no date matches its day-of-month, month and day-of-week"
                    .to_owned(),
            ));
        }
        Ok(pattern)
    }

    /// The pattern's side of the DST rule.
    pub fn time_of_day(&self) -> TimeOfDay {
        self.time_of_day
    }

    /// The first fire time strictly after `after`, if the pattern fires
    /// again.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.time_of_day {
            TimeOfDay::Wildcard => self
                .cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            TimeOfDay::Fixed => {
                // Every wall-clock time up to `after`'s is placed at or
                // before `after` (placement is monotonic, and `after`'s own
                // wall-clock time is placed at `after` or, in the second
                // half of a fold, before it), so the search starts there.
                let local = after.with_timezone(&tz).naive_local();
                self.cron
                    .iter_after(local)
                    .filter_map(|wall| place(tz, wall))
                    .find(|at| *at > after)
            }
        }
    }

    /// The latest fire time at or before `at`, if the pattern ever fired.
    pub fn previous_at_or_before(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.time_of_day {
            TimeOfDay::Wildcard => self
                .cron
                .find_previous_occurrence(&at.with_timezone(&tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            TimeOfDay::Fixed => {
                // In the second half of a fold, the wall-clock times ahead
                // of `at`'s up to the fold's end were placed in its first
                // half, before `at`: the walk back starts a fold's length
                // ahead and passes over what is placed after `at`.
                let local = at.with_timezone(&tz).naive_local();
                let fold = match tz.from_local_datetime(&local) {
                    LocalResult::Ambiguous(first, second) => (second - first).abs(),
                    _ => Duration::zero(),
                };
                self.cron
                    .iter_from(local + fold, croner::Direction::Backward)
                    .filter_map(|wall| place(tz, wall))
                    .find(|placed| *placed <= at)
            }
        }
    }
}

/// Where a wall-clock fire time of a fixed-time pattern happens: its only
/// instant, the first of two in a fold, or the first instant after a gap.
/// `None` only past the end of the timezone's table.
fn place(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).with_timezone(&Utc)),
        LocalResult::None => GapInfo::new(&wall, &tz)?.end.map(|t| t.with_timezone(&Utc)),
    }
}
