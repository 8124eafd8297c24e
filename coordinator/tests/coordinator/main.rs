//! The coordinator crate from outside: the state machine's semantics and
//! invariants (unit, property and randomised), its sled store, Raft over
//! memory and over gRPC on loopback, the services and authentication. One
//! test binary rather than one per file: each would link the whole crate
//! again.

mod support;

mod auth;
mod job_service;
mod observability;
mod raft_grpc;
mod raft_mem;
mod state_observability;
mod state_operations;
mod state_props;
mod state_schedule;
mod state_schedule_dst;
mod state_semantics;
mod storage;
