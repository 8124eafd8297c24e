//! Reads a few series from a coordinator's or worker's Prometheus
//! `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest `/metrics` page read; a coordinator's is a few tens of KiB.
const PAGE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Unlabelled series by name, as the page printed them.
#[derive(Debug, Clone, Default)]
pub struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// The value of an unlabelled series, 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}

/// GETs `http://<addr>/metrics` (plain HTTP/1.1, one request per
/// connection) and keeps the unlabelled series.
pub async fn scrape(addr: SocketAddr) -> Result<Scrape> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut page = Vec::new();
        stream.take(PAGE_BYTES_MAX).read_to_end(&mut page).await?;
        Ok::<_, std::io::Error>(page)
    };
    let page = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .with_context(|| format!("scraping {addr}: timed out"))?
        .with_context(|| format!("scraping {addr}"))?;
    let text = String::from_utf8_lossy(&page);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("scraping {addr}: no HTTP response");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "scraping {addr}: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(parse(body))
}

/// Unlabelled `name value` lines of a Prometheus text page.
fn parse(body: &str) -> Scrape {
    Scrape(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                // `name value` or `name{labels} value`: the series is all
                // before the last space.
                let (series, value) = l.trim_end().rsplit_once(' ')?;
                let value = value.parse().ok()?;
                Some((series.to_owned(), value))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_kept_by_name_and_labels() {
        let s = parse(
            "# HELP x y\ndrover_raft_log_fsync_seconds_count 42\ndrover_tasks{state=\"ready\"} 3\ndrover_raft_entry_commands_sum 1.5e3\n",
        );
        assert_eq!(s.get("drover_raft_log_fsync_seconds_count"), 42.0);
        assert_eq!(s.get("drover_raft_entry_commands_sum"), 1500.0);
        assert_eq!(
            s.get("drover_tasks"),
            0.0,
            "a labelled series by its name alone"
        );
        assert_eq!(s.get("drover_tasks{state=\"ready\"}"), 3.0);
    }
}
