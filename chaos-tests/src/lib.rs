//! Drover's fault-injection suite: real `drover` processes on loopback,
//! a fault proxy on every link, a seeded nemesis, a recorded history and
//! one checker per invariant.
//!
//! # Layout
//!
//! - [`rng`]: the one seeded source of every random choice of a run.
//! - [`proxy`]: the fault-injecting TCP proxy (stall either direction,
//!   delay, refuse, close connections).
//! - [`history`]: client operations as invoke/ok/fail/info, JSONL.
//! - [`observation`]: what a run leaves for the checkers (history, the
//!   cluster's committed trail per job, probe side logs, replica digests).
//! - [`checker`]: one module per invariant, pure functions of an
//!   observation.
//! - [`ports`]: loopback ports for the coordinators, clear of the
//!   kernel's ephemeral range.
//! - [`harness`]: starts and controls coordinators, workers and proxies.
//! - [`nemesis`]: the faults, drawn from the seed, injected and healed.
//! - [`workload`]: the clients (submits with idempotency keys, cancels).
//! - [`campaign`]: one run end to end (faults, heal, observe, check) and
//!   its summary.
//! - [`directed`]: a run with one fault placed where it hurts, for a bug
//!   whose window random faults hit only by luck; it ends as a campaign.
//! - [`sim`]: the deterministic simulation tier: the real state machine and
//!   Raft driver core on an in-memory network and in-memory stores, in
//!   virtual time, every choice drawn from one seed.

pub mod campaign;
pub mod checker;
pub mod directed;
pub mod harness;
pub mod history;
pub mod nemesis;
pub mod observation;
pub mod ports;
pub mod proxy;
pub mod rng;
pub mod sim;
pub mod workload;
