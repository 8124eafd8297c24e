//! The bench's one error type: what could not be set up or measured, in
//! words for the person running it.

use std::fmt::Display;

/// Why a bench run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file, process or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else that stopped a run: a cluster that did not start, a
    /// scenario that missed its bound, an rpc that failed.
    #[error("{0}")]
    Failed(String),
}

/// A bench result.
pub type Result<T> = std::result::Result<T, BenchError>;

impl From<std::io::Error> for BenchError {
    fn from(source: std::io::Error) -> Self {
        BenchError::Io {
            what: "i/o".to_owned(),
            source,
        }
    }
}

impl From<serde_json::Error> for BenchError {
    fn from(e: serde_json::Error) -> Self {
        BenchError::Failed(format!("encoding the figures: {e}"))
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> Self {
        BenchError::Failed(format!("a bench task stopped: {e}"))
    }
}

/// Says what was being done when a step failed.
pub trait Context<T> {
    /// Prefixes the error (or an empty option) with `what`.
    fn context(self, what: impl Display) -> Result<T>;
    /// [`Context::context`] with the words made only on failure.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| BenchError::Failed(format!("{what}: {e}")))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| BenchError::Failed(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| BenchError::Failed(what.to_string()))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| BenchError::Failed(what().to_string()))
    }
}

/// Returns a [`BenchError::Failed`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::BenchError::Failed(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// A [`BenchError::Failed`] with a formatted message.
macro_rules! failed {
    ($($arg:tt)*) => {
        $crate::error::BenchError::Failed(format!($($arg)*))
    };
}
pub(crate) use failed;
