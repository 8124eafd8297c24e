//! Scenarios drained by real workers: `drover worker` processes running
//! the `noop` executor, leasing ahead and reporting in batches as a user's
//! workers do. These are the headline figures; the raw-gRPC load generator
//! ([`scenarios`](crate::scenarios)) is the labelled reference beside them.

use std::time::{Duration, Instant};

use drover_proto::v1::ListJobsRequest;
use serde_json::{Value, json};

use crate::error::{Context, Result, bail};
use crate::load;
use crate::observe::{self, Figures};
use crate::scenarios::{Env, print_block, progress, submit_jobs};
use crate::scrape::scrape;
use crate::stats::{Latencies, ms};
use crate::workers::{self, RealWorkers};

/// What a drain by real workers measured.
#[derive(Debug)]
pub struct Drained {
    /// Tasks drained.
    pub tasks: u64,
    /// From the first submit to the last task succeeded.
    pub elapsed: Duration,
    /// The coordinators over the window.
    pub figures: Figures,
    /// Cores the worker processes used over the window.
    pub worker_cores: f64,
    /// Completions the workers counted as accepted.
    pub completed: f64,
    /// Attempts the workers counted as stopped or fenced off.
    pub stopped: f64,
    /// Tasks the jobs counted as succeeded.
    pub succeeded: u64,
}

impl Drained {
    /// Tasks per second, end to end.
    pub fn per_second(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU per task on the coordinators (all of them), in microseconds.
    pub fn coordinator_us_per_task(&self) -> f64 {
        let cores: f64 = self.figures.nodes.iter().map(|n| n.cpu_cores).sum();
        cores * self.figures.elapsed.as_secs_f64() * 1e6 / self.tasks.max(1) as f64
    }

    /// CPU per task on the leader alone, in microseconds.
    pub fn leader_us_per_task(&self) -> Option<f64> {
        let leader = self.figures.leader()?;
        Some(leader.cpu_cores * self.figures.elapsed.as_secs_f64() * 1e6 / self.tasks.max(1) as f64)
    }

    /// CPU per task on the workers, in microseconds.
    pub fn worker_us_per_task(&self) -> f64 {
        self.worker_cores * self.figures.elapsed.as_secs_f64() * 1e6 / self.tasks.max(1) as f64
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "throughput: {:.0} tasks/s end to end ({} tasks in {:.2} s)",
                self.per_second(),
                self.tasks,
                self.elapsed.as_secs_f64()
            ),
            format!(
                "cpu per task: coordinators {:.1} µs (leader {}) · workers {:.1} µs",
                self.coordinator_us_per_task(),
                self.leader_us_per_task()
                    .map_or("?".to_owned(), |us| format!("{us:.1} µs")),
                self.worker_us_per_task()
            ),
            format!(
                "exactly once: {} of {} tasks succeeded · workers counted {:.0} accepted completions, {:.0} stopped or fenced",
                self.succeeded, self.tasks, self.completed, self.stopped
            ),
        ];
        lines.extend(self.figures.lines());
        lines
    }

    fn json(&self) -> Value {
        json!({
            "tasks": self.tasks,
            "seconds": self.elapsed.as_secs_f64(),
            "tasksPerSecond": self.per_second(),
            "coordinatorCpuUsPerTask": self.coordinator_us_per_task(),
            "leaderCpuUsPerTask": self.leader_us_per_task(),
            "workerCpuUsPerTask": self.worker_us_per_task(),
            "workerCores": self.worker_cores,
            "succeeded": self.succeeded,
            "workersCompleted": self.completed,
            "workersStopped": self.stopped,
            "coordinators": self.figures.json(),
        })
    }
}

/// Tasks the jobs `ids` counted as succeeded, summed: one `ListJobs` call
/// by the jobs' name prefix (the bench names them all after it), so the
/// poll costs the leader one read however many jobs there are.
async fn succeeded_tasks(env: &Env, prefix: &str, ids: &[String]) -> Result<u64> {
    let request = ListJobsRequest {
        name_prefix: prefix.to_owned(),
        page_size: 1000,
        ..ListJobsRequest::default()
    };
    let jobs = env
        .conn()
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.list_jobs(r).await }
        })
        .await
        .with_context(|| format!("listing the `{prefix}` jobs"))?
        .into_inner()
        .jobs;
    Ok(jobs
        .iter()
        .filter(|j| ids.contains(&j.job_id))
        .filter_map(|j| j.task_counts.as_ref())
        .map(|c| c.succeeded + c.skipped)
        .sum())
}

