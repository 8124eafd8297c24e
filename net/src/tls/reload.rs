//! A configuration rebuilt when its files change.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{TlsError, TlsFiles};

/// How often, at most, the files' modification times are looked at (on
/// the next connection after this much time).
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a file looked like when last read: a rotation that rewrites or
/// swaps it (a Kubernetes secret's symlink flip) changes one of these.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

struct Current<C> {
    config: Arc<C>,
    stamps: [Stamp; 3],
    checked: Instant,
}

/// The configuration built from some [`TlsFiles`], rebuilt when they
/// change. A rebuild that fails keeps the last good configuration and logs
/// why, so a half-written rotation never takes a node off the network.
pub struct Reloading<C> {
    files: TlsFiles,
    build: fn(&TlsFiles) -> Result<C, TlsError>,
    current: Mutex<Current<C>>,
}

impl<C> std::fmt::Debug for Reloading<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<C> Reloading<C> {
    /// Builds the first configuration; an error here is the caller's to
    /// report (a process should not start with unusable TLS files).
    pub fn new(
        files: TlsFiles,
        build: fn(&TlsFiles) -> Result<C, TlsError>,
    ) -> Result<Self, TlsError> {
        let stamps = files.all().map(stamp);
        let config = Arc::new(build(&files)?);
        Ok(Self {
            files,
            build,
            current: Mutex::new(Current {
                config,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a new connection: rebuilt first if the files
    /// changed since they were last looked at.
    pub fn current(&self) -> Arc<C> {
        let mut current = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.checked.elapsed() >= RELOAD_CHECK_EVERY {
            current.checked = Instant::now();
            let stamps = self.files.all().map(stamp);
            if stamps != current.stamps {
                // Remember the new stamps even when the build fails: a
                // half-written file is retried when it changes again, not
                // on every connection.
                current.stamps = stamps;
                match (self.build)(&self.files) {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificate, key and CA");
                        current.config = Arc::new(config);
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS files changed but cannot be used; keeping the previous ones"
                    ),
                }
            }
        }
        Arc::clone(&current.config)
    }
}
