//! What a person asks of a Drover cluster, and how the answers look: the
//! commands behind `drover job`, `schedule`, `cluster`, `worker` (the
//! subcommands), `token`, `policy` and `cluster backup`/`restore`, each
//! with its arguments (clap), its requests through the shared
//! leader-following client, and its tables and stable `--json` shapes.
//!
//! The `drover` binary parses the command line and hands each of these
//! to its module; this crate starts no coordinator or worker.
//!
//! Errors are `anyhow` errors printed as one line by the binary: every
//! one ends a command and is shown to a person, never matched on.

#[macro_use]
pub mod stdout;

pub mod backup;
pub mod cluster;
pub mod files;
pub mod job;
pub mod policies;
pub mod schedule;
pub mod tokens;
pub mod workers;

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

/// A multi-threaded runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Parses `ID=ADDR` entries of the flag `flag`.
pub fn parse_id_addresses(entries: &[String], flag: &str) -> Result<BTreeMap<u64, String>> {
    let mut parsed = BTreeMap::new();
    for entry in entries {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| anyhow!("`{entry}` is not ID=ADDR (e.g. 2=10.0.0.2:7070)"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| anyhow!("`{id}` in `{entry}` is not a node id"))?;
        if id == 0 {
            bail!("node ids start at 1");
        }
        if parsed.insert(id, addr.trim().to_owned()).is_some() {
            bail!("node {id} is listed twice in {flag}");
        }
    }
    Ok(parsed)
}
