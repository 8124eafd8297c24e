//! A fault-injecting TCP proxy: one per link (coordinator to coordinator,
//! worker to coordinator), controlled by the harness.
//!
//! Faults are modelled on what a network does, not on what is easy to
//! write: a partition *stalls* bytes (nothing arrives, TCP buffers fill and
//! the sender times out) rather than discarding them, because dropping bytes
//! from the middle of a TCP stream is something no real network does and
//! would only test HTTP/2 framing errors. Healing lets stalled bytes flow
//! again, as when a partition heals before the connection timed out.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes moved per read.
const CHUNK_BYTES: usize = 64 * 1024;

/// What one link does to its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkFaults {
    /// Requests (dialer to listener) stall.
    pub stall_requests: bool,
    /// Responses (listener to dialer) stall.
    pub stall_responses: bool,
    /// Every chunk waits this long before it is forwarded.
    pub delay_ms: u64,
    /// New connections are reset at once, as by a host that is down.
    pub refuse: bool,
}

impl LinkFaults {
    /// Nothing gets through in either direction (a partition).
    pub fn partitioned() -> Self {
        Self {
            stall_requests: true,
            stall_responses: true,
            ..Self::default()
        }
    }

    /// Whether the link is healthy.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// The control side of one proxy. Dropping it stops the proxy.
#[derive(Debug)]
pub struct Proxy {
    listen: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    faults: watch::Sender<LinkFaults>,
    /// Bumped to close every open connection.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connections watch the generation; a closed channel ends them too.
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let target = Arc::new(Mutex::new(target));
        let (faults, faults_rx) = watch::channel(LinkFaults::default());
        let (generation, generation_rx) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(
            listener,
            target.clone(),
            faults_rx,
            generation_rx,
        ));
        Ok(Self {
            listen,
            target,
            faults,
            generation,
            task,
        })
    }

    /// Where the dialer connects.
    pub fn address(&self) -> SocketAddr {
        self.listen
    }

    /// Points the proxy at a new target (a restarted process's new port);
    /// open connections are closed.
    pub fn retarget(&self, target: SocketAddr) {
        if let Ok(mut t) = self.target.lock() {
            *t = target;
        }
        self.close_connections();
    }

    /// Applies faults to current and future traffic.
    pub fn set(&self, faults: LinkFaults) {
        self.faults.send_replace(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> LinkFaults {
        *self.faults.borrow()
    }

    /// Closes every open connection (both ends see the close).
    pub fn close_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: Arc<Mutex<SocketAddr>>,
    faults: watch::Receiver<LinkFaults>,
    generation: watch::Receiver<u64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if faults.borrow().refuse {
            // Closed at once, before a byte is read: the dialer sees its
            // connection end, as when nothing listens there.
            drop(inbound);
            continue;
        }
        let Ok(to) = target.lock().map(|t| *t) else {
            return;
        };
        tokio::spawn(connection(inbound, to, faults.clone(), generation.clone()));
    }
}

async fn connection(
    inbound: TcpStream,
    to: SocketAddr,
    faults: watch::Receiver<LinkFaults>,
    mut generation: watch::Receiver<u64>,
) {
    let Ok(outbound) = TcpStream::connect(to).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let born = *generation.borrow_and_update();
    let requests = pump(in_read, out_write, faults.clone(), |f| f.stall_requests);
    let responses = pump(out_read, in_write, faults, |f| f.stall_responses);
    let closed = async move {
        while generation.changed().await.is_ok() {
            if *generation.borrow() != born {
                return;
            }
        }
    };
    // Either direction ending (or a close from the harness) ends both: the
    // halves drop together, which closes both sockets.
    tokio::select! {
        _ = async { tokio::join!(requests, responses) } => {}
        _ = closed => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<LinkFaults>,
    stalled: fn(&LinkFaults) -> bool,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        // While stalled, read nothing: the sender's buffers fill as on a
        // network that drops its packets.
        while stalled(&faults.borrow()) {
            if faults.changed().await.is_err() {
                return;
            }
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let delay = faults.borrow().delay_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // A stall that began while this chunk was in hand holds it too.
        while stalled(&faults.borrow()) {
            if faults.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn roundtrip(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(wait, s.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn stalls_heal_and_closes_and_refusals_take_effect() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(roundtrip(&mut s, wait).await.unwrap(), b"ping");

        // A one-way stall: the request arrives, the answer is held...
        proxy.set(LinkFaults {
            stall_responses: true,
            ..LinkFaults::default()
        });
        assert!(
            roundtrip(&mut s, Duration::from_millis(300))
                .await
                .is_none()
        );
        // ...and delivered, in order, once healed.
        proxy.set(LinkFaults::default());
        let mut buf = [0u8; 4];
        tokio::time::timeout(wait, s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");

        // Closing connections ends the open one.
        proxy.close_connections();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(wait, s.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))));

        // Refusing resets new connections.
        proxy.set(LinkFaults {
            refuse: true,
            ..LinkFaults::default()
        });
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        assert!(roundtrip(&mut s, Duration::from_secs(2)).await.is_none());
    }
}
