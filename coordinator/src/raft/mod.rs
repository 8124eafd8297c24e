//! Raft replication of the state machine.
//!
//! # Layout
//!
//! - [`log_store`]: the Raft log, HardState and ConfState in raft-engine.
//! - [`node`]: the driver thread that owns the `RawNode`.
//! - [`transport`]: messages and snapshots to peers over gRPC.
//! - [`service`]: the `RaftService` server for messages from peers.

pub mod log_store;
pub mod node;
pub mod service;
pub mod transport;
