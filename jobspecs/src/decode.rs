//! Typed reads from the YAML tree that report, rather than stop at, errors.
//!
//! Each helper returns `None` after recording a diagnostic, so a decoder can
//! carry on and find the next mistake. The field lists passed to [`fields`]
//! are the single source of truth for which keys an object accepts: the JSON
//! Schema is generated from the same lists.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostics, Span};
use crate::yaml::{Node, NodeKind, PlainType, classify_plain, parse_bool, parse_int};

/// A mapping whose keys were checked against the known field names.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'n> {
    /// The mapping node, for "missing field" errors.
    pub node: &'n Node,
    /// The mapping's path, e.g. `spec.tasks[0]`.
    path: &'n str,
}

impl<'n> Fields<'n> {
    /// Wraps a mapping whose keys were already checked by [`fields`].
    pub fn checked_before(node: &'n Node, path: &'n str) -> Option<Self> {
        node.as_map().map(|_| Self { node, path })
    }

    /// The value of `name`, if present and not null.
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.node
            .get(name)
            .filter(|v| !matches!(v.kind, NodeKind::Null))
    }

    /// The value of `name`, or an error at the mapping if it is absent.
    pub fn required(&self, d: &mut Diagnostics, name: &str, hint: &str) -> Option<&'n Node> {
        let value = self.get(name);
        if value.is_none() {
            let path = self.path;
            let message = if path.is_empty() {
                format!("missing required field `{name}`")
            } else {
                format!("missing required field `{name}` in `{path}`")
            };
            d.error_hint(self.node.span, path, message, hint);
        }
        value
    }

    /// The span of the key `name`, or of the mapping when absent.
    pub fn key_span(&self, name: &str) -> Span {
        self.node
            .as_map()
            .and_then(|m| m.iter().find(|e| e.key == name))
            .map(|e| e.key_span)
            .unwrap_or(self.node.span)
    }

    /// The child path for field `name`.
    pub fn path(&self, name: &str) -> String {
        join(self.path, name)
    }
}

/// `parent.child`, or `child` at the root.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Checks that `node` is a mapping whose keys are all in `known`, reporting
/// unknown keys with a suggestion. Returns `None` if it is not a mapping.
pub fn fields<'n>(
    d: &mut Diagnostics,
    node: &'n Node,
    path: &'n str,
    known: &[&str],
) -> Option<Fields<'n>> {
    let Some(entries) = node.as_map() else {
        expected(d, node, path, "a mapping");
        return None;
    };
    for entry in entries {
        if known.contains(&entry.key.as_str()) {
            continue;
        }
        let where_ = if path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in `{path}`")
        };
        let message = format!("unknown field `{}` {where_}", entry.key);
        let hint = if entry.key == "<<" {
            "YAML merge keys are not supported; put shared settings in `spec.defaults`".to_owned()
        } else {
            match suggest(&entry.key, known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of: {}", known.join(", ")),
            }
        };
        d.error_hint(entry.key_span, &join(path, &entry.key), message, hint);
    }
    Some(Fields { node, path })
}

/// Records "expected X, found Y" at `node`.
pub fn expected(d: &mut Diagnostics, node: &Node, path: &str, what: &str) {
    let found = node.type_name();
    let hint = match (&node.kind, what) {
        (NodeKind::Scalar(s), w) if !s.plain && w.contains("integer") => {
            Some("remove the quotes around the number")
        }
        (NodeKind::Scalar(s), w) if !s.plain && w.contains("boolean") => {
            Some("write true or false without quotes")
        }
        (NodeKind::Scalar(_), "a list") => Some("write a list as `[a, b]` or as `- a` lines"),
        _ => None,
    };
    let shown = match &node.kind {
        NodeKind::Scalar(s) => format!("{found} `{}`", truncate(&s.text, 40)),
        _ => found.to_owned(),
    };
    let message = format!("expected {what}, found {shown}");
    match hint {
        Some(h) => d.error_hint(node.span, path, message, h),
        None => d.error(node.span, path, message),
    }
}

/// A string; plain scalars that look like numbers or booleans are accepted as
/// their text, since "name: 2026" clearly means the string.
pub fn string(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    if node.is_poisoned() {
        return None;
    }
    match &node.kind {
        NodeKind::Scalar(s) => Some(s.text.clone()),
        _ => {
            expected(d, node, path, "a string");
            None
        }
    }
}

/// A non-empty string of at most `max_len` characters.
pub fn bounded_string(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    max_len: usize,
) -> Option<String> {
    let s = string(d, node, path)?;
    if s.is_empty() {
        d.error(node.span, path, "must not be empty");
        return None;
    }
    if s.chars().count() > max_len {
        d.error(
            node.span,
            path,
            format!(
                "is {} characters long; the limit is {max_len}",
                s.chars().count()
            ),
        );
        return None;
    }
    Some(s)
}

