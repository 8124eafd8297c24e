//! Dialing a coordinator: plaintext or mutual TLS, with or without a
//! token, the same way from every client.

use std::sync::Arc;

use tonic::transport::{Channel, Endpoint};

use crate::credentials::{AuthChannel, Bearer};
use crate::tls::client::{ClientTls, TlsDial};

/// How this process connects to coordinators.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<ClientTls>>,
    bearer: Bearer,
}

/// An address this dialer will not use.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Not a URI tonic accepts.
    #[error("`{address}` is not a coordinator address: {reason}")]
    Address {
        /// As given.
        address: String,
        /// Why.
        reason: String,
    },
    /// `http://` while TLS is configured: refused rather than sending
    /// credentials in the clear.
    #[error(
        "`{0}` is a plaintext address but TLS is configured; give `host:port` or `https://host:port`"
    )]
    PlaintextRefused(String),
    /// `https://` without TLS files.
    #[error(
        "`{0}` asks for TLS but no CA, certificate and key are configured (DROVER_CA, DROVER_CERT, DROVER_KEY)"
    )]
    NoTls(String),
}

impl Dialer {
    /// Plaintext, no token: the local quick start.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// Mutual TLS from `files` (reloaded when they change), no token.
    pub fn tls(files: crate::TlsFiles) -> Result<Self, crate::TlsError> {
        Ok(Self::plaintext().with_tls(Arc::new(ClientTls::load(files)?)))
    }

    /// Dials with mutual TLS.
    pub fn with_tls(mut self, tls: Arc<ClientTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends these credentials.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = bearer;
        self
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for `address` (`host:port`, `http://...` or
    /// `https://...`), with TCP_NODELAY. The URI tonic sees is always
    /// `http://`: with TLS on, [`Dialer::connect`] does the TLS itself.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, DialError> {
        let rest = match address.split_once("://") {
            Some(("http", _)) if self.tls.is_some() => {
                return Err(DialError::PlaintextRefused(address.to_owned()));
            }
            Some(("https", _)) if self.tls.is_none() => {
                return Err(DialError::NoTls(address.to_owned()));
            }
            Some(("http" | "https", rest)) => rest,
            Some(_) => {
                return Err(DialError::Address {
                    address: address.to_owned(),
                    reason: "only http:// and https:// are known".to_owned(),
                });
            }
            None => address,
        };
        Endpoint::from_shared(format!("http://{rest}"))
            .map(|e| e.tcp_nodelay(true))
            .map_err(|e| DialError::Address {
                address: address.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Connects now.
    pub async fn connect(
        &self,
        endpoint: &Endpoint,
    ) -> Result<AuthChannel, tonic::transport::Error> {
        let channel = match &self.tls {
            Some(tls) => {
                endpoint
                    .connect_with_connector(TlsDial(Arc::clone(tls)))
                    .await?
            }
            None => endpoint.connect().await?,
        };
        Ok(self.wrap(channel))
    }

    /// A channel that connects on first use.
    pub fn connect_lazy(&self, endpoint: &Endpoint) -> AuthChannel {
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsDial(Arc::clone(tls))),
            None => endpoint.connect_lazy(),
        };
        self.wrap(channel)
    }

    fn wrap(&self, channel: Channel) -> AuthChannel {
        tonic::service::interceptor::InterceptedService::new(channel, self.bearer.clone())
    }
}
