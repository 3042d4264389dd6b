//! [`TcpTransport`]: the [`Transport`] implementation and its shared state.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{AbortHandle, select};
use paxos_core::codec::encode_frame;
use paxos_core::{Envelope, Inbound, Message, NodeId, Transport, TransportError};

use crate::config::{ConfigError, TcpConfig};
use crate::inbound::{self, ListenerGuard};
use crate::outbound;
use paxos_net_common::{ByteBudget, WarnKey, WarnLimiter, recv_batch, try_enqueue};
use paxos_runtime::{Listener, Runtime};

/// A TCP [`Transport`]: one listener, one dialing task per peer, one reader task per
/// inbound connection. See the [crate docs](crate) for the wire layout and queueing policy.
///
/// Dropping the transport stops every task and closes the listener and all connections;
/// the tasks notice on their next poll. [`close`](Self::close) does the same and waits
/// until the listening socket is closed, so the port can be bound again at once.
pub struct TcpTransport {
    shared: Arc<Shared>,
    /// Each message with its frame's size, held against `Shared::inbound_bytes`.
    inbound: Receiver<(Inbound, usize)>,
    local_addr: SocketAddr,
    /// Never sent on: dropping it closes the channel, which every task watches.
    stop: Sender<()>,
    /// Completes (cancelled) once the listening socket is closed.
    listener_closed: oneshot::Receiver<()>,
}

/// Why [`TcpTransport::start`] failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The config was refused.
    Config(ConfigError),
    /// The listening socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The kind of the underlying I/O error.
        kind: io::ErrorKind,
        /// The underlying I/O error, as text.
        reason: String,
        /// The underlying I/O error.
        source: Arc<io::Error>,
    },
    /// TLS is on ([`TcpConfig::tls`]) but the identity cannot be used: its certificate does
    /// not name this node ([`paxos_tls::TlsIdentity::check_names`]), or rustls refused to
    /// build a config from it.
    #[cfg(feature = "tls")]
    Tls {
        /// This node's id ([`TcpConfig::node_id`]).
        node: NodeId,
        /// The error, as text.
        reason: String,
        /// The error.
        source: Arc<paxos_tls::TlsError>,
    },
}

// Display and Error are written out rather than derived: thiserror's `#[source]` on an
// `Arc<io::Error>` returns the `Arc`, so `downcast_ref::<io::Error>()` on it would fail.
impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::Bind { addr, reason, .. } => write!(f, "cannot listen on {addr}: {reason}"),
            #[cfg(feature = "tls")]
            Self::Tls { node, reason, .. } => {
                write!(f, "TLS identity unusable for node {}: {reason}", node.0)
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => e.source(),
            Self::Bind { source, .. } => Some(&**source),
            #[cfg(feature = "tls")]
            Self::Tls { source, .. } => Some(&**source),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl StartError {
    fn bind(addr: SocketAddr, error: io::Error) -> Self {
        Self::Bind {
            addr,
            kind: error.kind(),
            reason: error.to_string(),
            source: Arc::new(error),
        }
    }
}

/// Counters since the transport started. Every drop and every refused or closed connection
/// is counted here, whether or not its warning was logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpStats {
    /// Frames written to peers' sockets.
    pub sent_frames: u64,
    /// Frames read from peers and queued for [`recv`](Transport::recv).
    pub received_frames: u64,
    /// Messages dropped by `send` because the peer's outbound queue was full, in messages
    /// or in bytes.
    pub dropped_queue_full: u64,
    /// Messages dropped by `send` because the destination is not a configured peer.
    pub dropped_unknown_peer: u64,
    /// Messages dropped because their frame would exceed `max_frame_bytes`.
    pub dropped_too_large: u64,
    /// Outbound connections that completed the handshake.
    pub connections_opened: u64,
    /// Inbound connections that completed the handshake.
    pub connections_accepted: u64,
    /// Inbound connections closed before or during the handshake (bad handshake, wrong
    /// cluster, unknown peer, garbage, timeout, too many connections).
    pub connections_refused: u64,
    /// Established inbound connections closed for a malformed or oversized frame.
    pub connections_bad_frame: u64,
    /// Inbound connections refused by TLS (feature `tls`; always 0 without it): no client
    /// certificate, a certificate not from the cluster CA, a certificate naming another node
    /// than the `Hello` claims, a peer not speaking TLS, or another failed TLS handshake.
    /// Each is also counted in [`connections_refused`](Self::connections_refused).
    pub refused_tls: u64,
    /// Warnings not logged because of rate limiting.
    pub warnings_suppressed: u64,
    /// The most bytes the inbound queue has held at once (see
    /// [`TcpConfig::max_inbound_queue_bytes`]).
    pub peak_inbound_queue_bytes: u64,
}

