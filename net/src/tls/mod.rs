//! Mutual TLS from three PEM files (the cluster's CA, this process's
//! certificate and its key), reloaded in place when they change.
//!
//! tonic's own TLS options are read once, when a server or endpoint is
//! built, so a rotated certificate would need a restart. Instead the server
//! accepts TCP itself and hands tonic finished TLS streams
//! ([`server::ServerTls::incoming`]), and clients dial through a connector
//! ([`client::ClientTls`]); both take the current rustls configuration for
//! each new connection, from [`Reloading`]. Connections already open keep
//! the configuration they were made with, as with any TLS server.
//!
//! Only TLS 1.3 is offered, with ALPN `h2` as gRPC expects, and both sides
//! must present a certificate signed by the CA: there is no anonymous mode.

pub mod client;
pub mod reload;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use reload::{RELOAD_CHECK_EVERY, Reloading};

/// Where a process's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) peers must be signed by.
    pub ca: PathBuf,
    /// This process's certificate chain, leaf first.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// `DIR/ca.pem`, `DIR/STEM.pem` and `DIR/STEM.key`: the names
    /// `drover certs init` writes.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.ca, &self.cert, &self.key]
    }
}

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{}: {what} ({hint})", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
        /// What to check.
        hint: &'static str,
    },
    /// rustls refused the material (a key that does not match its
    /// certificate, an unsupported key type...).
    #[error("{context}: {source}")]
    Rustls {
        /// Which files.
        context: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The CA file's certificates cannot verify peers.
    #[error("{}: {reason}", path.display())]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The crypto provider every configuration uses (aws-lc-rs, which the
/// object store client already links).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The parsed contents of a [`TlsFiles`].
pub(crate) struct Material {
    pub roots: Arc<RootCertStore>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Material {
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca = read(&files.ca)?;
        let mut roots = RootCertStore::empty();
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|e| content(&files.ca, e, HINT_CERT))?;
            roots
                .add(cert)
                .map_err(|e| content(&files.ca, e, "is it a CA certificate?"))?;
            count += 1;
        }
        if count == 0 {
            return Err(content(&files.ca, "no certificate in it", HINT_CERT));
        }
        let chain = CertificateDer::pem_slice_iter(&read(&files.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| content(&files.cert, e, HINT_CERT))?;
        if chain.is_empty() {
            return Err(content(&files.cert, "no certificate in it", HINT_CERT));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
            .map_err(|e| content(&files.key, e, HINT_KEY))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }
}

const HINT_CERT: &str = "expected PEM `CERTIFICATE` blocks, as `drover certs init` writes";
const HINT_KEY: &str = "expected a PEM private key, as `drover certs init` writes";

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn content(path: &Path, what: impl std::fmt::Display, hint: &'static str) -> TlsError {
    TlsError::Content {
        path: path.to_owned(),
        what: what.to_string(),
        hint,
    }
}

pub(crate) fn rustls_error(files: &TlsFiles, source: rustls::Error) -> TlsError {
    TlsError::Rustls {
        context: format!("{} with {}", files.cert.display(), files.key.display()),
        source,
    }
}
