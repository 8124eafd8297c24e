//! `probe`: sleeps like `sleep`, and records every attempt's start and end
//! to a side log outside the cluster. The chaos suite reads these logs as
//! the witness of what really ran (which worker, which fencing token, when)
//! and compares them with what the cluster committed. Only on workers
//! started with `--probe-log DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_jobspecs::kinds::SleepConfig;
use drover_proto::v1::LeasedTask;
use serde::{Deserialize, Serialize};

use super::{Attempt, AttemptContext, Executor, TaskError, cancelled, config};

/// One line of a probe log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// `start`, or how the attempt ended: `ok`, `failed`, `stopped`.
    pub event: String,
    /// The job.
    pub job_id: String,
    /// The task (`<job>/<template>/<partition>`).
    pub task_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The lease's fencing token.
    pub token: u64,
    /// The worker that ran it.
    pub worker_id: String,
    /// Wall-clock time, in microseconds since the Unix epoch. Every process
    /// of a chaos run shares this machine's clock.
    pub unix_us: i64,
}

/// The `probe` executor, appending to one log file per worker.
#[derive(Debug, Clone)]
pub struct Probe {
    worker_id: String,
    log: Arc<Mutex<std::fs::File>>,
}

impl Probe {
    /// Opens (appending) `dir/probe-<worker_id>.jsonl`.
    pub fn open(dir: &Path, worker_id: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(dir, worker_id))?;
        Ok(Self {
            worker_id: worker_id.to_owned(),
            log: Arc::new(Mutex::new(file)),
        })
    }

    fn record(&self, task: &LeasedTask, event: &str) -> Result<(), TaskError> {
        let record = ProbeRecord {
            event: event.to_owned(),
            job_id: task.job_id.clone(),
            task_id: task.task_id.clone(),
            attempt: task.attempt,
            token: task.fencing_token,
            worker_id: self.worker_id.clone(),
            unix_us: chrono::Utc::now().timestamp_micros(),
        };
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        let mut file = self
            .log
            .lock()
            .map_err(|_| TaskError::retryable("probe log lock poisoned"))?;
        // One write per line on an O_APPEND file: lines never interleave,
        // and a kill -9 loses at most the line being written.
        file.write_all(&line)
            .map_err(|e| TaskError::retryable(format!("probe log: {e}")))
    }
}

/// Where a worker's probe records go.
pub fn log_path(dir: &Path, worker_id: &str) -> PathBuf {
    dir.join(format!("probe-{worker_id}.jsonl"))
}

impl Executor for Probe {
    fn kind(&self) -> &'static str {
        "probe"
    }

    fn run(&self, task: LeasedTask, ctx: AttemptContext) -> Attempt {
        let probe = self.clone();
        Box::pin(async move {
            let cfg: SleepConfig = config(&task)?;
            probe.record(&task, "start")?;
            ctx.progress.set(0.0, "probing");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(cfg.ms)) => {}
                _ = cancelled(ctx.cancel) => {
                    probe.record(&task, "stopped")?;
                    return Err(TaskError::retryable("stopped"));
                }
            }
            if task.attempt <= cfg.fail_times {
                probe.record(&task, "failed")?;
                return Err(TaskError::retryable(format!(
                    "planned failure {} of {}",
                    task.attempt, cfg.fail_times
                )));
            }
            let io = |e: std::io::Error| TaskError::retryable(format!("probe output: {e}"));
            tokio::fs::create_dir_all(&ctx.output_dir)
                .await
                .map_err(io)?;
            let facts = serde_json::json!({
                "taskId": task.task_id,
                "attempt": task.attempt,
                "token": task.fencing_token,
                "workerId": probe.worker_id,
            });
            tokio::fs::write(ctx.output_dir.join("probe.json"), facts.to_string())
                .await
                .map_err(io)?;
            probe.record(&task, "ok")?;
            crate::output::manifest(ctx.output_dir, task.output_prefix).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executors::Progress;

    #[tokio::test]
    async fn records_start_and_end_and_writes_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::open(&dir.path().join("probes"), "w1").unwrap();
        let task = LeasedTask {
            task_id: "j1/0/0".into(),
            job_id: "j1".into(),
            attempt: 2,
            fencing_token: 7,
            config_json: r#"{"ms":1,"failTimes":1}"#.into(),
            output_prefix: "j1/0/0/attempt-2".into(),
            ..LeasedTask::default()
        };
        let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
        let ctx = AttemptContext {
            cancel,
            progress: Progress::default(),
            reused: Default::default(),
            output_dir: dir.path().join("out"),
            scratch_dir: dir.path().join("scratch"),
            log: Default::default(),
        };
        let manifest = probe.run(task, ctx).await.unwrap();
        assert_eq!(manifest.files.len(), 1);
        let text = std::fs::read_to_string(log_path(&dir.path().join("probes"), "w1")).unwrap();
        let records: Vec<ProbeRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            records.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
            ["start", "ok"]
        );
        assert!(
            records
                .iter()
                .all(|r| r.token == 7 && r.attempt == 2 && r.worker_id == "w1")
        );
        assert!(records[0].unix_us <= records[1].unix_us);
    }
}