/// State shared by the transport handle and its tasks.
pub(crate) struct Shared {
    pub(crate) config: TcpConfig,
    pub(crate) net: Arc<dyn Runtime>,
    pub(crate) counters: Counters,
    /// Closed when the transport is dropped; every task ends when it closes.
    stop: Receiver<()>,
    warn: WarnLimiter,
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// The live inbound connection of each peer, by generation, so a newer connection
    /// from the same peer closes the older one.
    readers: Mutex<HashMap<NodeId, (u64, AbortHandle)>>,
    next_reader: AtomicU64,
    pub(crate) inbound_open: AtomicUsize,
    /// Bytes in the inbound queue.
    pub(crate) inbound_bytes: ByteBudget,
    /// The TLS configs, if [`TcpConfig::tls`] is set.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

struct Peer {
    addr: SocketAddr,
    /// The only sender: replacing or removing the peer closes the queue, which ends its
    /// dialing task. Holds encoded frames.
    queue: Sender<Bytes>,
    /// Bytes in `queue`; the dialing task releases what it takes.
    queued_bytes: Arc<ByteBudget>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent_frames: AtomicU64,
    pub(crate) received_frames: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_unknown_peer: AtomicU64,
    pub(crate) dropped_too_large: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_bad_frame: AtomicU64,
    pub(crate) refused_tls: AtomicU64,
}

impl TcpTransport {
    /// Validates `config`, binds the listener, and starts dialing every peer in
    /// `config.peers`. Must be called where `net` can spawn (for tokio: with a runtime
    /// handle; see `paxos_runtime::TokioRuntime`).
    ///
    /// With TLS on ([`TcpConfig::tls`]), fails with `StartError::Tls` before binding if the
    /// identity's certificate does not name `config.node_id`.
    pub fn start(config: TcpConfig, net: Arc<dyn Runtime>) -> Result<Self, StartError> {
        config.validate()?;
        let secure = Secure::new(&config)?;
        let listener = net
            .bind_tcp(config.listen)
            .map_err(|e| StartError::bind(config.listen, e))?;
        Self::start_with(config, secure, listener, net)
    }

    /// Like [`start`](Self::start), on a listener the caller already bound: `config.listen`
    /// is replaced by the listener's address. Binding first (to port 0, say) tells a program
    /// every node's address before any node starts, with no race for the port.
    pub fn start_on(
        mut config: TcpConfig,
        listener: std::net::TcpListener,
        net: Arc<dyn Runtime>,
    ) -> Result<Self, StartError> {
        if let Ok(addr) = listener.local_addr() {
            config.listen = addr;
        }
        config.validate()?;
        let secure = Secure::new(&config)?;
        let listener = net
            .listen_tcp(listener)
            .map_err(|e| StartError::bind(config.listen, e))?;
        Self::start_with(config, secure, listener, net)
    }

    fn start_with(
        config: TcpConfig,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] secure: Secure,
        listener: Box<dyn Listener>,
        net: Arc<dyn Runtime>,
    ) -> Result<Self, StartError> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| StartError::bind(config.listen, e))?;
        let (stop, stop_rx) = async_channel::bounded(1);
        let (inbound_tx, inbound) = async_channel::bounded(config.max_inbound_queue);
        let config_inbound_bytes = config.max_inbound_queue_bytes;
        let (closed_tx, listener_closed) = oneshot::channel();
        let shared = Arc::new(Shared {
            warn: WarnLimiter::new(config.warn_interval),
            config,
            net,
            counters: Counters::default(),
            stop: stop_rx,
            peers: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            next_reader: AtomicU64::new(0),
            inbound_open: AtomicUsize::new(0),
            inbound_bytes: ByteBudget::new(config_inbound_bytes),
            #[cfg(feature = "tls")]
            tls: secure.0,
        });
        for (&id, &addr) in &shared.config.peers {
            shared.set_peer(id, addr);
        }
        let guard = ListenerGuard::new(listener, closed_tx);
        shared.spawn(inbound::accept_loop(shared.clone(), guard, inbound_tx));
        tracing::debug!(node = %shared.config.node_id, %local_addr, "tcp transport listening");
        Ok(Self {
            shared,
            inbound,
            local_addr,
            stop,
            listener_closed,
        })
    }

    /// The address the listener is bound to (with the real port if `listen` had port 0).
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

    /// Removes a peer: its queue is dropped, its connections are closed, and its inbound
    /// handshakes are refused from now on.
    pub fn remove_peer(&self, id: NodeId) {
        self.shared.lock_peers().remove(&id);
        if let Some((_, reader)) = self.shared.lock_readers().remove(&id) {
            reader.abort();
        }
    }

    /// The current peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        let peers = self.shared.lock_peers();
        peers.iter().map(|(&id, peer)| (id, peer.addr)).collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> TcpStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TcpStats {
            sent_frames: get(&c.sent_frames),
            received_frames: get(&c.received_frames),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_unknown_peer: get(&c.dropped_unknown_peer),
            dropped_too_large: get(&c.dropped_too_large),
            connections_opened: get(&c.connections_opened),
            connections_accepted: get(&c.connections_accepted),
            connections_refused: get(&c.connections_refused),
            connections_bad_frame: get(&c.connections_bad_frame),
            refused_tls: get(&c.refused_tls),
            warnings_suppressed: self.shared.warn.suppressed(),
            peak_inbound_queue_bytes: u64::try_from(self.shared.inbound_bytes.peak())
                .unwrap_or(u64::MAX),
        }
    }

    /// Stops every task, and waits until the listening socket is closed.
    pub async fn close(self) {
        let Self {
            stop,
            listener_closed,
            ..
        } = self;
        drop(stop);
        // Cancelled (never sent) once the accept task has dropped the listener.
        let _ = listener_closed.await;
    }
}

