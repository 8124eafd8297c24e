//! `command`: runs a program (never through a shell), with its stdout and
//! stderr captured to the task's log files under the worker's log
//! directory. Only on workers started with `--allow-command`, because it
//! runs arbitrary programs.

use std::path::PathBuf;
use std::process::Stdio;

use drover_jobspecs::kinds::CommandConfig;
use drover_proto::v1::{LeasedTask, OutputFile, OutputManifest};

use super::{Attempt, Cancel, Executor, TaskError, cancelled, config};

/// The `command` executor.
#[derive(Debug)]
pub struct Command {
    /// Where task logs and scratch directories go.
    pub work_dir: PathBuf,
}

/// Bytes of stderr quoted in a failure message.
const STDERR_TAIL: usize = 2048;

impl Executor for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn run(&self, task: LeasedTask, cancel: Cancel) -> Attempt {
        let base = self.work_dir.join(&task.output_prefix);
        Box::pin(async move {
            let cfg: CommandConfig = config(&task)?;
            let io = |e: std::io::Error| TaskError::retryable(format!("{}: {e}", base.display()));
            tokio::fs::create_dir_all(&base).await.map_err(io)?;
            let stdout_path = base.join("stdout.log");
            let stderr_path = base.join("stderr.log");
            let stdout = std::fs::File::create(&stdout_path).map_err(io)?;
            let stderr = std::fs::File::create(&stderr_path).map_err(io)?;
            let (program, args) = cfg
                .argv
                .split_first()
                .ok_or_else(|| TaskError::permanent("empty argv"))?;
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .envs(&cfg.env)
                .env("DROVER_TASK_ID", &task.task_id)
                .env("DROVER_ATTEMPT", task.attempt.to_string())
                .env("DROVER_OUTPUT_PREFIX", &task.output_prefix)
                .current_dir(
                    cfg.working_dir
                        .as_deref()
                        .map_or(base.clone(), PathBuf::from),
                )
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TaskError::permanent(format!("cannot start `{program}`: {e}")))?;
            let status = tokio::select! {
                s = child.wait() => s.map_err(io)?,
                _ = cancelled(cancel) => {
                    let _ = child.kill().await;
                    return Err(TaskError::retryable("stopped"));
                }
            };
            let mut files = Vec::new();
            for (name, path) in [("stdout.log", &stdout_path), ("stderr.log", &stderr_path)] {
                let bytes = tokio::fs::metadata(path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                files.push(OutputFile {
                    path: name.to_owned(),
                    bytes,
                    ..OutputFile::default()
                });
            }
            if !status.success() {
                let err = tokio::fs::read(&stderr_path).await.unwrap_or_default();
                let tail = String::from_utf8_lossy(&err[err.len().saturating_sub(STDERR_TAIL)..])
                    .into_owned();
                return Err(TaskError::retryable(format!(
                    "`{program}` exited with {status}: {}",
                    tail.trim()
                )));
            }
            Ok(OutputManifest {
                output_prefix: task.output_prefix,
                files,
                ..OutputManifest::default()
            })
        })
    }
}
