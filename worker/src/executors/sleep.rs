//! `sleep`: waits `ms`, failing (retryably) its first `failTimes` attempts,
//! so retry policies can be exercised end to end.

use std::time::Duration;

use drover_jobspecs::kinds::SleepConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};

use super::{Attempt, Cancel, Executor, TaskError, cancelled, config};

/// The `sleep` executor.
#[derive(Debug, Default)]
pub struct Sleep;

impl Executor for Sleep {
    fn kind(&self) -> &'static str {
        "sleep"
    }

    fn run(&self, task: LeasedTask, cancel: Cancel) -> Attempt {
        Box::pin(async move {
            let cfg: SleepConfig = config(&task)?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(cfg.ms)) => {}
                _ = cancelled(cancel) => return Err(TaskError::retryable("stopped")),
            }
            if task.attempt <= cfg.fail_times {
                return Err(TaskError::retryable(format!(
                    "planned failure {} of {}",
                    task.attempt, cfg.fail_times
                )));
            }
            Ok(OutputManifest {
                output_prefix: task.output_prefix,
                ..OutputManifest::default()
            })
        })
    }
}
