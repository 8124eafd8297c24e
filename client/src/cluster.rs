//! `drover cluster ...`: membership and status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use drover_net::{CallError, Coordinators};
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::{
    AddNodeRequest, ClusterStatusRequest, ClusterStatusResponse, MemberRole, RemoveNodeRequest,
    ReplicationState, Settings, StateDigestRequest, TransferLeaderRequest, UpdateSettingsRequest,
};

use crate::job::render::replication_state;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, commit and applied index, and each member's lag.
    Status {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Add a coordinator (started with --join) as a learner; it becomes a
    /// voter once it has caught up.
    AddNode {
        /// Its Raft id.
        id: u64,
        /// Its gRPC address.
        address: String,
    },
    /// Remove a coordinator from the cluster.
    RemoveNode {
        /// Its Raft id.
        id: u64,
    },
    /// Hand leadership to another voter (the most up to date when omitted).
    TransferLeader {
        /// Raft id of the new leader.
        id: Option<u64>,
    },
    /// Show the replicated lease settings, or change them (every
    /// coordinator applies the change at the same log position).
    Settings {
        /// How long a lease lasts without a heartbeat, like `30s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        lease_ttl: Option<Duration>,
        /// How often workers heartbeat; at most half the lease TTL.
        #[arg(long, value_parser = humantime::parse_duration)]
        heartbeat_interval: Option<Duration>,
        /// When a silent worker is marked lost; at least the lease TTL.
        #[arg(long, value_parser = humantime::parse_duration)]
        worker_timeout: Option<Duration>,
        /// A namespace's fair-share weight, NAMESPACE=WEIGHT (1 to 1000;
        /// unlisted namespaces weigh 1); repeat or separate with commas.
        #[arg(
            long = "namespace-weight",
            value_delimiter = ',',
            value_name = "NAMESPACE=WEIGHT"
        )]
        namespace_weights: Vec<String>,
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Hash the answering coordinator's replicated state, with the log
    /// index it reflects. Ask each member (`--coordinators ADDR`): two that
    /// report the same index must report the same digest.
    Digest {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Wait until the cluster is healthy: a leader, and every voter in
    /// contact with it and caught up. Exits 1 with the reason when the
    /// timeout passes first; use it between the steps of a rolling restart.
    WaitHealthy {
        /// How long to wait, like `2m`.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Most log entries a voter may be behind the leader's commit index.
        #[arg(long, default_value_t = 1000)]
        max_lag: u64,
    },
    /// Write a consistent backup of the replicated state to a file (any
    /// coordinator answers, after a ReadIndex: the backup holds every
    /// write acknowledged before the command ran).
    Backup {
        /// The backup file; written to FILE.partial first, then renamed.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Seed one member's empty data directory of a new cluster from a
    /// backup. Run it for every member with the same file and --peers, then
    /// start each with `drover coordinator`. Leases live in the backup are
    /// handed back, so their tasks run again on the new cluster.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new member's data directory; must be empty or missing.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Every member of the new cluster as ID=ADDR, as `drover
        /// coordinator --peers` will be given.
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        /// Only verify the backup and say what a restore would do.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cmd: ClusterCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        ClusterCommand::Digest { json } => {
            let d = coordinators
                .admin(|mut c| async move {
                    c.state_digest(StateDigestRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            if json {
                let out = serde_json::json!({
                    "nodeId": d.node_id,
                    "appliedIndex": d.applied_index,
                    "sha256": d.sha256,
                    "stateBytes": d.state_bytes,
                });
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                outln!(
                    "node {}  applied {}  sha256 {}  ({} bytes)",
                    d.node_id,
                    d.applied_index,
                    d.sha256,
                    d.state_bytes
                );
            }
        }
        ClusterCommand::WaitHealthy { timeout, max_lag } => {
            return wait_healthy(coordinators, timeout, max_lag).await;
        }
        ClusterCommand::Backup { out, force, json } => {
            crate::backup::backup(coordinators, &out, force, json).await?;
        }
        ClusterCommand::Restore {
            file,
            data_dir,
            peers,
            dry_run,
        } => crate::backup::restore(&file, data_dir.as_ref(), &peers, dry_run)?,
        ClusterCommand::Status { json } => status(coordinators, json).await?,
        ClusterCommand::AddNode { id, address } => {
            let address_for_call = address.clone();
            coordinators
                .admin(move |mut c| {
                    let address = address_for_call.clone();
                    async move {
                        c.add_node(AddNodeRequest {
                            node_id: id,
                            address,
                        })
                        .await
                    }
                })
                .await?;
            outln!("added node {id} at {address} as a learner; it becomes a voter once caught up");
        }
        ClusterCommand::RemoveNode { id } => {
            coordinators
                .admin(move |mut c| async move {
                    c.remove_node(RemoveNodeRequest { node_id: id }).await
                })
                .await?;
            outln!("removed node {id}");
        }
        ClusterCommand::TransferLeader { id } => {
            let r = coordinators
                .admin(move |mut c| async move {
                    c.transfer_leader(TransferLeaderRequest {
                        target_node_id: id.unwrap_or(0),
                    })
                    .await
                    .map(|r| r.into_inner())
                })
                .await?;
            outln!("node {} ({}) is the leader", r.leader_id, r.leader_address);
        }
        ClusterCommand::Settings {
            lease_ttl,
            heartbeat_interval,
            worker_timeout,
            namespace_weights,
            json,
        } => {
            let wanted = wanted_settings(
                lease_ttl,
                heartbeat_interval,
                worker_timeout,
                &namespace_weights,
            )?;
            settings(coordinators, wanted, json).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings `cluster settings` asks for; zero leaves one as it is.
fn wanted_settings(
    lease_ttl: Option<Duration>,
    heartbeat_interval: Option<Duration>,
    worker_timeout: Option<Duration>,
    namespace_weights: &[String],
) -> Result<Settings> {
    let mut weights = BTreeMap::new();
    for entry in namespace_weights {
        let (namespace, weight) = entry
            .split_once('=')
            .ok_or_else(|| anyhow!("`{entry}` is not NAMESPACE=WEIGHT"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| anyhow!("`{weight}` in `{entry}` is not a weight (1 to 1000)"))?;
        weights.insert(namespace.trim().to_owned(), weight);
    }
    let ms = |d: Option<Duration>| {
        d.map_or(0, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
        })
    };
    let wanted = Settings {
        lease_ttl_ms: ms(lease_ttl),
        heartbeat_interval_ms: ms(heartbeat_interval),
        worker_timeout_ms: ms(worker_timeout),
        namespace_weights: weights,
    };
    Ok(wanted)
}

/// Updates the cluster's settings with `wanted` and shows the result.
async fn settings(coordinators: &Coordinators, wanted: Settings, json: bool) -> Result<()> {
    let r = coordinators
        .admin(move |mut c| {
            let wanted = wanted.clone();
            async move {
                c.update_settings(UpdateSettingsRequest {
                    settings: Some(wanted),
                })
                .await
                .map(|r| r.into_inner())
            }
        })
        .await?;
    let s = r.settings.unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "leaseTtlMs": s.lease_ttl_ms,
            "heartbeatIntervalMs": s.heartbeat_interval_ms,
            "workerTimeoutMs": s.worker_timeout_ms,
            "namespaceWeights": s.namespace_weights,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let show = |ms: i64| {
            humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
        };
        outln!("lease TTL           {}", show(s.lease_ttl_ms));
        outln!("heartbeat interval  {}", show(s.heartbeat_interval_ms));
        outln!("worker timeout      {}", show(s.worker_timeout_ms));
        if s.namespace_weights.is_empty() {
            outln!("namespace weights   none (every namespace weighs 1)");
        }
        for (i, (namespace, weight)) in s.namespace_weights.iter().enumerate() {
            let label = if i == 0 { "namespace weights" } else { "" };
            outln!("{label:<18}  {namespace}={weight}");
        }
    }
    Ok(())
}

/// How recently the leader must have heard from a voter for it to count as
/// in contact (ten leader heartbeats).
const CONTACT_AGE_MAX_MS: i64 = 1000;

/// Polls the leader's view until every voter is in contact and caught up.
async fn wait_healthy(
    coordinators: &Coordinators,
    timeout: Duration,
    max_lag: u64,
) -> Result<ExitCode> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match leader_status(coordinators).await {
            Ok(s) => match unhealthy(&s, max_lag) {
                Some(reason) => reason,
                None => match members_disagree(coordinators, &s, max_lag).await {
                    Some(reason) => reason,
                    None => {
                        let voters = s
                            .members
                            .iter()
                            .filter(|m| m.role == MemberRole::Voter as i32)
                            .count();
                        outln!(
                            "healthy: node {} leads term {}, all {voters} voters in contact and caught up (commit {})",
                            s.leader_id,
                            s.term,
                            s.commit_index
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                },
            },
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "error: not healthy after {}: {last}",
                humantime::format_duration(timeout)
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The status as the leader sees it (only the leader knows each member's
/// progress), or as the first coordinator that answers sees it when there
/// is no leader or it does not answer.
/// `drover cluster status`: the leader's view of every member, and whether
/// this machine can reach each member itself.
async fn status(coordinators: &Coordinators, json: bool) -> Result<()> {
    let s = leader_status(coordinators).await?;
    let probes = probe_members(coordinators, &s).await;
    if json {
        let members: Vec<serde_json::Value> = s
            .members
            .iter()
            .map(|m| {
                let probe = probes.get(&m.node_id);
                serde_json::json!({
                    "id": m.node_id,
                    "address": m.address,
                    "role": if m.role == MemberRole::Voter as i32 { "voter" } else { "learner" },
                    "leader": m.is_leader,
                    "matchIndex": m.match_index,
                    "lag": m.lag_entries,
                    "replication": replication_state(m.replication),
                    "lastContactMs": m.last_contact_age_ms,
                    "reachable": probe.is_some_and(Result::is_ok),
                    "probeError": probe.and_then(|p| p.as_ref().err()),
                })
            })
            .collect();
        let out = serde_json::json!({
            "answeredBy": s.node_id,
            "leader": s.leader_id,
            "leaderAddress": s.leader_address,
            "term": s.term,
            "commitIndex": s.commit_index,
            "appliedIndex": s.applied_index,
            "members": members,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "leader {} ({})  term {}  commit {}  applied {}  (answered by node {})",
        if s.leader_id == 0 {
            "none".to_owned()
        } else {
            s.leader_id.to_string()
        },
        if s.leader_address.is_empty() {
            "-"
        } else {
            &s.leader_address
        },
        s.term,
        s.commit_index,
        s.applied_index,
        s.node_id
    );
    let leaders_view = s.leader_id == s.node_id;
    if !leaders_view {
        outln!("(a follower's view: only the leader knows each member's MATCH and LAG)");
    }
    outln!(
        "{:>4}  {:<22} {:<8} {:<11} {:>12} {:>8}  {:<10} {:>8}",
        "ID",
        "ADDRESS",
        "ROLE",
        "HEALTH",
        "MATCH",
        "LAG",
        "STREAM",
        "CONTACT"
    );
    let mut problems = Vec::new();
    for m in &s.members {
        let role = if m.role == MemberRole::Voter as i32 {
            "voter"
        } else {
            "learner"
        };
        let star = if m.is_leader { "*" } else { " " };
        let (stream, contact) = if !leaders_view || m.is_leader {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                replication_state(m.replication),
                contact_age(m.last_contact_age_ms),
            )
        };
        let health = match probes.get(&m.node_id) {
            Some(Ok(())) if leaders_view && !m.is_leader && m.last_contact_age_ms > SILENT_MS => {
                problems.push(format!(
                    "node {} answers here but the leader has not heard from it for {}",
                    m.node_id,
                    contact_age(m.last_contact_age_ms)
                ));
                "silent"
            }
            Some(Ok(())) => "up",
            Some(Err(e)) => {
                problems.push(format!("node {} ({}): {e}", m.node_id, m.address));
                "UNREACHABLE"
            }
            None => "-",
        };
        outln!(
            "{:>3}{star}  {:<22} {:<8} {:<11} {:>12} {:>8}  {:<10} {:>8}",
            m.node_id,
            m.address,
            role,
            health,
            m.match_index,
            m.lag_entries,
            stream,
            contact
        );
    }
    for p in &problems {
        outln!("  {p}");
    }
    Ok(())
}

/// How long without contact from the leader's side marks a member that
/// still answers this CLI as silent: several heartbeats and more than an
/// election timeout.
const SILENT_MS: i64 = 5_000;

/// `850 ms`, or `16.9 s` past a second.
fn contact_age(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Asks every member at its own address, at once, whether it answers;
/// an error says why not (refused, no answer in time).
async fn probe_members(
    coordinators: &Coordinators,
    s: &ClusterStatusResponse,
) -> BTreeMap<u64, Result<(), String>> {
    let mut probes = tokio::task::JoinSet::new();
    for m in &s.members {
        let member = coordinators.at(&m.address);
        let id = m.node_id;
        probes.spawn(async move {
            let answer = member
                .call_within(Duration::from_secs(2), |ch| async move {
                    AdminServiceClient::new(ch)
                        .cluster_status(ClusterStatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await;
            let answer = answer.map(|_| ()).map_err(|e| match e {
                CallError::Unreachable(why) => why,
                e => e.to_string(),
            });
            (id, answer)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(Ok((id, answer))) = probes.join_next().await {
        out.insert(id, answer);
    }
    out
}

async fn leader_status(coordinators: &Coordinators) -> Result<ClusterStatusResponse> {
    let ask = |c: Coordinators| async move {
        c.call_within(Duration::from_secs(2), |ch| async move {
            AdminServiceClient::new(ch)
                .cluster_status(ClusterStatusRequest {})
                .await
                .map(|r| r.into_inner())
        })
        .await
    };
    let s = ask(coordinators.clone()).await?;
    if s.leader_id == 0 || s.leader_id == s.node_id || s.leader_address.is_empty() {
        return Ok(s);
    }
    // A leader that cannot be reached leaves the follower's view.
    Ok(ask(coordinators.at(&s.leader_address)).await.unwrap_or(s))
}

/// Asks every voter itself: each must answer, know the same leader, and
/// have applied the leader's commit index (less `max_lag`). The leader's
/// view alone can look healthy for a moment after a member restarts.
async fn members_disagree(
    coordinators: &Coordinators,
    leader: &ClusterStatusResponse,
    max_lag: u64,
) -> Option<String> {
    for m in leader
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter as i32 && !m.is_leader)
    {
        let own = coordinators
            .at(&m.address)
            .call_within(Duration::from_secs(2), |ch| async move {
                AdminServiceClient::new(ch)
                    .cluster_status(ClusterStatusRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await;
        match own {
            Err(e) => return Some(format!("node {} did not answer: {e:#}", m.node_id)),
            Ok(own) if own.leader_id != leader.leader_id => {
                return Some(format!(
                    "node {} follows {} rather than node {}",
                    m.node_id,
                    if own.leader_id == 0 {
                        "no leader".to_owned()
                    } else {
                        format!("node {}", own.leader_id)
                    },
                    leader.leader_id
                ));
            }
            Ok(own) if own.applied_index + max_lag < leader.commit_index => {
                return Some(format!(
                    "node {} has applied {} of {} committed entries",
                    m.node_id, own.applied_index, leader.commit_index
                ));
            }
            Ok(_) => {}
        }
    }
    None
}

/// Why the cluster is not healthy yet, or `None` when it is.
fn unhealthy(s: &ClusterStatusResponse, max_lag: u64) -> Option<String> {
    if s.leader_id == 0 {
        return Some(format!("node {} knows no leader", s.node_id));
    }
    if s.leader_id != s.node_id {
        return Some(format!("the leader, node {}, did not answer", s.leader_id));
    }
    let mut behind = Vec::new();
    for m in s
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter as i32)
    {
        if m.is_leader {
            continue;
        }
        if m.replication != ReplicationState::Replicate as i32 {
            behind.push(format!(
                "node {} is not replicating normally yet",
                m.node_id
            ));
        } else if m.lag_entries > max_lag {
            behind.push(format!(
                "node {} is {} entries behind",
                m.node_id, m.lag_entries
            ));
        } else if m.last_contact_age_ms > CONTACT_AGE_MAX_MS {
            behind.push(format!(
                "node {} was last heard from {} ms ago",
                m.node_id, m.last_contact_age_ms
            ));
        }
    }
    (!behind.is_empty()).then(|| behind.join("; "))
}