/// A scalar's text if it may be read as a typed value: plain scalars, and
/// quoted ones produced by `${...}` substitution (quoting a reference is
/// common and harmless).
fn typed_text(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s) if s.plain || s.interpolated => Some(&s.text),
        _ => None,
    }
}

/// An integer within `min..=max`.
pub fn int(d: &mut Diagnostics, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    if node.is_poisoned() {
        return None;
    }
    let what = format!("an integer from {min} to {max}");
    let Some(value) = typed_text(node).and_then(parse_int) else {
        expected(d, node, path, &what);
        return None;
    };
    in_range(d, node, path, value, min..=max, &what)
}

/// `value` if it lies in `range`, else an "out of range" error.
fn in_range<T: PartialOrd + std::fmt::Display>(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Option<T> {
    // NaN is in no range, so `contains` rejects it too.
    if range.contains(&value) {
        return Some(value);
    }
    d.error(
        node.span,
        path,
        format!("{value} is out of range: expected {what}"),
    );
    None
}

/// A `u32` within `min..=max`.
pub fn u32_in(d: &mut Diagnostics, node: &Node, path: &str, min: u32, max: u32) -> Option<u32> {
    int(d, node, path, i64::from(min), i64::from(max)).and_then(|v| u32::try_from(v).ok())
}

/// A `u64` within `min..=max`.
pub fn u64_in(d: &mut Diagnostics, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let max_i = i64::try_from(max).unwrap_or(i64::MAX);
    let min_i = i64::try_from(min).unwrap_or(i64::MAX);
    int(d, node, path, min_i, max_i).and_then(|v| u64::try_from(v).ok())
}

/// A number (integer or float) within `min..=max`.
pub fn float(d: &mut Diagnostics, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
    if node.is_poisoned() {
        return None;
    }
    let what = format!("a number from {min} to {max}");
    let parsed = typed_text(node).and_then(|t| match classify_plain(t) {
        PlainType::Int | PlainType::Float => t.parse::<f64>().ok(),
        _ => None,
    });
    let Some(value) = parsed else {
        expected(d, node, path, &what);
        return None;
    };
    in_range(d, node, path, value, min..=max, &what)
}

/// `true` or `false`.
pub fn boolean(d: &mut Diagnostics, node: &Node, path: &str) -> Option<bool> {
    if node.is_poisoned() {
        return None;
    }
    let parsed = typed_text(node).and_then(parse_bool);
    if parsed.is_none() {
        let hint = match typed_text(node) {
            Some("yes" | "no" | "on" | "off" | "y" | "n") => {
                Some("YAML 1.2 reads yes/no/on/off as strings; write true or false")
            }
            _ => None,
        };
        match hint {
            Some(h) => {
                let message = format!(
                    "expected a boolean, found `{}`",
                    typed_text(node).unwrap_or("")
                );
                d.error_hint(node.span, path, message, h);
            }
            None => expected(d, node, path, "a boolean (true or false)"),
        }
    }
    parsed
}

/// One of `options`, with a suggestion when close to one of them.
pub fn one_of<'o>(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    options: &[&'o str],
) -> Option<&'o str> {
    let text = string(d, node, path)?;
    if let Some(found) = options.iter().find(|o| **o == text) {
        return Some(found);
    }
    let hint = match suggest(&text, options) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("expected one of: {}", options.join(", ")),
    };
    let field = field_name(path);
    let message = if field == "kind" {
        format!("unknown task kind `{}`", truncate(&text, 40))
    } else {
        format!("`{}` is not a valid `{field}`", truncate(&text, 40))
    };
    d.error_hint(node.span, path, message, hint);
    None
}

/// The last named segment of a path: `formats` for `spec.x.formats[2]`.
fn field_name(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

/// A duration such as `30s`, `5m` or `1h30m`, in milliseconds, within
/// `min_ms..=max_ms`. A bare integer is rejected: its unit would be a guess.
pub fn duration_ms(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    min_ms: u64,
    max_ms: u64,
) -> Option<u64> {
    let text = string(d, node, path)?;
    let hint = "write a number with a unit, e.g. 500ms, 30s, 5m, 1h30m or 2d";
    if parse_int(&text).is_some() {
        d.error_hint(node.span, path, format!("`{text}` has no unit"), hint);
        return None;
    }
    let parsed = match humantime::parse_duration(&text) {
        Ok(duration) => duration,
        Err(err) => {
            d.error_hint(
                node.span,
                path,
                format!("`{}` is not a duration: {err}", truncate(&text, 40)),
                hint,
            );
            return None;
        }
    };
    let ms = u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX);
    if ms < min_ms || ms > max_ms {
        d.error(
            node.span,
            path,
            format!(
                "`{text}` is out of range: expected {} to {}",
                format_ms(min_ms),
                format_ms(max_ms)
            ),
        );
        return None;
    }
    Some(ms)
}

