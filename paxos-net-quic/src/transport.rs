//! [`QuicTransport`]: the [`Transport`] implementation, its shared state and counters.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::select;
use paxos_core::codec::encode_frame;
use paxos_core::{Envelope, Inbound, Message, NodeId, Transport, TransportError};
use quinn::{Connection, Endpoint, Runtime, VarInt};

use crate::config::{ConfigError, QuicConfig};
use crate::frame::error_code;
use crate::hello::StreamClass;
use crate::{inbound, outbound, tls};
use paxos_net_common::{ByteBudget, WarnKey, WarnLimiter, recv_batch, try_enqueue};

/// A QUIC [`Transport`]: one quinn endpoint (one UDP socket) that dials every peer and
/// accepts every peer's connection. See the [crate docs](crate) for the connection and
/// stream layout, the queueing policy and the TLS model.
///
/// Dropping the transport stops its tasks; the connections close as their handles go.
/// [`close`](Self::close) also closes every connection with [`error_code::SHUTDOWN`] and
/// waits until the tasks have ended and the connections are drained.
pub struct QuicTransport {
    shared: Arc<Shared>,
    /// Each message with its frame's size, held against `Shared::inbound_bytes`.
    inbound: Receiver<(Inbound, usize)>,
    local_addr: SocketAddr,
    /// Never sent on: dropping it closes the channel, which every task watches.
    stop: Sender<()>,
    /// Completes (cancelled) once `Shared` is dropped, i.e. once every task has ended.
    all_ended: oneshot::Receiver<()>,
}

/// Why [`QuicTransport::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS identity was refused: its certificate does not name this node, or the
    /// rustls configs could not be built from it.
    #[error("TLS identity refused: {0}")]
    Tls(#[from] paxos_tls::TlsError),
    /// The rustls configs cannot drive QUIC (no TLS 1.3 suite QUIC's initial keys can use).
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(String),
    /// The UDP socket could not be bound or handed to the runtime.
    #[error("cannot use UDP socket {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// Declares the counters once: the atomic set in [`Shared`] and the [`QuicStats`] copy, so a
/// new counter is one line.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters since the transport started. Every drop and every refused or closed
        /// connection is counted, whether or not its warning was logged.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct QuicStats {
            $($(#[$doc])* pub $name: u64,)*
            /// Warnings not logged because of rate limiting.
            pub warnings_suppressed: u64,
            /// The most bytes the inbound queue has held at once (see
            /// [`QuicConfig::max_inbound_queue_bytes`]).
            pub peak_inbound_queue_bytes: u64,
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            fn snapshot(&self) -> QuicStats {
                QuicStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    ..QuicStats::default()
                }
            }
        }
    };
}

counters! {
    /// Frames written to peers' streams.
    sent_frames,
    /// Frames read from peers and queued for [`recv`](Transport::recv).
    received_frames,
    /// Messages dropped by `send` because the peer's queue for the message's class was
    /// full, in messages or in bytes.
    dropped_queue_full,
    /// Messages dropped by `send` because the destination is not a configured peer.
    dropped_unknown_peer,
    /// Messages dropped because their frame would exceed `max_frame_bytes`.
    dropped_too_large,
    /// Outbound connections established (QUIC and TLS handshake done, streams opened).
    connections_opened,
    /// Outbound dials or connections that failed (refused, unreachable, lost, closed by
    /// the peer); each is followed by a backoff.
    connections_failed,
    /// Inbound connections whose first stream's Hello was admitted.
    connections_accepted,
    /// Inbound connections refused by TLS: no client certificate, one from another CA,
    /// an invalid one, a handshake that timed out, or a certificate that does not name
    /// the id the Hello claims.
    refused_tls,
    /// Inbound connections refused for their Hello: wrong magic, version, cluster or
    /// addressee, an unknown peer, a duplicate stream class, or no Hello in time.
    refused_hello,
    /// Inbound connections refused because `max_inbound_connections` were open.
    refused_limit,
    /// Admitted inbound connections closed for a malformed or oversized frame, or for
    /// ending a stream.
    bad_frames,
}

