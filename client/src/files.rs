//! Files the commands write: whole, through a rename, secrets readable by
//! their owner only.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `text` through a temporary file and a rename, so a reader never
/// sees half a file; a key is readable by its owner only.
pub fn write(path: &Path, text: &str, secret: bool, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut file = options
        .open(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
