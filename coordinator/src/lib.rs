//! The Drover coordinator: replicated scheduler state and the services that
//! expose it.
//!
//! # Layout
//!
//! - [`state`]: the pure, deterministic state machine (jobs, tasks, leases,
//!   schedules). No IO, no clock, no randomness: time arrives with each log
//!   entry.
//! - [`storage`]: the sled layout of the state machine, written per changed
//!   record together with the applied index.
//!
//! Planned: `raft/` (the raft-rs driver, the raft-engine log store and
//! snapshots) and `service/` (the tonic services and their `convert`
//! modules).

pub mod raft;
pub mod state;
pub mod storage;
