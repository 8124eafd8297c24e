//! A YAML tree that remembers where every node came from.
//!
//! serde-based YAML loaders stop at the first error and lose positions once a
//! value is typed. Specs are decoded from this tree instead, so that every
//! mistake can be reported at once with its line and column.

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diagnostic::{Diagnostics, Pos, Span};
use crate::limits;

/// A scalar as written: its text, and whether it was quoted or a block
/// scalar (which makes it a string whatever it looks like).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The scalar's value after YAML unescaping.
    pub text: String,
    /// True for plain scalars, whose type is inferred (int, bool, null...).
    pub plain: bool,
    /// True when `${...}` references were substituted into it; such a value
    /// may be read as a number or boolean even if the reference was quoted.
    pub interpolated: bool,
    /// True when a reference in it could not be resolved; the error is
    /// already reported, so decoders skip it instead of reporting a second,
    /// confusing error about the unresolved text.
    pub poisoned: bool,
}

/// One key/value pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key text.
    pub key: String,
    /// Where the key is written, so "unknown field" points at the key itself.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `~`, `null` or an empty value.
    Null,
    /// Any scalar other than null.
    Scalar(Scalar),
    /// A sequence, in order.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are unique (duplicates are reported).
    Map(Vec<Entry>),
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where it starts and how wide its first line is.
    pub span: Span,
}

impl Node {
    /// A short name of the node's YAML type for "expected X, found Y" errors.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Scalar(s) if !s.plain => "string",
            NodeKind::Scalar(s) => match classify_plain(&s.text) {
                PlainType::Bool => "boolean",
                PlainType::Int => "integer",
                PlainType::Float => "number",
                PlainType::Str => "string",
            },
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "mapping",
        }
    }

    /// Whether this is a scalar whose reference could not be resolved.
    pub fn is_poisoned(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.poisoned)
    }

    /// The entries if this is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value at `key` if this is a mapping holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// Converts to JSON for hashing and for kind configs, which are handed to
    /// workers as JSON. Plain scalars keep their inferred YAML type.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Scalar(s) if !s.plain => Value::String(s.text.clone()),
            NodeKind::Scalar(s) => match classify_plain(&s.text) {
                PlainType::Bool => Value::Bool(parse_bool(&s.text).unwrap_or(false)),
                PlainType::Int => parse_int(&s.text)
                    .map(Value::from)
                    .unwrap_or_else(|| Value::String(s.text.clone())),
                PlainType::Float => s
                    .text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(s.text.clone())),
                PlainType::Str => Value::String(s.text.clone()),
            },
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The type a plain scalar resolves to under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainType {
    /// `true`/`false` in any of the core schema's spellings.
    Bool,
    /// Decimal, `0x` hex or `0o` octal integer.
    Int,
    /// Decimal float, `.inf` or `.nan`.
    Float,
    /// Anything else.
    Str,
}

/// Resolves a plain scalar's type per the YAML 1.2 core schema. Notably
/// `yes`/`no`/`on`/`off` are strings, not booleans (YAML 1.1 differed).
pub fn classify_plain(text: &str) -> PlainType {
    if parse_bool(text).is_some() {
        return PlainType::Bool;
    }
    if parse_int(text).is_some() {
        return PlainType::Int;
    }
    let t = text.trim_start_matches(['+', '-']);
    let float_like = matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN")
        || (t.chars().any(|c| c.is_ascii_digit())
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
            && text.parse::<f64>().is_ok());
    if float_like {
        PlainType::Float
    } else {
        PlainType::Str
    }
}

/// The boolean a plain scalar spells, if any.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// The integer a plain scalar spells, if any (decimal, `0x`, `0o`).
pub fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn pos(mark: saphyr_parser::Marker) -> Pos {
    Pos {
        line: u32::try_from(mark.line()).unwrap_or(u32::MAX),
        column: u32::try_from(mark.col() + 1).unwrap_or(u32::MAX),
    }
}

fn span_of(span: saphyr_parser::Span) -> Span {
    let width = if span.end.line() == span.start.line() {
        span.end.index().saturating_sub(span.start.index())
    } else {
        1
    };
    Span::new(pos(span.start), u32::try_from(width.max(1)).unwrap_or(1))
}

/// A collection under construction.
enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        span: Span,
        anchor: usize,
        /// The key read but not yet paired with its value.
        pending_key: Option<(String, Span)>,
    },
}

