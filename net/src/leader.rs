//! One client of the cluster for every process that calls it (the CLI, the
//! console, workers, the chaos workload): it tries the coordinators given,
//! follows the leader hint a follower returns (`drover-leader`), keeps the
//! channel that last answered, and gives up with one error that says why.
//!
//! What differs between callers is a [`Policy`]: how long to wait for a
//! cluster that cannot serve yet, and whether a call whose outcome is
//! unknown may be sent again.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::worker_service_client::WorkerServiceClient;
use drover_proto::{LEADER_METADATA_KEY, NODE_FAILED_METADATA_KEY};
use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::{AuthChannel, Bearer, DialError, Dialer};

/// How a caller waits for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long to keep trying while coordinators answer but none can
    /// serve (an election, a restart).
    pub patience: Duration,
    /// How long to keep trying while no address accepts a connection: a
    /// wrong address is told within this.
    pub unreachable_patience: Duration,
    /// First pause between passes over the coordinators; it doubles up to
    /// `max_pause`.
    pub pause: Duration,
    /// Longest pause between passes.
    pub max_pause: Duration,
    /// Longest wait for one connection.
    pub connect_timeout: Duration,
    /// Longest one request may take on a connection.
    pub request_timeout: Duration,
    /// Longest a whole call may take, retries included; past it the call
    /// ends with [`CallError::TimedOut`], its outcome unknown.
    pub call_timeout: Option<Duration>,
    /// Whether a failure that leaves the outcome unknown (UNAVAILABLE
    /// without a leader hint, a hang-up) is retried on the coordinators.
    /// Only for calls that are safe to repeat; a refusal by a follower
    /// (which did nothing) is always retried.
    pub retry_unknown: bool,
}

impl Policy {
    /// A person at the CLI or the console: waits out an election, tells a
    /// wrong address within seconds. Every CLI call is safe to repeat
    /// (submits carry an idempotency key).
    pub const INTERACTIVE: Policy = Policy {
        patience: Duration::from_secs(15),
        unreachable_patience: Duration::from_secs(3),
        pause: Duration::from_millis(100),
        max_pause: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(30),
        call_timeout: None,
        retry_unknown: true,
    };

    /// A worker: polls often during an election so leases flow again soon
    /// after a new leader is elected, and leaves longer waits to its own
    /// loops. Its calls are safe to repeat (the leader fences stale ones).
    pub const WORKER: Policy = Policy {
        patience: Duration::from_secs(2),
        // Its shutdown waits on this when the cluster is gone.
        unreachable_patience: Duration::from_secs(1),
        pause: Duration::from_millis(25),
        max_pause: Duration::from_millis(25),
        connect_timeout: Duration::from_secs(2),
        // Above the longest lease long-poll.
        request_timeout: Duration::from_secs(60),
        call_timeout: None,
        retry_unknown: true,
    };
}

/// Why a call gave no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A coordinator answered with an error: final.
    #[error("{}", .0.message())]
    Answer(Status),
    /// No address accepted a connection: each address with why.
    #[error(
        "cannot reach a coordinator ({0}); is one running there? Name the cluster with \
         --coordinators or DROVER_COORDINATORS=host:port,..."
    )]
    Unreachable(String),
    /// Every coordinator tried hung up on the request.
    #[error("{}", hung_up_text(.detail, *.plaintext))]
    HungUp {
        /// The address and what the transport said.
        detail: String,
        /// Whether this client dialled without TLS (then a TLS-only cluster
        /// is the likely cause).
        plaintext: bool,
    },
    /// Coordinators answered, but none could serve within the patience.
    #[error("no coordinator could serve the request (tried {tried}): {last}")]
    Unavailable {
        /// The addresses tried.
        tried: String,
        /// The last answer.
        last: String,
    },
    /// An address this client will not dial.
    #[error(transparent)]
    Address(#[from] DialError),
    /// The call outlasted [`Policy::call_timeout`]; its outcome is unknown.
    #[error("the call timed out")]
    TimedOut,
}

fn hung_up_text(detail: &str, plaintext: bool) -> String {
    if plaintext {
        format!(
            "{detail}: the coordinator hung up on a plaintext connection; does the cluster use \
             TLS? Give --tls-ca, --tls-cert and --tls-key (or DROVER_CA, DROVER_CERT, DROVER_KEY)"
        )
    } else {
        format!("{detail}: the coordinator hung up")
    }
}