/// State shared by the transport handle and its tasks.
pub(crate) struct Shared {
    pub(crate) config: QuicConfig,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) endpoint: Endpoint,
    /// The dialer's quinn config (mutual TLS, ALPN, transport parameters).
    pub(crate) client: quinn::ClientConfig,
    pub(crate) counters: Counters,
    /// Closed when the transport is dropped; every task ends when it closes.
    stop: Receiver<()>,
    warn: WarnLimiter,
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// The live inbound connection of each peer, by generation, so a newer connection
    /// from the same peer closes the older one.
    readers: Mutex<HashMap<NodeId, (u64, Connection)>>,
    next_reader: AtomicU64,
    pub(crate) inbound_open: AtomicUsize,
    /// Bytes in the inbound queue.
    pub(crate) inbound_bytes: ByteBudget,
    /// Dropped with `Shared`, which tells `close` that every task has ended.
    _ended: oneshot::Sender<()>,
}

struct Peer {
    addr: SocketAddr,
    /// One queue per active class, indexed by [`StreamClass::index`]. These are the only
    /// senders: replacing or removing the peer closes them, which ends its dialing task.
    queues: Vec<ClassSender>,
}

struct ClassSender {
    frames: Sender<Bytes>,
    bytes: Arc<ByteBudget>,
}

/// The receiving end of one peer's queue of one class.
pub(crate) struct ClassQueue {
    pub(crate) class: StreamClass,
    frames: Receiver<Bytes>,
    bytes: Arc<ByteBudget>,
}

impl ClassQueue {
    /// Waits for the next frame; `None` once the queue is closed.
    pub(crate) async fn next(&self) -> Option<Bytes> {
        let frame = self.frames.recv().await.ok()?;
        self.bytes.release(frame.len());
        Some(frame)
    }

    /// The next frame, if one is queued.
    pub(crate) fn try_next(&self) -> Option<Bytes> {
        let frame = self.frames.try_recv().ok()?;
        self.bytes.release(frame.len());
        Some(frame)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }
}

impl QuicTransport {
    /// Validates `config`, binds a UDP socket to `config.listen`, and starts the endpoint,
    /// which dials every peer in `config.peers` and accepts their connections. Refuses to
    /// start if the identity's certificate does not name `config.node_id`.
    ///
    /// `runtime` is quinn's own runtime (`tokio_runtime()`, `smol_runtime()` or
    /// `async_std_runtime()` with their features, [`default_runtime`](crate::default_runtime),
    /// or your own [`Runtime`] implementation); the transport uses it for the socket, its
    /// tasks and its timers, and needs nothing else. With tokio, call this inside the
    /// runtime (quinn registers the socket with the current reactor).
    pub fn start(config: QuicConfig, runtime: Arc<dyn Runtime>) -> Result<Self, StartError> {
        config.validate()?;
        let socket = UdpSocket::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        Self::start_on(config, socket, runtime)
    }

    /// Like [`start`](Self::start), on a socket the caller already bound: `config.listen`
    /// is replaced by the socket's address. Binding first (to port 0, say) tells a program
    /// every node's address before any node starts, with no race for the port.
    pub fn start_on(
        mut config: QuicConfig,
        socket: UdpSocket,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Self, StartError> {
        if let Ok(addr) = socket.local_addr() {
            config.listen = addr;
        }
        config.validate()?;
        config.identity.check_names(config.node_id)?;
        let (server, client) = tls::quinn_configs(&config)?;
        let bind = |source| StartError::Bind {
            addr: config.listen,
            source,
        };
        let endpoint = Endpoint::new(
            endpoint_config(&config),
            Some(server),
            socket,
            runtime.clone(),
        )
        .map_err(bind)?;
        let local_addr = endpoint.local_addr().map_err(bind)?;
        let (stop, stop_rx) = async_channel::bounded(1);
        let (inbound_tx, inbound) = async_channel::bounded(config.max_inbound_queue);
        let (ended, all_ended) = oneshot::channel();
        let shared = Arc::new(Shared {
            warn: WarnLimiter::new(config.warn_interval),
            inbound_bytes: ByteBudget::new(config.max_inbound_queue_bytes),
            config,
            runtime,
            endpoint,
            client,
            counters: Counters::default(),
            stop: stop_rx,
            peers: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            next_reader: AtomicU64::new(0),
            inbound_open: AtomicUsize::new(0),
            _ended: ended,
        });
        for (&id, &addr) in &shared.config.peers {
            shared.set_peer(id, addr);
        }
        shared.spawn(inbound::accept_loop(shared.clone(), inbound_tx));
        tracing::debug!(node = %shared.config.node_id, %local_addr, "quic transport listening");
        Ok(Self {
            shared,
            inbound,
            local_addr,
            stop,
            all_ended,
        })
    }

    /// The address the UDP socket is bound to (with the real port if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// Adds a peer, or moves it to a new address (its queued messages go to the old
    /// address or are dropped). Setting the same address again changes nothing; an id
    /// equal to this node's is ignored.
    pub fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        self.shared.set_peer(id, addr);
    }

