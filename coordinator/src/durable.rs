//! Writing a whole file so that it survives a crash.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so that after a crash it holds either the
/// old contents or all of the new: a temporary `<name>.partial` beside it,
/// fsynced, renamed over it, then the directory fsynced so the rename is
/// durable too.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".partial");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    // Flushed a few MiB at a time: one flush of a large checkpoint queued
    // every Raft log fsync behind it on the same disk for hundreds of
    // milliseconds, and commit latency with them.
    for chunk in bytes.chunks(FLUSH_BYTES) {
        file.write_all(chunk)?;
        if chunk.len() == FLUSH_BYTES {
            file.sync_data()?;
        }
    }
    file.sync_all()?;
    rename(&tmp, path)
}

/// Bytes written between flushes by [`write_file`].
const FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// Renames `from` (a file already synced) over `to`, then fsyncs the
/// directory so the rename is durable too.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = to
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
