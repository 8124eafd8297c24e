//! `drover worker list` and `drover worker drain`: the workers the cluster
//! knows, and asking one to stop taking work.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use drover_net::Coordinators;
use drover_proto::v1::{DrainWorkerRequest, ListWorkersRequest, WorkerInfo};

use crate::job::render;

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Workers the cluster knows: state, slots, running tasks, last heartbeat.
    List {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Ask a worker to stop leasing; it finishes or hands back its tasks
    /// and exits, as on SIGTERM.
    Drain {
        /// The worker id, as `worker list` shows it.
        id: String,
        /// Why, shown in `worker list`.
        #[arg(long, default_value = "drained from the command line")]
        reason: String,
    },
}

/// Workers fetched per page.
const PAGE: u32 = 500;
/// Workers listed at most.
const WORKERS_MAX: usize = 100_000;

pub async fn run(cmd: WorkerCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        WorkerCommand::List { json } => list(json, coordinators).await,
        WorkerCommand::Drain { id, reason } => {
            let request = DrainWorkerRequest {
                worker_id: id.clone(),
                reason,
            };
            let r = coordinators
                .admin(|mut c| {
                    let r = request.clone();
                    async move { c.drain_worker(r).await.map(|r| r.into_inner()) }
                })
                .await?;
            let running = r.worker.map_or(0, |w| w.running_tasks);
            outln!("{id} is draining; it has {running} running tasks to finish or hand back");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(json: bool, coordinators: &Coordinators) -> Result<ExitCode> {
    let mut workers: Vec<WorkerInfo> = Vec::new();
    let mut token = String::new();
    loop {
        let request = ListWorkersRequest {
            states: vec![],
            page_size: PAGE,
            page_token: token.clone(),
        };
        let page = coordinators
            .admin(|mut c| {
                let r = request.clone();
                async move { c.list_workers(r).await.map(|r| r.into_inner()) }
            })
            .await?;
        workers.extend(page.workers);
        token = page.next_page_token;
        if token.is_empty() || workers.len() >= WORKERS_MAX {
            break;
        }
    }
    if json {
        let list: Vec<_> = workers.iter().map(render::worker_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "workers": list }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if workers.is_empty() {
        outln!("no workers");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<32} {:<9} {:>7}  {:<21} LABELS",
        "WORKER",
        "STATE",
        "RUNNING",
        "LAST HEARTBEAT"
    );
    for w in &workers {
        let mut labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        outln!(
            "{:<32} {:<9} {:>7}  {:<21} {}",
            w.worker_id,
            render::worker_state(w.state),
            format!("{}/{}", w.running_tasks, w.slots),
            render::short_time(w.last_heartbeat_unix_ms),
            labels.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}
