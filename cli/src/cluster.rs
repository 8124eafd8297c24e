//! `drover cluster ...`: membership and status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::{
    AddNodeRequest, ClusterStatusRequest, MemberRole, RemoveNodeRequest, Settings,
    TransferLeaderRequest, UpdateSettingsRequest,
};

use crate::client::Coordinators;

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
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ClusterCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        ClusterCommand::Status { json } => {
            let s = coordinators
                .call(|ch| async move {
                    AdminServiceClient::new(ch)
                        .cluster_status(ClusterStatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            if json {
                let members: Vec<serde_json::Value> = s
                    .members
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "id": m.node_id,
                            "address": m.address,
                            "role": if m.role == MemberRole::Voter as i32 { "voter" } else { "learner" },
                            "leader": m.is_leader,
                            "matchIndex": m.match_index,
                            "lag": m.lag_entries,
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
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
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
                println!(
                    "{:>4}  {:<22} {:<8} {:>12} {:>8}",
                    "ID", "ADDRESS", "ROLE", "MATCH", "LAG"
                );
                for m in &s.members {
                    let role = if m.role == MemberRole::Voter as i32 {
                        "voter"
                    } else {
                        "learner"
                    };
                    let star = if m.is_leader { "*" } else { " " };
                    println!(
                        "{:>3}{star}  {:<22} {:<8} {:>12} {:>8}",
                        m.node_id, m.address, role, m.match_index, m.lag_entries
                    );
                }
            }
        }
        ClusterCommand::AddNode { id, address } => {
            let address_for_call = address.clone();
            coordinators
                .call(move |ch| {
                    let address = address_for_call.clone();
                    async move {
                        AdminServiceClient::new(ch)
                            .add_node(AddNodeRequest {
                                node_id: id,
                                address,
                            })
                            .await
                    }
                })
                .await?;
            println!(
                "added node {id} at {address} as a learner; it becomes a voter once caught up"
            );
        }
        ClusterCommand::RemoveNode { id } => {
            coordinators
                .call(move |ch| async move {
                    AdminServiceClient::new(ch)
                        .remove_node(RemoveNodeRequest { node_id: id })
                        .await
                })
                .await?;
            println!("removed node {id}");
        }
        ClusterCommand::TransferLeader { id } => {
            let r = coordinators
                .call(move |ch| async move {
                    AdminServiceClient::new(ch)
                        .transfer_leader(TransferLeaderRequest {
                            target_node_id: id.unwrap_or(0),
                        })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            println!("node {} ({}) is the leader", r.leader_id, r.leader_address);
        }
        ClusterCommand::Settings {
            lease_ttl,
            heartbeat_interval,
            worker_timeout,
            json,
        } => {
            let ms = |d: Option<Duration>| {
                d.map_or(0, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
                })
            };
            let wanted = Settings {
                lease_ttl_ms: ms(lease_ttl),
                heartbeat_interval_ms: ms(heartbeat_interval),
                worker_timeout_ms: ms(worker_timeout),
            };
            let r = coordinators
                .call(move |ch| async move {
                    AdminServiceClient::new(ch)
                        .update_settings(UpdateSettingsRequest {
                            settings: Some(wanted),
                        })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            let s = r.settings.unwrap_or_default();
            if json {
                let out = serde_json::json!({
                    "leaseTtlMs": s.lease_ttl_ms,
                    "heartbeatIntervalMs": s.heartbeat_interval_ms,
                    "workerTimeoutMs": s.worker_timeout_ms,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let show = |ms: i64| {
                    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
                };
                println!("lease TTL           {}", show(s.lease_ttl_ms));
                println!("heartbeat interval  {}", show(s.heartbeat_interval_ms));
                println!("worker timeout      {}", show(s.worker_timeout_ms));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
