//! Where an attempt's outputs go and what its manifest says.
//!
//! Every attempt writes under its own prefix (`jobs/<job>/<template>/
//! <partition>/attempt-<n>-<token>`, chosen by the coordinator) below the
//! worker's data root, so two attempts of one task, even a fenced one that
//! keeps running, never write the same file. The coordinator records the
//! manifest of exactly one accepted attempt; that one is the task's output.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use drover_proto::v1::{OutputFile, OutputManifest};
use sha2::{Digest, Sha256};

use crate::executors::TaskError;

/// Files listed in one manifest at most; an attempt writing more is failed
/// rather than producing a manifest the coordinator would refuse.
pub const MANIFEST_FILES_MAX: usize = 10_000;
/// Directory levels walked below the attempt's prefix.
const DEPTH_MAX: usize = 32;

/// The directory of an attempt's outputs: `root/prefix`, refusing a prefix
/// that would escape the root.
pub fn attempt_dir(root: &Path, prefix: &str) -> Result<PathBuf, TaskError> {
    let relative = Path::new(prefix);
    let safe = !prefix.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return Err(TaskError::permanent(format!(
            "output prefix `{prefix}` is not a relative path below the data root"
        )));
    }
    Ok(root.join(relative))
}

/// Lists every file under `dir` with its size and SHA-256, sorted by path.
/// Hashing is CPU and disk work, so it runs off the async runtime.
pub async fn manifest(dir: PathBuf, prefix: String) -> Result<OutputManifest, TaskError> {
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        walk(&dir, &dir, 0, &mut files)?;
        files.sort_by(|a: &OutputFile, b| a.path.cmp(&b.path));
        Ok(OutputManifest {
            output_prefix: prefix,
            files,
            ..OutputManifest::default()
        })
    })
    .await
    .map_err(|e| TaskError::retryable(format!("listing outputs: {e}")))?
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<OutputFile>) -> Result<(), TaskError> {
    let io = |e: std::io::Error| TaskError::retryable(format!("{}: {e}", dir.display()));
    if depth > DEPTH_MAX {
        return Err(TaskError::permanent(format!(
            "outputs nest deeper than {DEPTH_MAX} directories at {}",
            dir.display()
        )));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // An attempt that wrote nothing has no directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let kind = entry.file_type().map_err(io)?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, depth + 1, out)?;
        } else if kind.is_file() {
            if out.len() >= MANIFEST_FILES_MAX {
                return Err(TaskError::permanent(format!(
                    "the attempt wrote more than {MANIFEST_FILES_MAX} files"
                )));
            }
            let (bytes, sha256) = hash_file(&path).map_err(io)?;
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(OutputFile {
                path: parts.join("/"),
                rows: 0,
                bytes,
                sha256,
            });
        }
        // Symlinks and special files are not outputs: a link could point
        // anywhere, including another attempt's files.
    }
    Ok(())
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cannot_escape_the_root() {
        let root = Path::new("/data");
        assert_eq!(
            attempt_dir(root, "jobs/j1/0/2/attempt-1-7").unwrap(),
            Path::new("/data/jobs/j1/0/2/attempt-1-7")
        );
        for bad in ["", "../x", "/etc", "jobs/../../x", "./jobs"] {
            assert!(attempt_dir(root, bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn manifest_lists_files_sorted_with_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/z.txt"), b"abc").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"").unwrap();
        let m = manifest(dir.path().to_owned(), "p".into()).await.unwrap();
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "b/z.txt"]);
        assert_eq!(m.files[1].bytes, 3);
        assert_eq!(
            m.files[1].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(m.output_prefix, "p");
    }

    #[tokio::test]
    async fn an_attempt_that_wrote_nothing_has_an_empty_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(dir.path().join("absent"), "p".into())
            .await
            .unwrap();
        assert!(m.files.is_empty());
    }
}
