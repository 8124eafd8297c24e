//! The history of a run: every client operation as invoke, then ok, fail or
//! info (Jepsen's model), with monotonic timestamps, plus the faults the
//! nemesis injected, written as JSONL as it happens.
//!
//! `info` means indeterminate: a timeout or a lost connection says nothing
//! about whether the operation took effect, so the checkers treat it as
//! "maybe", never as a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation ended, or that it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The client sent it.
    Invoke,
    /// It took effect, and the client heard so.
    Ok,
    /// It did not take effect (a definite refusal).
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Who: `client-3`, or `nemesis`.
    pub process: String,
    /// Invoke or completion.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// What: `submit`, `cancel`, or a fault name for the nemesis.
    pub f: String,
    /// The idempotency key of a submit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The job, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// Details: an error, or a fault's target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Nanoseconds since the run started (monotonic clock).
    pub time_ns: u64,
}

/// Where operations are recorded; cheap to clone, shared by every client
/// and the nemesis.
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
    path: PathBuf,
}

#[derive(Debug)]
struct Inner {
    ops: Vec<Op>,
    file: std::fs::File,
}

impl History {
    /// A history written to `path` (created or truncated).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                ops: Vec::new(),
                file,
            })),
            start: Instant::now(),
            path: path.to_owned(),
        })
    }

    /// The JSONL file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an operation, stamping its time.
    pub fn record(&self, mut op: Op) -> Op {
        op.time_ns = self.start.elapsed().as_nanos() as u64;
        if let Ok(mut inner) = self.inner.lock() {
            if let Ok(mut line) = serde_json::to_vec(&op) {
                line.push(b'\n');
                let _ = inner.file.write_all(&line);
            }
            inner.ops.push(op.clone());
        }
        op
    }

    /// A copy of everything recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().map(|i| i.ops.clone()).unwrap_or_default()
    }

    /// Reads a history file back.
    pub fn read(path: &Path) -> std::io::Result<Vec<Op>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

impl Op {
    /// An operation by `process` doing `f`.
    pub fn new(process: &str, kind: OpType, f: &str) -> Self {
        Self {
            process: process.to_owned(),
            kind,
            f: f.to_owned(),
            key: String::new(),
            job: String::new(),
            value: String::new(),
            time_ns: 0,
        }
    }

    /// With an idempotency key.
    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_owned();
        self
    }

    /// With a job id.
    pub fn job(mut self, job: &str) -> Self {
        self.job = job.to_owned();
        self
    }

    /// With a detail.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::create(&dir.path().join("h.jsonl")).unwrap();
        history.record(Op::new("client-1", OpType::Invoke, "submit").key("k1"));
        history.record(
            Op::new("client-1", OpType::Ok, "submit")
                .key("k1")
                .job("j1"),
        );
        let back = History::read(history.path()).unwrap();
        assert_eq!(back, history.ops());
        assert_eq!(back[1].kind, OpType::Ok);
        assert!(back[0].time_ns <= back[1].time_ns);
    }
}
