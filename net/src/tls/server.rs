//! The accepting side: TLS streams for tonic's `serve_with_incoming`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Material, Reloading, TlsError, TlsFiles, provider, rustls_error};

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes waiting for tonic to take them; beyond this, accepting
/// pauses (back-pressure instead of unbounded memory).
const READY_MAX: usize = 64;

/// A server's TLS: its certificate, and the CA clients must be signed by.
#[derive(Debug)]
pub struct ServerTls(Reloading<ServerConfig>);

impl ServerTls {
    /// Loads the files; fails if they are unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Ok(Self(Reloading::new(files, build)?))
    }

    /// The files, for messages.
    pub fn files(&self) -> &TlsFiles {
        self.0.files()
    }

    /// The configuration the next connection gets.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.current()
    }

    /// Accepts connections on `listener` and yields those whose TLS
    /// handshake succeeds; handshakes run concurrently, so a slow or
    /// silent client holds up no one. A refused handshake (a plaintext
    /// client, a certificate from another CA, none at all) is logged and
    /// dropped. The accept loop ends when the stream is dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> impl tokio_stream::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
        let (ready_tx, ready_rx) = mpsc::channel(READY_MAX);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = ready_tx.closed() => return,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = TlsAcceptor::from(self.current());
                        let ready = ready_tx.clone();
                        tokio::spawn(handshake(acceptor, tcp, peer, ready));
                    }
                    Err(e) => {
                        // Out of file descriptors, usually: wait instead
                        // of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(ready_rx)
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
) {
    // Small replies must leave at once (see the coordinator's listener).
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let _ = ready.send(Ok(stream)).await;
        }
        Ok(Err(e)) => tracing::info!(
            %peer,
            error = %e,
            "refused a connection: TLS handshake failed (a plaintext client, or a \
             certificate not signed by this cluster's CA)"
        ),
        Err(_) => {
            tracing::info!(%peer, "refused a connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}")
        }
    }
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let material = Material::load(files)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(material.roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| rustls_error(files, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain, material.key)
        .map_err(|e| rustls_error(files, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
