//! Raft messages between coordinators over gRPC.
//!
//! One task per peer drains a bounded queue: everything queued when it
//! wakes goes out in one `Send` call (a Ready's worth of messages per peer
//! per round trip). Snapshots are streamed in bounded chunks. Failures are
//! reported to Raft (`report_unreachable`, `report_snapshot`), which retries
//! on its own schedule; the transport never retries a message itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use drover_net::{AuthChannel, Dialer};
use drover_proto::v1::raft_service_client::RaftServiceClient;
use drover_proto::v1::{RaftMessageBatch, SnapshotChunk};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use super::node::{NodeHandle, Transport};

/// Messages queued per peer before new ones are dropped (Raft resends).
const PEER_QUEUE_MAX: usize = 4096;
/// Messages sent in one `Send` call.
const BATCH_MAX: usize = 512;
/// Bytes of snapshot data per chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Per-call deadline for message batches.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for streaming a whole snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

/// The gRPC transport of one node.
pub struct GrpcTransport {
    id: u64,
    runtime: tokio::runtime::Handle,
    peers: Mutex<BTreeMap<u64, Peer>>,
    /// Peers this node dials somewhere other than their advertised address
    /// (a sidecar or proxy in between); see [`GrpcTransport::with_routes`].
    routes: BTreeMap<u64, String>,
    /// How peers are dialled (plaintext, or mutual TLS with this node's
    /// certificate).
    dialer: Dialer,
    /// Set once the node has started; used to report delivery failures.
    node: Arc<OnceLock<NodeHandle>>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<(u64, String)> = self
            .peers
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(id, peer)| (*id, peer.address.clone()))
                    .collect()
            })
            .unwrap_or_default();
        f.debug_struct("GrpcTransport")
            .field("id", &self.id)
            .field("peers", &peers)
            .finish()
    }
}

impl GrpcTransport {
    /// A transport for node `id`, spawning its peer tasks on `runtime`.
    /// Call [`GrpcTransport::node_slot`] and fill it after the node starts.
    pub fn new(id: u64, runtime: tokio::runtime::Handle) -> Self {
        Self {
            id,
            runtime,
            peers: Mutex::new(BTreeMap::new()),
            routes: BTreeMap::new(),
            dialer: Dialer::plaintext(),
            node: Arc::new(OnceLock::new()),
        }
    }

    /// Dials peer `id` at `routes[id]` instead of the address the cluster
    /// knows it by. The membership (and the leader hints clients get) keep
    /// the advertised address; only this node's own connections go the
    /// other way, as through a sidecar proxy or an SSH tunnel.
    pub fn with_routes(mut self, routes: BTreeMap<u64, String>) -> Self {
        self.routes = routes;
        self
    }

    /// Dials peers with `dialer` (mutual TLS in a secure cluster).
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Where the node's handle goes once started.
    pub fn node_slot(&self) -> Arc<OnceLock<NodeHandle>> {
        self.node.clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, messages: Vec<Message>) {
        let Ok(peers) = self.peers.lock() else {
            return;
        };
        for message in messages {
            let to = message.to;
            match peers.get(&to) {
                Some(peer) => {
                    if peer.queue.try_send(message).is_err()
                        && let Some(node) = self.node.get()
                    {
                        node.report_unreachable(to);
                    }
                }
                None => {
                    if let Some(node) = self.node.get() {
                        node.report_unreachable(to);
                    }
                }
            }
        }
    }

    fn set_peer(&self, id: u64, address: Option<String>) {
        let address = address.map(|advertised| self.routes.get(&id).cloned().unwrap_or(advertised));
        let Ok(mut peers) = self.peers.lock() else {
            return;
        };
        if let Some(old) = peers.get(&id)
            && Some(&old.address) == address.as_ref()
        {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let Some(address) = address else {
            return;
        };
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        let task = self.runtime.spawn(peer_loop(
            self.id,
            id,
            address.clone(),
            self.dialer.clone(),
            rx,
            self.node.clone(),
        ));
        peers.insert(
            id,
            Peer {
                address,
                queue: tx,
                task,
            },
        );
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        if let Ok(peers) = self.peers.lock() {
            for peer in peers.values() {
                peer.task.abort();
            }
        }
    }
}

fn endpoint(dialer: &Dialer, address: &str) -> Option<Endpoint> {
    dialer.endpoint(address).ok().map(|e| {
        e.connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(10))
    })
}

