//! One executor per task kind. An executor runs one attempt of one task and
//! reports its output manifest or a failure; it stops promptly when its
//! cancellation token fires (lease lost, job cancelled, drain deadline).

pub mod annotation_export;
pub mod command;
pub mod data_attempt;
pub mod dedup;
pub mod input_check;
pub mod noop;
pub mod probe;
pub mod sensor_features;
pub mod sleep;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use drover_jobspecs::kinds::KindConfig;
use drover_jobspecs::partitions::PartitionSet;
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

/// How far an attempt has got, as the executor tells it; sent with the
/// next heartbeat and shown by `drover job status`. New notes also go to
/// the attempt's log, where they read as its milestones: each one that
/// moves the fraction by [`PROGRESS_LOG_STEP`] or comes
/// [`PROGRESS_LOG_EVERY`] after the last logged one, so a note that ticks
/// every few milliseconds does not fill the log.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    latest: Arc<Mutex<Latest>>,
    log: Option<crate::task_log::AttemptLog>,
}

#[derive(Debug, Default)]
struct Latest {
    fraction: f64,
    note: String,
    /// When the last note was logged, at what fraction.
    logged: Option<(std::time::Instant, f64)>,
}

/// Characters of a progress note sent to the coordinator.
const PROGRESS_NOTE_CHARS_MAX: usize = 200;
/// A change of the fraction that is always logged.
pub const PROGRESS_LOG_STEP: f64 = 0.05;
/// How often a note is logged while the fraction creeps.
pub const PROGRESS_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Progress {
    /// Progress whose notes are also written to `log`.
    pub fn logged_to(log: crate::task_log::AttemptLog) -> Self {
        Self {
            latest: Arc::default(),
            log: Some(log),
        }
    }

    /// Records the fraction done (clamped to 0..=1) and a short note.
    pub fn set(&self, fraction: f64, note: impl Into<String>) {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut note: String = note.into();
        if let Some((cut, _)) = note.char_indices().nth(PROGRESS_NOTE_CHARS_MAX) {
            note.truncate(cut);
        }
        let Ok(mut p) = self.latest.lock() else {
            return;
        };
        if let Some(log) = &self.log
            && p.note != note
        {
            let now = std::time::Instant::now();
            let due = p.logged.is_none_or(|(at, logged)| {
                (fraction - logged).abs() >= PROGRESS_LOG_STEP
                    || fraction >= 1.0
                    || now.duration_since(at) >= PROGRESS_LOG_EVERY
            });
            if due {
                log.stamped("progress", &format!("{:.0}% {note}", fraction * 100.0));
                p.logged = Some((now, fraction));
            }
        }
        p.fraction = fraction;
        p.note = note;
    }

    /// The latest fraction and note.
    pub fn get(&self) -> (f64, String) {
        self.latest
            .lock()
            .map(|p| (p.fraction, p.note.clone()))
            .unwrap_or_default()
    }
}

/// Checks the input of a task of `kind` over `partitions`; `None` for a
/// kind that reads no dataset. An input that cannot be listed at all is
/// the error.
pub async fn check_input(
    kind: &KindConfig,
    partitions: &PartitionSet,
) -> Option<Result<input_check::InputCheck, TaskError>> {
    Some(match kind {
        KindConfig::AnnotationExport(cfg) => annotation_export::check_input(cfg).await,
        KindConfig::Dedup(cfg) => dedup::check_input(cfg).await,
        KindConfig::SensorFeatureBackfill(cfg) => {
            sensor_features::check_input(cfg, partitions).await
        }
        KindConfig::Noop | KindConfig::Sleep(_) | KindConfig::Command(_) | KindConfig::Probe(_) => {
            return None;
        }
    })
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn milestones_reach_the_log_and_a_creeping_note_does_not_flood_it() {
        let log = crate::task_log::AttemptLog::default();
        let progress = Progress::logged_to(log.clone());
        progress.set(0.2, "2825 pairs read");
        progress.set(0.2, "2825 pairs read");
        progress.set(0.6, "5087 documents in clusters");
        for i in 0..100 {
            progress.set(0.61 + f64::from(i) * 0.0001, format!("slept {i} ms"));
        }
        progress.set(1.0, "done");
        let text = String::from_utf8(log.snapshot().0).unwrap();
        let notes: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            notes,
            [
                "progress: 20% 2825 pairs read",
                "progress: 60% 5087 documents in clusters",
                "progress: 100% done"
            ]
        );
        assert_eq!(progress.get(), (1.0, "done".to_owned()));
    }
}

/// Set by an executor that found its task's output already committed (by
/// an earlier job, from the same input, config and code) and wrote
/// nothing: the runner then reports the task skipped, not run.
#[derive(Debug, Clone, Default)]
pub struct Reused(Arc<std::sync::atomic::AtomicBool>);

impl Reused {
    /// Marks the attempt's output as reused.
    pub fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the executor marked it.
    pub fn is_marked(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What an attempt gets besides its task.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// Fires when the attempt must stop.
    pub cancel: Cancel,
    /// Where the executor reports how far it got.
    pub progress: Progress,
    /// Where the executor says it reused a committed output.
    pub reused: Reused,
    /// The only place the attempt writes outputs: the data root joined with
    /// the lease's attempt-scoped prefix. Created by the executor when it
    /// writes; everything in it is listed in the manifest.
    pub output_dir: PathBuf,
    /// Private scratch space for this attempt, removed after it.
    pub scratch_dir: PathBuf,
    /// The attempt's log, for lines that are not tracing events (a
    /// program's stdout and stderr).
    pub log: crate::task_log::AttemptLog,
}

/// Runs attempts of one kind.
pub trait Executor: Send + Sync {
    /// The kind name it runs (`noop`, `sleep`...).
    fn kind(&self) -> &'static str;
    /// Starts one attempt.
    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt;
    /// Whether its attempts may make [`AttemptContext::scratch_dir`], which
    /// the runner then removes after each; one that never does spares every
    /// attempt a look at the disk.
    fn uses_scratch_dir(&self) -> bool {
        false
    }
}

/// Parses a task's config for a kind, as a permanent failure when invalid:
/// the coordinator validated it, so a mismatch means incompatible versions.
pub fn config<T: serde::de::DeserializeOwned>(task: &LeasedTask) -> Result<T, TaskError> {
    serde_json::from_str(&task.config_json)
        .map_err(|e| TaskError::permanent(format!("config of {}: {e}", task.task_id)))
}
