//! A worker's settings, and what it reports when it stops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::Metrics;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique id; a restarted worker should use a new one.
    pub worker_id: String,
    /// Coordinator addresses; the worker follows the leader among them.
    pub coordinators: Vec<String>,
    /// Tasks run at once.
    pub slots: u32,
    /// Labels matched against task constraints.
    pub labels: BTreeMap<String, String>,
    /// Root below which attempts write their outputs, each under its own
    /// attempt-scoped prefix.
    pub data_root: PathBuf,
    /// Scratch space for running attempts (cleared after each).
    pub work_dir: PathBuf,
    /// Run `command` tasks (arbitrary programs).
    pub allow_command: bool,
    /// Run `probe` tasks, recording each attempt to a side log in this
    /// directory.
    pub probe_log: Option<PathBuf>,
    /// On shutdown, how long running tasks may finish before they are
    /// released to other workers.
    pub drain_timeout: Duration,
    /// Long-poll length of one lease call.
    pub lease_wait: Duration,
    /// Most tasks leased ahead of the free slots (the depth itself follows
    /// how long tasks run; see [`crate::prefetch`]); 0 turns lease-ahead off.
    /// The cap binds only for tasks far shorter than a lease round trip: a
    /// busy cluster answers in about 10 ms, and 512 keeps four 64-slot
    /// workers of millisecond tasks busy through it.
    pub prefetch_max: usize,
    /// How long a finished attempt's report waits for others to join its
    /// batch.
    pub report_linger: Duration,
    /// Where the worker records its metrics; the caller keeps a clone to
    /// serve them.
    pub metrics: Metrics,
    /// How coordinators are dialled: plaintext, or mutual TLS with the
    /// worker's certificate, and a token if the cluster wants one.
    pub dialer: drover_net::Dialer,
}

impl WorkerConfig {
    /// Defaults for a worker talking to `coordinators`.
    pub fn new(worker_id: impl Into<String>, coordinators: Vec<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            coordinators,
            slots: 4,
            labels: BTreeMap::new(),
            data_root: PathBuf::from("./drover-data/outputs"),
            work_dir: PathBuf::from("./drover-data/worker"),
            allow_command: false,
            probe_log: None,
            drain_timeout: Duration::from_secs(30),
            lease_wait: Duration::from_secs(10),
            prefetch_max: 512,
            report_linger: Duration::from_millis(2),
            metrics: Metrics::new(),
            dialer: drover_net::Dialer::plaintext(),
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Completions the coordinator accepted.
    pub completed: u64,
    /// Failures reported.
    pub failed: u64,
    /// Tasks stopped because their lease was lost or their job cancelled.
    pub stopped: u64,
    /// Tasks handed back when draining.
    pub released: u64,
}
