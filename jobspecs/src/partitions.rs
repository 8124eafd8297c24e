//! Partition sets: how one task template fans out.
//!
//! A set is stored as its description (a date range, a shard count), never as
//! a list of partitions, so a million-partition backfill is a few bytes
//! (DESIGN invariant 6). The count and the key of partition `i` are computed
//! in O(1).

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::decode::{self, Fields};
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::yaml::Node;

/// The keys a `partitions` mapping may hold; exactly one of them.
pub const PARTITION_FIELDS: &[&str] = &["daily", "hourly", "list", "shards"];

/// Keys of `daily` and `hourly` ranges.
pub const RANGE_FIELDS: &[&str] = &["start", "end"];

/// How a template fans out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PartitionSet {
    /// Not partitioned: one task.
    Single,
    /// One partition per day, `start..=end`, keyed `YYYY-MM-DD`.
    Daily {
        /// First day.
        start: NaiveDate,
        /// Last day, inclusive.
        end: NaiveDate,
    },
    /// One partition per hour, `start..=end`, keyed `YYYY-MM-DDTHH`.
    Hourly {
        /// First hour.
        start: NaiveDateTime,
        /// Last hour, inclusive.
        end: NaiveDateTime,
    },
    /// One partition per listed key.
    List {
        /// The keys, in order.
        keys: Vec<String>,
    },
    /// `count` shards keyed `0..count`.
    Shards {
        /// Number of shards.
        count: u64,
    },
}

impl PartitionSet {
    /// Number of partitions.
    pub fn count(&self) -> u64 {
        match self {
            PartitionSet::Single => 1,
            PartitionSet::Daily { start, end } => days_between(*start, *end) + 1,
            PartitionSet::Hourly { start, end } => {
                u64::try_from((*end - *start).num_hours()).unwrap_or(0) + 1
            }
            PartitionSet::List { keys } => keys.len() as u64,
            PartitionSet::Shards { count } => *count,
        }
    }

    /// The key of partition `index`, or `None` past the end.
    pub fn key(&self, index: u64) -> Option<String> {
        if index >= self.count() {
            return None;
        }
        let offset = i64::try_from(index).ok()?;
        Some(match self {
            PartitionSet::Single => String::new(),
            PartitionSet::Daily { start, .. } => (*start + Duration::days(offset))
                .format("%Y-%m-%d")
                .to_string(),
            PartitionSet::Hourly { start, .. } => (*start + Duration::hours(offset))
                .format("%Y-%m-%dT%H")
                .to_string(),
            PartitionSet::List { keys } => keys.get(usize::try_from(index).ok()?)?.clone(),
            PartitionSet::Shards { .. } => index.to_string(),
        })
    }

    /// A short human description, e.g. `daily 2026-01-01..=2026-01-07`.
    pub fn describe(&self) -> String {
        match self {
            PartitionSet::Single => "single".to_owned(),
            PartitionSet::Daily { start, end } => format!("daily {start}..={end}"),
            PartitionSet::Hourly { start, end } => format!(
                "hourly {}..={}",
                start.format("%Y-%m-%dT%H"),
                end.format("%Y-%m-%dT%H")
            ),
            PartitionSet::List { keys } => format!("list of {}", keys.len()),
            PartitionSet::Shards { count } => format!("{count} shards"),
        }
    }
}

fn days_between(start: NaiveDate, end: NaiveDate) -> u64 {
    u64::try_from((end - start).num_days()).unwrap_or(0)
}

/// Decodes a `partitions` mapping.
pub fn decode(d: &mut Diagnostics, node: &Node, path: &str) -> Option<PartitionSet> {
    let f = decode::fields(d, node, path, PARTITION_FIELDS)?;
    let present: Vec<&str> = PARTITION_FIELDS
        .iter()
        .copied()
        .filter(|k| f.get(k).is_some())
        .collect();
    let set = match present.as_slice() {
        [] => {
            d.error_hint(
                node.span,
                path,
                "`partitions` names no partitioning",
                "use one of `daily: {start, end}`, `hourly: {start, end}`, `list: [...]` or `shards: N`",
            );
            return None;
        }
        [one] => *one,
        [_, second, ..] => {
            d.error_hint(
                f.key_span(second),
                path,
                format!("`partitions` sets both `{}` and `{second}`", present[0]),
                "a template is partitioned one way; keep one",
            );
            return None;
        }
    };
    let child = f.path(set);
    let value = f.get(set)?;
    let result = match set {
        "daily" => decode_daily(d, value, &child),
        "hourly" => decode_hourly(d, value, &child),
        "list" => decode_list(d, value, &child),
        _ => decode::u64_in(d, value, &child, 1, limits::PARTITIONS_PER_TEMPLATE_MAX)
            .map(|count| PartitionSet::Shards { count }),
    }?;
    if result.count() > limits::PARTITIONS_PER_TEMPLATE_MAX {
        d.error_hint(
            value.span,
            &child,
            format!(
                "{} partitions is more than the limit of {}",
                result.count(),
                limits::PARTITIONS_PER_TEMPLATE_MAX
            ),
            "split the range across several jobs",
        );
        return None;
    }
    Some(result)
}

fn range_ends<'n>(
    d: &mut Diagnostics,
    node: &'n Node,
    path: &'n str,
    example: &str,
) -> Option<(Fields<'n>, &'n Node, &'n Node)> {
    let f = decode::fields(d, node, path, RANGE_FIELDS)?;
    let hint = format!("e.g. `{{start: \"{example}\", end: \"{example}\"}}`");
    let start = f.required(d, "start", &hint);
    let end = f.required(d, "end", &hint);
    Some((f, start?, end?))
}

