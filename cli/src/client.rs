//! Reaching the cluster: try the coordinators given, follow the leader hint
//! a follower returns (`drover-leader`), give up with one clear line.

use std::time::Duration;

use anyhow::{Result, anyhow};
use drover_net::{AuthChannel, Dialer};
use drover_proto::{LEADER_METADATA_KEY, NODE_FAILED_METADATA_KEY};
use tonic::transport::Endpoint;
use tonic::{Code, Status};

/// A request the cluster answered with an error (not a transport
/// failure). Keeps the status so callers can read its details, such as the
/// diagnostics of a rejected spec; prints as the status message alone.
#[derive(Debug)]
pub struct RpcError(pub Status);

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for RpcError {}

/// No address accepted a connection: each address with why.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach a coordinator ({}); is one running there? Name the cluster with \
             --coordinators or DROVER_COORDINATORS=host:port,...",
            self.0
        )
    }
}

impl std::error::Error for Unreachable {}

impl RpcError {
    /// The status code, when `err` is an answer from the cluster.
    pub fn code_of(err: &anyhow::Error) -> Option<Code> {
        err.downcast_ref::<RpcError>().map(|e| e.0.code())
    }
}

/// The coordinators to try, from `--coordinators` or `DROVER_COORDINATORS`,
/// and how to dial them (TLS files and token from the global flags).
#[derive(Debug, Clone)]
pub struct Coordinators {
    /// Their addresses.
    pub addresses: Vec<String>,
    /// Plaintext or mutual TLS, with or without a token.
    pub dialer: Dialer,
}

fn endpoint(dialer: &Dialer, address: &str) -> Result<Endpoint> {
    Ok(dialer
        .endpoint(address)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30)))
}

impl Coordinators {
    /// Parses a comma-separated list; dialled in plaintext until
    /// [`Coordinators::with_dialer`].
    pub fn parse(list: &str) -> Self {
        Coordinators {
            addresses: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            dialer: Dialer::plaintext(),
        }
    }

    /// Dials with `dialer`.
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Sends `bearer` instead of the token it had (the console, acting for
    /// the person at the browser).
    pub fn with_bearer(mut self, bearer: drover_net::Bearer) -> Self {
        self.dialer = self.dialer.with_bearer(bearer);
        self
    }

    /// Other addresses (a leader or one member), dialled the same way.
    pub fn at(&self, list: &str) -> Self {
        Self::parse(list).with_dialer(self.dialer.clone())
    }

    /// Calls `f` on a coordinator, following leader hints. `f` gets a fresh
    /// channel per attempt. While no coordinator can serve (an election, a
    /// restart), it keeps trying for [`UNAVAILABLE_PATIENCE`]; requests
    /// that change state must therefore be safe to repeat (submits carry an
    /// idempotency key).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.call_within(UNAVAILABLE_PATIENCE, f).await
    }