/// Formats milliseconds the way users write durations.
pub fn format_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A list, or an error.
pub fn list<'n>(d: &mut Diagnostics, node: &'n Node, path: &str) -> Option<&'n [Node]> {
    match &node.kind {
        NodeKind::Seq(items) => Some(items),
        _ => {
            expected(d, node, path, "a list");
            None
        }
    }
}

/// A list of strings (bad items are reported and skipped), bounded in length.
pub fn string_list(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    max_items: usize,
) -> Option<Vec<(String, Span)>> {
    let items = list(d, node, path)?;
    if items.len() > max_items {
        d.error(
            node.span,
            path,
            format!("has {} items; the limit is {max_items}", items.len()),
        );
        return None;
    }
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(d, item, &index(path, i)).map(|s| (s, item.span)))
            .collect(),
    )
}

/// A mapping of strings to strings (labels, env), bounded.
pub fn string_map(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    max_entries: usize,
    key_len_max: usize,
    value_len_max: usize,
) -> Option<BTreeMap<String, String>> {
    let Some(entries) = node.as_map() else {
        expected(d, node, path, "a mapping of strings");
        return None;
    };
    if entries.len() > max_entries {
        d.error(
            node.span,
            path,
            format!("has {} entries; the limit is {max_entries}", entries.len()),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    for entry in entries {
        let child = join(path, &entry.key);
        if entry.key.is_empty() || entry.key.chars().count() > key_len_max {
            d.error(
                entry.key_span,
                &child,
                format!("keys must be 1 to {key_len_max} characters long"),
            );
            continue;
        }
        let value = match &entry.value.kind {
            NodeKind::Null => String::new(),
            _ => match string(d, &entry.value, &child) {
                Some(v) => v,
                None => continue,
            },
        };
        if value.chars().count() > value_len_max {
            d.error(
                entry.value.span,
                &child,
                format!("values must be at most {value_len_max} characters long"),
            );
            continue;
        }
        out.insert(entry.key.clone(), value);
    }
    Some(out)
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let normal = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let word_n = normal(word);
    // `depends_on` or `DependsOn` for `dependsOn` is a spelling convention,
    // not a typo: match those before measuring edit distance.
    if let Some(exact) = candidates.iter().find(|c| normal(c) == word_n) {
        return Some(exact);
    }
    let budget = (word_n.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&word_n, &normal(c)), *c))
        .filter(|(dist, _)| *dist <= budget)
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, c)| c)
}

/// `text` cut to `max` characters with an ellipsis, for messages.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Checks a name for jobs, namespaces and tasks: lowercase letters, digits and
/// `-` (and `_` when `allow_underscore`), starting with a letter or digit.
pub fn name(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    what: &str,
    allow_underscore: bool,
) -> Option<String> {
    let s = bounded_string(d, node, path, crate::limits::NAME_LEN_MAX)?;
    let ok_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_underscore && c == '_')
    };
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let last_ok = s.chars().last().is_some_and(|c| c != '-' && c != '_');
    if s.chars().all(ok_char) && first_ok && last_ok {
        return Some(s);
    }
    let allowed = if allow_underscore {
        "lowercase letters, digits, `-` and `_`"
    } else {
        "lowercase letters, digits and `-`"
    };
    let fixed: String = s
        .to_lowercase()
        .chars()
        .map(|c| if ok_char(c) { c } else { '-' })
        .collect();
    let fixed = fixed.trim_matches(|c| c == '-' || c == '_').to_owned();
    let hint = if fixed.is_empty() {
        format!("use {allowed}")
    } else {
        format!("use {allowed}, e.g. `{fixed}`")
    };
    d.error_hint(
        node.span,
        path,
        format!("`{}` is not a valid {what} name", truncate(&s, 40)),
        hint,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_case_and_typos() {
        let known = ["dependsOn", "partitions", "kind", "name"];
        assert_eq!(suggest("depends_on", &known), Some("dependsOn"));
        assert_eq!(suggest("dependOn", &known), Some("dependsOn"));
        assert_eq!(suggest("partitons", &known), Some("partitions"));
        assert_eq!(suggest("knd", &known), Some("kind"));
        assert_eq!(suggest("completelyelse", &known), None);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
