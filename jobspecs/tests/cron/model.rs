//! A second, independent cron: Debian's daemon loop, minute by minute.
//!
//! It shares nothing with Drover's evaluator: its own field parser, and no
//! search at all. Real time advances a minute at a time; each minute the
//! daemon reads the wall clock and runs
//! - a wildcard job (minute or hour field starting with `*`) if the wall
//!   clock matches it now;
//! - a fixed-time job if any wall-clock minute it has not yet seen, up to the
//!   current one, matches it: after a jump forward that is every skipped
//!   minute (one run, now); after a jump back it is nothing until the clock
//!   passes the latest minute it had shown.
//!
//! Debian's daemon leaves out one thing on purpose: it ignores jumps of more
//! than three hours (a clock being set, not a DST change). Drover applies the
//! rule to every offset change of the zone, which is what this model does.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

/// One field: which values match, and whether it started with `*`.
struct Field {
    allowed: Vec<bool>,
    starred: bool,
}

impl Field {
    fn parse(text: &str, min: u32, max: u32) -> Field {
        let mut allowed = vec![false; max as usize + 1];
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, step.parse::<u32>().expect("a step")),
                None => (part, 1),
            };
            let (from, to) = if range == "*" {
                (min, max)
            } else if let Some((a, b)) = range.split_once('-') {
                (a.parse().expect("a number"), b.parse().expect("a number"))
            } else {
                let a: u32 = range.parse().expect("a number");
                (a, a)
            };
            for v in (from..=to).step_by(step as usize) {
                allowed[v as usize] = true;
            }
        }
        Field {
            allowed,
            starred: text.starts_with('*'),
        }
    }

    fn has(&self, value: u32) -> bool {
        self.allowed[value as usize]
    }
}

/// A five-field crontab line.
pub struct Line {
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

impl Line {
    pub fn parse(expr: &str) -> Line {
        let f: Vec<&str> = expr.split_whitespace().collect();
        assert_eq!(f.len(), 5, "{expr}");
        let mut day_of_week = Field::parse(f[4], 0, 7);
        if day_of_week.has(7) {
            day_of_week.allowed[0] = true;
        }
        Line {
            minute: Field::parse(f[0], 0, 59),
            hour: Field::parse(f[1], 0, 23),
            day_of_month: Field::parse(f[2], 1, 31),
            month: Field::parse(f[3], 1, 12),
            day_of_week,
        }
    }

    fn wildcard(&self) -> bool {
        self.minute.starred || self.hour.starred
    }

    fn matches(&self, wall: NaiveDateTime) -> bool {
        let dom = self.day_of_month.has(wall.day());
        let dow = self.day_of_week.has(wall.weekday().num_days_from_sunday());
        let day = if self.day_of_month.starred || self.day_of_week.starred {
            dom && dow
        } else {
            dom || dow
        };
        self.minute.has(wall.minute())
            && self.hour.has(wall.hour())
            && self.month.has(wall.month())
            && day
    }

    /// The instants in `[from, until)` (whole minutes) at which the daemon
    /// runs this line.
    pub fn runs(&self, tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
        let minute = Duration::minutes(1);
        let mut runs = Vec::new();
        let mut latest_seen = wall(from) - minute;
        let mut now = from;
        while now < until {
            let shown = wall(now);
            let run = if self.wildcard() {
                self.matches(shown)
            } else {
                let mut unseen = latest_seen + minute;
                let mut any = false;
                while unseen <= shown && !any {
                    any = self.matches(unseen);
                    unseen += minute;
                }
                any
            };
            if run {
                runs.push(now);
            }
            latest_seen = latest_seen.max(shown);
            now += minute;
        }
        runs
    }
}
