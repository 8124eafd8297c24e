//! `${...}` references in spec values.
//!
//! Three namespaces exist:
//! - `${params.NAME}`: the spec's `params`, after `--param` overrides;
//! - `${run.date}`, `${run.yesterday}`, `${run.hour}`, `${run.previousHour}`,
//!   `${run.month}`, `${run.timestamp}`: the run's logical time (the fire time
//!   of a scheduled run, the submit time otherwise); dates and months in the
//!   schedule's timezone, hours in UTC like `hourly` partition keys;
//! - `${partition.key}`, `${partition.index}`, `${partition.count}`: only in a
//!   task's `config`, resolved per task when it is leased.
//!
//! `$${` writes a literal `${`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::decode::suggest;
use crate::diagnostic::Diagnostics;
use crate::yaml::{Node, NodeKind};

/// The names `${run.*}` understands.
pub const RUN_VARS: &[&str] = &[
    "date",
    "yesterday",
    "hour",
    "previousHour",
    "month",
    "timestamp",
];

/// The names `${partition.*}` understands.
pub const PARTITION_VARS: &[&str] = &["key", "index", "count"];

/// When a run happens, for `${run.*}`.
#[derive(Debug, Clone, Copy)]
pub struct RunContext {
    /// The run's logical time.
    pub logical_time: DateTime<Utc>,
    /// Zone in which dates and months are rendered (hours are UTC).
    pub timezone: Tz,
}

impl RunContext {
    /// The value of `${run.name}`, if `name` is known.
    pub fn var(&self, name: &str) -> Option<String> {
        let local = self.logical_time.with_timezone(&self.timezone);
        Some(match name {
            "date" => local.format("%Y-%m-%d").to_string(),
            "yesterday" => (local.date_naive() - Duration::days(1))
                .format("%Y-%m-%d")
                .to_string(),
            // Hours are UTC, like `hourly` partition keys, so that
            // `${run.previousHour}` names an hourly partition in any zone.
            "hour" => self.logical_time.format("%Y-%m-%dT%H").to_string(),
            "previousHour" => (self.logical_time - Duration::hours(1))
                .format("%Y-%m-%dT%H")
                .to_string(),
            "month" => local.format("%Y-%m").to_string(),
            "timestamp" => self
                .logical_time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            _ => return None,
        })
    }
}

/// What a reference resolves to while the spec is being planned.
enum Resolved {
    /// Replace the reference with this text.
    Text(String),
    /// Leave it for later (partition references inside `config`).
    Keep,
}

/// One problem with a reference: where in the scalar, and what is wrong.
struct RefError {
    /// Character offset of `${` within the scalar.
    offset: usize,
    /// Characters the reference spans.
    len: usize,
    message: String,
    hint: Option<String>,
}

/// Where a scalar sits, which decides which namespaces are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `spec.params` values: only `${run.*}`.
    Params,
    /// Any other field: `${params.*}` and `${run.*}`.
    Spec,
    /// Inside a task's `config`: `${partition.*}` too.
    Config,
}

/// Substitutes references in `text`; returns the new text, or the errors.
fn substitute(
    text: &str,
    scope: Scope,
    params: &BTreeMap<String, String>,
    run: &RunContext,
) -> Result<String, Vec<RefError>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            // In a config the escape is kept until the task is made, so that
            // `$${partition.key}` stays literal through partition resolution.
            out.push_str(if scope == Scope::Config { "$${" } else { "${" });
            i += 3;
            continue;
        }
        if !(chars[i] == '$' && chars.get(i + 1) == Some(&'{')) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let Some(close) = chars[i + 2..].iter().position(|c| *c == '}') else {
            errors.push(RefError {
                offset: i,
                len: chars.len() - i,
                message: "`${` is not closed by `}`".to_owned(),
                hint: Some("write `${params.name}`, or `$${` for a literal `${`".to_owned()),
            });
            break;
        };
        let inner: String = chars[i + 2..i + 2 + close].iter().collect();
        let len = close + 3;
        match resolve(inner.trim(), scope, params, run) {
            Ok(Resolved::Text(value)) => out.push_str(&value),
            Ok(Resolved::Keep) => out.push_str(&format!("${{{inner}}}")),
            Err((message, hint)) => errors.push(RefError {
                offset: i,
                len,
                message,
                hint,
            }),
        }
        i += len;
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

