//! Which network a [`Cluster`](super::Cluster) runs over (plain TCP, TCP with mutual TLS,
//! QUIC), the transports it starts, and [`Returning`]: the wrapper the node owns, which
//! hands the transport back when dropped, answers the test's questions about the
//! transport's counters, and counts the [`forged`] messages that reach the node's core.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::future::{Either, select};
use paxos_core::message::Decide;
use paxos_core::{Ballot, Envelope, Inbound, Message, NodeId, Slot, Transport, TransportError};
use paxos_net_tcp::TcpTransport;
use paxos_node::Runtime;

use super::{ports, tcp_config};

/// The network a cluster runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// Plain TCP.
    Tcp,
    /// TCP with mutual TLS from the cluster's CA.
    #[cfg(feature = "tls")]
    TcpTls,
    /// QUIC (always mutual TLS), on quinn's runtime for the test's executor.
    #[cfg(feature = "quic")]
    Quic,
}

/// The cluster CA of a secure [`Net`] (none for plain TCP), which issues the members'
/// identities.
#[derive(Default)]
pub struct Keys {
    #[cfg(any(feature = "tls", feature = "quic"))]
    pub ca: Option<paxos_tls::dev::DevCa>,
}

impl Keys {
    pub fn for_net(net: Net) -> Self {
        match net {
            Net::Tcp => Self::default(),
            #[cfg(any(feature = "tls", feature = "quic"))]
            _ => Self {
                ca: Some(paxos_tls::dev::DevCa::generate("paxos-node test cluster").unwrap()),
            },
        }
    }

    /// The cluster CA.
    #[cfg(any(feature = "tls", feature = "quic"))]
    pub fn ca(&self) -> &paxos_tls::dev::DevCa {
        self.ca.as_ref().expect("a secure net has a cluster CA")
    }

    /// Node `id`'s identity: its certificate from the cluster CA, and the CA.
    #[cfg(any(feature = "tls", feature = "quic"))]
    pub fn identity(&self, id: u64) -> paxos_tls::TlsIdentity {
        let ca = self.ca();
        ca.issue(NodeId(id))
            .unwrap()
            .identity(&ca.ca_pem())
            .unwrap()
    }
}

impl Net {
    /// Starts node `id`'s transport: on `addr` (a restart), or on a fresh port outside
    /// the ephemeral range. It knows no peers yet.
    pub fn start(
        self,
        keys: &Keys,
        id: u64,
        addr: Option<SocketAddr>,
        rt: &Arc<dyn Runtime>,
    ) -> Result<NetTransport, String> {
        let _ = keys;
        let tcp_addr = || addr.unwrap_or_else(ports::free_addr);
        match self {
            Self::Tcp => TcpTransport::start(tcp_config(id, tcp_addr()), rt.clone())
                .map(NetTransport::Tcp)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "tls")]
            Self::TcpTls => {
                let config = tcp_config(id, tcp_addr()).with_tls(keys.identity(id));
                TcpTransport::start(config, rt.clone())
                    .map(NetTransport::Tcp)
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "quic")]
            Self::Quic => {
                let socket = match addr {
                    Some(addr) => std::net::UdpSocket::bind(addr).map_err(|e| e.to_string())?,
                    None => ports::free_udp_socket(),
                };
                let listen = socket.local_addr().map_err(|e| e.to_string())?;
                let config = super::quic_config(id, listen, keys.identity(id));
                let (runtime, released) = quic::TrackedRuntime::wrap(super::quinn_runtime());
                paxos_net_quic::QuicTransport::start_on(config, socket, runtime)
                    .map(|t| NetTransport::Quic(t, released))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// A started transport of some [`Net`].
pub enum NetTransport {
    Tcp(TcpTransport),
    /// With a receiver that completes once the transport's UDP socket is closed.
    #[cfg(feature = "quic")]
    Quic(paxos_net_quic::QuicTransport, oneshot::Receiver<()>),
}

/// The counters the tests look at, from either transport's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Inbound connections refused by TLS: no client certificate, a certificate from
    /// another CA, a certificate naming another node than the one claimed (TCP:
    /// `refused_tls`; QUIC: `refused_tls`).
    pub refused_tls: u64,
    /// Inbound connections or streams refused otherwise: a bad handshake or Hello, an
    /// unknown peer, a timeout (TCP: `connections_refused - refused_tls`; QUIC:
    /// `refused_hello`).
    pub refused_other: u64,
    /// Inbound connections admitted.
    pub accepted: u64,
}

