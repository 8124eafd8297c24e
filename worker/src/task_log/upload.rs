//! Keeps an attempt's log stored in the cluster's task log store at
//! `<store>/<output_prefix>.log`: replaced every [`STORE_EVERY`] while the
//! attempt runs (when it changed) and once more when it ends. Storing is a
//! whole-object put, which object stores and the local file system both
//! make atomic, so a reader never sees half a log. A worker that vanishes
//! loses at most the last few seconds.

use std::time::Duration;

use object_store::ObjectStoreExt;
use tokio::sync::watch;

use super::AttemptLog;
use crate::dataset::location::Location;

/// How often a running attempt's log is stored.
pub const STORE_EVERY: Duration = Duration::from_secs(5);
/// How long the last store of an ended attempt may take before the worker
/// reports the attempt without it.
pub const LAST_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores one attempt's log.
#[derive(Debug)]
pub struct LogUploader {
    store: Location,
    key: String,
    log: AttemptLog,
    /// Lines the stored copy has; nothing is written while it is current.
    stored_lines: Option<u64>,
    /// A failure was already logged; later ones are not repeated into the
    /// very log that could not be stored.
    warned: bool,
}

impl LogUploader {
    /// An uploader of `log`, the log of the attempt whose output prefix is
    /// `output_prefix`, into `store`.
    pub fn new(store: Location, output_prefix: &str, log: AttemptLog) -> Self {
        Self {
            store,
            key: drover_proto::task_log_key(output_prefix),
            log,
            stored_lines: None,
            warned: false,
        }
    }

    /// Where the log goes.
    pub fn url(&self) -> String {
        format!("{}/{}", self.store.url.trim_end_matches('/'), self.key)
    }

    /// Stores the log unless the stored copy is current.
    pub async fn store(&mut self) {
        let (text, lines) = self.log.snapshot();
        if self.stored_lines == Some(lines) {
            return;
        }
        match self
            .store
            .store
            .put(&self.store.path(&self.key), text.into())
            .await
        {
            Ok(_) => self.stored_lines = Some(lines),
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(log = %self.url(), error = %e, "cannot store the attempt's log; will retry");
            }
            Err(_) => {}
        }
    }

    /// Stores the log every `period` ([`STORE_EVERY`] in a worker) until
    /// `ended` turns true, then once more (within [`LAST_STORE_TIMEOUT`]).
    pub async fn keep_stored(mut self, period: Duration, mut ended: watch::Receiver<bool>) {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*ended.borrow_and_update() {
            tokio::select! {
                _ = every.tick() => self.store().await,
                changed = ended.changed() => if changed.is_err() { break },
            }
        }
        if tokio::time::timeout(LAST_STORE_TIMEOUT, self.store())
            .await
            .is_err()
        {
            tracing::warn!(log = %self.url(), "storing the attempt's log timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_is_stored_at_its_prefix_and_rewritten_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let log = AttemptLog::default();
        let mut up = LogUploader::new(store, "jobs/j1/0/2/attempt-1-7", log.clone());
        let file = dir.path().join("jobs/j1/0/2/attempt-1-7.log");
        log.line("first");
        up.store().await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "first\n");
        // Unchanged: not written again (a removed file stays removed).
        std::fs::remove_file(&file).unwrap();
        up.store().await;
        assert!(!file.exists());
        log.line("second");
        up.store().await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "first\nsecond\n");
        assert!(up.url().ends_with("/jobs/j1/0/2/attempt-1-7.log"));
    }

    #[tokio::test]
    async fn a_running_attempts_log_is_stored_every_period_and_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let log = AttemptLog::default();
        let file = dir.path().join("jobs/j1/0/0/attempt-1-3.log");
        let (ended_tx, ended) = watch::channel(false);
        let uploader = LogUploader::new(store, "jobs/j1/0/0/attempt-1-3", log.clone());
        let task = tokio::spawn(uploader.keep_stored(Duration::from_millis(20), ended));
        log.line("started");
        // Stored while running, without waiting for the end.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&file).ok().as_deref() != Some("started\n") {
            assert!(
                std::time::Instant::now() < deadline,
                "never stored while running"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        log.line("ended");
        ended_tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "started\nended\n");
    }
}
