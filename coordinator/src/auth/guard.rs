//! The guard in front of every gRPC service: identifies the caller, refuses
//! what its role does not open, hands the services a [`Caller`], and audits.
//!
//! It is a tower layer on the whole server, so it sees the method path
//! (tonic's interceptors do not) and no service can be added without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use drover_net::PeerIdentity;
use tonic::Status;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service as TowerService};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::audit::{AuditLog, AuditRecord, now_rfc3339};
use super::policy::{Caller, Grant, Service};
use super::rate::{Limiter, Rate};
use super::secret::Presented;
use crate::metrics::{Metrics, Refusal};
use crate::raft::node::NodeHandle;
use crate::service::node_status;
use crate::state::StateMachine;
use crate::state::security::{CertificateBinding, Token};

/// How long a token looked up stays cached. A revocation takes at most this
/// long (after it applies on the answering node) to refuse requests.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// Token ids cached at most; the cache is emptied when full, so ids made up
/// by an attacker cannot grow it.
const TOKEN_CACHE_MAX: usize = 4096;

/// Longest wait for the cluster's commit when a token or binding is not in
/// this node's state.
const MISS_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `authorization` header read.
const AUTHORIZATION_MAX: usize = 256;

/// How the guard behaves.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Whether requests need credentials. Off, every caller may do
    /// everything, as in the plaintext quick start.
    pub required: bool,
    /// This coordinator, for audit records.
    pub node_id: u64,
    /// Where audit records go; `None` keeps none.
    pub audit: Option<AuditLog>,
    /// Per-caller limit on the job and admin services; `None` for none.
    pub client_rate: Option<Rate>,
    /// Per-connection limit on the worker service; `None` for none.
    pub worker_rate: Option<Rate>,
    /// Where refusals are counted; `None` counts none.
    pub metrics: Option<Metrics>,
}

/// The layer; add it with `Server::builder().layer(...)`.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: AuthSettings,
    book: TokenBook,
    client_limit: Option<Limiter>,
    worker_limit: Option<Limiter>,
}

impl GuardLayer {
    /// A guard reading tokens from `node`'s state.
    pub fn new(settings: AuthSettings, node: NodeHandle) -> Self {
        Self {
            shared: Arc::new(Shared {
                client_limit: settings.client_rate.map(Limiter::new),
                worker_limit: settings.worker_rate.map(Limiter::new),
                settings,
                book: TokenBook {
                    node,
                    tokens: Mutex::new(HashMap::new()),
                    certificates: Mutex::new(HashMap::new()),
                },
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The guarded service.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, R> TowerService<http::Request<B>> for Guard<S>
where
    S: TowerService<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let method = request.uri().path().trim_start_matches('/').to_owned();
            let service = Service::of_path(&method);
            if service == Service::Raft {
                return inner.call(request).await;
            }
            let (certificate, peer) = peer_of(request.extensions());
            let caller = match shared
                .identify(request.headers(), service, certificate)
                .await
            {
                Ok(caller) => caller,
                Err(status) => {
                    shared.audit(&method, None, &peer, &status);
                    shared.count(service, Refusal::Unauthenticated);
                    return Ok(status.into_http());
                }
            };
            if !service.admits(&caller.grant) {
                let status = Status::permission_denied(format!(
                    "{} is a {} and may not call {}, which is open to {}",
                    caller.identity,
                    caller.role_name(),
                    method.trim_start_matches("drover.v1."),
                    service.who_may()
                ));
                shared.audit(&method, Some(&caller), &peer, &status);
                shared.count(service, Refusal::PermissionDenied);
                return Ok(status.into_http());
            }
            if let Err(status) = shared.limit(service, &caller, &peer) {
                shared.count(service, Refusal::RateLimited);
                return Ok(status.into_http());
            }
            request.extensions_mut().insert(caller.clone());
            let response = inner.call(request).await?;
            let status = Status::from_header_map(response.headers());
            let refused = match status.as_ref().map(Status::code) {
                Some(tonic::Code::PermissionDenied) => Some(Refusal::PermissionDenied),
                Some(tonic::Code::Unauthenticated) => Some(Refusal::Unauthenticated),
                _ => None,
            };
            if let Some(reason) = refused {
                shared.count(service, reason);
            }
            let refused = refused.is_some();
            if refused || audited(service, &method) {
                let status = status.unwrap_or_else(|| Status::ok(""));
                shared.audit(&method, Some(&caller), &peer, &status);
            }
            Ok(response)
        })
    }
}

impl Shared {
    /// Who is calling: the token in `authorization` if there is one (a bad
    /// one is refused, never ignored), else a worker certificate.
    async fn identify(
        &self,
        headers: &http::HeaderMap,
        service: Service,
        certificate: Option<PeerIdentity>,
    ) -> Result<Caller, Status> {
        if !self.settings.required {
            return Ok(Caller::anonymous(certificate));
        }
        if let Some(value) = headers.get(drover_net::credentials::AUTHORIZATION) {
            let token = self.token_of(value).await?;
            return Ok(Caller::with_token(&token, certificate));
        }
        match certificate {
            Some(PeerIdentity::Worker(name)) => Ok(Caller::worker_certificate(&name)),
            Some(PeerIdentity::Client(name)) => {
                let certificate = PeerIdentity::Client(name);
                match self.book.binding(&certificate.to_string()).await? {
                    Some(binding) => Ok(Caller::bound_certificate(certificate, &binding)),
                    None if !service.needs_credentials() => Ok(Caller {
                        identity: "unauthenticated".to_owned(),
                        token_id: None,
                        certificate: Some(certificate),
                        grant: Grant::Nothing,
                    }),
                    None => Err(Status::unauthenticated(format!(
                        "this cluster requires a token, and certificate {certificate} has no role: \
                         give --auth-token (or set DROVER_TOKEN), or have an operator bind the \
                         certificate with `drover token bind {certificate} --role ...`"
                    ))),
                }
            }
            _ if !service.needs_credentials() => Ok(Caller {
                identity: "unauthenticated".to_owned(),
                token_id: None,
                certificate,
                grant: Grant::Nothing,
            }),
            _ => Err(Status::unauthenticated(
                "this cluster requires a token: give --auth-token (or set DROVER_TOKEN); \
                 an operator creates one with `drover token create`",
            )),
        }
    }

