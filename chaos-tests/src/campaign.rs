//! One chaos run end to end: start the cluster, run clients and the
//! nemesis for the safety phase, heal, wait for every job to end (the
//! liveness phase), observe the cluster, check, and summarise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::{
    GetJobRequest, JobEventKind, JobEventsRequest, JobState, ListJobsRequest, StateDigestRequest,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checker::{self, Report};
use crate::harness::{Cluster, ClusterSpec, HarnessError};
use crate::history::{History, OpType};
use crate::observation::{
    EventRecord, EventType, JobRecord, Observation, ProbeRecord, ReplicaDigest, TemplateRecord,
};
use crate::rng::Rng;
use crate::workload;

/// What to run.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// The seed every random choice comes from.
    pub seed: u64,
    /// Length of the safety phase (faults and load).
    pub duration: Duration,
    /// Coordinators (3 or 5).
    pub nodes: u64,
    /// Worker processes.
    pub workers: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// How long jobs may take to end after the heal.
    pub heal_bound: Duration,
    /// Planted bugs for the coordinators (`DROVER_PLANTED_BUGS`).
    pub planted_bugs: String,
    /// Only these faults (all when `None`).
    pub faults: Option<Vec<String>>,
    /// Where the run's files go.
    pub run_dir: PathBuf,
    /// The `drover` binary.
    pub binary: PathBuf,
}

/// What a run did and found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Faults injected, by type.
    pub faults: BTreeMap<String, u64>,
    /// Client operations by function and outcome (`submit ok`, ...).
    pub operations: BTreeMap<String, u64>,
    /// Jobs the cluster held at the end.
    pub jobs: usize,
    /// Probe attempts that started.
    pub attempts: usize,
    /// The checkers' findings.
    pub report: Report,
    /// The history file.
    pub history: PathBuf,
    /// The observation file (input of the checkers).
    pub observation: PathBuf,
}

impl Summary {
    /// The table printed at the end of a campaign.
    pub fn table(&self) -> String {
        let mut out = format!("seed {}\n\nfaults injected\n", self.seed);
        for (fault, n) in &self.faults {
            out.push_str(&format!("  {fault:<24} {n:>6}\n"));
        }
        out.push_str(&format!(
            "  {:<24} {:>6}\n\noperations\n",
            "total",
            self.faults.values().sum::<u64>()
        ));
        for (op, n) in &self.operations {
            out.push_str(&format!("  {op:<24} {n:>6}\n"));
        }
        out.push_str(&format!(
            "\njobs {}, probe attempts {}\n\ninvariants checked\n",
            self.jobs, self.attempts
        ));
        for name in &self.report.checked {
            let n = self.report.of(name).len();
            out.push_str(&format!(
                "  {} {name}{}\n",
                if n == 0 { "ok  " } else { "FAIL" },
                if n == 0 {
                    String::new()
                } else {
                    format!(" ({n})")
                }
            ));
        }
        out.push_str(&format!("\nviolations {}\n", self.report.violations.len()));
        for v in &self.report.violations {
            out.push_str(&format!("  [{}] {}\n", v.invariant, v.detail));
        }
        out.push_str(&format!(
            "\nhistory {}\nobservation {}\n",
            self.history.display(),
            self.observation.display()
        ));
        out
    }
}

/// Runs one campaign.
pub async fn run(config: CampaignConfig) -> Result<Summary, HarnessError> {
    let mut rng = Rng::new(config.seed);
    let history = open_run_dir(&config.run_dir)?;
    let mut cluster = Cluster::start(ClusterSpec {
        nodes: config.nodes,
        spare_nodes: 1,
        workers: config.workers,
        worker_slots: 2,
        run_dir: config.run_dir.clone(),
        binary: config.binary.clone(),
        planted_bugs: config.planted_bugs.clone(),
    })
    .await?;

    // Safety phase: load and faults.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..config.clients {
        clients.push(tokio::spawn(workload::run_client(
            format!("client-{c}"),
            workload::client(cluster.client_addresses()),
            rng.fork(),
            history.clone(),
            stop_rx.clone(),
            format!("s{}", config.seed),
        )));
    }
    let timer = {
        let stop_tx = stop_tx.clone();
        let duration = config.duration;
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let _ = stop_tx.send(true);
        })
    };
    let only: Option<Vec<&str>> = config
        .faults
        .as_ref()
        .map(|f| f.iter().map(String::as_str).collect());
    let faults = crate::nemesis::run(
        &mut cluster,
        rng.fork(),
        &history,
        stop_rx.clone(),
        only.as_deref(),
    )
    .await;
    let _ = timer.await;
    for c in clients {
        let _ = c.await;
    }
    conclude(cluster, &history, config.seed, faults, config.heal_bound).await
}

