//! `drover autoscale`: local worker processes scaled from the coordinator's
//! scaling signal (`GET /v1/scaling`), with the cooldowns of the AWS
//! policy in `deploy/aws/`, so the signal and the policy can be watched
//! end to end on one machine.
//!
//! Every `--interval` it reads the pool's desired workers, clamps them to
//! `--min`..`--max`, and starts workers (the same binary, `drover worker`)
//! or stops the newest with SIGTERM, so they drain: no new leases, running
//! tasks get their drain timeout, the rest are handed back. A worker that
//! exits by itself is forgotten and replaced on the next round if still
//! needed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use tokio::process::{Child, Command};

#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// Fewest workers kept running.
    #[arg(long, default_value_t = 0)]
    min: u32,
    /// Most workers started.
    #[arg(long)]
    max: u32,
    /// The pool to scale: `default`, or its labels as `key=value,...`;
    /// started workers get these labels.
    #[arg(long, default_value = "default")]
    pool: String,
    /// Coordinator HTTP addresses serving `/v1/scaling`, comma-separated;
    /// asked in turn until one answers.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    http: Vec<String>,
    /// How often the signal is read.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// After adding workers, how long before adding more for the same
    /// target, or removing any (the AWS policy's scale-out cooldown).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    scale_out_cooldown: Duration,
    /// After removing workers, how long before removing more (the AWS
    /// policy's scale-in cooldown).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    scale_in_cooldown: Duration,
    /// Arguments for each `drover worker` started (after `--`), such as
    /// `--slots 2 --data-root DIR`.
    #[arg(last = true)]
    worker_args: Vec<String>,
}

/// What a round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start this many workers.
    Start(u32),
    /// Stop this many workers.
    Stop(u32),
    /// Keep the count, with why when a change was held off.
    Hold(Option<String>),
}

/// Target tracking with cooldowns, as the AWS policy applies them: a
/// scale-out may add more within its cooldown only when the target grew
/// past what the last one aimed for; a scale-in waits out both its own
/// cooldown and the scale-out's, so capacity just added is not taken back
/// while it warms up.
#[derive(Debug, Clone)]
pub struct Policy {
    min: u32,
    max: u32,
    scale_out_cooldown: Duration,
    scale_in_cooldown: Duration,
    last_out: Option<(Instant, u32)>,
    last_in: Option<Instant>,
}

impl Policy {
    /// A policy keeping `min..=max` workers.
    pub fn new(
        min: u32,
        max: u32,
        scale_out_cooldown: Duration,
        scale_in_cooldown: Duration,
    ) -> Self {
        Self {
            min,
            max,
            scale_out_cooldown,
            scale_in_cooldown,
            last_out: None,
            last_in: None,
        }
    }

    /// What to do with `current` workers when the signal asks for
    /// `desired`, at `now`.
    pub fn decide(&mut self, current: u32, desired: u64, now: Instant) -> Decision {
        let target = u32::try_from(desired)
            .unwrap_or(u32::MAX)
            .clamp(self.min, self.max);
        let cooling_out = self
            .last_out
            .filter(|(at, _)| now.duration_since(*at) < self.scale_out_cooldown);
        if target > current {
            if let Some((_, aimed)) = cooling_out
                && target <= aimed
            {
                return Decision::Hold(Some(format!(
                    "scale-out cooldown: already scaled out to {aimed}"
                )));
            }
            self.last_out = Some((now, target));
            return Decision::Start(target - current);
        }
        if target < current {
            if cooling_out.is_some() {
                return Decision::Hold(Some(
                    "scale-out cooldown: not scaling in right after scaling out".to_owned(),
                ));
            }
            if let Some(at) = self.last_in
                && now.duration_since(at) < self.scale_in_cooldown
            {
                return Decision::Hold(Some("scale-in cooldown".to_owned()));
            }
            self.last_in = Some(now);
            return Decision::Stop(current - target);
        }
        Decision::Hold(None)
    }
}

/// One worker process started here.
#[derive(Debug)]
struct Worker {
    id: String,
    child: Child,
    stopping: bool,
}

