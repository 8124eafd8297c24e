//! Diagnostics: what is wrong with a spec, where, and how to fix it.
//!
//! Every problem found in a spec becomes one [`Diagnostic`] carrying its
//! position, so that a user sees all of their mistakes in one run instead of
//! fixing them one at a time.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position in the spec source. Lines and columns are 1-based, as editors
/// show them; `offset` is a character offset used to draw the snippet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

/// A region of the source: where a node starts and how many characters of its
/// first line to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Where the region starts.
    pub start: Pos,
    /// Characters to underline on the start line (at least one is drawn).
    pub width: u32,
}

impl Span {
    /// A span of `width` characters starting at `start`.
    pub fn new(start: Pos, width: u32) -> Self {
        Self { start, width }
    }

    /// A span pointing at a single position, used where there is no node to
    /// underline (for example a missing field reported at its parent).
    pub fn point(start: Pos) -> Self {
        Self { start, width: 1 }
    }

    /// The same start moved `chars` characters to the right on the same line,
    /// `width` wide; used to point inside a plain scalar.
    pub fn shifted(self, chars: u32, width: u32) -> Self {
        Self {
            start: Pos {
                line: self.start.line,
                column: self.start.column + chars,
            },
            width,
        }
    }
}

/// How bad a diagnostic is. Only errors make a spec invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec is rejected.
    Error,
    /// The spec is accepted but probably not what the user meant.
    Warning,
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Whether this rejects the spec.
    pub severity: Severity,
    /// The spec's file name as the user gave it, so the position is clickable.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// Characters to underline; not serialised, it only shapes the snippet.
    #[serde(skip, default)]
    pub width: u32,
    /// Dotted path of the offending node, e.g. `spec.tasks[1].dependsOn[0]`.
    pub path: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when we can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Renders the diagnostic the way compilers do: a headline, the location,
    /// the source line with the offending part underlined, and the hint.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{label}: {}\n", self.message));
        if self.line == 0 {
            out.push_str(&format!("  --> {}\n", self.file));
        } else {
            out.push_str(&format!(
                "  --> {}:{}:{}\n",
                self.file, self.line, self.column
            ));
        }
        let source_line = match self.line {
            0 => None,
            n => source.lines().nth(n as usize - 1),
        };
        if let Some(text) = source_line {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            // Tabs would misalign the caret line; YAML forbids them in
            // indentation anyway, so showing them as spaces loses nothing.
            let text = text.replace('\t', " ");
            out.push_str(&format!("{pad} |\n{gutter} | {text}\n"));
            let caret_col = self.column.saturating_sub(1) as usize;
            let line_chars = text.chars().count();
            let width =
                (self.width.max(1) as usize).min(line_chars.saturating_sub(caret_col).max(1));
            out.push_str(&format!(
                "{pad} | {}{}\n",
                " ".repeat(caret_col),
                "^".repeat(width)
            ));
        }
        if !self.path.is_empty() {
            out.push_str(&format!("  = at: {}\n", self.path));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  = hint: {hint}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    /// The one-line form: `file:line:col: error: message (hint: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {label}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {label}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one spec file while it is decoded.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// File name stamped on every diagnostic.
    file: String,
    /// Everything found so far, in the order found.
    items: Vec<Diagnostic>,
    /// Findings not kept because of [`DIAGNOSTICS_MAX`].
    dropped: usize,
}

/// Diagnostics past this count are dropped, and one last error says so: a
/// spec this broken is usually the wrong file, and a wall of errors helps
/// nobody.
pub const DIAGNOSTICS_MAX: usize = 200;

impl Diagnostics {
    /// An empty collection for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            items: Vec::new(),
            dropped: 0,
        }
    }

    /// The file name diagnostics are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, path, message.into(), None);
    }

    /// Records an error at `span` with a fix-it hint.
    pub fn error_hint(
        &mut self,
        span: Span,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            span,
            path,
            message.into(),
            Some(hint.into()),
        );
    }

    /// Records an error in the command line rather than the file (a bad
    /// `--param`); it has no position, shown as line 0.
    pub fn cli_error(&mut self, message: impl Into<String>, hint: impl Into<String>) {
        if self.items.len() >= DIAGNOSTICS_MAX {
            self.dropped += 1;
            return;
        }
        self.items.push(Diagnostic {
            severity: Severity::Error,
            file: "command line".to_owned(),
            line: 0,
            column: 0,
            width: 0,
            path: String::new(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }

    /// Records a warning at `span` with an optional hint.
    pub fn warning(
        &mut self,
        span: Span,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Warning, span, path, message.into(), hint);
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Span,
        path: &str,
        message: String,
        hint: Option<String>,
    ) {
        if self.items.len() >= DIAGNOSTICS_MAX {
            self.dropped += 1;
            return;
        }
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line: span.start.line.max(1),
            column: span.start.column.max(1),
            width: span.width,
            path: path.to_owned(),
            message,
            hint,
        });
    }

    /// Whether any error (not just warnings) was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors recorded.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// The diagnostics sorted by position, so output reads top to bottom.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        // A stable sort keeps several findings at one position in the order
        // they were found, which is the order of the checks.
        self.items.sort_by_key(|d| (d.line, d.column));
        if self.dropped > 0 {
            let line = self.items.last().map(|d| d.line).unwrap_or(0);
            self.items.push(Diagnostic {
                severity: Severity::Error,
                file: self.file.clone(),
                line,
                column: 1,
                width: 1,
                path: String::new(),
                message: format!("{} more problems were found and not shown", self.dropped),
                hint: Some("fix the ones above first; is this the right file?".to_owned()),
            });
        }
        self.items
    }
}