    /// [`Self::call`], giving up on an unavailable cluster after `patience`
    /// (the web console answers its page within seconds instead).
    pub async fn call_within<T, F, Fut>(&self, patience: Duration, mut f: F) -> Result<T>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let start = tokio::time::Instant::now();
        let deadline = start + patience;
        // Nothing listening at any address is told within seconds; a
        // cluster that answers but cannot serve yet (an election) gets the
        // whole patience.
        let unreachable_deadline = start + UNREACHABLE_PATIENCE.min(patience);
        let mut answered = false;
        let mut hung_up: Option<String> = None;
        let mut pause = Duration::from_millis(100);
        let mut tried: Vec<String> = Vec::new();
        loop {
            let give_up_at = if answered {
                deadline
            } else {
                unreachable_deadline
            };
            let last_error = match self.pass(&mut f, &mut tried, give_up_at).await {
                Ok(v) => return Ok(v),
                Err(PassError::Answer(status)) => return Err(RpcError(status).into()),
                // Every address hung up: a TLS-only cluster to a plaintext
                // client, unless a later pass finds one that answers (a
                // coordinator that was exiting hangs up too).
                Err(PassError::HungUp(text)) => {
                    hung_up = Some(text.clone());
                    text
                }
                Err(PassError::Unavailable(text)) => {
                    answered = true;
                    text
                }
                Err(PassError::Unreachable(text)) => text,
            };
            let give_up_at = if answered {
                deadline
            } else {
                unreachable_deadline
            };
            if tokio::time::Instant::now() + pause > give_up_at {
                tried.sort();
                tried.dedup();
                if let Some(text) = hung_up.filter(|_| !answered) {
                    return Err(anyhow!(
                        "{text}: the coordinator hung up on a plaintext connection; does the \
                         cluster use TLS? Give --tls-ca, --tls-cert and --tls-key (or \
                         DROVER_CA, DROVER_CERT, DROVER_KEY)"
                    ));
                }
                if !answered {
                    return Err(Unreachable(last_error).into());
                }
                return Err(anyhow!(
                    "no coordinator could serve the request (tried {}): {last_error}",
                    tried.join(", ")
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// A plaintext client that a TLS-only coordinator hung up on.
    fn looks_like_tls_needed(&self, status: &Status) -> bool {
        // Depending on when the hang-up lands, hyper reports a failed
        // HTTP/2 handshake, a bare transport error or a cancelled request;
        // none of these come from a coordinator's own answer.
        let message = status.message();
        !self.dialer.is_tls()
            && matches!(
                status.code(),
                Code::Unknown | Code::Cancelled | Code::Internal
            )
            && (message.contains("h2 protocol error")
                || message == "transport error"
                || message == "operation was canceled")
    }

    /// One pass over the coordinators, following hints for a few hops.
    async fn pass<T, F, Fut>(
        &self,
        f: &mut F,
        tried: &mut Vec<String>,
        give_up_at: tokio::time::Instant,
    ) -> Result<T, PassError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut queue: Vec<String> = self.addresses.clone();
        let mut last_error = "no address given".to_owned();
        // Each address that refused this pass, for a cluster nobody answers.
        let mut unreachable: Vec<String> = Vec::new();
        // A coordinator that stopped on a storage failure (a full disk):
        // final, unless another coordinator is electing a leader.
        let mut failed: Option<Status> = None;
        let mut hung_up: Option<String> = None;
        let mut answered = false;
        // A few hops at most: leader hints can race with an election.
        for _ in 0..(self.addresses.len() + 4) {
            let Some(address) = queue.first().cloned() else {
                break;
            };
            queue.remove(0);
            tried.push(address.clone());
            // A refused address (plaintext under TLS) is final, not a
            // reason to try again.
            let endpoint = endpoint(&self.dialer, &address)
                .map_err(|e| PassError::Answer(Status::invalid_argument(e.to_string())))?;
            let connect = tokio::time::timeout_at(give_up_at, self.dialer.connect(&endpoint));
            let channel = match connect.await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    unreachable.push(format!("{address}: {}", transport_cause(&e)));
                    continue;
                }
                Err(_) => {
                    unreachable.push(format!("{address}: no answer to connect"));
                    continue;
                }
            };
            match f(channel).await {
                Ok(v) => return Ok(v),
                // Checked before UNAVAILABLE, which a failed node answers
                // for storage errors other than a full disk.
                Err(status) if status.metadata().get(NODE_FAILED_METADATA_KEY).is_some() => {
                    failed = Some(status);
                }
                Err(status) if status.code() == Code::Unavailable => {
                    let hint = status
                        .metadata()
                        .get(LEADER_METADATA_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // A hint to an address not given here (the leader's
                    // advertised address, behind a proxy or NAT) is tried
                    // after the given ones, which include the leader too.
                    if let Some(leader) = hint.filter(|l| !l.is_empty()) {
                        if self.addresses.contains(&leader) {
                            queue.retain(|a| *a != leader);
                            queue.insert(0, leader);
                        } else if !queue.contains(&leader) {
                            queue.push(leader);
                        }
                    }
                    last_error = format!("{address}: {}", status.message());
                    answered = true;
                }
                // Hung up on: try the others. Safe to repeat, as every
                // call must be (see `call`).
                Err(status) if self.looks_like_tls_needed(&status) => {
                    hung_up = Some(format!("{address}: {}", status.message()));
                }
                Err(status) => return Err(PassError::Answer(status)),
            }
        }
        if let Some(status) = failed.filter(|_| !answered) {
            return Err(PassError::Answer(status));
        }
        if let Some(text) = hung_up.filter(|_| !answered) {
            return Err(PassError::HungUp(text));
        }
        Err(if answered || unreachable.is_empty() {
            PassError::Unavailable(last_error)
        } else {
            unreachable.dedup();
            PassError::Unreachable(unreachable.join("; "))
        })
    }
}

/// Why a connection failed, without tonic's repeated wrappers: its
/// top-level message is just "transport error", and hyper's connector
/// repeats "tcp connect error" before the cause (connection refused...).
fn transport_cause(e: &tonic::transport::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text != "transport error" && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

/// How long the CLI tries when no address accepts a connection at all:
/// long enough for a coordinator that is starting, short enough that a
/// wrong address is told at once.
pub const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(3);

/// How long the CLI waits for the cluster to be able to answer: long enough
/// for an election after a leader dies.
pub const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(15);

/// How one pass over the coordinators ended without a result.
enum PassError {
    /// The cluster answered with an error: final.
    Answer(Status),
    /// A coordinator answered but could not serve; worth another pass.
    Unavailable(String),
    /// No address accepted a connection.
    Unreachable(String),
    /// A coordinator hung up on the request (a plaintext client of a TLS
    /// cluster, or a coordinator exiting).
    HungUp(String),
}
