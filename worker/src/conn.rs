//! Reaching the leader from a worker: one cached channel, leader hints
//! followed, the other coordinators tried in turn, a bounded number of hops.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_net::{AuthChannel, Dialer};
use drover_proto::LEADER_METADATA_KEY;
use drover_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

/// A connection to the cluster that follows the leader: one cached
/// channel, replaced when the node behind it stops serving.
#[derive(Debug, Clone)]
pub struct Conn {
    addresses: Vec<String>,
    dialer: Dialer,
    current: Arc<Mutex<Option<(String, AuthChannel)>>>,
}

/// Wait between rounds over every coordinator while none leads.
const ELECTION_POLL: Duration = Duration::from_millis(25);

fn endpoint(dialer: &Dialer, address: &str) -> Option<Endpoint> {
    dialer.endpoint(address).ok().map(|e| {
        e.connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
    })
}

impl Conn {
    /// A connection that starts with the first of `addresses`.
    pub fn new(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            dialer: Dialer::plaintext(),
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// Dials with `dialer` (mutual TLS, a token).
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Calls `f` with a worker client on the leader, following hints and
    /// trying the other coordinators; gives up after a bounded number of
    /// hops.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, Status>
    where
        F: FnMut(WorkerServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_channel(|channel| f(WorkerServiceClient::new(channel)))
            .await
    }

    /// [`Conn::call`] for any service: `f` gets the leader's channel.
    pub async fn call_channel<T, F, Fut>(&self, mut f: F) -> Result<T, Status>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut candidates: Vec<String> = Vec::new();
        let mut last = Status::unavailable("no coordinator reachable");
        for hop in 0..(self.addresses.len() * 2 + 4) {
            let cached = self.current.lock().ok().and_then(|c| c.clone());
            let (address, channel) = match cached {
                Some(c) => c,
                None => {
                    if candidates.is_empty() {
                        candidates = self.addresses.clone();
                        // Between rounds over every coordinator (an
                        // election is running, which takes a few hundred
                        // milliseconds): short, so leases flow again soon
                        // after a new leader is elected.
                        if hop > 0 {
                            tokio::time::sleep(ELECTION_POLL).await;
                        }
                    }
                    let address = candidates.remove(0);
                    let Some(endpoint) = endpoint(&self.dialer, &address) else {
                        continue;
                    };
                    match self.dialer.connect(&endpoint).await {
                        Ok(ch) => (address, ch),
                        Err(e) => {
                            last = Status::unavailable(format!("{address}: {e}"));
                            continue;
                        }
                    }
                }
            };
            if let Ok(mut c) = self.current.lock() {
                *c = Some((address.clone(), channel.clone()));
            }
            match f(channel).await {
                Ok(v) => return Ok(v),
                Err(status)
                    if matches!(
                        status.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled
                    ) =>
                {
                    let hint = status
                        .metadata()
                        .get(LEADER_METADATA_KEY)
                        .and_then(|v| v.to_str().ok())
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned);
                    if let Ok(mut c) = self.current.lock() {
                        *c = None;
                    }
                    if let Some(leader) = hint {
                        follow_hint(&mut candidates, &self.addresses, leader);
                    }
                    last = status;
                }
                Err(status) => return Err(status),
            }
        }
        Err(last)
    }
}

/// Puts a leader hint into the candidates. A hint naming a configured
/// address goes first. One naming another address (the leader's advertised
/// address, when this worker reaches the cluster through a proxy or NAT)
/// goes after the configured addresses, which include the leader too.
fn follow_hint(candidates: &mut Vec<String>, configured: &[String], leader: String) {
    if configured.contains(&leader) {
        candidates.retain(|c| *c != leader);
        candidates.insert(0, leader);
    } else {
        if candidates.is_empty() {
            candidates.extend(configured.iter().cloned());
        }
        if !candidates.contains(&leader) {
            candidates.push(leader);
        }
    }
}
