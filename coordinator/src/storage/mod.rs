//! Durable state-machine storage in sled.
//!
//! **Architecture invariant:** the state machine's records and the Raft
//! applied index are written in one atomic sled transaction, so after a
//! crash the stored state is exactly the state after the stored index, and
//! replaying the log from the next index reproduces the rest. sled's own
//! flush is not a real fsync; durability of acknowledged commands comes from
//! the Raft log, and log compaction must only pass indexes whose state is
//! known to be on disk.
//!
//! # Layout (one sled tree each)
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `core`, `applied_index`, `format` | scalar state, the applied index, the format version |
//! | `jobs` | job id (u64 BE) | job header: everything but task records, outputs, events |
//! | `tasks` | job, template, partition (u64, u32, u64 BE) | task record (leases live here) |
//! | `outputs` | same as `tasks` | accepted output of a finished partition |
//! | `events` | job, seq (u64, u64 BE) | one audit event |
//! | `workers` | worker id | worker record |
//! | `schedules` | schedule id (u64 BE) | schedule record |
//! | `idempotency` | namespace, NUL, key | what the key submitted and its spec hash |
//!
//! Big-endian ids keep each job's records contiguous and in order, so a
//! job's tasks or events are one prefix scan.

mod keys;
mod state_store;

pub use state_store::{STORAGE_FORMAT_VERSION, StateStore, StorageError};