    /// Removes a peer: its queues are dropped, its connections are closed
    /// ([`error_code::PEER_REMOVED`]), and its inbound connections are refused from now on.
    pub fn remove_peer(&self, id: NodeId) {
        self.shared.lock_peers().remove(&id);
        if let Some((_, reader)) = self.shared.lock_readers().remove(&id) {
            reader.close(VarInt::from_u32(error_code::PEER_REMOVED), b"peer removed");
        }
    }

    /// The current peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        let peers = self.shared.lock_peers();
        peers.iter().map(|(&id, peer)| (id, peer.addr)).collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> QuicStats {
        QuicStats {
            warnings_suppressed: self.shared.warn.suppressed(),
            peak_inbound_queue_bytes: u64::try_from(self.shared.inbound_bytes.peak())
                .unwrap_or(u64::MAX),
            ..self.shared.counters.snapshot()
        }
    }

    /// Stops every task, closes every connection with [`error_code::SHUTDOWN`], and waits
    /// until the tasks have ended and the endpoint's connections are drained (the peers
    /// were told, so they need not wait out an idle timeout).
    pub async fn close(self) {
        let Self {
            shared,
            inbound,
            stop,
            all_ended,
            ..
        } = self;
        let endpoint = shared.endpoint.clone();
        drop((stop, shared, inbound));
        endpoint.close(VarInt::from_u32(error_code::SHUTDOWN), b"shutdown");
        // Cancelled (never sent) once the last task has dropped `Shared`.
        let _ = all_ended.await;
        endpoint.wait_idle().await;
    }
}

#[async_trait]
impl Transport for QuicTransport {
    fn local_node(&self) -> Option<NodeId> {
        Some(self.shared.config.node_id)
    }

    fn knows_peer(&self, peer: NodeId) -> Option<bool> {
        Some(self.shared.lock_peers().contains_key(&peer))
    }

    fn max_frame_bytes(&self) -> usize {
        self.shared.config.max_frame_bytes
    }

