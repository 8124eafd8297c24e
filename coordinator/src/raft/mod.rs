//! Raft replication of the state machine.
//!
//! # Layout
//!
//! - [`driver`]: the driver core: the `RawNode`, the state machine and the
//!   stores, and every reaction to an event, with time passed in. Generic
//!   over its stores, so the same code runs on disk and in the simulation.
//! - [`entry`]: the versioned bytes of an entry's payload.
//! - [`cluster_clock`]: the time the leader stamps into entries: what a
//!   majority of the voters' wall clocks agree on, run on by the monotonic
//!   clock when no majority agrees.
//! - `lease_timers`: the leader's lease and session timers: heartbeats
//!   renew them without a log entry, and only their expiry is proposed.
//! - [`node`]: the thread shell that runs the driver core in real time over the
//!   disk stores, and the handle callers use.
//! - [`config`], [`error`], [`status`]: a node's settings and transport,
//!   its errors, and the status it publishes: shared by the core and the
//!   shell, so neither imports the other's module.
//! - [`backend`]: the two store traits the core needs, and the disk state
//!   backend (sled, checkpoint file, members file).
//! - `checkpoint`: a checkpoint copied by the core and encoded and written
//!   off the Raft thread by the shell.
//! - [`log_store`]: the Raft log, HardState and ConfState in raft-engine.
//! - [`mem_log`], [`mem_state`]: in-memory stores that model which writes a
//!   crash keeps, for the deterministic simulation.
//! - `transport`: messages and snapshots to peers over gRPC.
//! - `service`: the `RaftService` server for messages from peers.

pub mod backend;
pub(crate) mod checkpoint;
pub mod cluster_clock;
pub mod config;
pub mod driver;
pub mod entry;
pub mod error;
pub(crate) mod lease_timers;
pub mod log_store;
pub mod mem_log;
pub mod mem_state;
pub mod node;
pub(crate) mod service;
pub mod status;
pub(crate) mod transport;
