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
//! - [`raft`]: replication: the raft-engine log store, the driver thread
//!   that owns the `RawNode`, and the gRPC transport between coordinators.
//! - [`service`]: the client-facing gRPC services.
//! - `auth`: tokens, roles, the guard in front of every service, and the
//!   audit log.
//! - [`server`]: one coordinator process: a node plus its services.
//! - [`metrics`]: the Prometheus metrics and their OpenMetrics text.
//! - [`scaling`]: the scaling signal as served (`/v1/scaling`, gauges,
//!   CloudWatch EMF lines).
//! - [`clock`]: the only reader of the clocks; everything below the node's
//!   thread shell gets the time as a `Now`.
//! - `data_dir`: the data directory's format marker.
//! - [`durable`]: writing a whole file so that it survives a crash.
//! - [`backup`]: the backup file format, and seeding a new cluster's data
//!   directories from one.
//! - [`task_logs`]: the interface to the store of attempts' logs, which
//!   `drover-web` implements on object_store.
//!
//! What the `drover` binary, `drover-web` and the test tiers use is `pub`:
//! [`server`] (one coordinator process), the [`raft::node::NodeHandle`],
//! the [`state`] machine (the simulation and property tests drive it),
//! [`metrics`], [`scaling`], [`backup`] and the services' servers (for the
//! gRPC fuzzer). Modules only the crate uses are `pub(crate)`.
//! - `planted` (feature `planted-bugs` only): bugs planted on purpose so
//!   the chaos suite can prove its checkers catch them.

pub(crate) mod auth;
pub mod backup;
pub mod clock;
pub(crate) mod data_dir;
pub mod durable;
pub mod metrics;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod raft;
pub mod scaling;
pub mod server;
pub mod service;
pub mod state;
pub mod storage;
pub mod task_logs;