/// Creates a run's directory and its history file.
pub(crate) fn open_run_dir(run_dir: &std::path::Path) -> Result<History, HarnessError> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| HarnessError::Io("creating the run dir".into(), e))?;
    History::create(&run_dir.join("history.jsonl"))
        .map_err(|e| HarnessError::Io("creating the history".into(), e))
}

/// The end of every run: heals the cluster, waits up to `heal_bound` for
/// every job to end (the liveness phase), observes it, stops it, checks
/// the observation and summarises.
pub(crate) async fn conclude(
    mut cluster: Cluster,
    history: &History,
    seed: u64,
    faults: BTreeMap<String, u64>,
    heal_bound: Duration,
) -> Result<Summary, HarnessError> {
    // A cluster that cannot get every job to end is a finding, not a
    // harness error.
    let liveness = async {
        cluster.heal()?;
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        let unfinished = wait_for_jobs(&cluster, heal_bound).await;
        cluster.stop_workers();
        let mut observation = observe(&cluster).await?;
        observation.unfinished_after_heal = unfinished;
        Ok::<_, HarnessError>(observation)
    };
    let mut observation = liveness.await.unwrap_or_else(|e| Observation {
        failure: e.to_string(),
        ..Observation::default()
    });
    observation.ops = history.ops();
    observation.heal_bound_s = heal_bound.as_secs();
    cluster.stop();
    let run_dir = cluster.run_dir().to_owned();
    observation.crashes = find_panics(&run_dir.join("logs"));

    let report = checker::check(&observation);
    let observation_path = run_dir.join("observation.json");
    observation
        .write(&observation_path)
        .map_err(|e| HarnessError::Io("writing the observation".into(), e))?;
    let mut operations = BTreeMap::new();
    for op in observation.ops.iter().filter(|o| o.process != "nemesis") {
        let outcome = match op.kind {
            OpType::Invoke => continue,
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        };
        *operations.entry(format!("{} {outcome}", op.f)).or_insert(0) += 1;
    }
    Ok(Summary {
        seed,
        faults,
        operations,
        jobs: observation.jobs.len(),
        attempts: observation
            .probes
            .iter()
            .filter(|p| p.event == "start")
            .count(),
        report,
        history: history.path().to_owned(),
        observation: observation_path,
    })
}