    /// The live token a `Bearer drv_...` header names.
    async fn token_of(&self, value: &http::HeaderValue) -> Result<Token, Status> {
        let malformed = || {
            Status::unauthenticated(
                "the authorization header is not `Bearer drv_<id>_<secret>`; check --auth-token",
            )
        };
        if value.len() > AUTHORIZATION_MAX {
            return Err(malformed());
        }
        let text = value.to_str().map_err(|_| malformed())?;
        let presented = text
            .strip_prefix("Bearer ")
            .and_then(|t| Presented::parse(t.trim()))
            .ok_or_else(malformed)?;
        let Some(token) = self.book.get(presented.id).await? else {
            return Err(Status::unauthenticated(format!(
                "token {} is unknown or was revoked",
                presented.id
            )));
        };
        if !presented.matches(&token.secret_sha256) {
            return Err(Status::unauthenticated(format!(
                "token {} does not match its secret",
                presented.id
            )));
        }
        if let Some(expires) = token.expires_ms
            && expires <= crate::clock::wall_now_ms()
        {
            return Err(Status::unauthenticated(format!(
                "token {} expired at {}",
                token.id,
                chrono::DateTime::from_timestamp_millis(expires)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            )));
        }
        Ok(token)
    }

    /// Takes the request from its caller's bucket: `RESOURCE_EXHAUSTED`
    /// with the wait when it is empty.
    fn limit(&self, service: Service, caller: &Caller, peer: &str) -> Result<(), Status> {
        let (limiter, key) = match service {
            // Per connection: a fleet shares one worker identity.
            Service::Worker => (&self.worker_limit, peer),
            Service::Job | Service::Admin | Service::WhoAmI | Service::Bootstrap => {
                let key = match (&caller.token_id, &caller.certificate) {
                    (Some(id), _) => id.as_str(),
                    (None, Some(_)) => caller.identity.as_str(),
                    // Nothing to go by but the connection.
                    (None, None) => peer,
                };
                (&self.client_limit, key)
            }
            Service::Raft | Service::Open => return Ok(()),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check(key, Instant::now()).map_err(|wait| {
            Status::resource_exhausted(format!(
                "rate limit: {} requests a second per {} (bursts of {}); retry in {} ms",
                limiter.rate().per_second,
                if service == Service::Worker {
                    "worker connection"
                } else {
                    "client"
                },
                limiter.rate().burst,
                wait.as_millis().max(1)
            ))
        })
    }

    fn count(&self, service: Service, reason: Refusal) {
        if let Some(metrics) = &self.settings.metrics {
            metrics.observe_refusal(service.label(), reason);
        }
    }

    fn audit(&self, method: &str, caller: Option<&Caller>, peer: &str, status: &Status) {
        let Some(log) = &self.settings.audit else {
            return;
        };
        log.record(AuditRecord {
            time: now_rfc3339(),
            node: self.settings.node_id,
            method: method.trim_start_matches("drover.v1.").to_owned(),
            caller: caller.map_or("unauthenticated".to_owned(), |c| c.identity.clone()),
            role: caller.map_or("none", |c| c.role_name()).to_owned(),
            peer: peer.to_owned(),
            outcome: if status.code() == tonic::Code::Ok {
                "OK".to_owned()
            } else {
                format!("{:?}", status.code())
            },
            message: status.message().to_owned(),
        });
    }
}

/// The rpcs recorded even when they succeed: everything that changes the
/// cluster, its members, settings or tokens, or reads all of it (backups).
fn audited(service: Service, method: &str) -> bool {
    let name = method.rsplit('/').next().unwrap_or_default();
    match service {
        Service::Admin => !matches!(
            name,
            "ClusterStatus"
                | "ListWorkers"
                | "StateDigest"
                | "ListTokens"
                | "ListNamespacePolicies"
                | "ListCertificateBindings"
        ),
        Service::Bootstrap => true,
        Service::Job => matches!(name, "SubmitJob" | "CancelJob" | "RetryJob"),
        _ => false,
    }
}

/// The TLS peer's identity and the remote address, from what tonic put in
/// the request's extensions.
fn peer_of(extensions: &http::Extensions) -> (Option<PeerIdentity>, String) {
    if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let certificate = tls
            .peer_certs()
            .and_then(|certs| certs.first().and_then(PeerIdentity::from_certificate));
        let peer = tls.get_ref().remote_addr();
        return (certificate, peer.map(|p| p.to_string()).unwrap_or_default());
    }
    let peer = extensions
        .get::<TcpConnectInfo>()
        .and_then(|c| c.remote_addr());
    (None, peer.map(|p| p.to_string()).unwrap_or_default())
}

/// One cache of the book: entries by key, each with when it was read.
type Cache<T> = Mutex<HashMap<String, (Instant, Option<T>)>>;

/// Tokens and certificate bindings as this node's state holds them (a miss
/// confirmed by a linearizable read), cached briefly: a lookup is a round
/// trip to the Raft thread, and workers call many times a second.
#[derive(Debug)]
struct TokenBook {
    node: NodeHandle,
    tokens: Cache<Token>,
    certificates: Cache<CertificateBinding>,
}

impl TokenBook {
    async fn get(&self, id: &str) -> Result<Option<Token>, Status> {
        self.cached(&self.tokens, id, |sm, id| {
            sm.core().security.tokens.get(id).cloned()
        })
        .await
    }