impl NetTransport {
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Tcp(t) => t.local_addr(),
            #[cfg(feature = "quic")]
            Self::Quic(t, _) => t.local_addr(),
        }
    }

    pub fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        match self {
            Self::Tcp(t) => t.set_peer(id, addr),
            #[cfg(feature = "quic")]
            Self::Quic(t, _) => t.set_peer(id, addr),
        }
    }

    pub fn stats(&self) -> NetStats {
        match self {
            Self::Tcp(t) => {
                let s = t.stats();
                NetStats {
                    refused_tls: s.refused_tls,
                    refused_other: s.connections_refused - s.refused_tls,
                    accepted: s.connections_accepted,
                }
            }
            #[cfg(feature = "quic")]
            Self::Quic(t, _) => {
                let s = t.stats();
                NetStats {
                    refused_tls: s.refused_tls,
                    refused_other: s.refused_hello,
                    accepted: s.connections_accepted,
                }
            }
        }
    }

    /// Closes the transport and waits until its port is free again: TCP's listener is
    /// closed when `close` returns; QUIC's socket is closed by the last of quinn's tasks
    /// to let go of it, usually after `close` returns. (QUIC's `close` itself now and then
    /// waits until a connection idles out, hence the short `idle_timeout` of
    /// [`quic_config`](super::quic_config).)
    pub async fn close(self) {
        match self {
            Self::Tcp(t) => t.close().await,
            #[cfg(feature = "quic")]
            Self::Quic(t, released) => {
                t.close().await;
                // Cancelled (never sent) once the socket is dropped.
                let _ = released.await;
            }
        }
    }

    fn inner(&self) -> &dyn Transport {
        match self {
            Self::Tcp(t) => t,
            #[cfg(feature = "quic")]
            Self::Quic(t, _) => t,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Transport {
        match self {
            Self::Tcp(t) => t,
            #[cfg(feature = "quic")]
            Self::Quic(t, _) => t,
        }
    }
}

/// The node that a [`forged`] message names in its ballot: never a member.
pub const FORGER: NodeId = NodeId(666);

/// What a stranger sends a member: a Decide for a far-off commit point under a ballot of
/// [`FORGER`]. No member ever sends it, so [`Returning`] can tell it apart; and a core that
/// got it anyway would ignore it (a Decide counts only from its ballot's node), so a test
/// may let it through on purpose.
pub fn forged() -> Message {
    Message::Decide(Decide {
        ballot: Ballot::new(1_000_000, FORGER),
        commit: Slot(1_000_000),
    })
}

type Ask = oneshot::Sender<NetStats>;

/// A transport that, when the node drops it, hands it back to the test, so the test can
/// [`close`](NetTransport::close) it and know the port is free. Meanwhile it answers the
/// test's [`Probe`] and counts the [`forged`] messages it hands to the node.
pub struct Returning {
    inner: Option<NetTransport>,
    back: Option<oneshot::Sender<NetTransport>>,
    asks: async_channel::Receiver<Ask>,
    forged: Arc<AtomicU64>,
}

/// The test's side of a [`Returning`].
pub struct Probe {
    asks: async_channel::Sender<Ask>,
    forged: Arc<AtomicU64>,
}

impl Probe {
    /// The transport's counters now. Answered from the node's driver task, the next time
    /// it waits for messages (it owns the transport).
    pub async fn stats(&self) -> NetStats {
        let (reply, answer) = oneshot::channel();
        self.asks
            .send(reply)
            .await
            .expect("the node still holds its transport");
        answer
            .await
            .expect("the node answers while it holds its transport")
    }

    /// How many [`forged`] messages the node's core has been handed.
    pub fn forged(&self) -> u64 {
        self.forged.load(Ordering::SeqCst)
    }
}

impl Returning {
    pub fn new(inner: NetTransport) -> (Self, Probe, oneshot::Receiver<NetTransport>) {
        let (tx, rx) = oneshot::channel();
        let (asks_tx, asks) = async_channel::unbounded();
        let forged = Arc::new(AtomicU64::new(0));
        let probe = Probe {
            asks: asks_tx,
            forged: forged.clone(),
        };
        let returning = Self {
            inner: Some(inner),
            back: Some(tx),
            asks,
            forged,
        };
        (returning, probe, rx)
    }

    fn inner(&self) -> &NetTransport {
        self.inner.as_ref().expect("present until dropped")
    }
}

#[async_trait]
impl Transport for Returning {
    fn send(&self, batch: Vec<Envelope>) {
        self.inner().inner().send(batch);
    }

    /// The inner transport's `recv` (cancel-safe, so is this), answering the probe's
    /// questions while it waits.
    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        let start = out.len();
        let inner = self.inner.as_mut().expect("present until dropped");
        let result = loop {
            let asked = {
                let received = inner.inner_mut().recv(out, max);
                match select(received, pin!(self.asks.recv())).await {
                    Either::Left((result, _)) => break result,
                    Either::Right((asked, _)) => asked,
                }
            };
            match asked {
                Ok(reply) => {
                    let _ = reply.send(inner.stats());
                }
                // The probe is gone: nobody asks again.
                Err(_) => break inner.inner_mut().recv(out, max).await,
            }
        };
        let forged = out[start..]
            .iter()
            .filter(|m| m.message == forged())
            .count();
        self.forged.fetch_add(forged as u64, Ordering::SeqCst);
        result
    }

    fn max_frame_bytes(&self) -> usize {
        self.inner().inner().max_frame_bytes()
    }

    fn local_node(&self) -> Option<NodeId> {
        self.inner().inner().local_node()
    }

    fn knows_peer(&self, peer: NodeId) -> Option<bool> {
        self.inner().inner().knows_peer(peer)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            let _ = back.send(inner);
        }
    }
}

