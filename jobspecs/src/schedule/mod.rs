//! Recurring schedules: cron patterns evaluated in an IANA timezone.
//!
//! Patterns are matched against the wall clock of the schedule's timezone;
//! [`fire`] holds the one rule for daylight-saving changes (Debian cron's),
//! used wherever a fire time is computed. Day-of-week numbers follow crontab
//! (0 and 7 are Sunday).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize, Serializer};

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::yaml::Node;

pub mod fire;

pub use fire::{CronPattern, CronPatternError, TimeOfDay};

/// Keys of a `schedule` mapping.
pub const SCHEDULE_FIELDS: &[&str] = &["cron", "timezone", "catchup", "maxCatchup", "overlap"];

/// What to do with fire times missed while no leader was running the
/// scheduler (an outage, or a schedule created with an old start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// Skip missed runs; only future fire times run.
    None,
    /// Run the most recent missed fire time once.
    Latest,
    /// Run every missed fire time, oldest first, up to `maxCatchup`.
    All,
}

impl Catchup {
    /// The name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::None => "none",
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
    }
}

/// What to do when a run is due while the previous run still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Skip the new run (recorded as an event).
    Forbid,
    /// Start the new run alongside.
    Allow,
    /// Cancel the running run, then start the new one.
    Replace,
}

impl Overlap {
    /// The name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Forbid => "forbid",
            Overlap::Allow => "allow",
            Overlap::Replace => "replace",
        }
    }
}

/// A validated recurring schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The cron pattern as written (5 or 6 fields, or `@daily` and friends).
    pub cron: String,
    /// IANA timezone whose wall clock the pattern is matched against.
    #[serde(serialize_with = "tz_name")]
    pub timezone: Tz,
    /// Policy for missed fire times.
    pub catchup: Catchup,
    /// Most missed runs started at once under `catchup: all` (and the
    /// look-back bound for `latest`).
    pub max_catchup: u32,
    /// Policy when a run is still going at the next fire time.
    pub overlap: Overlap,
}

fn tz_name<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// Defaults chosen to be safe: run the most recent missed time once, never
/// overlap. Kubernetes CronJob's `Allow` default is a common source of
/// duplicate work; an explicit choice is needed for that.
const DEFAULT_CATCHUP: Catchup = Catchup::Latest;
const DEFAULT_OVERLAP: Overlap = Overlap::Forbid;
const DEFAULT_MAX_CATCHUP: u32 = 24;

impl Schedule {
    /// The next `n` fire times strictly after `after`, by the DST rule in
    /// [`fire`].
    pub fn next_fire_times(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let Ok(pattern) = CronPattern::parse(&self.cron) else {
            return Vec::new();
        };
        std::iter::successors(pattern.next_after(self.timezone, after), |t| {
            pattern.next_after(self.timezone, *t)
        })
        .take(n)
        .map(|t| t.with_timezone(&self.timezone))
        .collect()
    }

    /// The latest fire time at or before `at`, if the pattern ever fired.
    pub fn previous_fire_time(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        CronPattern::parse(&self.cron)
            .ok()?
            .previous_at_or_before(self.timezone, at)
    }

    /// The first fire time strictly after `after`, if the pattern ever fires.
    pub fn next_fire_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        CronPattern::parse(&self.cron)
            .ok()?
            .next_after(self.timezone, after)
    }
}

/// Decodes a `schedule` mapping.
pub fn decode(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Schedule> {
    let f = decode::fields(d, node, path, SCHEDULE_FIELDS)?;
    let cron = f
        .required(d, "cron", "e.g. `cron: \"0 3 * * *\"` (03:00 every day) or `cron: \"@hourly\"`")
        .and_then(|n| {
            let text = decode::string(d, n, &f.path("cron"))?;
            match CronPattern::parse(&text) {
                Ok(_) => Some(text),
                Err(err) => {
                    d.error_hint(
                        n.span,
                        &f.path("cron"),
                        format!("invalid cron pattern `{text}`: {err}"),
                        "fields are minute hour day-of-month month day-of-week, e.g. \"0 3 * * 1-5\" is 03:00 on weekdays; @hourly/@daily/@weekly also work",
                    );
                    None
                }
            }
        });
    let timezone = match f.get("timezone") {
        None => Some(Tz::UTC),
        Some(n) => timezone(d, n, &f.path("timezone")),
    };
    let catchup = match f.get("catchup") {
        None => Some(DEFAULT_CATCHUP),
        Some(n) => {
            decode::one_of(d, n, &f.path("catchup"), &["none", "latest", "all"]).map(|v| match v {
                "none" => Catchup::None,
                "all" => Catchup::All,
                _ => Catchup::Latest,
            })
        }
    };
    let max_catchup = match f.get("maxCatchup") {
        None => Some(DEFAULT_MAX_CATCHUP),
        Some(n) => decode::u32_in(d, n, &f.path("maxCatchup"), 1, limits::MAX_CATCHUP_MAX),
    };
    let overlap =
        match f.get("overlap") {
            None => Some(DEFAULT_OVERLAP),
            Some(n) => decode::one_of(d, n, &f.path("overlap"), &["forbid", "allow", "replace"])
                .map(|v| match v {
                    "allow" => Overlap::Allow,
                    "replace" => Overlap::Replace,
                    _ => Overlap::Forbid,
                }),
        };
    Some(Schedule {
        cron: cron?,
        timezone: timezone?,
        catchup: catchup?,
        max_catchup: max_catchup?,
        overlap: overlap?,
    })
}

/// Decodes an IANA timezone name, suggesting the closest known name.
pub fn timezone(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Tz> {
    let text = decode::string(d, node, path)?;
    if let Ok(tz) = text.parse::<Tz>() {
        return Some(tz);
    }
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    let hint = match decode::suggest(&text, &names) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            "use an IANA name such as `UTC`, `Europe/Berlin` or `America/Los_Angeles`".to_owned()
        }
    };
    d.error_hint(
        node.span,
        path,
        format!("unknown timezone `{}`", decode::truncate(&text, 40)),
        hint,
    );
    None
}
