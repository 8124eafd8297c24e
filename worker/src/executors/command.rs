//! `command`: runs a program (never through a shell) in a scratch
//! directory, with its stdout and stderr captured to `stdout.log` and
//! `stderr.log` in the attempt's output directory. The program may write
//! more outputs to `$DROVER_OUTPUT_DIR`; the manifest lists them all. Only on
//! workers started with `--allow-command`, because it runs arbitrary
//! programs.

use std::path::PathBuf;
use std::process::Stdio;

use drover_jobspecs::kinds::CommandConfig;
use drover_proto::v1::LeasedTask;

use super::{Attempt, AttemptContext, Executor, TaskError, cancelled, config};

/// The `command` executor.
#[derive(Debug, Default)]
pub struct Command;

/// Bytes of stderr quoted in a failure message.
const STDERR_TAIL: usize = 2048;

impl Executor for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        Box::pin(async move {
            let cfg: CommandConfig = config(&task)?;
            let out_dir = ctx.output_dir.clone();
            let io =
                |e: std::io::Error| TaskError::retryable(format!("{}: {e}", out_dir.display()));
            tokio::fs::create_dir_all(&ctx.output_dir)
                .await
                .map_err(io)?;
            tokio::fs::create_dir_all(&ctx.scratch_dir)
                .await
                .map_err(io)?;
            let stdout_path = ctx.output_dir.join("stdout.log");
            let stderr_path = ctx.output_dir.join("stderr.log");
            let stdout = std::fs::File::create(&stdout_path).map_err(io)?;
            let stderr = std::fs::File::create(&stderr_path).map_err(io)?;
            let (program, args) = cfg
                .argv
                .split_first()
                .ok_or_else(|| TaskError::permanent("empty argv"))?;
            // Absolute, so a program that changes directory still finds it.
            let output_dir = std::path::absolute(&ctx.output_dir).map_err(io)?;
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .envs(&cfg.env)
                .env("DROVER_TASK_ID", &task.task_id)
                .env("DROVER_JOB_ID", &task.job_id)
                .env("DROVER_PARTITION_KEY", &task.partition_key)
                .env("DROVER_ATTEMPT", task.attempt.to_string())
                .env("DROVER_OUTPUT_PREFIX", &task.output_prefix)
                .env("DROVER_OUTPUT_DIR", &output_dir)
                .env("TRACEPARENT", &task.trace_parent)
                .current_dir(
                    cfg.working_dir
                        .as_deref()
                        .map_or(ctx.scratch_dir.clone(), PathBuf::from),
                )
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TaskError::permanent(format!("cannot start `{program}`: {e}")))?;
            ctx.progress.set(0.0, format!("running {program}"));
            let status = tokio::select! {
                s = child.wait() => s.map_err(io)?,
                _ = cancelled(ctx.cancel) => {
                    let _ = child.kill().await;
                    return Err(TaskError::retryable("stopped"));
                }
            };
            if !status.success() {
                let err = tokio::fs::read(&stderr_path).await.unwrap_or_default();
                let tail = String::from_utf8_lossy(&err[err.len().saturating_sub(STDERR_TAIL)..])
                    .into_owned();
                return Err(TaskError::retryable(format!(
                    "`{program}` exited with {status}: {}",
                    tail.trim()
                )));
            }
            // Everything in the output directory, logs included, is the
            // attempt's output.
            crate::output::manifest(ctx.output_dir, task.output_prefix).await
        })
    }
}
