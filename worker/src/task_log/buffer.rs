//! One attempt's log in memory, bounded: the first [`HEAD_BYTES`] are kept
//! (how it started), then the last [`TAIL_BYTES`] (how it ended), with a
//! line saying how much was left out between. A chatty attempt can never
//! grow the worker's memory or the stored object past about 1 MiB.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Bytes kept from the start of the log.
pub const HEAD_BYTES: usize = 64 * 1024;
/// Bytes kept from the end of the log.
pub const TAIL_BYTES: usize = 960 * 1024;
/// Longest line kept; longer ones are cut and say so.
pub const LINE_BYTES_MAX: usize = 16 * 1024;

/// A shared handle to one attempt's log; clones append to the same log.
/// A worker with no task log store to upload to keeps none: its attempts'
/// logs discard every line ([`AttemptLog::discarding`]), which spares a
/// short attempt the formatting and copying of lines no one reads.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    inner: Option<Arc<Mutex<Lines>>>,
}

impl Default for AttemptLog {
    /// A log that keeps its lines.
    fn default() -> Self {
        Self {
            inner: Some(Arc::default()),
        }
    }
}

#[derive(Debug, Default)]
struct Lines {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// Bytes dropped from the front of the tail.
    dropped: u64,
    /// Lines ever appended, so an uploader can tell a changed log.
    appended: u64,
}

impl AttemptLog {
    /// A log that keeps nothing.
    pub fn discarding() -> Self {
        Self { inner: None }
    }

    /// Whether lines appended are kept.
    pub fn is_kept(&self) -> bool {
        self.inner.is_some()
    }

    /// Appends `line` (a newline is added; newlines inside are kept as
    /// separate lines of the same entry).
    pub fn line(&self, line: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut bytes = line.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
        if bytes.len() > LINE_BYTES_MAX {
            let mut cut = LINE_BYTES_MAX;
            while cut > 0 && !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let left = bytes.len() - cut;
            bytes.truncate(cut);
            bytes.extend_from_slice(
                format!(" …[{left} more bytes of this line left out]").as_bytes(),
            );
        }
        bytes.push(b'\n');
        let Ok(mut lines) = inner.lock() else {
            return;
        };
        lines.appended += 1;
        if lines.tail.is_empty() && lines.head.len() + bytes.len() <= HEAD_BYTES {
            lines.head.extend_from_slice(&bytes);
            return;
        }
        lines.tail.extend(bytes);
        // Whole lines leave the front, so the kept tail starts cleanly.
        while lines.tail.len() > TAIL_BYTES {
            let over = lines.tail.len() - TAIL_BYTES;
            let end = lines
                .tail
                .iter()
                .skip(over.saturating_sub(1))
                .position(|b| *b == b'\n')
                .map_or(lines.tail.len(), |i| over.saturating_sub(1) + i + 1);
            lines.tail.drain(..end);
            lines.dropped += end as u64;
        }
    }

    /// Appends `text` as one line from `source` (such as `stdout`), stamped
    /// with the time as event lines are.
    pub fn stamped(&self, source: &str, text: &str) {
        if !self.is_kept() {
            return;
        }
        self.line(&format!("{} {source}: {text}", now()));
    }

    /// The log as it is now, and how many lines it has had (which changes
    /// whenever the text does).
    pub fn snapshot(&self) -> (Vec<u8>, u64) {
        let Some(Ok(lines)) = self.inner.as_ref().map(|i| i.lock()) else {
            return (Vec::new(), 0);
        };
        let mut out = Vec::with_capacity(lines.head.len() + lines.tail.len() + 80);
        out.extend_from_slice(&lines.head);
        if lines.dropped > 0 {
            out.extend_from_slice(
                format!(
                    "…[{} bytes of log left out here; the worker keeps the first {} KiB and the last {} KiB of an attempt]\n",
                    lines.dropped,
                    HEAD_BYTES / 1024,
                    TAIL_BYTES / 1024
                )
                .as_bytes(),
            );
        }
        let (a, b) = lines.tail.as_slices();
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        (out, lines.appended)
    }
}

/// The time as log lines show it: UTC, milliseconds.
pub fn now() -> impl std::fmt::Display {
    // The RFC 3339 writer, not a strftime pattern: the pattern is parsed
    // on every call, which was a few percent of a busy worker's CPU.
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &AttemptLog) -> String {
        String::from_utf8(log.snapshot().0).unwrap()
    }

    #[test]
    fn a_short_log_is_kept_whole() {
        let log = AttemptLog::default();
        log.line("one");
        log.line("two\n");
        assert_eq!(text(&log), "one\ntwo\n");
        assert_eq!(log.snapshot().1, 2);
    }

    #[test]
    fn a_long_log_keeps_its_start_and_end_and_says_what_it_left_out() {
        let log = AttemptLog::default();
        let line = "x".repeat(99);
        let n = (HEAD_BYTES + TAIL_BYTES) / 100 * 3;
        for i in 0..n {
            log.line(&format!("{i:06} {line}"));
        }
        let t = text(&log);
        assert!(t.len() <= HEAD_BYTES + TAIL_BYTES + 200, "{}", t.len());
        assert!(t.starts_with("000000 x"));
        assert!(t.ends_with(&format!("{:06} {line}\n", n - 1)));
        let marker = t.lines().find(|l| l.starts_with("…[")).unwrap();
        let dropped: usize = marker[4..].split(' ').next().unwrap().parse().unwrap();
        // Every line is either kept whole or counted as left out.
        let kept = t.len() - marker.len() - 1;
        assert_eq!(kept + dropped, n * 107);
        for l in t.lines().filter(|l| !l.starts_with("…[")) {
            assert_eq!(l.len(), 106, "a line was cut: {l:?}");
        }
    }

    #[test]
    fn an_overlong_line_is_cut_on_a_character_boundary() {
        let log = AttemptLog::default();
        log.line(&"é".repeat(LINE_BYTES_MAX));
        let t = text(&log);
        assert!(t.len() < LINE_BYTES_MAX + 100);
        assert!(t.trim_end().ends_with("bytes of this line left out]"));
    }
}
