//! The Drover coordinator: replicated scheduler state and the services that
//! expose it.
//!
//! # Layout
//!
//! The crate is built up in stages. The planned modules are:
//! - `state/`: the pure, deterministic state machine (jobs, tasks, leases,
//!   schedules). No IO, no clock, no randomness: time arrives with commands.
//! - `raft/`: the raft-rs driver, the raft-engine log store and snapshots.
//! - `storage/`: the sled layout of the state machine.
//! - `service/`: the tonic services (`JobService`, `WorkerService`,
//!   `AdminService`, `RaftService`) and their `convert` modules.
//!
//! None of them exists yet; job specs are already validated and expanded by
//! `drover-jobspecs`.
pub mod state;
pub mod storage;
