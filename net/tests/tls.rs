//! Mutual TLS over real loopback TCP: who gets in, what the server learns
//! about them, and rotation without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_net::certs::CertificateAuthority;
use drover_net::tls::client::TlsDial;
use drover_net::{ClientTls, PeerIdentity, ServerTls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tower::Service;

fn write(
    dir: &Path,
    stem: &str,
    ca: &CertificateAuthority,
    identity: PeerIdentity,
    hosts: &[&str],
) -> TlsFiles {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let issued = ca.issue(&identity, &hosts, 1).unwrap();
    let files = TlsFiles {
        ca: dir.join(format!("{stem}-ca.pem")),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&files.ca, ca.cert_pem()).unwrap();
    std::fs::write(&files.cert, issued.cert_pem).unwrap();
    std::fs::write(&files.key, issued.key_pem).unwrap();
    files
}

/// A TLS server that greets each accepted connection and reports the
/// identity in its client certificate.
async fn serve(files: TlsFiles) -> (u16, mpsc::UnboundedReceiver<Option<PeerIdentity>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = Arc::new(ServerTls::load(files).unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut incoming = Box::pin(tls.incoming(listener));
        while let Some(Ok(mut stream)) = incoming.next().await {
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first().cloned())
                .and_then(|c| PeerIdentity::from_certificate(&c));
            let _ = tx.send(identity);
            let _ = stream.write_all(b"hello\n").await;
            let _ = stream.shutdown().await;
        }
    });
    (port, rx)
}

/// Dials and reads the greeting; `Err` says why there was none.
async fn greet(client: &TlsFiles, host: &str, port: u16) -> Result<String, String> {
    let tls = Arc::new(ClientTls::load(client.clone()).map_err(|e| e.to_string())?);
    let uri = format!("http://{host}:{port}").parse().unwrap();
    let io = TlsDial(tls).call(uri).await.map_err(|e| e.to_string())?;
    let mut stream = io.into_inner();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err("closed without a greeting".to_owned()),
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".to_owned()),
    }
}

#[tokio::test]
async fn only_peers_signed_by_the_cluster_ca_get_in_and_their_identity_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(1).unwrap();
    let rogue_ca = CertificateAuthority::generate(1).unwrap();
    let node = write(
        dir.path(),
        "node-1",
        &ca,
        PeerIdentity::Node(1),
        &["localhost", "127.0.0.1"],
    );
    let worker = write(
        dir.path(),
        "worker",
        &ca,
        PeerIdentity::Worker("pool".into()),
        &[],
    );
    let rogue = write(
        dir.path(),
        "rogue",
        &rogue_ca,
        PeerIdentity::Node(2),
        &["localhost"],
    );
    // A rogue with a certificate from another CA, but trusting ours.
    let mut rogue_trusting_us = rogue.clone();
    rogue_trusting_us.ca = node.ca.clone();
    let (port, mut seen) = serve(node.clone()).await;

    assert_eq!(greet(&worker, "127.0.0.1", port).await.unwrap(), "hello\n");
    assert_eq!(
        seen.recv().await.unwrap(),
        Some(PeerIdentity::Worker("pool".into()))
    );
    assert_eq!(greet(&worker, "localhost", port).await.unwrap(), "hello\n");
    assert_eq!(
        seen.recv().await.unwrap(),
        Some(PeerIdentity::Worker("pool".into()))
    );

    let refused = greet(&rogue_trusting_us, "127.0.0.1", port)
        .await
        .unwrap_err();
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("alert"),
        "{refused}"
    );
    // The rogue's own CA does not vouch for the server either.
    assert!(greet(&rogue, "127.0.0.1", port).await.is_err());

    // A plaintext client gets nothing.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server hangs up on plaintext");
    assert!(!String::from_utf8_lossy(&buf).contains("hello"));
    assert!(
        seen.try_recv().is_err(),
        "no refused connection reached the service"
    );
}

#[tokio::test]
async fn a_server_is_checked_against_the_name_it_is_dialled_by() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(1).unwrap();
    let node = write(
        dir.path(),
        "node-1",
        &ca,
        PeerIdentity::Node(1),
        &["coordinator-1"],
    );
    let worker = write(
        dir.path(),
        "worker",
        &ca,
        PeerIdentity::Worker("w".into()),
        &[],
    );
    let (port, _seen) = serve(node).await;
    let err = greet(&worker, "127.0.0.1", port).await.unwrap_err();
    assert!(
        err.contains("not valid for name") || err.contains("NotValidForName"),
        "{err}"
    );
}

#[tokio::test]
async fn rotated_files_are_used_for_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = CertificateAuthority::generate(1).unwrap();
    let new_ca = CertificateAuthority::generate(1).unwrap();
    let node = write(
        dir.path(),
        "node-1",
        &old_ca,
        PeerIdentity::Node(1),
        &["localhost"],
    );
    let old_client = write(
        dir.path(),
        "old",
        &old_ca,
        PeerIdentity::Client("ops".into()),
        &[],
    );
    let new_client = write(
        dir.path(),
        "new",
        &new_ca,
        PeerIdentity::Client("ops".into()),
        &[],
    );
    let (port, _seen) = serve(node.clone()).await;
    assert!(greet(&old_client, "localhost", port).await.is_ok());

    // Rotate the server to the new CA: a half-done rotation (the new
    // certificate with the old key) is not taken up...
    let issued = new_ca
        .issue(&PeerIdentity::Node(1), &["localhost".to_owned()], 1)
        .unwrap();
    std::fs::write(&node.cert, &issued.cert_pem).unwrap();
    tokio::time::sleep(drover_net::tls::RELOAD_CHECK_EVERY + Duration::from_millis(300)).await;
    assert!(
        greet(&old_client, "localhost", port).await.is_ok(),
        "the old set stays in use"
    );
    // ...the finished one is.
    std::fs::write(&node.key, &issued.key_pem).unwrap();
    std::fs::write(&node.ca, new_ca.cert_pem()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match greet(&new_client, "localhost", port).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the new files were never used: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(greet(&old_client, "localhost", port).await.is_err());
}

#[test]
fn unusable_files_are_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(1).unwrap();
    let files = write(
        dir.path(),
        "node-1",
        &ca,
        PeerIdentity::Node(1),
        &["localhost"],
    );
    std::fs::write(&files.key, "not a key").unwrap();
    let err = ServerTls::load(files.clone()).unwrap_err().to_string();
    assert!(err.contains("node-1.key"), "{err}");
    let missing = TlsFiles::in_dir(&dir.path().join("nowhere"), "node-1");
    let err = ClientTls::load(missing).unwrap_err().to_string();
    assert!(err.contains("nowhere/ca.pem"), "{err}");
}
