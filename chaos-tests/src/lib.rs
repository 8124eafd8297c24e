//! Drover's fault-injection suite.
//!
//! # Layout
//!
//! The planned pieces are a real-process cluster harness with a fault proxy on
//! every link, a nemesis, a recorded history with one checker per invariant,
//! and a deterministic simulation tier for the core. None of them exists yet.
//!
//! - [`sim`]: the deterministic simulation tier: the real state machine and
//!   Raft driver core on an in-memory network and in-memory stores, in
//!   virtual time, every choice drawn from one seed.

pub mod sim;
