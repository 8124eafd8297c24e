//! The Drover worker: a stateless process that leases tasks, runs them and
//! reports their outputs.
//!
//! # Layout
//!
//! The planned modules are the lease loop (register, long-poll lease, batched
//! heartbeats, drain), the executor trait with one implementation per task
//! kind, and the dataset IO shared by the data kinds (object_store,
//! Arrow/Parquet, manifests). None of them exists yet.
