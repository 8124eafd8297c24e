//! `command`: runs a program (never through a shell) in a scratch
//! directory, with its stdout and stderr captured to `stdout.log` and
//! `stderr.log` in the attempt's output directory and, line by line, to the
//! attempt's log, so they can be read while it runs. The program may write
//! more outputs to `$DROVER_OUTPUT_DIR`; the manifest lists them all. Only on
//! workers started with `--allow-command`, because it runs arbitrary
//! programs.

use std::path::PathBuf;
use std::process::Stdio;

use drover_jobspecs::kinds::CommandConfig;
use drover_proto::v1::LeasedTask;

use super::{Attempt, AttemptContext, Executor, TaskError, cancelled, config};
use crate::task_log::{AttemptLog, LINE_BYTES_MAX};

/// The `command` executor.
#[derive(Debug, Default)]
pub struct Command;

/// Bytes of stderr quoted in a failure message.
const STDERR_TAIL: usize = 2048;

/// How long the program's output may stay open after it exits.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Copies a program's `pipe` to `file` as it comes, and each line of it to
/// `log` as a `source` line. A line longer than the log keeps is logged in
/// pieces; the file gets every byte.
async fn copy_lines(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    mut file: tokio::fs::File,
    log: AttemptLog,
    source: &'static str,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut pipe) = pipe else {
        return Ok(());
    };
    let mut chunk = vec![0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        file.write_all(&chunk[..n]).await?;
        for &b in &chunk[..n] {
            if b == b'\n' || line.len() >= LINE_BYTES_MAX {
                log.stamped(source, &String::from_utf8_lossy(&line));
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
    }
    if !line.is_empty() {
        log.stamped(source, &String::from_utf8_lossy(&line));
    }
    file.flush().await
}

impl Executor for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn uses_scratch_dir(&self) -> bool {
        true
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
            let stdout = tokio::fs::File::create(&stdout_path).await.map_err(io)?;
            let stderr = tokio::fs::File::create(&stderr_path).await.map_err(io)?;
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
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TaskError::permanent(format!("cannot start `{program}`: {e}")))?;
            let copies = [
                tokio::spawn(copy_lines(
                    child.stdout.take(),
                    stdout,
                    ctx.log.clone(),
                    "stdout",
                )),
                tokio::spawn(copy_lines(
                    child.stderr.take(),
                    stderr,
                    ctx.log.clone(),
                    "stderr",
                )),
            ];
            ctx.progress.set(0.0, format!("running {program}"));
            let status = tokio::select! {
                s = child.wait() => s.map_err(io)?,
                _ = cancelled(ctx.cancel) => {
                    let _ = child.kill().await;
                    copies.iter().for_each(|c| c.abort());
                    return Err(TaskError::retryable("stopped"));
                }
            };
            // A child the program left running may hold the pipes open; its
            // output after the program exited is not the attempt's.
            let copied =
                tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(copies)).await;
            match copied {
                Ok(results) => {
                    for r in results {
                        r.map_err(|e| TaskError::retryable(format!("copying output: {e}")))?
                            .map_err(io)?;
                    }
                }
                Err(_) => ctx.log.stamped(
                    "drover",
                    &format!(
                        "`{program}` exited but its stdout or stderr stayed open {} s later (a process it started?); output after that is not kept",
                        OUTPUT_DRAIN.as_secs()
                    ),
                ),
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
            // Everything in the output directory, logs included, is the
            // attempt's output.
            crate::output::manifest(ctx.output_dir, task.output_prefix).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::executors::Progress;

    fn task(argv: &[&str]) -> LeasedTask {
        LeasedTask {
            task_id: "j1/0/0".into(),
            job_id: "j1".into(),
            attempt: 1,
            output_prefix: "jobs/j1/0/0/attempt-1-9".into(),
            config_json: serde_json::json!({ "argv": argv }).to_string(),
            ..LeasedTask::default()
        }
    }

    fn ctx(dir: &std::path::Path) -> (AttemptContext, tokio::sync::watch::Sender<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let ctx = AttemptContext {
            cancel: rx,
            progress: Progress::default(),
            reused: Default::default(),
            output_dir: dir.join("out/jobs/j1/0/0/attempt-1-9"),
            scratch_dir: dir.join("scratch"),
            log: Default::default(),
        };
        (ctx, tx)
    }

    #[tokio::test]
    async fn output_files_and_captured_logs_make_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _tx) = ctx(dir.path());
        let script = "echo hello; echo oops >&2; printf 12345 > \"$DROVER_OUTPUT_DIR/part-0.txt\"; pwd > cwd.txt";
        let manifest = Command
            .run(task(&["sh", "-c", script]), ctx.clone())
            .await
            .unwrap();
        assert_eq!(manifest.output_prefix, "jobs/j1/0/0/attempt-1-9");
        let files: Vec<(&str, u64)> = manifest
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.bytes))
            .collect();
        assert_eq!(
            files,
            [("part-0.txt", 5), ("stderr.log", 5), ("stdout.log", 6)]
        );
        // Its stdout and stderr lines are in the attempt's log too.
        let log = String::from_utf8(ctx.log.snapshot().0).unwrap();
        let lines: Vec<&str> = log.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert!(
            lines.contains(&"stdout: hello") && lines.contains(&"stderr: oops"),
            "{log}"
        );
        // It ran in its scratch directory, not among its outputs.
        let cwd = std::fs::read_to_string(ctx.scratch_dir.join("cwd.txt")).unwrap();
        assert!(cwd.trim_end().ends_with("scratch"), "{cwd}");
    }

    #[tokio::test]
    async fn a_failing_program_is_a_retryable_failure_quoting_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _tx) = ctx(dir.path());
        let err = Command
            .run(task(&["sh", "-c", "echo disk full >&2; exit 3"]), ctx)
            .await
            .unwrap_err();
        assert!(err.retryable);
        assert!(err.message.contains("disk full"), "{}", err.message);
        let missing = Command
            .run(task(&["/no/such/program"]), self::ctx(dir.path()).0)
            .await
            .unwrap_err();
        assert!(!missing.retryable, "{}", missing.message);
    }

    #[tokio::test]
    async fn cancelling_kills_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, tx) = ctx(dir.path());
        let attempt = tokio::spawn(Command.run(task(&["sleep", "600"]), ctx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(30), attempt)
            .await
            .expect("a cancelled command stops")
            .unwrap();
        assert_eq!(result.unwrap_err().message, "stopped");
    }
}