#[async_trait]
impl Transport for TcpTransport {
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
            let target = self
                .shared
                .lock_peers()
                .get(&to)
                .map(|peer| (peer.queue.clone(), peer.queued_bytes.clone()));
            let Some((queue, queued_bytes)) = target else {
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
            if !try_enqueue(&queue, &queued_bytes, frame) {
                self.shared.count(&self.shared.counters.dropped_queue_full);
                self.shared.warn(WarnKey::QueueFull(to), |suppressed| {
                    tracing::warn!(peer = %to, suppressed, "outbound queue full, dropping");
                });
            }
        }
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        recv_batch(&self.inbound, &self.shared.inbound_bytes, out, max).await
    }
}

/// The TLS state a transport starts with: `Some` configs if TLS is on (feature `tls`).
struct Secure(#[cfg(feature = "tls")] Option<crate::tls::Tls>);

impl Secure {
    #[cfg_attr(not(feature = "tls"), allow(clippy::unnecessary_wraps))]
    fn new(config: &TcpConfig) -> Result<Self, StartError> {
        #[cfg(feature = "tls")]
        return match &config.tls {
            Some(identity) => Ok(Self(Some(crate::tls::Tls::new(identity, config.node_id)?))),
            None => Ok(Self(None)),
        };
        #[cfg(not(feature = "tls"))]
        {
            let _ = config;
            Ok(Self())
        }
    }
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Spawns `task`, to be dropped when the transport stops.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.net.spawn(Box::pin(async move {
            select(pin!(task), pin!(stop.recv())).await;
        }));
    }

    /// Runs `log` unless a warning about `key` was logged within the interval.
    pub(crate) fn warn(&self, key: WarnKey, log: impl FnOnce(u64)) {
        if let Some(suppressed) = self.warn.allow(key, Instant::now()) {
            log(suppressed);
        }
    }

    /// `message`'s frame, or `None` (counted, warned) if it is too large for one.
    pub(crate) fn encode(&self, peer: NodeId, message: &Message) -> Option<Bytes> {
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

    pub(crate) fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_peer(&self, id: NodeId) -> bool {
        self.lock_peers().contains_key(&id)
    }

    /// Records `reader` as `id`'s live inbound connection, closing the previous one.
    /// Returns the generation to pass to [`Self::forget_reader`].
    pub(crate) fn register_reader(&self, id: NodeId, reader: AbortHandle) -> u64 {
        let generation = self.next_reader.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self.lock_readers().insert(id, (generation, reader)) {
            old.abort();
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
        let (queue, queued) = async_channel::bounded(self.config.max_outbound_queue);
        let queued_bytes = Arc::new(ByteBudget::new(self.config.max_outbound_queue_bytes));
        peers.insert(
            id,
            Peer {
                addr,
                queue,
                queued_bytes: queued_bytes.clone(),
            },
        );
        drop(peers);
        self.spawn(outbound::dial_loop(
            self.clone(),
            id,
            addr,
            queued,
            queued_bytes,
        ));
    }

    fn lock_peers(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        // Nothing panics while holding these locks; recover rather than propagate.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_readers(&self) -> MutexGuard<'_, HashMap<NodeId, (u64, AbortHandle)>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
