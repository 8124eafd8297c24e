//! `drover job plan --check-input`: a spec's inputs read as its tasks
//! would read them, before it is submitted, so a file the job cannot use
//! is reported in seconds with the same message the first task would
//! fail with.

use std::collections::BTreeMap;

use serde::Serialize;

/// What was found in one task's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputCheck {
    /// The input's URL.
    pub input: String,
    /// Whether a `_manifest.json` named the files (else a listing found
    /// them).
    pub from_manifest: bool,
    /// Files found.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files by format (or, for sensor readings, by date).
    pub formats: BTreeMap<String, usize>,
    /// Files (or dates) whose contents were read.
    pub checked: usize,
    /// What would fail the job, one line each.
    pub problems: Vec<String>,
    /// What a user may want to know (dates with no readings yet).
    pub notes: Vec<String>,
}

impl InputCheck {
    /// An empty check of `input`.
    pub fn new(input: &str, from_manifest: bool) -> Self {
        Self {
            input: input.to_owned(),
            from_manifest,
            files: 0,
            bytes: 0,
            formats: BTreeMap::new(),
            checked: 0,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Counts a file of `format` and `bytes`.
    pub fn add_file(&mut self, format: &str, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        *self.formats.entry(format.to_owned()).or_default() += 1;
    }

    /// Counts a file read, and what was wrong with it, if anything.
    pub fn checked(&mut self, problem: Option<String>) {
        self.checked += 1;
        self.problems.extend(problem);
    }

    /// Whether the job could read everything checked.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}
