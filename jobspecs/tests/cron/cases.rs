//! Generated cases for the oracles: a crontab line, a zone, and a window of
//! time around one of that zone's offset changes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

/// Zones chosen for their transitions: both hemispheres, half-hour and
/// 45-minute offsets, a half-hour DST (Lord Howe), a two-hour one (Troll),
/// changes at midnight (Santiago, Havana, Cairo, São Paulo until 2019),
/// negative DST in the tz database (Dublin, Casablanca), zones whose rules
/// changed (Moscow 2011 and 2014, Nuuk 2023, Apia's skipped day in 2011 and
/// its end of DST in 2021, Tehran's in 2022), and zones without DST.
pub const ZONES: &[Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::St_Johns,
    chrono_tz::America::Havana,
    chrono_tz::America::Santiago,
    chrono_tz::America::Sao_Paulo,
    chrono_tz::America::Nuuk,
    chrono_tz::Europe::Berlin,
    chrono_tz::Europe::London,
    chrono_tz::Europe::Dublin,
    chrono_tz::Europe::Moscow,
    chrono_tz::Africa::Cairo,
    chrono_tz::Africa::Casablanca,
    chrono_tz::Asia::Tehran,
    chrono_tz::Asia::Gaza,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Sydney,
    chrono_tz::Australia::Adelaide,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Auckland,
    chrono_tz::Pacific::Chatham,
    chrono_tz::Pacific::Apia,
    chrono_tz::Antarctica::Troll,
    Tz::UTC,
];

/// Years whose transitions the cases cover.
pub const YEARS: std::ops::RangeInclusive<i32> = 2010..=2030;

/// How far a window reaches on each side of its transition.
const REACH: Duration = Duration::hours(30);

/// One comparison: a line, a zone, and the window `[from, until)`.
#[derive(Debug, Clone)]
pub struct Case {
    pub expr: String,
    pub tz: Tz,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The offset change the window is centred on, if the year had one.
    pub transition: Option<DateTime<Utc>>,
}

fn offset(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instants in `year` at which `tz` changes its offset, to the second.
/// Offsets are sampled every six hours (no zone changes twice within that)
/// and each change is narrowed down by bisection.
pub fn transitions(tz: Tz, year: i32) -> Vec<DateTime<Utc>> {
    type Found = HashMap<(Tz, i32), Vec<DateTime<Utc>>>;
    static CACHE: OnceLock<Mutex<Found>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(&(tz, year)) {
        return found.clone();
    }
    let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap();
    let step = Duration::hours(6);
    let mut found = Vec::new();
    let mut t = start;
    while t < end {
        if offset(tz, t) != offset(tz, t + step) {
            let (mut before, mut after) = (t, t + step);
            while after - before > Duration::seconds(1) {
                let middle = before + Duration::seconds((after - before).num_seconds() / 2);
                if offset(tz, middle) == offset(tz, before) {
                    before = middle;
                } else {
                    after = middle;
                }
            }
            found.push(after);
        }
        t += step;
    }
    cache.lock().unwrap().insert((tz, year), found.clone());
    found
}

/// A window around the `pick`-th transition of the zone's year, or around
/// the middle of the year when the zone had none.
fn window(tz: Tz, year: i32, pick: usize) -> (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>) {
    let changes = transitions(tz, year);
    let transition = (!changes.is_empty()).then(|| changes[pick % changes.len()]);
    let centre = transition.unwrap_or_else(|| Utc.with_ymd_and_hms(year, 7, 1, 0, 0, 0).unwrap());
    // Windows start on a whole minute, as cron's do.
    let from = (centre - REACH).timestamp();
    let from = DateTime::from_timestamp(from - from.rem_euclid(60), 0).unwrap();
    (from, from + REACH * 2, transition)
}

/// A field of `n` values from `min` to `max`: a star, a step, a value, a
/// list, a range, a stepped range, or a list with a range in it. `near`
/// biases values to where transitions happen (hours 0 to 4 and 22 to 23).
fn field(min: u32, max: u32, near: &'static [u32]) -> BoxedStrategy<String> {
    let value = prop_oneof![
        3 => min..=max,
        2 => proptest::sample::select(if near.is_empty() { vec![min, max] } else { near.to_vec() }),
    ];
    let step = 2..=(max - min).max(2);
    prop_oneof![
        3 => Just("*".to_owned()),
        2 => step.clone().prop_map(|s| format!("*/{s}")),
        3 => value.clone().prop_map(|v| v.to_string()),
        3 => proptest::collection::btree_set(value.clone(), 2..=3)
            .prop_map(|vs| vs.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        2 => (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        1 => (value.clone(), value.clone(), step)
            .prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
        1 => (value.clone(), value.clone(), value)
            .prop_map(|(a, b, c)| format!("{a},{}-{}", b.min(c), b.max(c))),
    ]
    .boxed()
}

/// Crontab lines whose times of day land on or near transitions, and whose
/// day fields are mostly stars (a window is only a few days long).
pub fn line() -> impl Strategy<Value = String> {
    let minute = field(0, 59, &[0, 1, 15, 29, 30, 45, 59]);
    let hour = field(0, 23, &[0, 1, 2, 3, 4, 22, 23]);
    let day_of_month = prop_oneof![6 => Just("*".to_owned()), 1 => field(1, 31, &[])];
    let month = prop_oneof![8 => Just("*".to_owned()), 1 => field(1, 12, &[])];
    let day_of_week = prop_oneof![
        5 => Just("*".to_owned()),
        1 => Just("1-5".to_owned()),
        1 => Just("0,6".to_owned()),
        1 => Just("7".to_owned()),
        1 => field(0, 7, &[]),
    ];
    (minute, hour, day_of_month, month, day_of_week)
        .prop_map(|(mi, h, dom, mo, dow)| format!("{mi} {h} {dom} {mo} {dow}"))
}

/// A case: a line, a zone, a year and which of its transitions.
pub fn case() -> impl Strategy<Value = Case> {
    (line(), 0..ZONES.len(), YEARS, 0usize..4).prop_map(|(expr, zone, year, pick)| {
        let tz = ZONES[zone];
        let (from, until, transition) = window(tz, year, pick);
        Case {
            expr,
            tz,
            from,
            until,
            transition,
        }
    })
}