pub async fn run(args: AutoscaleArgs, coordinators: &str) -> Result<ExitCode> {
    if args.max == 0 || args.min > args.max {
        bail!("--max must be at least 1 and at least --min");
    }
    let labels = drover_coordinator::state::scaling::parse_pool(&args.pool)
        .ok_or_else(|| anyhow!("--pool is `default` or labels as key=value,key=value"))?;
    let exe = std::env::current_exe().context("finding this binary to start workers")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let mut policy = Policy::new(
        args.min,
        args.max,
        args.scale_out_cooldown,
        args.scale_in_cooldown,
    );
    let mut workers: Vec<Worker> = Vec::new();
    let mut started = 0u64;
    let mut ticks = tokio::time::interval(args.interval.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = crate::coordinator::shutdown_signal();
    tokio::pin!(shutdown);
    outln!(
        "autoscaling pool {} between {} and {} workers",
        args.pool,
        args.min,
        args.max
    );
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {}
        }
        reap(&mut workers);
        let running = workers.iter().filter(|w| !w.stopping).count() as u32;
        let signal = match read_signal(&client, &args.http, &args.pool).await {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("autoscale: {e:#}; keeping {running} workers");
                continue;
            }
        };
        let desired = signal["desiredWorkers"].as_u64().unwrap_or(0);
        let reasons = signal["reasons"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        match policy.decide(running, desired, Instant::now()) {
            Decision::Start(n) => {
                outln!(
                    "workers {running} -> {}: desired {desired} ({reasons})",
                    running + n
                );
                for _ in 0..n {
                    started += 1;
                    let id = format!("autoscale-{}-{started}", std::process::id());
                    let child = spawn_worker(&exe, coordinators, &id, &labels, &args.worker_args)?;
                    workers.push(Worker {
                        id,
                        child,
                        stopping: false,
                    });
                }
            }
            Decision::Stop(n) => {
                outln!(
                    "workers {running} -> {}: desired {desired} ({reasons})",
                    running - n
                );
                // Newest first, as an Auto Scaling group's NewestInstance
                // termination policy does.
                for worker in workers
                    .iter_mut()
                    .rev()
                    .filter(|w| !w.stopping)
                    .take(n as usize)
                {
                    terminate(worker);
                }
            }
            Decision::Hold(Some(why)) if desired != u64::from(running) => {
                outln!("workers {running}: desired {desired}, held ({why})");
            }
            Decision::Hold(_) => {}
        }
    }
    outln!("stopping {} workers", workers.len());
    for worker in workers.iter_mut().filter(|w| !w.stopping) {
        terminate(worker);
    }
    for worker in &mut workers {
        let _ = worker.child.wait().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Forgets workers that have exited, saying so for the ones not told to.
fn reap(workers: &mut Vec<Worker>) {
    workers.retain_mut(|w| match w.child.try_wait() {
        Ok(Some(status)) => {
            if !w.stopping {
                outln!("worker {} exited by itself ({status})", w.id);
            } else {
                outln!("worker {} drained and exited", w.id);
            }
            false
        }
        _ => true,
    });
}

/// Asks each address in turn for the pool's signal.
async fn read_signal(
    client: &reqwest::Client,
    addresses: &[String],
    pool: &str,
) -> Result<serde_json::Value> {
    let mut last = anyhow!("no --http address");
    for address in addresses {
        let url = format!("http://{address}/v1/scaling?pool={pool}");
        let answer = async {
            let response = client.get(&url).send().await?.error_for_status()?;
            let bytes = response.bytes().await?;
            anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&bytes)?)
        }
        .await;
        match answer {
            Ok(report) => {
                return report["pools"]
                    .as_array()
                    .and_then(|pools| pools.first().cloned())
                    .ok_or_else(|| anyhow!("{url} reported no pool"));
            }
            Err(e) => last = e.context(format!("reading {url}")),
        }
    }
    Err(last)
}

fn spawn_worker(
    exe: &PathBuf,
    coordinators: &str,
    id: &str,
    labels: &BTreeMap<String, String>,
    extra: &[String],
) -> Result<Child> {
    let mut command = Command::new(exe);
    command
        .args(["--coordinators", coordinators, "worker", "--id", id])
        .args(extra)
        .kill_on_drop(true);
    if !labels.is_empty() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        command.args(["--labels", &labels.join(",")]);
    }
    command
        .spawn()
        .with_context(|| format!("starting worker {id}"))
}

/// SIGTERM, so the worker drains. Through kill(1), which every Unix has:
/// the workspace allows no `unsafe`, and tokio's own kill is SIGKILL.
fn terminate(worker: &mut Worker) {
    worker.stopping = true;
    if let Some(pid) = worker.child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_hold_changes_as_the_aws_policy_does() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Policy::new(1, 5, s(60), s(300));
        // Below the minimum: up to it at once.
        assert_eq!(p.decide(0, 0, t0), Decision::Start(1));
        // More work: out to 3; within the cooldown, out again only past 3.
        assert_eq!(p.decide(1, 3, t0 + s(70)), Decision::Start(2));
        assert!(matches!(p.decide(3, 3, t0 + s(80)), Decision::Hold(None)));
        assert_eq!(
            p.decide(3, 9, t0 + s(90)),
            Decision::Start(2),
            "capped at max 5"
        );
        // Work gone: no scale-in during the scale-out cooldown...
        assert!(matches!(
            p.decide(5, 0, t0 + s(100)),
            Decision::Hold(Some(_))
        ));
        // ...then down to the minimum, and not again within the scale-in
        // cooldown.
        assert_eq!(p.decide(5, 2, t0 + s(160)), Decision::Stop(3));
        assert!(matches!(
            p.decide(2, 0, t0 + s(200)),
            Decision::Hold(Some(_))
        ));
        assert_eq!(p.decide(2, 0, t0 + s(470)), Decision::Stop(1));
        assert!(matches!(p.decide(1, 0, t0 + s(900)), Decision::Hold(None)));
    }
}
