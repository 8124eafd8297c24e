//! Real workers for the bench: `drover worker` child processes of this very
//! binary, each with its slots, its `/metrics` and its log file, running
//! the `noop` executor as a user's worker would. Killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use drover_net::{Coordinators, Policy};
use drover_proto::v1::ListWorkersRequest;

use crate::error::{Context, Result, bail};
use crate::procfs::{self, Sample};
use crate::scrape::scrape;

/// One worker process.
#[derive(Debug)]
struct Process {
    /// Its worker id.
    id: String,
    /// Its `/metrics` address.
    http: SocketAddr,
    child: Child,
}

/// The worker processes of a run.
#[derive(Debug)]
pub struct RealWorkers {
    processes: Vec<Process>,
}

/// What the workers counted, from their `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counted {
    /// Attempts whose completion the cluster accepted.
    pub completed: f64,
    /// Attempts stopped or fenced off (lease lost, report refused).
    pub stopped: f64,
}

impl RealWorkers {
    /// Starts `n` workers with `slots` each against `coordinators`, under
    /// `root` (`worker-<i>.log`, scratch and output directories), and waits
    /// until the cluster lists all of them.
    pub async fn start(
        n: usize,
        slots: u32,
        coordinators: &[String],
        root: &Path,
        prefix: &str,
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the drover binary")?;
        let mut processes = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("bench-{prefix}-{i}");
            let http = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free loopback port")?;
            let dir = root.join(&id);
            let log_path = root.join(format!("{id}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let child = std::process::Command::new(&exe)
                .args(["--coordinators", &coordinators.join(",")])
                .arg("worker")
                .args(["--id", &id])
                .args(["--slots", &slots.to_string()])
                .args(["--http", &http.to_string()])
                .arg("--work-dir")
                .arg(dir.join("work"))
                .arg("--data-root")
                .arg(dir.join("outputs"))
                .args(["--drain-timeout", "5"])
                .env("DROVER_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a worker")?;
            processes.push(Process { id, http, child });
        }
        let workers = Self { processes };
        workers.wait_registered(coordinators).await?;
        Ok(workers)
    }

    async fn wait_registered(&self, coordinators: &[String]) -> Result<()> {
        let conn = Coordinators::new(coordinators.to_vec()).with_policy(Policy::WORKER);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listed = conn
                .admin(|mut c| async move { c.list_workers(ListWorkersRequest::default()).await })
                .await
                .map(|r| r.into_inner().workers)
                .unwrap_or_default();
            let all = self
                .processes
                .iter()
                .all(|p| listed.iter().any(|w| w.worker_id == p.id));
            if all {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} workers did not all register within 30 s",
                    self.processes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Their process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.child.id()).collect()
    }

    /// CPU and memory of every worker process now.
    pub fn samples(&self) -> Vec<Option<Sample>> {
        self.pids().into_iter().map(procfs::sample).collect()
    }

    /// What the workers counted so far.
    /// What the workers counted once they have counted `ended` attempts
    /// (completed, stopped or fenced), or after 10 s: a worker counts an
    /// attempt when the reply to its report arrives, which can come after
    /// the cluster already shows the task succeeded.
    pub async fn counted_at_least(&self, ended: u64) -> Counted {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let counted = self.counted().await;
            if counted.completed + counted.stopped >= ended as f64
                || tokio::time::Instant::now() >= deadline
            {
                return counted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the workers counted so far.
    pub async fn counted(&self) -> Counted {
        let mut total = Counted::default();
        for p in &self.processes {
            if let Ok(s) = scrape(p.http).await {
                total.completed +=
                    s.get("drover_worker_attempts_finished_total{outcome=\"completed\"}");
                total.stopped +=
                    s.get("drover_worker_attempts_finished_total{outcome=\"stopped\"}");
            }
        }
        total
    }

    /// Stops them as an operator would (SIGTERM: drain, then leave).
    pub async fn stop(mut self) {
        for p in &self.processes {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for p in &mut self.processes {
            while matches!(p.child.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for RealWorkers {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Cores the workers used between two sets of samples over `elapsed`.
pub fn cores_used(before: &[Option<Sample>], after: &[Option<Sample>], elapsed: Duration) -> f64 {
    before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some(procfs::cores_used((*b)?, (*a)?, elapsed)))
        .sum()
}
