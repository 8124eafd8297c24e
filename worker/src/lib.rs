//! The Drover worker: a stateless process that leases tasks, runs them and
//! reports their outputs.
//!
//! # Layout
//!
//! - [`runner`]: the lease loop: long-poll leases ahead of the free slots,
//!   run tasks concurrently, report their ends, and drain on shutdown.
//! - [`session`]: registration and its session epoch, and one heartbeat
//!   per interval for every held task.
//! - [`prefetch`]: how far to lease ahead (Little's law over task run time
//!   and lease round trip, capped).
//! - [`reporter`]: completions and failures coalesced into `CompleteBatch`
//!   calls (bounded by count and a short linger, a few in flight).
//! - [`annotation`]: consensus labels and agreement metrics for the
//!   annotation export.
//! - [`imds`]: the EC2 instance metadata service: the instance id, and the
//!   spot interruption and scale-in notices that start a drain.
//! - [`metrics`]: the worker's Prometheus metrics (running tasks,
//!   attempts by outcome and duration, lease latency, heartbeat failures).
//! - [`executors`]: one executor per task kind (`noop`, `sleep`,
//!   `command`, `probe`, `annotation_export`, `dedup`,
//!   `sensor_feature_backfill`).
//! - [`dataset`]: reading and writing datasets (JSONL, Parquet,
//!   manifests) on the local disk or S3; [`datagen`] makes synthetic ones.
//! - [`dedup`]: normalisation, shingles, MinHash, LSH and clustering for
//!   the dedup job.
//! - [`sensors`]: distances, the cleaning of device readings and the
//!   (cell, window) features for the sensor feature job.
//! - [`fixed`]: fixed-size binary records for files tasks hand each other
//!   and for spills to scratch.
//! - [`html`]: escaping and inline SVG charts for HTML reports.
//! - [`output`]: the attempt-scoped output directory and the manifest of
//!   what an attempt wrote.
//! - [`task_log`]: each attempt's log, bounded, captured from its tracing
//!   events and stored in the cluster's task log store as it runs.
//!
//! **Architecture invariant:** a worker keeps no state that matters. Its
//! tasks' truth is the coordinator's; a worker that vanishes loses nothing
//! but the attempts it was running, which are leased again after their TTL.

pub mod annotation;
pub mod config;
pub mod datagen;
pub mod dataset;
pub mod dedup;
pub mod executors;
pub mod fixed;
pub mod html;
pub mod imds;
pub mod metrics;
pub mod output;
pub mod prefetch;
pub mod reporter;
pub mod runner;
pub mod sensors;
pub mod session;
pub mod shared;
pub mod task_log;
