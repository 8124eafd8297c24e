//! One simulated coordinator: the real driver core over in-memory stores,
//! with crashes that keep only what was durably written.
//!
//! While up, the node owns a [`DriverCore`]; while down, only its "disk":
//! the log and state images a crash left. Panics inside the core (raft-rs
//! panics on some corrupted states, e.g. a log that lost acknowledged
//! entries) are caught and turn the node into a dead one, so a run can
//! report them instead of aborting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use drover_coordinator::clock::Now;
use drover_coordinator::raft::driver::DriverCore;
use drover_coordinator::raft::mem_log::MemLog;
use drover_coordinator::raft::mem_state::MemState;
use drover_coordinator::raft::node::{NodeConfig, Transport};
use raft::prelude::Message;

use crate::rng::{Rng, mix};

/// The core the simulation runs.
pub type SimCore = DriverCore<MemLog, MemState>;

/// Wall-clock time of virtual time 0: 2026-06-01T00:00:00Z.
pub const EPOCH_UNIX_MS: i64 = 1_780_272_000_000;

/// Messages a core sent during one call, collected for the network.
type Outbox = Arc<Mutex<Vec<Message>>>;

/// The transport a simulated core sends through: into its outbox.
struct OutboxTransport {
    /// Shared with the node, which drains it after every call.
    outbox: Outbox,
}

impl Transport for OutboxTransport {
    fn send(&self, messages: Vec<Message>) {
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.extend(messages);
        }
    }

    fn set_peer(&self, _id: u64, _address: Option<String>) {}
}

/// What a crash lost, for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoss {
    /// Unsynced log batches written before the crash.
    pub unsynced_batches: usize,
    /// How many of them survived.
    pub kept_batches: usize,
    /// Whether the state store kept its latest write.
    pub kept_latest_state: bool,
}

/// One simulated coordinator.
pub struct SimNode {
    /// Its Raft id.
    pub id: u64,
    /// Its settings (the election seed is set per start).
    config: NodeConfig,
    /// The running core, while up.
    core: Option<SimCore>,
    /// What it restarts from, while down.
    disk: Option<(MemLog, MemState)>,
    /// Messages sent by the core, not yet handed to the network.
    outbox: Outbox,
    /// Starts so far; part of the election seed.
    pub incarnation: u64,
    /// This node's wall clock minus virtual time (clock skew).
    pub clock_skew_ms: i64,
    /// Set when the node died for good (a panic, or a state it cannot
    /// start from); it never restarts.
    pub dead: Option<String>,
    /// When sled's background flusher last ran.
    pub last_flush_ms: u64,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("id", &self.id)
            .field("up", &self.core.is_some())
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl SimNode {
    /// A node that has never run, with blank stores.
    pub fn new(id: u64, config: NodeConfig, clock_skew_ms: i64) -> Self {
        Self {
            id,
            config,
            core: None,
            disk: Some((MemLog::new(), MemState::new())),
            outbox: Arc::new(Mutex::new(Vec::new())),
            incarnation: 0,
            clock_skew_ms,
            dead: None,
            last_flush_ms: 0,
        }
    }

    /// This node's view of time at virtual time `now_ms`.
    pub fn now(&self, now_ms: u64) -> Now {
        Now {
            mono_ms: now_ms,
            wall_ms: EPOCH_UNIX_MS + now_ms as i64 + self.clock_skew_ms,
        }
    }

    /// Whether the node runs.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Whether the node is gone for good (removed, or failed to start).
    pub fn is_gone(&self) -> bool {
        self.dead.is_some()
    }

    /// Starts the node from its disk. An error means the node cannot start
    /// from what it stored; it is then dead.
    pub fn start(&mut self, now_ms: u64, run_seed: u64) -> Result<(), String> {
        if self.core.is_some() || self.dead.is_some() {
            return Ok(());
        }
        let Some((log, state)) = self.disk.take() else {
            return Ok(());
        };
        self.incarnation += 1;
        let mut config = self.config.clone();
        config.election_seed = Some(mix(run_seed ^ mix(self.id << 32 | self.incarnation)));
        let transport = Box::new(OutboxTransport {
            outbox: self.outbox.clone(),
        });
        let now = self.now(now_ms);
        let opened = catch_unwind(AssertUnwindSafe(|| {
            DriverCore::open(config, log, state, transport, now)
        }));
        match opened {
            Ok(Ok(mut core)) => {
                core.record_applies();
                core.campaign_if_alone();
                self.core = Some(core);
                self.last_flush_ms = now_ms;
                Ok(())
            }
            Ok(Err(e)) => self.die(format!("cannot start: {e}")),
            Err(panic) => self.die(format!("panicked while starting: {}", panic_text(&panic))),
        }
    }

    /// Crashes the node: everything not durably written is lost, except
    /// for a seeded prefix of unsynced log batches and, by chance, the
    /// state store's latest write.
    pub fn crash(&mut self, rng: &mut Rng) -> Option<CrashLoss> {
        let core = self.core.take()?;
        let unsynced_batches = core.log().unsynced_batches();
        // Usually the torn tail is lost entirely; sometimes part survives.
        let kept_batches = if rng.per_mille(500) {
            0
        } else {
            rng.index(unsynced_batches + 1)
        };
        let kept_latest_state = rng.per_mille(500);
        self.disk = Some((
            core.log().after_crash(kept_batches),
            core.state_backend().after_crash(kept_latest_state),
        ));
        // Dropping the core drops every reply channel: callers waiting on
        // this node learn nothing more (an indeterminate outcome).
        drop(core);
        self.outbox.lock().map(|mut o| o.clear()).ok();
        Some(CrashLoss {
            unsynced_batches,
            kept_batches,
            kept_latest_state,
        })
    }

    /// Removes the node for good (it left the cluster).
    pub fn retire(&mut self, why: &str) {
        self.core = None;
        self.disk = None;
        self.dead = Some(why.to_owned());
    }

    /// Runs `f` on the core, if up. A panic kills the node and is returned
    /// as an error.
    pub fn call<R>(&mut self, f: impl FnOnce(&mut SimCore) -> R) -> Option<Result<R, String>> {
        let core = self.core.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| f(core))) {
            Ok(r) => Some(Ok(r)),
            Err(panic) => {
                let text = format!("panicked: {}", panic_text(&panic));
                self.core = None;
                self.disk = None;
                self.dead = Some(text.clone());
                Some(Err(text))
            }
        }
    }

    /// The core, read-only, if up.
    pub fn core(&self) -> Option<&SimCore> {
        self.core.as_ref()
    }

    /// Messages the core sent since the last call.
    pub fn take_outbox(&self) -> Vec<Message> {
        self.outbox
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    fn die(&mut self, why: String) -> Result<(), String> {
        self.dead = Some(why.clone());
        self.core = None;
        self.disk = None;
        Err(why)
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
