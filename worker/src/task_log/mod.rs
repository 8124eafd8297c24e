//! Per-attempt task logs: what one attempt logged, kept bounded in memory
//! ([`AttemptLog`]), filled from the worker's tracing events inside the
//! attempt's span ([`capture`]) and by executors directly (a `command`'s
//! stdout and stderr), and stored in the cluster's task log store while it
//! runs and when it ends ([`upload`]), where coordinators read it back for
//! the console and `drover job logs`.

mod buffer;
pub mod capture;
pub mod upload;

pub use buffer::{AttemptLog, HEAD_BYTES, LINE_BYTES_MAX, TAIL_BYTES, now};