/// Parses `source` into a single-document tree. Syntax errors, duplicate
/// keys and limit violations go to `diags`; `None` means no usable tree.
pub fn parse(source: &str, diags: &mut Diagnostics) -> Option<Node> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: Vec::new(),
        documents: Vec::new(),
        nodes: 0,
        diags,
    };
    for event in Parser::new_from_str(source) {
        match event {
            Ok((event, span)) => {
                if !builder.on_event(event, span) {
                    return None;
                }
            }
            Err(err) => {
                report_scan_error(&err, builder.diags);
                return None;
            }
        }
    }
    let mut documents = builder.documents;
    match documents.len() {
        0 => {
            diags.error_hint(
                Span::point(Pos { line: 1, column: 1 }),
                "",
                "the spec is empty",
                "start from one of jobspecs/examples/*.yaml, or run `drover job schema`",
            );
            None
        }
        1 => documents.pop(),
        _ => {
            diags.error_hint(
                documents[1].span,
                "",
                "the file holds more than one YAML document",
                "put one job in each file",
            );
            None
        }
    }
}

fn report_scan_error(err: &ScanError, diags: &mut Diagnostics) {
    let info = err.info();
    let hint = if info.contains("tab") {
        Some("YAML indentation must use spaces, not tabs")
    } else if info.contains("mapping values are not allowed") {
        Some("check the indentation here, or quote a value that contains `: `")
    } else if info.contains("did not find expected key") {
        Some("check that this line is indented like its siblings")
    } else if info.contains("did not find expected ',' or ']'") {
        Some("a flow list `[a, b]` is missing a `,` or its closing `]`")
    } else if info.contains("did not find expected ',' or '}'") {
        Some("a flow mapping `{a: 1}` is missing a `,` or its closing `}`")
    } else if info.contains("unclosed quoted") || info.contains("end of stream") {
        Some("a quoted string is not closed")
    } else {
        None
    };
    let span = Span::point(pos(*err.marker()));
    let message = format!("invalid YAML: {info}");
    match hint {
        Some(hint) => diags.error_hint(span, "", message, hint),
        None => diags.error(span, "", message),
    }
}

struct Builder<'d> {
    stack: Vec<Frame>,
    /// Anchored nodes by anchor id (ids are small and dense).
    anchors: Vec<Option<Node>>,
    documents: Vec<Node>,
    /// Nodes created so far, counting alias copies, to stop "billion laughs".
    nodes: usize,
    diags: &'d mut Diagnostics,
}