    fn send(&self, batch: Vec<Envelope>) {
        for Envelope { to, message } in batch {
            let class = StreamClass::of(&message);
            let target = self.shared.lock_peers().get(&to).map(|peer| {
                // A class without a queue of its own (none today) travels as bulk.
                let queue = peer.queues.get(class.index()).unwrap_or(&peer.queues[1]);
                (queue.frames.clone(), queue.bytes.clone())
            });
            let Some((frames, bytes)) = target else {
                self.shared
                    .count(&self.shared.counters.dropped_unknown_peer);
                self.shared.warn(WarnKey::Peer(to), |suppressed| {
                    tracing::warn!(peer = %to, suppressed, "dropping message to unknown peer");
                });
                continue;
            };
            let Some(frame) = self.shared.encode(to, &message) else {
                continue;
            };
            if !try_enqueue(&frames, &bytes, frame) {
                self.shared.count(&self.shared.counters.dropped_queue_full);
                self.shared.warn(WarnKey::QueueFull(to), |suppressed| {
                    tracing::warn!(peer = %to, class = class.name(), suppressed, "outbound queue full, dropping");
                });
            }
        }
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        recv_batch(&self.inbound, &self.shared.inbound_bytes, out, max).await
    }
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Spawns `task` on quinn's runtime, to be dropped when the transport stops.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.runtime.spawn(Box::pin(async move {
            select(pin!(task), pin!(stop.recv())).await;
        }));
    }

    /// Runs `log` unless a warning about `key` was logged within the interval.
    pub(crate) fn warn(&self, key: WarnKey, log: impl FnOnce(u64)) {
        if let Some(suppressed) = self.warn.allow(key, Instant::now()) {
            log(suppressed);
        }
    }

    pub(crate) fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `message`'s frame, or `None` (counted, warned) if it is too large for one.
    fn encode(&self, peer: NodeId, message: &Message) -> Option<Bytes> {
        let mut frame = BytesMut::new();
        match encode_frame(message, &mut frame, self.config.max_frame_bytes) {
            Ok(()) => Some(frame.freeze()),
            Err(error) => {
                self.count(&self.counters.dropped_too_large);
                self.warn(WarnKey::Peer(peer), |suppressed| {
                    tracing::warn!(%peer, kind = message.kind(), %error, suppressed, "dropping message that cannot be framed");
                });
                None
            }
        }
    }

    pub(crate) fn is_peer(&self, id: NodeId) -> bool {
        self.lock_peers().contains_key(&id)
    }

    /// Records `conn` as `id`'s live inbound connection, closing the previous one with
    /// [`error_code::REPLACED`]. Returns the generation to pass to [`Self::forget_reader`].
    pub(crate) fn register_reader(&self, id: NodeId, conn: Connection) -> u64 {
        let generation = self.next_reader.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self.lock_readers().insert(id, (generation, conn)) {
            old.close(VarInt::from_u32(error_code::REPLACED), b"replaced");
        }
        generation
    }

    pub(crate) fn forget_reader(&self, id: NodeId, generation: u64) {
        let mut readers = self.lock_readers();
        if readers.get(&id).is_some_and(|(g, _)| *g == generation) {
            readers.remove(&id);
        }
    }

    fn set_peer(self: &Arc<Self>, id: NodeId, addr: SocketAddr) {
        if id == self.config.node_id {
            return;
        }
        let mut peers = self.lock_peers();
        if peers.get(&id).is_some_and(|peer| peer.addr == addr) {
            return;
        }
        let (senders, queues) = StreamClass::ACTIVE
            .into_iter()
            .map(|class| {
                let (tx, rx) = async_channel::bounded(self.config.max_outbound_queue);
                let bytes = Arc::new(ByteBudget::new(self.config.max_outbound_queue_bytes));
                let sender = ClassSender {
                    frames: tx,
                    bytes: bytes.clone(),
                };
                let queue = ClassQueue {
                    class,
                    frames: rx,
                    bytes,
                };
                (sender, queue)
            })
            .unzip();
        peers.insert(
            id,
            Peer {
                addr,
                queues: senders,
            },
        );
        drop(peers);
        self.spawn(outbound::dial_loop(self.clone(), id, addr, queues));
    }

    fn lock_peers(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        // Nothing panics while holding these locks; recover rather than propagate.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_readers(&self) -> MutexGuard<'_, HashMap<NodeId, (u64, Connection)>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The endpoint's keys, derived from the node's private key so that a restarted node
/// keeps them. quinn's defaults are random per process: a restarted node then cannot tell
/// its predecessor's connection ids from noise and never answers its peers' packets with a
/// stateless reset, so each peer keeps sending into the dead connection until its idle
/// timeout (10 s by default) before it redials. With the same reset key and connection id
/// key, the new process resets those connections at the first packet and peers redial at
/// once. The keys are secret (a reset token forged by anyone else would close
/// connections), which is why they come from the private key.
fn endpoint_config(config: &QuicConfig) -> quinn::EndpointConfig {
    let reset = config
        .identity
        .derive_secret("paxos-net-quic stateless reset key");
    let cids = config
        .identity
        .derive_secret("paxos-net-quic connection id key");
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    let cid_key = u64::from_le_bytes(cids[..8].try_into().expect("8 of 32 bytes"));
    endpoint.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint
}
