//! Recurring schedules: cron patterns evaluated in an IANA timezone.
//!
//! Patterns are matched against the wall clock of the schedule's timezone.
//! Across daylight-saving changes (the semantics of Vixie cron, implemented by
//! the `croner` crate):
//! - spring forward: a fixed-time run whose wall-clock time falls in the gap
//!   fires once, at the first instant after the gap;
//! - fall back: a fixed-time run in the repeated hour fires once, at its first
//!   occurrence; interval patterns (`*/15 * * * *`) keep firing through both
//!   halves of the repeated hour, since real time still passes.
//!
//! Day-of-week numbers follow crontab (0 and 7 are Sunday), and when both
//! day-of-month and day-of-week are restricted a day matching either fires,
//! as in every Unix cron.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize, Serializer};

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::yaml::Node;

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

/// Why a cron pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronPatternError(String);

/// Parses a cron pattern: 5 fields, 6 with leading seconds, or a nickname
/// (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`).
pub fn parse_cron(pattern: &str) -> Result<Cron, CronPatternError> {
    let fields = pattern.split_whitespace().count();
    if !pattern.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(CronPatternError(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {fields}"
        )));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|e| CronPatternError(e.to_string()))
}

impl Schedule {
    /// The next `n` fire times strictly after `after`.
    pub fn next_fire_times(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let Ok(cron) = parse_cron(&self.cron) else {
            return Vec::new();
        };
        cron.iter_after(after.with_timezone(&self.timezone))
            .take(n)
            .collect()
    }

    /// The latest fire time at or before `at`, if the pattern ever fired.
    pub fn previous_fire_time(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = parse_cron(&self.cron).ok()?;
        cron.find_previous_occurrence(&at.with_timezone(&self.timezone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first fire time strictly after `after`, if the pattern ever fires.
    pub fn next_fire_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_fire_times(after, 1)
            .first()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Decodes a `schedule` mapping.
pub fn decode(d: &mut Diagnostics, node: &Node, path: &str) -> Option<Schedule> {
    let f = decode::fields(d, node, path, SCHEDULE_FIELDS)?;
    let cron = f
        .required(d, "cron", "e.g. `cron: \"0 3 * * *\"` (03:00 every day) or `cron: \"@hourly\"`")
        .and_then(|n| {
            let text = decode::string(d, n, &f.path("cron"))?;
            match parse_cron(&text) {
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
