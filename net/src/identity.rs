//! Who is on the other end of a TLS connection, as its certificate says.
//!
//! `drover certs` writes one URI subject alternative name into every leaf
//! certificate, SPIFFE style: `spiffe://drover/node/3`,
//! `spiffe://drover/worker/pool-a`, `spiffe://drover/client/ops`. The kind
//! decides which services a connection may use at all (only nodes speak
//! Raft); tokens then decide what a client may do inside them.

use std::fmt;

use rustls_pki_types::CertificateDer;

/// The trust domain in every identity URI.
pub const TRUST_DOMAIN: &str = "drover";

/// Longest name an identity may carry.
pub const NAME_MAX: usize = 63;

/// What a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// Coordinator `id`: may send Raft messages.
    Node(u64),
    /// A worker: may lease, heartbeat and complete tasks.
    Worker(String),
    /// A person or tool: the job and admin services, with a token.
    Client(String),
}

impl PeerIdentity {
    /// The identity's URI, as written into its certificate.
    pub fn uri(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/{self}")
    }

    /// Reads an identity URI; `None` for any other URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?.strip_prefix(TRUST_DOMAIN)?;
        let (kind, name) = rest.strip_prefix('/')?.split_once('/')?;
        match kind {
            "node" => name
                .parse()
                .ok()
                .filter(|id| *id > 0)
                .map(PeerIdentity::Node),
            "worker" if valid_name(name) => Some(PeerIdentity::Worker(name.to_owned())),
            "client" if valid_name(name) => Some(PeerIdentity::Client(name.to_owned())),
            _ => None,
        }
    }

    /// The identity in a (chain-verified) leaf certificate: its first
    /// identity URI. `None` when it has none or does not parse.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<Self> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        cert.valid_uri_names().find_map(Self::from_uri)
    }

    /// The identity of a request's TLS peer, if it came over TLS with a
    /// client certificate.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Option<Self> {
        let certs = request.peer_certs()?;
        Self::from_certificate(certs.first()?)
    }

    /// The short kind word: `node`, `worker` or `client`.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerIdentity::Node(_) => "node",
            PeerIdentity::Worker(_) => "worker",
            PeerIdentity::Client(_) => "client",
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node/{id}"),
            PeerIdentity::Worker(name) => write!(f, "worker/{name}"),
            PeerIdentity::Client(name) => write!(f, "client/{name}"),
        }
    }
}

/// Names as job names are: lowercase letters, digits and `-`, starting with
/// a letter or digit, at most [`NAME_MAX`] bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_round_trip() {
        for id in [
            PeerIdentity::Node(3),
            PeerIdentity::Worker("pool-a".into()),
            PeerIdentity::Client("ops".into()),
        ] {
            assert_eq!(PeerIdentity::from_uri(&id.uri()), Some(id));
        }
    }

    #[test]
    fn foreign_or_malformed_uris_are_no_identity() {
        for uri in [
            "spiffe://other/node/1",
            "spiffe://drover/node/0",
            "spiffe://drover/node/x",
            "spiffe://drover/admin/x",
            "spiffe://drover/worker/",
            "spiffe://drover/worker/A",
            "spiffe://drover/client/a/b",
            "https://drover/node/1",
        ] {
            assert_eq!(PeerIdentity::from_uri(uri), None, "{uri}");
        }
    }
}