fn decode_daily(d: &mut Diagnostics, node: &Node, path: &str) -> Option<PartitionSet> {
    let (f, start_n, end_n) = range_ends(d, node, path, "2026-01-01")?;
    let start = date(d, start_n, &f.path("start"));
    let end = date(d, end_n, &f.path("end"));
    let (start, end) = (start?, end?);
    if start > end {
        d.error_hint(
            start_n.span,
            &f.path("start"),
            format!("start {start} is after end {end}"),
            "ranges are inclusive: start must be on or before end",
        );
        return None;
    }
    Some(PartitionSet::Daily { start, end })
}

fn decode_hourly(d: &mut Diagnostics, node: &Node, path: &str) -> Option<PartitionSet> {
    let (f, start_n, end_n) = range_ends(d, node, path, "2026-01-01T00")?;
    let start = hour(d, start_n, &f.path("start"));
    let end = hour(d, end_n, &f.path("end"));
    let (start, end) = (start?, end?);
    if start > end {
        d.error_hint(
            start_n.span,
            &f.path("start"),
            format!(
                "start {} is after end {}",
                start.format("%Y-%m-%dT%H"),
                end.format("%Y-%m-%dT%H")
            ),
            "ranges are inclusive: start must be on or before end",
        );
        return None;
    }
    Some(PartitionSet::Hourly { start, end })
}

fn decode_list(d: &mut Diagnostics, node: &Node, path: &str) -> Option<PartitionSet> {
    let items = decode::string_list(d, node, path, limits::LIST_PARTITIONS_MAX)?;
    if items.is_empty() {
        d.error(node.span, path, "the partition list is empty");
        return None;
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut ok = true;
    for (i, (key, span)) in items.iter().enumerate() {
        let item_path = decode::index(path, i);
        if key.is_empty() || key.len() > limits::LIST_ITEM_BYTES_MAX {
            d.error(
                *span,
                &item_path,
                format!(
                    "partition keys must be 1 to {} bytes long",
                    limits::LIST_ITEM_BYTES_MAX
                ),
            );
            ok = false;
        } else if let Some(first) = seen.insert(key.as_str(), i) {
            d.error_hint(
                *span,
                &item_path,
                format!("partition `{key}` is listed twice"),
                format!("it is already item {first}; each partition runs once"),
            );
            ok = false;
        }
    }
    ok.then(|| PartitionSet::List {
        keys: items.into_iter().map(|(k, _)| k).collect(),
    })
}

/// Parses `YYYY-MM-DD`.
pub fn date(d: &mut Diagnostics, node: &Node, path: &str) -> Option<NaiveDate> {
    let text = decode::string(d, node, path)?;
    match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        Ok(date) => Some(date),
        Err(err) => {
            d.error_hint(
                node.span,
                path,
                format!("`{}` is not a date: {err}", decode::truncate(&text, 40)),
                "write dates as YYYY-MM-DD, e.g. 2026-01-31",
            );
            None
        }
    }
}

/// Parses an hour: `YYYY-MM-DDTHH`, optionally followed by `:00` or `:00:00`.
pub fn hour(d: &mut Diagnostics, node: &Node, path: &str) -> Option<NaiveDateTime> {
    let text = decode::string(d, node, path)?;
    let trimmed = text
        .strip_suffix(":00:00")
        .or_else(|| text.strip_suffix(":00"))
        .unwrap_or(&text);
    let parsed = trimmed.split_once('T').and_then(|(day, hh)| {
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let hour: u32 = (hh.len() == 2).then(|| hh.parse().ok()).flatten()?;
        Some(date.and_time(NaiveTime::from_hms_opt(hour, 0, 0)?))
    });
    if parsed.is_none() {
        d.error_hint(
            node.span,
            path,
            format!("`{}` is not an hour", decode::truncate(&text, 40)),
            "write hours as YYYY-MM-DDTHH (UTC), e.g. 2026-01-31T05",
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_counts_and_keys_are_inclusive() {
        let set = PartitionSet::Daily {
            start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 1, 7).unwrap(),
        };
        assert_eq!(set.count(), 7);
        assert_eq!(set.key(0).unwrap(), "2026-01-01");
        assert_eq!(set.key(6).unwrap(), "2026-01-07");
        assert_eq!(set.key(7), None);
    }

    #[test]
    fn hourly_crosses_days_and_leap_years() {
        let start = NaiveDate::from_ymd_opt(2028, 2, 28)
            .unwrap()
            .and_hms_opt(23, 0, 0)
            .unwrap();
        let end = NaiveDate::from_ymd_opt(2028, 3, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let set = PartitionSet::Hourly { start, end };
        assert_eq!(set.count(), 26);
        assert_eq!(set.key(1).unwrap(), "2028-02-29T00");
        assert_eq!(set.key(25).unwrap(), "2028-03-01T00");
    }

    #[test]
    fn shards_and_lists_key_by_position() {
        assert_eq!(PartitionSet::Shards { count: 4 }.key(3).unwrap(), "3");
        assert_eq!(PartitionSet::Single.count(), 1);
        let list = PartitionSet::List {
            keys: vec!["eu".into(), "us".into()],
        };
        assert_eq!(list.key(1).unwrap(), "us");
    }
}
