//! The dialing side: a connector tonic channels use instead of plain TCP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::Uri;

use super::{Material, Reloading, TlsError, TlsFiles, provider, rustls_error};

/// A client's TLS: the CA servers must be signed by, and the certificate
/// this process presents.
#[derive(Debug)]
pub struct ClientTls(Reloading<ClientConfig>);

impl ClientTls {
    /// Loads the files; fails if they are unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Ok(Self(Reloading::new(files, build)?))
    }

    /// The files, for messages.
    pub fn files(&self) -> &TlsFiles {
        self.0.files()
    }

    /// The configuration the next connection gets.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.0.current()
    }
}

/// A tower service from an `http://host:port` URI to a TLS stream to that
/// host, checking its certificate against the host name or address.
#[derive(Debug, Clone)]
pub struct TlsDial(pub Arc<ClientTls>);

type Dialed =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl tower::Service<Uri> for TlsDial {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Dialed;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.0.current();
        Box::pin(async move {
            let invalid = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {what}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // An IPv6 literal comes bracketed in a URI, not in a name.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_owned())
                .map_err(|e| invalid(&format!("not a host name or address: {e}")))?;
            let tcp = TcpStream::connect((bare, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

fn build(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let material = Material::load(files)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| rustls_error(files, e))?
        .with_root_certificates(material.roots)
        .with_client_auth_cert(material.chain, material.key)
        .map_err(|e| rustls_error(files, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
