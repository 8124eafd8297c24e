//! The cluster's task log store, as coordinators see it: workers write each
//! attempt's log there (at [`drover_proto::task_log_key`] of its output
//! prefix) and GetTaskLog reads it back. The store is a directory or an
//! object store reached through `object_store`, which the binary wires in;
//! this crate names only the interface, so the scheduler does not carry
//! object store clients.

use std::future::Future;
use std::pin::Pin;

/// The end of one stored log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTail {
    /// The last bytes of the object, at most the number asked for.
    pub bytes: Vec<u8>,
    /// The whole object's size.
    pub total_bytes: u64,
}

/// What reading a log gives: its end, `None` when there is no such log, or
/// why the store could not be read.
pub type TailFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<StoredTail>, String>> + Send + 'a>>;

/// A task log store.
pub trait TaskLogStore: Send + Sync + std::fmt::Debug {
    /// The URL workers are told to write below (`RegisterResponse.task_log_url`).
    fn url(&self) -> &str;
    /// The last `max_bytes` of the log at `key` below [`Self::url`].
    fn read_tail(&self, key: &str, max_bytes: u64) -> TailFuture<'_>;
}
