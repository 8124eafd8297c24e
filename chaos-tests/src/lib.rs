//! Drover's fault-injection suite.
//!
//! # Layout
//!
//! The planned pieces are a real-process cluster harness with a fault proxy on
//! every link, a nemesis, a recorded history with one checker per invariant,
//! and a deterministic simulation tier for the core. None of them exists yet.
