//! Raft replication of the state machine.
//!
//! # Layout
//!
//! - [`log_store`]: the Raft log, HardState and ConfState in raft-engine.
//! - [`node`]: the driver thread that owns the `RawNode`.

pub mod log_store;
pub mod node;