/// Waits until every job is terminal; returns those that were not within
/// `bound`.
async fn wait_for_jobs(cluster: &Cluster, bound: Duration) -> Vec<String> {
    let until = Instant::now() + bound;
    let mut open = Vec::new();
    while Instant::now() < until {
        if let Ok(jobs) = list_jobs(cluster).await {
            open = jobs
                .into_iter()
                .filter(|(_, state)| {
                    !matches!(
                        JobState::try_from(*state),
                        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
                    )
                })
                .map(|(id, _)| id)
                .collect();
            if open.is_empty() {
                return open;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    open
}

/// Every job id and state, from the leader.
async fn list_jobs(cluster: &Cluster) -> Result<Vec<(String, i32)>, HarnessError> {
    let mut client = cluster.job_client().await?;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_jobs(ListJobsRequest {
                page_size: 500,
                page_token: token.clone(),
                ..ListJobsRequest::default()
            })
            .await
            .map_err(|s| HarnessError::Rpc(s.message().to_owned()))?
            .into_inner();
        out.extend(page.jobs.into_iter().map(|j| (j.job_id, j.state)));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Reads every job with its trail, the probes' logs and the replicas'
/// digests.
async fn observe(cluster: &Cluster) -> Result<Observation, HarnessError> {
    let mut observation = Observation::default();
    let rpc = |s: tonic::Status| HarnessError::Rpc(s.message().to_owned());
    let mut client = cluster.job_client().await?;
    for (id, _) in list_jobs(cluster).await? {
        let job = client
            .get_job(GetJobRequest {
                job_id: id.clone(),
                include_spec: false,
            })
            .await
            .map_err(rpc)?
            .into_inner()
            .job
            .unwrap_or_default();
        let templates: Vec<TemplateRecord> = job
            .templates
            .iter()
            .map(|t| TemplateRecord {
                name: t.name.clone(),
                depends_on: t.depends_on.clone(),
                partitions: t.partition_count,
            })
            .collect();
        let mut events = Vec::new();
        let mut after = 0;
        let mut complete = true;
        loop {
            let page = client
                .job_events(JobEventsRequest {
                    job_id: id.clone(),
                    after_seq: after,
                    limit: 1000,
                    ..JobEventsRequest::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if page.oldest_seq > 1 {
                complete = false;
            }
            events.extend(page.events.iter().map(|e| EventRecord {
                seq: e.seq,
                kind: event_type(e.kind),
                task_id: e.task_id.clone(),
                template: e.template.clone(),
                partition: e.partition_index,
                token: e.fencing_token,
                worker: e.worker_id.clone(),
                at_unix_ms: e.at_unix_ms,
            }));
            if !page.more || page.next_after_seq <= after {
                break;
            }
            after = page.next_after_seq;
        }
        observation.jobs.push(JobRecord {
            id,
            name: job.name.clone(),
            state: JobState::try_from(job.state).map_or("unknown".into(), |s| {
                s.as_str_name()
                    .trim_start_matches("JOB_STATE_")
                    .to_lowercase()
            }),
            templates,
            events,
            events_complete: complete,
        });
    }
    observation.probes = read_probes(&cluster.run_dir().join("probes"));
    let (replicas, settled) = digests(cluster).await;
    observation.replicas = replicas;
    observation.replicas_settled = settled;
    Ok(observation)
}

fn event_type(kind: i32) -> EventType {
    match JobEventKind::try_from(kind) {
        Ok(JobEventKind::TaskLeased) => EventType::Leased,
        Ok(JobEventKind::TaskSucceeded) => EventType::Succeeded,
        Ok(JobEventKind::TaskSkipped) => EventType::Skipped,
        Ok(JobEventKind::TaskFailed) => EventType::Failed,
        Ok(JobEventKind::TaskLeaseExpired) => EventType::Expired,
        Ok(JobEventKind::TaskTimedOut) => EventType::TimedOut,
        Ok(JobEventKind::TaskStaleTokenRejected) => EventType::StaleRejected,
        Ok(JobEventKind::TaskReleased) => EventType::Released,
        _ => EventType::Other,
    }
}

/// The files of `dir`, sorted (none when it cannot be read).
fn files_in(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// Lines of the processes' logs that report a panic.
fn find_panics(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for path in files_in(dir) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        out.extend(
            text.lines()
                .filter(|l| l.contains("panicked at"))
                .take(3)
                .map(|l| format!("{}: {l}", name.clone().unwrap_or_default())),
        );
    }
    out
}

/// Every record of every worker's probe log.
pub(crate) fn read_probes(dir: &std::path::Path) -> Vec<ProbeRecord> {
    let mut out = Vec::new();
    for path in files_in(dir) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // A worker killed mid-write leaves at most a torn last line.
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// Every member's digest, read until all report one applied index (the
/// leader's periodic tick entries keep the index moving, so this retries).
async fn digests(cluster: &Cluster) -> (Vec<ReplicaDigest>, bool) {
    let mut last = Vec::new();
    for _ in 0..100 {
        let mut round = Vec::new();
        for id in cluster.members() {
            let digest = match cluster.channel(id).await {
                Ok(channel) => AdminServiceClient::new(channel)
                    .state_digest(StateDigestRequest {})
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        ReplicaDigest {
                            node_id: r.node_id,
                            applied_index: r.applied_index,
                            sha256: r.sha256,
                            error: String::new(),
                        }
                    })
                    .unwrap_or_else(|s| ReplicaDigest {
                        node_id: id,
                        error: s.message().to_owned(),
                        ..ReplicaDigest::default()
                    }),
                Err(e) => ReplicaDigest {
                    node_id: id,
                    error: e.to_string(),
                    ..ReplicaDigest::default()
                },
            };
            round.push(digest);
        }
        let settled = round.iter().all(|r| r.error.is_empty())
            && round
                .windows(2)
                .all(|w| w[0].applied_index == w[1].applied_index);
        if settled {
            return (round, true);
        }
        last = round;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (last, false)
}
