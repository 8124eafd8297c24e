//! The raw-client scenarios: simulated workers that lease and complete
//! over gRPC with no executor at all, the reference the real workers
//! ([`real`](crate::real)) are measured against, and the latency and
//! heartbeat scenarios. Each prints its figures, labelled as from
//! simulated workers, and returns them as JSON.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Context, Result, bail, failed};
use drover_net::{Coordinators, Policy};
use drover_proto::v1::{GetJobRequest, JobState, Settings, UpdateSettingsRequest};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::load::{self, Tally, WorkerLatencies, WorkerPlan};
use crate::local::LocalCluster;
use crate::observe::{self, Figures};
use crate::stats::{Latencies, ms};

/// Simulated workers that share one connection (HTTP/2 multiplexes their
/// calls), so a thousand workers need a hundred-odd sockets, not a thousand.
const WORKERS_PER_CONNECTION: usize = 8;

/// Where the scenarios run.
#[derive(Debug)]
pub struct Env {
    /// The cluster the bench started, if it did.
    pub cluster: Option<LocalCluster>,
    /// Coordinator addresses.
    pub coordinators: Vec<String>,
    /// Simulated workers (the raw-client scenarios).
    pub workers: usize,
    /// Tasks per lease and per completion call of a simulated worker.
    pub batch: u32,
    /// Real `drover worker` processes (the headline scenarios).
    pub real_workers: usize,
    /// Slots of each real worker.
    pub slots: u32,
    /// Where workers keep their logs, scratch and outputs.
    pub root: std::path::PathBuf,
}

impl Env {
    /// A leader-following connection to the cluster.
    pub fn conn(&self) -> Coordinators {
        Coordinators::new(self.coordinators.clone()).with_policy(Policy::WORKER)
    }

    /// Starts `n` simulated workers asking for `batch` tasks each.
    fn start_workers(
        &self,
        prefix: &str,
        n: usize,
        batch: u32,
        hold: bool,
        tally: &Arc<Tally>,
    ) -> Vec<JoinHandle<WorkerLatencies>> {
        let mut conn = self.conn();
        (0..n)
            .map(|i| {
                if i % WORKERS_PER_CONNECTION == 0 {
                    conn = self.conn();
                }
                let plan = WorkerPlan {
                    id: format!("bench-{prefix}-{i}"),
                    conn: conn.clone(),
                    batch,
                    hold,
                };
                tokio::spawn(load::run_worker(plan, tally.clone()))
            })
            .collect()
    }
}

async fn stop_workers(tally: &Tally, handles: Vec<JoinHandle<WorkerLatencies>>) -> WorkerLatencies {
    tally.stop.store(true, Ordering::Relaxed);
    let mut all = WorkerLatencies::default();
    for h in handles {
        if let Ok(l) = h.await {
            all.merge(l);
        }
    }
    all
}

