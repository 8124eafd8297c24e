//! The bearer token a client sends with every request.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The metadata key tokens travel in.
pub const AUTHORIZATION: &str = "authorization";

/// A channel that adds this client's credentials to every request.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer TOKEN` to each request, when there is a
/// token.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(..)"
        } else {
            "Bearer(none)"
        })
    }
}

/// A token that cannot go in a header.
#[derive(Debug, thiserror::Error)]
#[error("the token holds characters a request header cannot carry (only printable ASCII)")]
pub struct BadToken;

impl Bearer {
    /// No credentials.
    pub fn none() -> Self {
        Self(None)
    }

    /// Sends `token`. Surrounding whitespace (a token file's newline) is
    /// dropped.
    pub fn token(token: &str) -> Result<Self, BadToken> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(Self(None));
        }
        let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| BadToken)?;
        // Keeps it out of HPACK's tables, as HTTP/2 advises for secrets.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// Whether a token is sent.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// The token in a request's `authorization` metadata: `Ok(None)` when
/// there is none, an error when the header is not `Bearer TOKEN`.
pub fn bearer_token<T>(request: &Request<T>) -> Result<Option<&str>, &'static str> {
    bearer_token_in(request.metadata().get(AUTHORIZATION).map(|v| v.to_str()))
}

/// As [`bearer_token`], for a header value already read.
pub fn bearer_token_in<E>(value: Option<Result<&str, E>>) -> Result<Option<&str>, &'static str> {
    let Some(value) = value else { return Ok(None) };
    let value = value.map_err(|_| "the authorization header is not text")?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or("the authorization header is not `Bearer TOKEN`")?;
    Ok(Some(token.trim()))
}