async fn peer_loop(
    from: u64,
    to: u64,
    address: String,
    dialer: Dialer,
    mut queue: mpsc::Receiver<Message>,
    node: Arc<OnceLock<NodeHandle>>,
) {
    let mut client: Option<RaftServiceClient<AuthChannel>> = None;
    let mut backoff = Duration::from_millis(50);
    let report_unreachable = |node: &Arc<OnceLock<NodeHandle>>| {
        if let Some(n) = node.get() {
            n.report_unreachable(to);
        }
    };
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if client.is_none() {
            let connected = match endpoint(&dialer, &address) {
                Some(e) => dialer.connect(&e).await.ok(),
                None => None,
            };
            match connected {
                Some(channel) => {
                    client = Some(
                        RaftServiceClient::new(channel)
                            .max_decoding_message_size(64 * 1024 * 1024)
                            .max_encoding_message_size(64 * 1024 * 1024),
                    );
                    backoff = Duration::from_millis(50);
                }
                None => {
                    // Drop the batch: Raft resends once told the peer is
                    // unreachable. Back off so a dead peer costs little.
                    report_unreachable(&node);
                    for m in &batch {
                        if m.get_msg_type() == MessageType::MsgSnapshot
                            && let Some(n) = node.get()
                        {
                            n.report_snapshot(to, false);
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let (snapshots, messages): (Vec<Message>, Vec<Message>) = batch
            .into_iter()
            .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        if !messages.is_empty() {
            let request = RaftMessageBatch {
                from_id: from,
                to_id: to,
                sent_unix_ms: crate::clock::wall_now_ms(),
                messages: messages
                    .iter()
                    .filter_map(|m| m.write_to_bytes().ok().map(Into::into))
                    .collect(),
            };
            let mut request = tonic::Request::new(request);
            request.set_timeout(SEND_TIMEOUT);
            if c.send(request).await.is_err() {
                client = None;
                report_unreachable(&node);
                continue;
            }
        }
        let mut broken = false;
        for snapshot in snapshots {
            let ok = !broken && send_snapshot(c, from, to, snapshot).await;
            broken |= !ok;
            if let Some(n) = node.get() {
                n.report_snapshot(to, ok);
            }
        }
        if broken {
            client = None;
        }
    }
}

/// Streams a snapshot message: the first chunk carries the message with its
/// data removed, then the data follows in bounded chunks.
async fn send_snapshot(
    client: &mut RaftServiceClient<AuthChannel>,
    from: u64,
    to: u64,
    mut message: Message,
) -> bool {
    let data = message.mut_snapshot().take_data();
    let meta = message.get_snapshot().get_metadata().clone();
    let Ok(header) = message.write_to_bytes() else {
        return false;
    };
    let total = data.len();
    let mut chunks = Vec::with_capacity(total / SNAPSHOT_CHUNK_BYTES + 1);
    let mut offset = 0;
    loop {
        let end = (offset + SNAPSHOT_CHUNK_BYTES).min(total);
        chunks.push(SnapshotChunk {
            from_id: from,
            to_id: to,
            term: meta.term,
            index: meta.index,
            offset: offset as u64,
            data: data.slice(offset..end),
            last: end == total,
            message: if offset == 0 {
                header.clone().into()
            } else {
                Default::default()
            },
            total_bytes: total as u64,
        });
        offset = end;
        if offset >= total {
            break;
        }
    }
    let mut request = tonic::Request::new(tokio_stream::iter(chunks));
    request.set_timeout(SNAPSHOT_TIMEOUT);
    client.send_snapshot(request).await.is_ok()
}
