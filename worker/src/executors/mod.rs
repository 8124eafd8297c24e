//! One executor per task kind. An executor runs one attempt of one task and
//! reports its output manifest or a failure; it stops promptly when its
//! cancellation token fires (lease lost, job cancelled, drain deadline).

pub mod command;
pub mod noop;
pub mod sleep;

use std::future::Future;
use std::pin::Pin;

use drover_proto::v1::{LeasedTask, OutputManifest};
use tokio::sync::watch;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// False for failures a retry cannot fix (bad config).
    pub retryable: bool,
    /// What went wrong.
    pub message: String,
}

impl TaskError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure a retry cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// Fires when the attempt must stop.
pub type Cancel = watch::Receiver<bool>;

/// Resolves when `cancel` fires.
pub async fn cancelled(mut cancel: Cancel) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// The boxed future an executor returns.
pub type Attempt = Pin<Box<dyn Future<Output = Result<OutputManifest, TaskError>> + Send>>;

/// Runs attempts of one kind.
pub trait Executor: Send + Sync {
    /// The kind name it runs (`noop`, `sleep`...).
    fn kind(&self) -> &'static str;
    /// Starts one attempt.
    fn run(&self, task: LeasedTask, cancel: Cancel) -> Attempt;
}

/// Parses a task's config for a kind, as a permanent failure when invalid:
/// the coordinator validated it, so a mismatch means incompatible versions.
pub fn config<T: serde::de::DeserializeOwned>(task: &LeasedTask) -> Result<T, TaskError> {
    serde_json::from_str(&task.config_json)
        .map_err(|e| TaskError::permanent(format!("config of {}: {e}", task.task_id)))
}
