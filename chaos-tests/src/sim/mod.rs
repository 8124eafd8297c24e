//! The deterministic simulation tier: the real state machine and the real
//! Raft driver core on an in-memory network and in-memory stores, in
//! virtual time, on one thread, with every random choice drawn from one
//! seed. A failing seed replays exactly.
//!
//! # Layout
//!
//! - [`scheduler`]: virtual time and the event queue.
//! - [`network`]: delay, reordering, drops, duplicates and partitions.
//! - [`node`]: a coordinator: the driver core over
//!   `MemLog`/`MemState`, crashes that keep only durable writes.
//! - [`workload`], [`client`], [`worker`]: the callers, submitting DAG jobs
//!   with idempotency keys and leasing, heartbeating and completing tasks.
//! - [`history`]: what the callers did and heard.
//! - [`ledger`]: the committed log as the replicas applied it.
//! - [`checks`]: the checker over the ledger, the history and the final
//!   state; [`report`] names the invariants and summarises a run.
//! - [`config`]: what a run looks like.
//! - [`runner`]: the event loop and the nemesis; [`run_seed`] is the entry
//!   point.
//! - [`sweep`]: many seeds in a row and their totals (`drover-chaos --sim`).

pub mod checks;
pub mod client;
pub mod config;
pub mod history;
pub mod ledger;
pub mod network;
pub mod node;
pub mod report;
pub mod runner;
pub mod scheduler;
pub mod sweep;
pub mod worker;
pub mod workload;

pub use config::{FaultWeights, SimConfig};
pub use report::{INVARIANTS, Summary, Violation};
pub use runner::{Run, run_seed};
pub use sweep::Sweep;