type ResolveError = (String, Option<String>);

fn resolve(
    reference: &str,
    scope: Scope,
    params: &BTreeMap<String, String>,
    run: &RunContext,
) -> Result<Resolved, ResolveError> {
    let (ns, name) = reference.split_once('.').unwrap_or((reference, ""));
    match ns {
        "params" if scope == Scope::Params => Err((
            format!("`${{{reference}}}` cannot be used inside `params`"),
            Some("params may only refer to `${run.*}`".to_owned()),
        )),
        "params" => match params.get(name) {
            Some(value) => Ok(Resolved::Text(value.clone())),
            None => {
                let names: Vec<&str> = params.keys().map(String::as_str).collect();
                let hint = match suggest(name, &names) {
                    Some(s) => format!("did you mean `${{params.{s}}}`?"),
                    None if names.is_empty() => {
                        format!("declare it under `spec.params`, or pass `--param {name}=VALUE`")
                    }
                    None => format!("declared params: {}", names.join(", ")),
                };
                Err((
                    format!("unresolved reference `${{{reference}}}`: no param `{name}`"),
                    Some(hint),
                ))
            }
        },
        "run" => match run.var(name) {
            Some(value) => Ok(Resolved::Text(value)),
            None => Err(unknown_var(reference, "run", name, RUN_VARS)),
        },
        "partition" if scope == Scope::Config => {
            if PARTITION_VARS.contains(&name) {
                Ok(Resolved::Keep)
            } else {
                Err(unknown_var(reference, "partition", name, PARTITION_VARS))
            }
        }
        "partition" => Err((
            format!("`${{{reference}}}` is only available inside a task's `config`"),
            None,
        )),
        _ => {
            let hint = match suggest(ns, &["params", "run", "partition"]) {
                Some(s) => format!("did you mean `${{{s}.{name}}}`?"),
                None => {
                    "references look like `${params.NAME}`, `${run.date}` or `${partition.key}`"
                        .to_owned()
                }
            };
            Err((format!("unknown reference `${{{reference}}}`"), Some(hint)))
        }
    }
}

