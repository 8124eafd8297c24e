//! `sleep`: waits `ms`, failing (retryably) its first `failTimes` attempts,
//! so retry policies can be exercised end to end.

use std::time::Duration;

use drover_jobspecs::kinds::SleepConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};

use super::{Attempt, AttemptContext, Executor, TaskError, cancelled, config};

/// How often a sleeping task updates its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The `sleep` executor.
#[derive(Debug, Default)]
pub struct Sleep;

impl Executor for Sleep {
    fn kind(&self) -> &'static str {
        "sleep"
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        Box::pin(async move {
            let cfg: SleepConfig = config(&task)?;
            let total = Duration::from_millis(cfg.ms);
            let start = tokio::time::Instant::now();
            let mut ticks = tokio::time::interval(PROGRESS_EVERY);
            let done = tokio::time::sleep(total);
            tokio::pin!(done);
            let cancel = cancelled(ctx.cancel);
            tokio::pin!(cancel);
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    _ = &mut cancel => return Err(TaskError::retryable("stopped")),
                    _ = ticks.tick() => {
                        let slept = start.elapsed();
                        ctx.progress.set(
                            slept.as_secs_f64() / total.as_secs_f64().max(1e-9),
                            format!("slept {} of {} ms", slept.as_millis().min(u128::from(cfg.ms)), cfg.ms),
                        );
                    }
                }
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