impl CallError {
    /// The status code of an answer from the cluster, if it is one.
    pub fn answer_code(&self) -> Option<Code> {
        match self {
            CallError::Answer(status) => Some(status.code()),
            _ => None,
        }
    }

    /// The cluster's answer, if it gave one.
    pub fn answer(&self) -> Option<&Status> {
        match self {
            CallError::Answer(status) => Some(status),
            _ => None,
        }
    }

    /// As a gRPC status, for callers that speak in statuses.
    pub fn into_status(self) -> Status {
        match self {
            CallError::Answer(status) => status,
            CallError::TimedOut => Status::deadline_exceeded("the call timed out"),
            CallError::Address(e) => Status::invalid_argument(e.to_string()),
            other => Status::unavailable(other.to_string()),
        }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        e.into_status()
    }
}

/// The coordinators of one cluster and how to dial them. Clones share the
/// channel that last answered.
#[derive(Debug, Clone)]
pub struct Coordinators {
    addresses: Vec<String>,
    dialer: Dialer,
    policy: Policy,
    /// The address and channel of the last call that succeeded: tried
    /// first, dropped when it fails.
    current: Arc<Mutex<Option<(String, AuthChannel)>>>,
}

/// How one pass over the coordinators ended without a result.
enum PassError {
    /// Final: returned as is.
    Final(CallError),
    /// A coordinator answered but could not serve; worth another pass.
    Unavailable(String),
    /// No address accepted a connection.
    Unreachable(String),
    /// A coordinator hung up on the request (a plaintext client of a TLS
    /// cluster, or a coordinator exiting).
    HungUp(String),
}

/// What to do with a failed request.
enum Verdict {
    /// A follower refused (it did nothing): try its hint, then the others.
    Refused(Option<String>),
    /// The node stopped on a storage failure: final unless another
    /// coordinator can still serve.
    NodeFailed,
    /// The outcome is unknown and the policy allows sending it again.
    RetryUnknown,
    /// The connection went away under the request.
    HungUp,
    /// Return it.
    Final,
}

impl Coordinators {
    /// The coordinators at `addresses`, dialled in plaintext until
    /// [`Self::with_dialer`], with the interactive policy until
    /// [`Self::with_policy`].
    pub fn new(addresses: Vec<String>) -> Self {
        Coordinators {
            addresses,
            dialer: Dialer::plaintext(),
            policy: Policy::INTERACTIVE,
            current: Arc::default(),
        }
    }

    /// Parses a comma-separated list (`--coordinators`).
    pub fn parse(list: &str) -> Self {
        Self::new(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Dials with `dialer` (mutual TLS, a token).
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        // A channel carries its dialer's credentials: never reuse one
        // made with others.
        self.current = Arc::default();
        self
    }

    /// Sends `bearer` instead of the token it had (the console, acting for
    /// the person at the browser).
    pub fn with_bearer(self, bearer: Bearer) -> Self {
        let dialer = self.dialer.clone().with_bearer(bearer);
        self.with_dialer(dialer)
    }

    /// Waits as `policy` says.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Other addresses (a leader or one member), dialled the same way.
    pub fn at(&self, list: &str) -> Self {
        Self::parse(list)
            .with_dialer(self.dialer.clone())
            .with_policy(self.policy)
    }

    /// The addresses given.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// How they are dialled.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Calls `f` on a coordinator, following leader hints, for as long as
    /// the policy's patience.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_within(self.policy.patience, f).await
    }

    /// [`Self::call`] with a job service client.
    pub async fn jobs<T, F, Fut>(&self, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(JobServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| f(JobServiceClient::new(ch))).await
    }

    /// [`Self::call`] with an admin service client.
    pub async fn admin<T, F, Fut>(&self, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(AdminServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| f(AdminServiceClient::new(ch))).await
    }

    /// [`Self::call`] with a worker service client.
    pub async fn workers<T, F, Fut>(&self, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(WorkerServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| f(WorkerServiceClient::new(ch))).await
    }