fn unknown_var(reference: &str, ns: &str, name: &str, known: &[&str]) -> ResolveError {
    let hint = match suggest(name, known) {
        Some(s) => format!("did you mean `${{{ns}.{s}}}`?"),
        None => format!(
            "known: {}",
            known
                .iter()
                .map(|k| format!("${{{ns}.{k}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    (
        format!("unresolved reference `${{{reference}}}`"),
        Some(hint),
    )
}

/// Substitutes references in one scalar node in place, reporting errors at
/// the reference itself when the scalar is on one line.
pub fn substitute_node(
    d: &mut Diagnostics,
    node: &mut Node,
    path: &str,
    scope: Scope,
    params: &BTreeMap<String, String>,
    run: &RunContext,
) {
    let NodeKind::Scalar(scalar) = &mut node.kind else {
        return;
    };
    if !scalar.text.contains("${") {
        return;
    }
    match substitute(&scalar.text, scope, params, run) {
        Ok(text) => {
            scalar.interpolated = text != scalar.text;
            scalar.text = text;
        }
        Err(errors) => {
            scalar.poisoned = true;
            // Offsets inside the text map to columns only for plain scalars
            // on one line; otherwise point at the scalar.
            let exact = scalar.plain
                && !scalar.text.contains('\n')
                && node.span.width as usize == scalar.text.chars().count();
            for e in errors {
                let span = if exact {
                    node.span.shifted(e.offset as u32, e.len as u32)
                } else {
                    node.span
                };
                match e.hint {
                    Some(h) => d.error_hint(span, path, e.message, h),
                    None => d.error(span, path, e.message),
                }
            }
        }
    }
}

/// Substitutes references in every scalar under `node` (keys are left as
/// written); `scope` decides which namespaces are allowed.
pub fn substitute_tree(
    d: &mut Diagnostics,
    node: &mut Node,
    path: &str,
    scope: Scope,
    params: &BTreeMap<String, String>,
    run: &RunContext,
) {
    match &mut node.kind {
        NodeKind::Scalar(_) => substitute_node(d, node, path, scope, params, run),
        NodeKind::Null => {}
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_tree(d, item, &format!("{path}[{i}]"), scope, params, run);
            }
        }
        NodeKind::Map(entries) => {
            for entry in entries.iter_mut() {
                let child = crate::decode::join(path, &entry.key);
                substitute_tree(d, &mut entry.value, &child, scope, params, run);
            }
        }
    }
}

/// Replaces `${partition.*}` in a resolved config for one partition and
/// turns the `$${` escapes kept in configs into literal `${`.
pub fn resolve_partition_refs(value: &mut serde_json::Value, key: &str, index: u64, count: u64) {
    match value {
        serde_json::Value::String(s) if s.contains("${") => {
            *s = resolve_partition_text(s, key, index, count);
        }
        serde_json::Value::Array(items) => {
            for item in items {
                resolve_partition_refs(item, key, index, count);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                resolve_partition_refs(item, key, index, count);
            }
        }
        _ => {}
    }
}

fn resolve_partition_text(text: &str, key: &str, index: u64, count: u64) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let replaced = [
            ("${partition.key}", key.to_owned()),
            ("${partition.index}", index.to_string()),
            ("${partition.count}", count.to_string()),
        ]
        .into_iter()
        .find(|(reference, _)| tail.starts_with(reference));
        match replaced {
            Some((reference, value)) => {
                out.push_str(&value);
                rest = &tail[reference.len()..];
            }
            None => {
                out.push('$');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run() -> RunContext {
        RunContext {
            logical_time: Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap(),
            timezone: chrono_tz::America::Los_Angeles,
        }
    }

    fn params() -> BTreeMap<String, String> {
        BTreeMap::from([("start".to_owned(), "2026-01-01".to_owned())])
    }

    #[test]
    fn run_vars_render_in_the_schedule_timezone() {
        // 02:30 UTC on March 1st is still February 28th in Los Angeles.
        let r = run();
        assert_eq!(r.var("date").unwrap(), "2026-02-28");
        assert_eq!(r.var("yesterday").unwrap(), "2026-02-27");
        assert_eq!(r.var("hour").unwrap(), "2026-03-01T02");
        assert_eq!(r.var("previousHour").unwrap(), "2026-03-01T01");
        assert_eq!(r.var("month").unwrap(), "2026-02");
        assert_eq!(r.var("timestamp").unwrap(), "2026-03-01T02:30:00Z");
    }

    #[test]
    fn substitution_handles_escapes_and_partition_refs() {
        let out = substitute(
            "a-${params.start}-$${x}-${partition.key}",
            Scope::Config,
            &params(),
            &run(),
        )
        .ok()
        .unwrap();
        assert_eq!(out, "a-2026-01-01-$${x}-${partition.key}");
        let spec_scope = substitute("$${x}", Scope::Spec, &params(), &run())
            .ok()
            .unwrap();
        assert_eq!(spec_scope, "${x}");
    }

    #[test]
    fn errors_point_into_the_text() {
        let errs = substitute(
            "x ${params.strat} ${partition.key}",
            Scope::Spec,
            &params(),
            &run(),
        )
        .err()
        .unwrap();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].offset, 2);
        assert!(errs[0].hint.as_deref().unwrap().contains("params.start"));
        assert!(errs[1].message.contains("only available inside"));
    }

    #[test]
    fn unclosed_reference_is_an_error() {
        let errs = substitute("${params.start", Scope::Spec, &params(), &run())
            .err()
            .unwrap();
        assert!(errs[0].message.contains("not closed"));
    }

    #[test]
    fn partition_refs_resolve_per_task() {
        let mut v = serde_json::json!({"out": "s3://b/${partition.key}/${partition.index}-of-${partition.count}"});
        resolve_partition_refs(&mut v, "2026-01-02", 1, 7);
        assert_eq!(v["out"], "s3://b/2026-01-02/1-of-7");
        let mut escaped = serde_json::json!("$${partition.key} is ${partition.key}, $5");
        resolve_partition_refs(&mut escaped, "k", 0, 1);
        assert_eq!(escaped, "${partition.key} is k, $5");
    }
}