    /// The role bound to client certificate `identity` (`client/NAME`).
    async fn binding(&self, identity: &str) -> Result<Option<CertificateBinding>, Status> {
        self.cached(&self.certificates, identity, |sm, identity| {
            sm.core().security.certificates.get(identity).cloned()
        })
        .await
    }

    async fn cached<T: Clone + Send + 'static>(
        &self,
        cache: &Cache<T>,
        key: &str,
        read: fn(&StateMachine, &str) -> Option<T>,
    ) -> Result<Option<T>, Status> {
        if let Ok(cache) = cache.lock()
            && let Some((at, value)) = cache.get(key)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(value.clone());
        }
        let wanted = key.to_owned();
        let mut value = self
            .node
            .read_local(move |sm| read(sm, &wanted))
            .await
            .map_err(node_status)?;
        if value.is_none() && !self.node.status().is_leader {
            // A follower may not have applied the entry that created it yet
            // while the leader, which applies before it answers, has told
            // the client "created": a miss there is confirmed against the
            // cluster's commit before it is believed.
            let wanted = key.to_owned();
            value = self
                .node
                .read(MISS_CONFIRM_TIMEOUT, move |sm| read(sm, &wanted))
                .await
                .map_err(node_status)?;
        }
        if let Ok(mut cache) = cache.lock() {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key.to_owned(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }
}
