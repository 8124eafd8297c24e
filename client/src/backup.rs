//! `drover cluster backup` and `drover cluster restore`.
//!
//! A backup is one consistent copy of the replicated state (see
//! `drover_coordinator::backup`). Restoring seeds the data directory of each
//! member of a *new* cluster; the members then start with
//! `drover coordinator` as usual.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use drover_coordinator::backup::Backup;
use drover_net::Coordinators;
use drover_proto::v1::BackupRequest;
use tokio_stream::StreamExt;

use crate::parse_id_addresses;

/// Takes a backup through any coordinator, verifies it, and writes it to
/// `out` through `out.partial` (synced, then renamed), so `out` is never a
/// partial backup.
pub async fn backup(
    coordinators: &Coordinators,
    out: &Path,
    force: bool,
    json: bool,
) -> Result<()> {
    if out.exists() && !force {
        bail!("{} exists; pass --force to replace it", out.display());
    }
    let (bytes, node_id) = coordinators
        .admin(|mut c| async move {
            let mut stream = c.backup(BackupRequest {}).await?.into_inner();
            let mut bytes = Vec::new();
            let mut node_id = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if bytes.is_empty() {
                    bytes.reserve(usize::try_from(chunk.total_bytes).unwrap_or(0));
                }
                node_id = chunk.node_id;
                bytes.extend_from_slice(&chunk.data);
            }
            Ok((bytes, node_id))
        })
        .await?;
    // The file checks itself (magic, format, checksum, lengths) and the
    // state inside must decode, before anything is written.
    let backup =
        Backup::decode(&bytes).context("the coordinator sent a backup that does not verify")?;
    drover_coordinator::state::StateMachine::restore(&backup.state)
        .context("the backed-up state does not decode")?;
    drover_coordinator::durable::write_file(out, &bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    let h = &backup.header;
    if json {
        let report = serde_json::json!({
            "file": out.display().to_string(),
            "bytes": bytes.len(),
            "nodeId": node_id,
            "appliedIndex": h.applied_index,
            "createdUnixMs": h.created_unix_ms,
            "droverVersion": h.drover_version,
            "jobs": h.jobs,
            "schedules": h.schedules,
            "workers": h.workers,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "backup of log index {} from node {node_id}: {} jobs, {} schedules, {} workers; {} bytes written to {}",
            h.applied_index,
            h.jobs,
            h.schedules,
            h.workers,
            bytes.len(),
            out.display()
        );
    }
    Ok(())
}

/// Seeds `data_dir` from the backup at `file` for one member of a new
/// cluster made of `peers` (ID=ADDR). With `dry_run`, only verifies the
/// backup and says what a restore would do.
pub fn restore(
    file: &Path,
    data_dir: Option<&PathBuf>,
    peers: &[String],
    dry_run: bool,
) -> Result<()> {
    let backup = Backup::read(file)?;
    let h = &backup.header;
    outln!(
        "{}: taken by drover {} from node {} at log index {}, {} jobs, {} schedules, {} workers",
        file.display(),
        h.drover_version,
        h.node_id,
        h.applied_index,
        h.jobs,
        h.schedules,
        h.workers
    );
    let members: BTreeMap<u64, String> = parse_id_addresses(peers, "--peers")?;
    if dry_run {
        let (_, report) = backup.prepared_state()?;
        outln!(
            "verified; a restore would hand back {} leases and start fencing tokens at {}",
            report.released,
            report.next_token
        );
        return Ok(());
    }
    let Some(data_dir) = data_dir else {
        bail!("--data-dir is required (or pass --dry-run to only verify the backup)");
    };
    if members.is_empty() {
        bail!("--peers is required: every member of the new cluster as ID=ADDR");
    }
    let report = backup
        .restore_into(data_dir, &members)
        .with_context(|| format!("restoring into {}", data_dir.display()))?;
    let ids: Vec<String> = members.keys().map(u64::to_string).collect();
    outln!(
        "restored into {}: {} jobs ({} not finished), {} schedules; {} leases handed back (their tasks run again), fencing tokens start at {}",
        data_dir.display(),
        report.jobs,
        report.live_jobs,
        report.schedules,
        report.released,
        report.next_token
    );
    outln!(
        "seed the other members' directories from the same file with the same --peers, then start each with `drover coordinator --node-id ID --data-dir DIR --peers {}` (ID one of {})",
        peers.join(","),
        ids.join(", ")
    );
    Ok(())
}
