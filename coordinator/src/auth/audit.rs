//! The audit log: one JSON line per administrative or job-changing request
//! and per refusal, in `DATA_DIR/audit.log`, fsync'd.
//!
//! Requests never wait on the disk: records go through a bounded queue to a
//! writer thread, which writes what has queued up and syncs once per batch.
//! A full queue (a flood of refused requests) drops records and counts
//! them, and the next line written says how many were lost, so a flood
//! cannot slow the cluster down or grow the file without bound. The file is
//! rotated to `audit.log.1` past [`ROTATE_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "audit.log";

/// Size past which the file is renamed to `audit.log.1` (replacing the
/// previous one) and a new one started.
pub const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// Records queued for the writer at most; more are dropped and counted.
const QUEUE_MAX: usize = 4096;

/// Longest message kept in a record.
const MESSAGE_MAX: usize = 256;

/// One audited request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the answer was known, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The coordinator that answered.
    pub node: u64,
    /// The rpc, `Service/Method`.
    pub method: String,
    /// Who called (`token 0123456789ab (ci)`, `certificate worker/a`,
    /// `anonymous`, or `unauthenticated`).
    pub caller: String,
    /// Its role, or `none` when it was not identified.
    pub role: String,
    /// The peer's address.
    pub peer: String,
    /// `OK` or the gRPC status code's name.
    pub outcome: String,
    /// The refusal's message; empty when it succeeded.
    pub message: String,
}

impl AuditRecord {
    /// Cuts the message to [`MESSAGE_MAX`] bytes.
    pub fn bounded(mut self) -> Self {
        if self.message.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            self.message.truncate(end);
            self.message.push('…');
        }
        self
    }
}

/// The handle requests record through; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: SyncSender<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (appending) `dir/audit.log` and starts its writer thread. The
    /// thread ends when every handle is dropped.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let file = open_append(&path)?;
        let (queue, records) = sync_channel(QUEUE_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            size: file.metadata()?.len(),
            path,
            file,
            dropped: Arc::clone(&dropped),
        };
        std::thread::Builder::new()
            .name("drover-audit".into())
            .spawn(move || writer.run(records))?;
        Ok(Self { queue, dropped })
    }

    /// Queues a record; drops it (counted) when the writer is behind.
    pub fn record(&self, record: AuditRecord) {
        match self.queue.try_send(record.bounded()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, records: Receiver<AuditRecord>) {
        while let Ok(first) = records.recv() {
            let mut batch = vec![first];
            batch.extend(records.try_iter().take(QUEUE_MAX));
            if let Err(e) = self.write(&batch) {
                // The audit log failing must not stop the cluster; it is
                // said loudly instead, once per batch.
                tracing::error!(path = %self.path.display(), error = %e, lost = batch.len(), "cannot write the audit log");
            }
        }
    }

    fn write(&mut self, batch: &[AuditRecord]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(batch.len() * 200);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = serde_json::json!({
                "time": now_rfc3339(),
                "dropped": dropped,
                "message": "audit records dropped: requests came faster than the log could be written",
            });
            out.extend(note.to_string().as_bytes());
            out.push(b'\n');
        }
        for record in batch {
            // A record of plain strings always serialises.
            out.extend(serde_json::to_vec(record).unwrap_or_default());
            out.push(b'\n');
        }
        if self.size + out.len() as u64 > ROTATE_BYTES && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(&out)?;
        self.file.sync_data()?;
        self.size += out.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Who did what is for operators' eyes.
        options.mode(0o600);
    }
    options.open(path)
}

/// The current time as the audit log writes it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            node: 1,
            method: "JobService/SubmitJob".into(),
            caller: format!("token {n:012}"),
            role: "submitter".into(),
            peer: "127.0.0.1:1".into(),
            outcome: "OK".into(),
            message: "x".repeat(1000),
        }
    }

    #[test]
    fn records_become_bounded_json_lines_that_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for n in 0..3 {
            log.record(record(n));
        }
        drop(log);
        // The writer drains the queue before its thread ends.
        let path = dir.path().join(FILE_NAME);
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            if lines.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(lines.len(), 3);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["method"], "JobService/SubmitJob");
        assert_eq!(first["outcome"], "OK");
        assert!(first["message"].as_str().unwrap().len() <= MESSAGE_MAX + 3);
        // Appending after a restart keeps what was there.
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(record(9));
        drop(log);
        for _ in 0..200 {
            if std::fs::read_to_string(&path).unwrap().lines().count() == 4 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the fourth record never reached the file");
    }
}
