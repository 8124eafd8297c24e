//! `drover cluster ...`: membership and status.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::{
    AddNodeRequest, ClusterStatusRequest, MemberRole, RemoveNodeRequest, TransferLeaderRequest,
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
    }
    Ok(ExitCode::SUCCESS)
}