/// Knowing when a QUIC transport's UDP socket is closed, so that a member can be started
/// again on its port: quinn's tasks hold the socket, and the last one to end closes it,
/// possibly after `QuicTransport::close` has returned.
#[cfg(feature = "quic")]
mod quic {
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::Instant;

    use futures::channel::oneshot;
    use quinn::udp::{RecvMeta, Transmit};
    use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, UdpPoller};

    /// quinn's runtime `inner`, except that the socket it wraps (a transport wraps one)
    /// tells, by dropping a sender, when it is closed.
    #[derive(Debug)]
    pub(super) struct TrackedRuntime {
        inner: Arc<dyn Runtime>,
        closed: Mutex<Option<oneshot::Sender<()>>>,
    }

    impl TrackedRuntime {
        /// The runtime, and a receiver that completes (cancelled) once the socket it
        /// wraps is closed.
        pub(super) fn wrap(inner: Arc<dyn Runtime>) -> (Arc<dyn Runtime>, oneshot::Receiver<()>) {
            let (closed, released) = oneshot::channel();
            let runtime = Self {
                inner,
                closed: Mutex::new(Some(closed)),
            };
            (Arc::new(runtime), released)
        }
    }

    impl Runtime for TrackedRuntime {
        fn new_timer(&self, i: Instant) -> Pin<Box<dyn AsyncTimer>> {
            self.inner.new_timer(i)
        }

        fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
            self.inner.spawn(future);
        }

        fn wrap_udp_socket(&self, t: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
            let inner = self.inner.wrap_udp_socket(t)?;
            let closed = self.closed.lock().unwrap().take();
            Ok(Arc::new(TrackedSocket {
                inner,
                _closed: closed,
            }))
        }

        fn now(&self) -> Instant {
            self.inner.now()
        }
    }

    /// The runtime's socket, and the sender to drop once it is closed. Fields drop in
    /// order: the socket first.
    #[derive(Debug)]
    struct TrackedSocket {
        inner: Arc<dyn AsyncUdpSocket>,
        _closed: Option<oneshot::Sender<()>>,
    }

    impl AsyncUdpSocket for TrackedSocket {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
            // The runtime's poller holds the runtime's socket: it keeps the tracked
            // socket too, so that the socket closes only when the last of them goes.
            Box::pin(TrackedPoller {
                inner: self.inner.clone().create_io_poller(),
                _socket: self,
            })
        }

        fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
            self.inner.try_send(transmit)
        }

        fn poll_recv(
            &self,
            cx: &mut Context<'_>,
            bufs: &mut [IoSliceMut<'_>],
            meta: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            self.inner.poll_recv(cx, bufs, meta)
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        fn max_transmit_segments(&self) -> usize {
            self.inner.max_transmit_segments()
        }

        fn max_receive_segments(&self) -> usize {
            self.inner.max_receive_segments()
        }

        fn may_fragment(&self) -> bool {
            self.inner.may_fragment()
        }
    }

    /// The runtime's poller, then (dropped after it) the tracked socket.
    #[derive(Debug)]
    struct TrackedPoller {
        inner: Pin<Box<dyn UdpPoller>>,
        _socket: Arc<TrackedSocket>,
    }

    impl UdpPoller for TrackedPoller {
        fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().inner.as_mut().poll_writable(cx)
        }
    }
}