/// A progress bar over `total` of `what`.
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} {{bar:40}} {{pos}}/{{len}} {what} · {{per_sec}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Waits until `target` completions were accepted, showing progress.
async fn wait_completed(tally: &Tally, target: u64, patience: Duration) -> Result<Instant> {
    let bar = progress(target, "tasks completed");
    let deadline = Instant::now() + patience;
    loop {
        let done = tally.completed.load(Ordering::Relaxed);
        bar.set_position(done);
        if done >= target {
            bar.finish_and_clear();
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!("only {done} of {target} tasks completed within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits `jobs` jobs of noop tasks, 8 at a time; returns their ids and
/// the submit latencies.
pub async fn submit_jobs(
    env: &Env,
    prefix: &str,
    sizes: &[u64],
) -> Result<(Vec<String>, Latencies)> {
    let conn = env.conn();
    let mut ids = Vec::with_capacity(sizes.len());
    let mut latencies = Latencies::default();
    for chunk in sizes.iter().enumerate().collect::<Vec<_>>().chunks(8) {
        let mut calls = Vec::new();
        for (i, tasks) in chunk {
            let name = format!("{prefix}-{i}");
            let spec = load::noop_job(&name, **tasks);
            let conn = conn.clone();
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                let id = load::submit(&conn, &name, spec).await;
                (id, sent.elapsed())
            }));
        }
        for call in calls {
            let (id, took) = call.await.context("a submit task")?;
            ids.push(id?);
            latencies.record(took);
        }
    }
    Ok((ids, latencies))
}

/// Counts the jobs that ended succeeded.
async fn succeeded(env: &Env, ids: &[String]) -> Result<usize> {
    let conn = env.conn();
    let mut ok = 0;
    for id in ids {
        // A job's state is set when its last task's completion applies; a
        // follower may be a moment behind, so look a few times.
        for _ in 0..50 {
            let request = GetJobRequest {
                job_id: id.clone(),
                include_spec: false,
            };
            let job = conn
                .jobs(|mut c| {
                    let r = request.clone();
                    async move { c.get_job(r).await }
                })
                .await
                .map_err(|e| failed!("reading job {id}: {e}"))?
                .into_inner()
                .job;
            if job.is_some_and(|j| j.state == JobState::Succeeded as i32) {
                ok += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(ok)
}

/// Prints a titled block of figures.
pub fn print_block(title: &str, lines: &[String]) {
    println!("── {title}");
    for l in lines {
        println!("   {l}");
    }
}

fn exactly_once_line(tally: &Tally, target: u64) -> String {
    format!(
        "completions accepted once: {} of {target} · repeats: {} · refused: {} · retried calls: {}",
        tally.completed.load(Ordering::Relaxed),
        tally.duplicates.load(Ordering::Relaxed),
        tally.rejected.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    )
}

/// The completion latencies, the exactly-once count and the jobs that
/// succeeded, as every draining scenario reports them.
fn outcome_lines(
    lat: &WorkerLatencies,
    tally: &Tally,
    target: u64,
    succeeded: usize,
    jobs: usize,
) -> [String; 3] {
    [
        format!("complete (batches): {}", lat.complete.summary().line()),
        exactly_once_line(tally, target),
        format!("jobs succeeded: {succeeded} of {jobs}"),
    ]
}

/// (a) Throughput at saturation: `tasks` noop tasks in `jobs` jobs,
/// drained by every worker asking for `batch` at a time.
pub async fn throughput(env: &Env, tasks: u64, jobs: u64) -> Result<Value> {
    let jobs = jobs.clamp(1, tasks.max(1));
    let sizes: Vec<u64> = (0..jobs)
        .map(|i| tasks / jobs + u64::from(i < tasks % jobs))
        .collect();
    let tally = Tally::new();
    let workers = env.start_workers("tp", env.workers, env.batch, false, &tally);
    let window = observe::open(env.cluster.as_ref()).await;
    let started = Instant::now();
    let (ids, submit) = submit_jobs(env, "tp", &sizes).await?;
    let submitted = started.elapsed();
    let patience = Duration::from_secs(120).max(Duration::from_millis(tasks));
    let done = wait_completed(&tally, tasks, patience).await;
    let figures = window.close().await;
    let lat = stop_workers(&tally, workers).await;
    let done = done?;
    let elapsed = done - started;
    let ok = succeeded(env, &ids).await?;
    let per_second = tasks as f64 / elapsed.as_secs_f64();
    let submit_rate = tasks as f64 / submitted.as_secs_f64();
    let mut lines = vec![
        format!(
            "{tasks} tasks in {jobs} jobs · {} workers × batch {} · {:.2} s",
            env.workers,
            env.batch,
            elapsed.as_secs_f64()
        ),
        format!("throughput: {per_second:.0} tasks/s leased and completed end to end"),
        format!(
            "submit: {jobs} jobs in {} ({:.0} jobs/s, {submit_rate:.0} tasks/s) · {}",
            ms(submitted),
            jobs as f64 / submitted.as_secs_f64(),
            submit.summary().line()
        ),
        format!("lease (calls that granted): {}", lat.lease.summary().line()),
    ];
    lines.extend(outcome_lines(&lat, &tally, tasks, ok, ids.len()));
    lines.extend(figures.lines());
    print_block(
        "throughput at saturation, raw clients (simulated workers)",
        &lines,
    );
    Ok(json!({
        "tasks": tasks,
        "jobs": jobs,
        "workers": env.workers,
        "batch": env.batch,
        "seconds": elapsed.as_secs_f64(),
        "tasksPerSecond": per_second,
        "submit": {"jobsPerSecond": jobs as f64 / submitted.as_secs_f64(), "tasksPerSecond": submit_rate, "latency": submit.summary().json()},
        "lease": lat.lease.summary().json(),
        "complete": lat.complete.summary().json(),
        "completedOnce": tally.completed.load(Ordering::Relaxed),
        "repeats": tally.duplicates.load(Ordering::Relaxed),
        "refused": tally.rejected.load(Ordering::Relaxed),
        "jobsSucceeded": ok,
        "coordinators": figures.json(),
    }))
}

/// (b) Latency at a fixed offered load: `rate` tasks per second for
/// `duration`, as a job of `rate / 100` tasks every 10 ms.
pub async fn latency(env: &Env, rate: u64, duration: Duration) -> Result<Value> {
    const TICK: Duration = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let ticks = (duration.as_millis() / TICK.as_millis()).max(1) as u64;
    let target = per_tick * ticks;
    let tally = Tally::new();
    let workers = env.start_workers("lat", env.workers, env.batch, false, &tally);
    // Let every worker register and start waiting before the clock runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = observe::open(env.cluster.as_ref()).await;
    let conn = env.conn();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let bar = progress(ticks, "jobs submitted");
    let mut submits = Vec::new();
    for i in 0..ticks {
        ticker.tick().await;
        let conn = conn.clone();
        let tally = tally.clone();
        submits.push(tokio::spawn(async move {
            let name = format!("lat-{i}");
            let sent = Instant::now();
            let id = load::submit(&conn, &name, load::noop_job(&name, per_tick)).await?;
            // Latency counts from the acknowledgement: the job exists only
            // then (a worker may lease it a moment before this insert; its
            // dispatch sample is then skipped).
            if let Ok(mut s) = tally.submitted.lock() {
                s.insert(id.clone(), Instant::now());
            }
            Ok::<_, crate::error::BenchError>((id, sent.elapsed()))
        }));
        bar.set_position(i + 1);
    }
    bar.finish_and_clear();
    let mut ids = Vec::new();
    let mut submit = Latencies::default();
    for s in submits {
        let (id, took) = s.await.context("a submit task")??;
        ids.push(id);
        submit.record(took);
    }
    let done = wait_completed(&tally, target, Duration::from_secs(120)).await;
    let figures = window.close().await;
    let lat = stop_workers(&tally, workers).await;
    done?;
    let ok = succeeded(env, &ids).await?;
    let mut lines = vec![
        format!(
            "offered {rate} tasks/s for {:.0} s ({target} tasks, a {per_tick}-task job every 10 ms) · {} workers",
            duration.as_secs_f64(),
            env.workers
        ),
        format!("submit: {}", submit.summary().line()),
        format!(
            "dispatch (submit acknowledged → lease received): {}",
            lat.dispatch.summary().line()
        ),
        format!(
            "end to end (submit acknowledged → completion accepted): {}",
            lat.end_to_end.summary().line()
        ),
    ];
    lines.extend(outcome_lines(&lat, &tally, target, ok, ids.len()));
    lines.extend(figures.lines());
    print_block(
        "latency at a fixed offered load, raw clients (simulated workers)",
        &lines,
    );
    Ok(json!({
        "offeredTasksPerSecond": rate,
        "seconds": duration.as_secs_f64(),
        "tasks": target,
        "submit": submit.summary().json(),
        "dispatch": lat.dispatch.summary().json(),
        "endToEnd": lat.end_to_end.summary().json(),
        "complete": lat.complete.summary().json(),
        "completedOnce": tally.completed.load(Ordering::Relaxed),
        "jobsSucceeded": ok,
        "coordinators": figures.json(),
    }))
}

/// (c) Failover: under saturating load, SIGKILL the leader `kills` times
/// and time how long until a lease call sent after the kill is granted
/// tasks; the killed node is restarted and rejoins before the next kill.
pub async fn failover(env: &mut Env, kills: u32) -> Result<Value> {
    if env.cluster.is_none() {
        bail!(
            "the failover scenario kills coordinators, so it needs the cluster the bench starts; drop --coordinators"
        );
    }
    let tally = Tally::new();
    let workers = env.start_workers("fo", env.workers, env.batch, false, &tally);
    let (ids, _) = submit_jobs(env, "fo", &[10_000_000]).await?;
    let mut recoveries = Latencies::default();
    let mut lines = Vec::new();
    let mut samples = Vec::new();
    for k in 1..=kills {
        // Steady load first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cluster = env.cluster.as_mut().context("local cluster")?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let before = tally.completed.load(Ordering::Relaxed);
        let kill_us = tally.now_us();
        tally.grant_floor_us.store(kill_us, Ordering::Relaxed);
        tally.fresh_grant_us.store(0, Ordering::Relaxed);
        cluster.kill(leader)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let recovered_us = loop {
            let fresh = tally.fresh_grant_us.load(Ordering::Relaxed);
            if fresh > kill_us {
                break fresh;
            }
            if Instant::now() >= deadline {
                bail!("leases did not flow again within 30 s of killing node {leader}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let recovery = Duration::from_micros(recovered_us - kill_us);
        recoveries.record(recovery);
        samples.push(recovery.as_secs_f64() * 1e3);
        let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        lines.push(format!(
            "kill {k}: node {leader} (leader) SIGKILLed with {before} tasks done; leases flowing again after {} (new leader {new_leader})",
            ms(recovery)
        ));
        cluster.restart(leader)?;
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster.wait_caught_up(Duration::from_secs(300)).await?;
    }
    let lat = stop_workers(&tally, workers).await;
    let s = recoveries.summary();
    lines.insert(
        0,
        format!(
            "{kills} leader kills under saturating load, each once the last one killed is back and caught up · {} workers × batch {}",
            env.workers, env.batch
        ),
    );
    lines.push(format!(
        "time to leases flowing again: p50 {} · p99 {} · max {}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    ));
    lines.push(format!(
        "completions accepted once: {} · repeats: {} · refused (leases lost to the kill): {} · retried calls: {}",
        tally.completed.load(Ordering::Relaxed),
        tally.duplicates.load(Ordering::Relaxed),
        tally.rejected.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    ));
    lines.push(format!(
        "lease (calls that granted): {}",
        lat.lease.summary().line()
    ));
    print_block("failover, raw clients (simulated workers)", &lines);
    let _ = ids;
    Ok(json!({
        "kills": kills,
        "recoveryMs": samples,
        "recovery": s.json(),
        "completedOnce": tally.completed.load(Ordering::Relaxed),
        "repeats": tally.duplicates.load(Ordering::Relaxed),
        "refused": tally.rejected.load(Ordering::Relaxed),
    }))
}

/// (d) Scale: one backfill of `partitions` hourly partitions submitted
/// and drained; coordinator memory per task.
pub async fn scale(env: &Env, partitions: u64) -> Result<Value> {
    let tally = Tally::new();
    let before = observe::open(env.cluster.as_ref()).await.close().await;
    let conn = env.conn();
    let sent = Instant::now();
    let id = load::submit(
        &conn,
        "scale-backfill",
        load::hourly_backfill("scale-backfill", partitions),
    )
    .await?;
    let submit = sent.elapsed();
    let after_submit = observe::open(env.cluster.as_ref()).await.close().await;
    let window = observe::open(env.cluster.as_ref()).await;
    let started = Instant::now();
    let workers = env.start_workers("scale", env.workers, env.batch, false, &tally);
    let patience = Duration::from_secs(600).max(Duration::from_millis(partitions));
    let done = wait_completed(&tally, partitions, patience).await;
    let figures = window.close().await;
    let lat = stop_workers(&tally, workers).await;
    let elapsed = done? - started;
    let ok = succeeded(env, std::slice::from_ref(&id)).await?;
    let per_task = |after: &Figures, peak: bool| -> Option<f64> {
        after.leader_bytes_per_task(&before, partitions, peak)
    };
    let memory = figures.backfill_memory_lines(&before, &after_submit, partitions);
    let mut lines = vec![
        format!(
            "one hourly backfill of {partitions} partitions · {} workers × batch {}",
            env.workers, env.batch
        ),
        format!("submit: {} (one log entry)", ms(submit)),
        format!(
            "drained in {:.1} s: {:.0} tasks/s",
            elapsed.as_secs_f64(),
            partitions as f64 / elapsed.as_secs_f64()
        ),
        memory[0].clone(),
        memory[1].clone(),
        exactly_once_line(&tally, partitions),
        format!("job succeeded: {}", ok == 1),
        format!("lease (calls that granted): {}", lat.lease.summary().line()),
    ];
    lines.extend(figures.lines());
    print_block(
        "scale: a backfill drained by raw clients (simulated workers)",
        &lines,
    );
    Ok(json!({
        "partitions": partitions,
        "submitMs": submit.as_secs_f64() * 1e3,
        "drainSeconds": elapsed.as_secs_f64(),
        "tasksPerSecond": partitions as f64 / elapsed.as_secs_f64(),
        "bytesPerTaskAfterSubmit": per_task(&after_submit, false),
        "bytesPerTaskDrained": per_task(&figures, false),
        "bytesPerTaskPeak": per_task(&figures, true),
        "jobSucceeded": ok == 1,
        "coordinators": figures.json(),
    }))
}

/// (e) Many workers: `count` simulated workers each holding `per_worker`
/// leased tasks and heartbeating them every `interval` for `duration`.
pub async fn heartbeats(
    env: &Env,
    count: usize,
    per_worker: u32,
    interval: Duration,
    duration: Duration,
) -> Result<Value> {
    let conn = env.conn();
    // An empty update changes nothing and answers the current settings,
    // which are put back afterwards.
    let previous = update_settings(&conn, Settings::default()).await?;
    update_settings(
        &conn,
        Settings {
            heartbeat_interval_ms: interval.as_millis() as i64,
            ..Settings::default()
        },
    )
    .await?;
    let result = hold_and_heartbeat(env, count, per_worker, interval, duration).await;
    update_settings(&conn, previous).await?;
    result
}

async fn update_settings(conn: &Coordinators, settings: Settings) -> Result<Settings> {
    conn.admin(|mut c| {
        let r = UpdateSettingsRequest {
            settings: Some(settings.clone()),
        };
        async move { c.update_settings(r).await }
    })
    .await
    .map(|r| r.into_inner().settings.unwrap_or_default())
    .map_err(|e| failed!("updating the lease settings: {e}"))
}

async fn hold_and_heartbeat(
    env: &Env,
    count: usize,
    per_worker: u32,
    interval: Duration,
    duration: Duration,
) -> Result<Value> {
    let tasks = count as u64 * u64::from(per_worker);
    let tally = Tally::new();
    let workers = env.start_workers("hb", count, per_worker, true, &tally);
    let (ids, _) = submit_jobs(env, "hb", &[tasks]).await?;
    let bar = progress(tasks, "tasks held");
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.leased.load(Ordering::Relaxed) < tasks {
        bar.set_position(tally.leased.load(Ordering::Relaxed));
        if Instant::now() >= deadline {
            bail!("the workers did not lease all {tasks} tasks within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let window = observe::open(env.cluster.as_ref()).await;
    tokio::time::sleep(duration).await;
    let figures = window.close().await;
    let lat = stop_workers(&tally, workers).await;
    let done = wait_completed(&tally, tasks, Duration::from_secs(120)).await;
    done?;
    let ok = succeeded(env, &ids).await?;
    let mut lines = vec![
        format!(
            "{count} workers each holding {per_worker} tasks, heartbeating every {} for {:.0} s",
            ms(interval),
            duration.as_secs_f64()
        ),
        format!(
            "heartbeats: {:.0}/s · {}",
            count as f64 / interval.as_secs_f64(),
            lat.heartbeat.summary().line()
        ),
        format!(
            "held tasks completed afterwards: {} of {tasks}; jobs succeeded: {ok}",
            tally.completed.load(Ordering::Relaxed)
        ),
    ];
    lines.extend(figures.lines());
    print_block("many workers heartbeating (simulated workers)", &lines);
    Ok(json!({
        "workers": count,
        "tasksPerWorker": per_worker,
        "intervalMs": interval.as_millis() as u64,
        "seconds": duration.as_secs_f64(),
        "heartbeat": lat.heartbeat.summary().json(),
        "coordinators": figures.json(),
    }))
}