/// Waits until the jobs `ids` counted `target` succeeded tasks.
async fn wait_succeeded(
    env: &Env,
    prefix: &str,
    ids: &[String],
    target: u64,
    patience: Duration,
) -> Result<()> {
    let bar = progress(target, "tasks succeeded");
    let deadline = Instant::now() + patience;
    loop {
        let done = succeeded_tasks(env, prefix, ids).await?;
        bar.set_position(done);
        if done >= target {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!("only {done} of {target} tasks succeeded within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drains `sizes` noop jobs with `env`'s real workers (started first, and
/// registered, so their start-up is not timed).
async fn drain(env: &Env, prefix: &str, sizes: &[u64]) -> Result<Drained> {
    let tasks: u64 = sizes.iter().sum();
    let workers = RealWorkers::start(
        env.real_workers,
        env.slots,
        &env.coordinators,
        &env.root,
        prefix,
    )
    .await?;
    let window = observe::open(env.cluster.as_ref()).await;
    let before = workers.samples();
    let started = Instant::now();
    let (ids, _) = submit_jobs(env, prefix, sizes).await?;
    let patience = Duration::from_secs(120).max(Duration::from_millis(tasks));
    let done = wait_succeeded(env, prefix, &ids, tasks, patience).await;
    let elapsed = started.elapsed();
    let figures = window.close().await;
    let after = workers.samples();
    let counted = workers.counted_at_least(tasks).await;
    workers.stop().await;
    done?;
    Ok(Drained {
        tasks,
        elapsed,
        worker_cores: workers::cores_used(&before, &after, figures.elapsed),
        figures,
        completed: counted.completed,
        stopped: counted.stopped,
        succeeded: succeeded_tasks(env, prefix, &ids).await?,
    })
}

/// The Raft term of the bench's own cluster (none against `--coordinators`).
async fn term(env: &Env) -> Option<u64> {
    match &env.cluster {
        Some(c) => c.term().await,
        None => None,
    }
}

/// Elections since the cluster was at term `before`: each one is a leader
/// change (or an attempt at one).
async fn elections_since(env: &Env, before: Option<u64>) -> Option<u64> {
    before
        .zip(term(env).await)
        .map(|(a, b)| b.saturating_sub(a))
}

fn elections_line(elections: Option<u64>) -> String {
    format!(
        "leader changes during the run: {}",
        elections.map_or("?".to_owned(), |n| n.to_string())
    )
}

/// Throughput at saturation with real workers, and beside it (unless
/// `raw` is `None`) the raw-client reference in the same run and their
/// ratio.
pub async fn throughput(env: &Env, tasks: u64, jobs: u64, raw: Option<Value>) -> Result<Value> {
    let jobs = jobs.clamp(1, tasks.max(1));
    let sizes: Vec<u64> = (0..jobs)
        .map(|i| tasks / jobs + u64::from(i < tasks % jobs))
        .collect();
    let term_before = term(env).await;
    let drained = drain(env, "real-tp", &sizes).await?;
    let elections = elections_since(env, term_before).await;
    let mut lines = vec![format!(
        "{tasks} noop tasks in {jobs} jobs · {} `drover worker` processes × {} slots",
        env.real_workers, env.slots
    )];
    lines.extend(drained.lines());
    lines.push(elections_line(elections));
    let raw_rate = raw
        .as_ref()
        .and_then(|r| r["tasksPerSecond"].as_f64())
        .filter(|r| *r > 0.0);
    if let Some(raw_rate) = raw_rate {
        lines.push(format!(
            "real workers / raw-client reference ({raw_rate:.0} tasks/s, same run): {:.2}",
            drained.per_second() / raw_rate
        ));
    }
    print_block("throughput at saturation, real workers", &lines);
    let mut out = drained.json();
    out["jobs"] = json!(jobs);
    out["workers"] = json!(env.real_workers);
    out["slots"] = json!(env.slots);
    out["leaderChanges"] = json!(elections);
    if let Some(raw) = raw {
        out["ratioToRaw"] = json!(raw_rate.map(|r| drained.per_second() / r));
        out["raw"] = raw;
    }
    Ok(out)
}

/// Leader kills under saturating load drained by real workers: the time
/// from each SIGKILL until a surviving coordinator grants tasks again (its
/// `drover_lease_granted_tasks` grows), the killed node restarted and
/// rejoined before the next kill.
pub async fn failover(env: &mut Env, kills: u32) -> Result<Value> {
    if env.cluster.is_none() {
        bail!(
            "the failover scenario kills coordinators, so it needs the cluster the bench starts; drop --coordinators"
        );
    }
    let workers = RealWorkers::start(
        env.real_workers,
        env.slots,
        &env.coordinators,
        &env.root,
        "fo",
    )
    .await?;
    let (ids, _) = submit_jobs(env, "real-fo", &[10_000_000]).await?;
    let mut recoveries = Latencies::default();
    let mut samples = Vec::new();
    let mut lines = Vec::new();
    for k in 1..=kills {
        // Steady load first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cluster = env.cluster.as_mut().context("local cluster")?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let survivors: Vec<_> = cluster
            .running()
            .into_iter()
            .filter(|(id, ..)| *id != leader)
            .map(|(_, _, http)| http)
            .collect();
        let mut granted = Vec::new();
        for http in &survivors {
            granted.push(
                scrape(*http)
                    .await
                    .map_or(0.0, |s| s.get("drover_lease_granted_tasks_sum")),
            );
        }
        let killed = Instant::now();
        cluster.kill(leader)?;
        let recovery = 'wait: loop {
            for (http, before) in survivors.iter().zip(&granted) {
                if let Ok(s) = scrape(*http).await
                    && s.get("drover_lease_granted_tasks_sum") > *before
                {
                    break 'wait killed.elapsed();
                }
            }
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("leases did not flow again within 30 s of killing node {leader}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        recoveries.record(recovery);
        samples.push(recovery.as_secs_f64() * 1e3);
        let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        lines.push(format!(
            "kill {k}: node {leader} (leader) SIGKILLed; leases flowing again after {} (new leader {new_leader})",
            ms(recovery)
        ));
        cluster.restart(leader)?;
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster.wait_caught_up(Duration::from_secs(300)).await?;
    }
    let counted = workers.counted().await;
    workers.stop().await;
    let s = recoveries.summary();
    lines.insert(
        0,
        format!(
            "{kills} leader kills under saturating load, each once the last one killed is back and caught up · {} `drover worker` processes × {} slots",
            env.real_workers, env.slots
        ),
    );
    lines.push(format!(
        "time to leases flowing again: p50 {} · p99 {} · max {}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    ));
    lines.push(format!(
        "workers counted {:.0} accepted completions and {:.0} stopped or fenced attempts",
        counted.completed, counted.stopped
    ));
    print_block("failover, real workers", &lines);
    let _ = ids;
    Ok(json!({
        "kills": kills,
        "recoveryMs": samples,
        "recovery": s.json(),
        "workersCompleted": counted.completed,
        "workersStopped": counted.stopped,
    }))
}

/// One backfill of `partitions` hourly partitions submitted and drained by
/// real workers: the leader's memory per task after the submit and after
/// the drain.
pub async fn scale(env: &Env, partitions: u64) -> Result<Value> {
    let before = observe::open(env.cluster.as_ref()).await.close().await;
    let workers = RealWorkers::start(
        env.real_workers,
        env.slots,
        &env.coordinators,
        &env.root,
        "scale",
    )
    .await?;
    let conn = env.conn();
    let term_before = term(env).await;
    let sent = Instant::now();
    let window = observe::open(env.cluster.as_ref()).await;
    let worker_before = workers.samples();
    let id = load::submit(
        &conn,
        "real-backfill",
        load::hourly_backfill("real-backfill", partitions),
    )
    .await?;
    let submit = sent.elapsed();
    let after_submit = observe::open(env.cluster.as_ref()).await.close().await;
    let patience = Duration::from_secs(600).max(Duration::from_millis(partitions));
    let ids = [id];
    let done = wait_succeeded(env, "real-backfill", &ids, partitions, patience).await;
    let elapsed = sent.elapsed();
    let figures = window.close().await;
    let worker_after = workers.samples();
    let counted = workers.counted_at_least(partitions).await;
    workers.stop().await;
    done?;
    let elections = elections_since(env, term_before).await;
    let drained = Drained {
        tasks: partitions,
        elapsed,
        worker_cores: workers::cores_used(&worker_before, &worker_after, figures.elapsed),
        figures,
        completed: counted.completed,
        stopped: counted.stopped,
        succeeded: succeeded_tasks(env, "real-backfill", &ids).await?,
    };
    let per_task = |after: &Figures, peak: bool| -> Option<f64> {
        after.leader_bytes_per_task(&before, partitions, peak)
    };
    let memory = drained
        .figures
        .backfill_memory_lines(&before, &after_submit, partitions);
    let mut lines = vec![
        format!(
            "one hourly backfill of {partitions} partitions · {} `drover worker` processes × {} slots",
            env.real_workers, env.slots
        ),
        format!("submit: {} (one log entry)", ms(submit)),
        memory[0].clone(),
        memory[1].clone(),
    ];
    lines.extend(drained.lines());
    lines.push(elections_line(elections));
    print_block("scale: a backfill drained by real workers", &lines);
    let mut out = drained.json();
    out["leaderChanges"] = json!(elections);
    out["partitions"] = json!(partitions);
    out["submitMs"] = json!(submit.as_secs_f64() * 1e3);
    out["bytesPerTaskAfterSubmit"] = json!(per_task(&after_submit, false));
    out["bytesPerTaskDrained"] = json!(per_task(&drained.figures, false));
    out["bytesPerTaskPeak"] = json!(per_task(&drained.figures, true));
    Ok(out)
}