    /// [`Self::call`], giving up on a cluster that cannot serve after
    /// `patience` (the web console answers its page within seconds).
    pub async fn call_within<T, F, Fut>(&self, patience: Duration, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let start = Instant::now();
        let call_deadline = self.policy.call_timeout.map(|t| start + t);
        let deadline = start + patience;
        // Nothing listening at any address is told within seconds; a
        // cluster that answers but cannot serve yet (an election) gets the
        // whole patience.
        let unreachable_deadline = start + self.policy.unreachable_patience.min(patience);
        let mut answered = false;
        let mut hung_up: Option<String> = None;
        let mut pause = self.policy.pause;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let give_up_at = if answered {
                deadline
            } else {
                unreachable_deadline
            };
            let pass = self.pass(&mut f, &mut tried, give_up_at, call_deadline);
            let last_error = match pass.await {
                Ok(v) => return Ok(v),
                Err(PassError::Final(e)) => return Err(e),
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
            let give_up_at = call_deadline.map_or(give_up_at, |d| d.min(give_up_at));
            if Instant::now() + pause > give_up_at {
                tried.sort();
                tried.dedup();
                if let Some(detail) = hung_up.filter(|_| !answered) {
                    return Err(CallError::HungUp {
                        detail,
                        plaintext: !self.dialer.is_tls(),
                    });
                }
                if !answered {
                    return Err(CallError::Unreachable(last_error));
                }
                return Err(CallError::Unavailable {
                    tried: tried.join(", "),
                    last: last_error,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.policy.max_pause);
        }
    }

    /// What a failed request means for this call.
    fn judge(&self, status: &Status) -> Verdict {
        // Checked before UNAVAILABLE, which a failed node answers for
        // storage errors other than a full disk.
        if status.metadata().get(NODE_FAILED_METADATA_KEY).is_some() {
            return Verdict::NodeFailed;
        }
        if status.code() == Code::Unavailable {
            if let Some(hint) = status.metadata().get(LEADER_METADATA_KEY) {
                let hint = hint.to_str().ok().filter(|h| !h.is_empty());
                return Verdict::Refused(hint.map(str::to_owned));
            }
            return if self.policy.retry_unknown {
                Verdict::RetryUnknown
            } else {
                Verdict::Final
            };
        }
        if self.policy.retry_unknown && looks_hung_up(status) {
            return Verdict::HungUp;
        }
        Verdict::Final
    }

    fn forget(&self, address: &str) {
        if let Ok(mut current) = self.current.lock()
            && current.as_ref().is_some_and(|(a, _)| a == address)
        {
            *current = None;
        }
    }

    /// A channel to `address`: the one that last answered, or a new one.
    /// `Ok(Err(why))` when nothing answered there; `Err` for an address
    /// this dialer refuses, which is final (plaintext under TLS).
    async fn channel(
        &self,
        address: &str,
        give_up_at: Instant,
    ) -> Result<Result<AuthChannel, String>, DialError> {
        let cached = self.current.lock().ok().and_then(|c| c.clone());
        if let Some((at, channel)) = cached
            && at == address
        {
            return Ok(Ok(channel));
        }
        let endpoint = endpoint(&self.dialer, address, &self.policy)?;
        Ok(
            match tokio::time::timeout_at(give_up_at, self.dialer.connect(&endpoint)).await {
                Ok(Ok(channel)) => Ok(channel),
                Ok(Err(e)) => Err(format!("{address}: {}", transport_cause(&e))),
                Err(_) => Err(format!("{address}: no answer to connect")),
            },
        )
    }

    /// One pass over the coordinators, following hints for a few hops.
    async fn pass<T, F, Fut>(
        &self,
        f: &mut F,
        tried: &mut Vec<String>,
        give_up_at: Instant,
        call_deadline: Option<Instant>,
    ) -> Result<T, PassError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        // The coordinator that last answered first: most likely the leader.
        let mut queue: Vec<String> = Vec::with_capacity(self.addresses.len() + 1);
        if let Some((address, _)) = self.current.lock().ok().and_then(|c| c.clone()) {
            queue.push(address);
        }
        for address in &self.addresses {
            if !queue.contains(address) {
                queue.push(address.clone());
            }
        }
        let mut last_error = "no address given".to_owned();
        // Each address that refused a connection this pass.
        let mut unreachable: Vec<String> = Vec::new();
        let mut failed: Option<Status> = None;
        let mut hung_up: Option<String> = None;
        let mut answered = false;
        // A few hops at most: leader hints can race with an election.
        for _ in 0..(self.addresses.len() + 4) {
            if queue.is_empty() {
                break;
            }
            let address = queue.remove(0);
            tried.push(address.clone());
            let give_up = call_deadline.map_or(give_up_at, |d| d.min(give_up_at));
            let connected = self.channel(&address, give_up).await;
            let connected = connected.map_err(|e| PassError::Final(CallError::Address(e)))?;
            let channel = match connected {
                Ok(channel) => channel,
                Err(why) => {
                    unreachable.push(why);
                    continue;
                }
            };
            let answer = match call_deadline {
                Some(d) => match tokio::time::timeout_at(d, f(channel.clone())).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        self.forget(&address);
                        return Err(PassError::Final(CallError::TimedOut));
                    }
                },
                None => f(channel.clone()).await,
            };
            let status = match answer {
                Ok(v) => {
                    if let Ok(mut current) = self.current.lock() {
                        *current = Some((address, channel));
                    }
                    return Ok(v);
                }
                Err(status) => status,
            };
            self.forget(&address);
            match self.judge(&status) {
                Verdict::Final => return Err(PassError::Final(CallError::Answer(status))),
                Verdict::NodeFailed => failed = Some(status),
                Verdict::HungUp => hung_up = Some(format!("{address}: {}", status.message())),
                Verdict::RetryUnknown => {
                    last_error = format!("{address}: {}", status.message());
                    answered = true;
                }
                Verdict::Refused(hint) => {
                    if let Some(leader) = hint {
                        follow_hint(&mut queue, &self.addresses, leader);
                    }
                    last_error = format!("{address}: {}", status.message());
                    answered = true;
                }
            }
        }
        if let Some(status) = failed.filter(|_| !answered) {
            return Err(PassError::Final(CallError::Answer(status)));
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

fn endpoint(dialer: &Dialer, address: &str, policy: &Policy) -> Result<Endpoint, DialError> {
    Ok(dialer
        .endpoint(address)?
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.request_timeout))
}

/// Puts a leader hint into the queue. A hint naming a given address goes
/// first. One naming another address (the leader's advertised address,
/// when the cluster is reached through a proxy or NAT) goes after the given
/// ones, which include the leader too.
fn follow_hint(queue: &mut Vec<String>, given: &[String], leader: String) {
    if given.contains(&leader) {
        queue.retain(|a| *a != leader);
        queue.insert(0, leader);
    } else if !queue.contains(&leader) {
        queue.push(leader);
    }
}

/// A request the connection failed under, rather than one a coordinator
/// answered: depending on when a hang-up lands, hyper reports a failed
/// HTTP/2 handshake, a bare transport error or a cancelled request.
fn looks_hung_up(status: &Status) -> bool {
    let message = status.message();
    match status.code() {
        Code::Unknown | Code::Cancelled => true,
        Code::Internal => message.contains("h2 protocol error") || message == "transport error",
        _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_to_a_given_address_goes_first_and_another_goes_last() {
        let given = vec!["a:1".to_owned(), "b:1".to_owned(), "c:1".to_owned()];
        let mut queue = vec!["b:1".to_owned(), "c:1".to_owned()];
        follow_hint(&mut queue, &given, "c:1".to_owned());
        assert_eq!(queue, ["c:1", "b:1"]);
        follow_hint(&mut queue, &given, "proxy:9".to_owned());
        assert_eq!(queue, ["c:1", "b:1", "proxy:9"]);
        follow_hint(&mut queue, &given, "proxy:9".to_owned());
        assert_eq!(queue.len(), 3, "a hint is queued once");
    }

    #[test]
    fn a_follower_refusal_is_retried_and_an_unknown_outcome_only_when_allowed() {
        let refusal = {
            let mut s = Status::unavailable("not the leader");
            s.metadata_mut()
                .insert(LEADER_METADATA_KEY, "b:1".parse().expect("ascii"));
            s
        };
        let cautious = Coordinators::parse("a:1").with_policy(Policy {
            retry_unknown: false,
            ..Policy::INTERACTIVE
        });
        let patient = Coordinators::parse("a:1");
        for c in [&cautious, &patient] {
            assert!(matches!(c.judge(&refusal), Verdict::Refused(Some(h)) if h == "b:1"));
            assert!(matches!(
                c.judge(&Status::invalid_argument("bad")),
                Verdict::Final
            ));
        }
        let lost = Status::unavailable("proposal dropped");
        assert!(matches!(cautious.judge(&lost), Verdict::Final));
        assert!(matches!(patient.judge(&lost), Verdict::RetryUnknown));
        let cut = Status::unknown("transport error");
        assert!(matches!(cautious.judge(&cut), Verdict::Final));
        assert!(matches!(patient.judge(&cut), Verdict::HungUp));
    }
}