impl Builder<'_> {
    /// Handles one event; false stops parsing after a fatal limit error.
    fn on_event(&mut self, event: Event<'_>, span: saphyr_parser::Span) -> bool {
        let at = span_of(span);
        match event {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => true,
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let kind = if plain && is_null(&text) {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                        interpolated: false,
                        poisoned: false,
                    })
                };
                self.finish(Node { kind, span: at }, anchor, 1)
            }
            Event::SequenceStart(anchor, _tag) => {
                if !self.check_depth(at) {
                    return false;
                }
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    span: at,
                    anchor,
                });
                true
            }
            Event::MappingStart(anchor, _tag) => {
                if !self.check_depth(at) {
                    return false;
                }
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    span: at,
                    anchor,
                    pending_key: None,
                });
                true
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    span,
                    anchor,
                }) => self.finish(
                    Node {
                        kind: NodeKind::Seq(items),
                        span,
                    },
                    anchor,
                    1,
                ),
                _ => true,
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    entries,
                    span,
                    anchor,
                    ..
                }) => self.finish(
                    Node {
                        kind: NodeKind::Map(entries),
                        span,
                    },
                    anchor,
                    1,
                ),
                _ => true,
            },
            Event::Alias(id) => match self.anchors.get(id).cloned().flatten() {
                Some(node) => {
                    let cost = count_nodes(&node);
                    self.finish(node, 0, cost)
                }
                None => {
                    self.diags
                        .error(at, "", "alias refers to an anchor that is not defined");
                    true
                }
            },
        }
    }

    fn check_depth(&mut self, at: Span) -> bool {
        if self.stack.len() >= limits::YAML_DEPTH_MAX {
            self.diags.error(
                at,
                "",
                format!(
                    "the spec nests deeper than {} levels",
                    limits::YAML_DEPTH_MAX
                ),
            );
            return false;
        }
        true
    }

    /// Attaches a completed node to its parent (or makes it the document).
    fn finish(&mut self, node: Node, anchor: usize, cost: usize) -> bool {
        self.nodes = self.nodes.saturating_add(cost);
        if self.nodes > limits::YAML_NODES_MAX {
            self.diags.error_hint(
                node.span,
                "",
                format!(
                    "the spec expands to more than {} YAML nodes",
                    limits::YAML_NODES_MAX
                ),
                "aliases (`*name`) copy whole subtrees; use fewer of them",
            );
            return false;
        }
        if anchor > 0 {
            if self.anchors.len() <= anchor {
                self.anchors.resize(anchor + 1, None);
            }
            self.anchors[anchor] = Some(node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match node.kind {
                        NodeKind::Scalar(s) => s.text,
                        NodeKind::Null => "~".to_owned(),
                        _ => {
                            self.diags.error(
                                node.span,
                                "",
                                "mapping keys must be plain strings, not lists or mappings",
                            );
                            "<complex key>".to_owned()
                        }
                    };
                    *pending_key = Some((key, node.span));
                }
                Some((key, key_span)) => {
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        let line = first.key_span.start.line;
                        self.diags.error_hint(
                            key_span,
                            "",
                            format!("duplicate key `{key}`"),
                            format!("`{key}` is already set on line {line}; keep one"),
                        );
                    } else {
                        entries.push(Entry {
                            key,
                            key_span,
                            value: node,
                        });
                    }
                }
            },
        }
        true
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Seq(items) => items.iter().map(count_nodes).sum(),
        NodeKind::Map(entries) => entries.iter().map(|e| count_nodes(&e.value) + 1).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(src: &str) -> (Option<Node>, Vec<crate::Diagnostic>) {
        let mut d = Diagnostics::new("t.yaml");
        let node = parse(src, &mut d);
        (node, d.into_sorted())
    }

    #[test]
    fn positions_are_one_based() {
        let (node, diags) = tree("a: 1\nbb:\n  c: x\n");
        assert!(diags.is_empty());
        let node = node.unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map[1].key, "bb");
        assert_eq!(map[1].key_span.start, Pos { line: 2, column: 1 });
        let c = node.get("bb").unwrap().as_map().unwrap();
        assert_eq!(c[0].key_span.start, Pos { line: 3, column: 3 });
        assert_eq!(c[0].value.span.start, Pos { line: 3, column: 6 });
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        assert_eq!(classify_plain("yes"), PlainType::Str);
        assert_eq!(classify_plain("true"), PlainType::Bool);
        assert_eq!(classify_plain("0x1F"), PlainType::Int);
        assert_eq!(classify_plain("-12"), PlainType::Int);
        assert_eq!(classify_plain("1.5e3"), PlainType::Float);
        assert_eq!(classify_plain("2026-01-01"), PlainType::Str);
        assert_eq!(classify_plain("1h"), PlainType::Str);
    }

    #[test]
    fn duplicate_keys_are_reported_with_the_first_line() {
        let (_, diags) = tree("a: 1\nb: 2\na: 3\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, 3);
        assert!(diags[0].hint.as_deref().unwrap().contains("line 1"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let (node, diags) = tree("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.starts_with("invalid YAML"));
        assert!(diags[0].line >= 1);
    }

    #[test]
    fn tabs_get_a_hint() {
        let (_, diags) = tree("a:\n\tb: 1\n");
        assert_eq!(diags.len(), 1);
        assert!(diags[0].hint.as_deref().unwrap_or("").contains("tabs"));
    }

    #[test]
    fn aliases_copy_and_count_against_the_node_limit() {
        let (node, diags) = tree("a: &x {k: v}\nb: *x\n");
        assert!(diags.is_empty());
        let node = node.unwrap();
        assert_eq!(node.get("a"), node.get("b"));

        // Nine levels of ten aliases each would be a billion nodes.
        let mut src = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            src.push_str(&format!(
                "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        let (node, diags) = tree(&src);
        assert!(node.is_none());
        assert!(diags[0].message.contains("YAML nodes"));
    }

    #[test]
    fn multiple_documents_are_rejected() {
        let (node, diags) = tree("a: 1\n---\nb: 2\n");
        assert!(node.is_none());
        assert!(diags[0].message.contains("more than one YAML document"));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let src = "[".repeat(limits::YAML_DEPTH_MAX + 5) + &"]".repeat(limits::YAML_DEPTH_MAX + 5);
        let (node, diags) = tree(&src);
        assert!(node.is_none());
        assert!(diags[0].message.contains("nests deeper"));
    }
}
