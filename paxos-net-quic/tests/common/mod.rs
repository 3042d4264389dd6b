//! Test harness: the same async test body runs on quinn's tokio and smol runtimes; a dev
//! CA; a raw quinn client to misbehave with; waiting on conditions with deadlines.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use paxos_core::codec::encode_frame;
use paxos_core::message::Decide;
use paxos_core::{Ballot, Envelope, Inbound, Message, NodeId, Slot, Transport};
use paxos_net_quic::{
    ALPN, HELLO_MAX_BYTES, Hello, QuicConfig, QuicTransport, Runtime, StreamClass,
};
use paxos_tls::TlsIdentity;
use paxos_tls::dev::DevCa;

/// The cluster id every test node uses.
pub const CLUSTER: u64 = 0xC0FFEE;

/// Bound on any single wait. Generous: it only matters when something is broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `test` on a two-worker tokio runtime with quinn's tokio runtime.
#[cfg(feature = "tokio")]
pub fn on_tokio<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { test(paxos_net_quic::tokio_runtime()).await });
}

/// Runs `test` on smol with quinn's smol runtime.
#[cfg(feature = "smol")]
pub fn on_smol<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    smol::block_on(test(paxos_net_quic::smol_runtime()));
}

/// Runs `test` on async-std with quinn's async-std runtime.
#[cfg(feature = "async-std")]
pub fn on_async_std<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    async_std::task::block_on(test(paxos_net_quic::async_std_runtime()));
}

/// Declares `<name>::tokio`, `<name>::smol` and `<name>::async_std` tests running `async fn <name>(runtime)`,
/// each where its feature is enabled.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[cfg(feature = "tokio")]
            #[test]
            fn tokio() {
                $crate::common::on_tokio(super::$name);
            }
            #[cfg(feature = "smol")]
            #[test]
            fn smol() {
                $crate::common::on_smol(super::$name);
            }
            #[cfg(feature = "async-std")]
            #[test]
            fn async_std() {
                $crate::common::on_async_std(super::$name);
            }
        }
    )*};
}

/// Sleeps on quinn's runtime timer. Only for polling a condition, never as a
/// synchronization.
pub async fn nap(runtime: &dyn Runtime, duration: Duration) {
    let mut timer = runtime.new_timer(runtime.now() + duration);
    futures::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
}

/// Waits until `condition` holds, polling; panics with `what` after [`WAIT`].
pub async fn wait_until(runtime: &dyn Runtime, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        nap(runtime, Duration::from_millis(5)).await;
    }
}

/// Receives until `count` messages are in, or panics after [`WAIT`].
pub async fn recv_n(runtime: &dyn Runtime, node: &mut QuicTransport, count: usize) -> Vec<Inbound> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let timer = nap(runtime, left);
        let want = count - out.len();
        let timed_out = match select(pin!(node.recv(&mut out, want)), pin!(timer)).await {
            Either::Left((result, _)) => {
                result.unwrap();
                false
            }
            Either::Right(_) => true,
        };
        assert!(
            !timed_out,
            "got {} of {count} messages in time: {out:?}",
            out.len()
        );
    }
    out
}

/// Asserts that nothing arrives within a short grace period (used only after the event
/// that would have delivered it is known to have happened).
pub async fn assert_nothing_queued(node: &mut QuicTransport) {
    let mut out = Vec::new();
    let attempt = futures::FutureExt::now_or_never(node.recv(&mut out, 16));
    assert!(attempt.is_none(), "unexpected delivery: {out:?}");
}

/// A small, recognisable message.
pub fn decide(commit: u64) -> Message {
    Message::Decide(Decide {
        ballot: Ballot::new(1, NodeId(1)),
        commit: Slot(commit),
    })
}

/// One dev CA and its nodes' identities.
pub struct Ca {
    pub ca: DevCa,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        Self {
            ca: DevCa::generate(name).unwrap(),
        }
    }

    /// The identity of node `id`, from this CA.
    pub fn identity(&self, id: u64) -> TlsIdentity {
        self.ca
            .issue(NodeId(id))
            .unwrap()
            .identity(&self.ca.ca_pem())
            .unwrap()
    }
}

/// A loopback config for node `id` with fast reconnects.
pub fn config(
    ca: &Ca,
    id: u64,
    socket: &UdpSocket,
    peers: &BTreeMap<NodeId, SocketAddr>,
) -> QuicConfig {
    let mut config = QuicConfig::new(
        CLUSTER,
        NodeId(id),
        socket.local_addr().unwrap(),
        peers.clone(),
        ca.identity(id),
    );
    config.reconnect_backoff_min = Duration::from_millis(5);
    config.reconnect_backoff_max = Duration::from_millis(100);
    config.handshake_timeout = Duration::from_secs(3);
    config.warn_interval = Duration::from_millis(1);
    config.initial_rtt = Duration::from_millis(5);
    config
}

/// `n` sockets bound to loopback port 0, and the peer map of ids `1..=n` to them.
pub fn sockets(n: u64) -> (Vec<UdpSocket>, BTreeMap<NodeId, SocketAddr>) {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| (NodeId(i as u64 + 1), s.local_addr().unwrap()))
        .collect();
    (sockets, peers)
}

/// Starts nodes `1..=n` from one CA, all knowing each other.
pub fn cluster(ca: &Ca, n: u64, runtime: &Arc<dyn Runtime>) -> Vec<QuicTransport> {
    let (sockets, peers) = sockets(n);
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let config = config(ca, i as u64 + 1, &socket, &peers);
            QuicTransport::start_on(config, socket, runtime.clone()).unwrap()
        })
        .collect()
}

/// Sends `message` from `from` to `to`.
pub fn send(from: &QuicTransport, to: u64, message: Message) {
    from.send(vec![Envelope {
        to: NodeId(to),
        message,
    }]);
}

/// A hand-driven quinn client, for tests that misbehave where a `QuicTransport` would not.
pub struct RawClient {
    pub endpoint: quinn::Endpoint,
    pub config: quinn::ClientConfig,
}

impl RawClient {
    /// A client presenting `identity` (or no certificate, trusting `identity`'s CA).
    pub fn new(runtime: &Arc<dyn Runtime>, identity: &TlsIdentity, with_cert: bool) -> Self {
        let tls = if with_cert {
            identity.client_config(&[ALPN]).unwrap()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for ca in identity.ca_certificates() {
                roots.add(ca.clone()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            tls.alpn_protocols = vec![ALPN.to_vec()];
            Arc::new(tls)
        };
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let config = quinn::ClientConfig::new(Arc::new(quic));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            runtime.clone(),
        )
        .unwrap();
        Self { endpoint, config }
    }

    /// Connects to node `to` at `addr`; the error if the handshake fails.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        to: u64,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let name = paxos_tls::node_name(NodeId(to));
        self.endpoint
            .connect_with(self.config.clone(), addr, &name)
            .unwrap()
            .await
    }
}

/// Opens a stream on `conn` and writes a Hello from `from` to `to` in `cluster`, then
/// `then` raw bytes. Errors are ignored: the peer may close first.
pub async fn open_and_write(
    conn: &quinn::Connection,
    cluster: u64,
    from: u64,
    to: u64,
    then: &[u8],
) -> Option<quinn::SendStream> {
    let mut stream = conn.open_uni().await.ok()?;
    let hello = Hello::new(cluster, NodeId(from), NodeId(to), StreamClass::Control);
    let mut frame = BytesMut::new();
    encode_frame(&hello, &mut frame, HELLO_MAX_BYTES).unwrap();
    frame.extend_from_slice(then);
    let _ = stream.write_all_chunks(&mut [Bytes::from(frame)]).await;
    Some(stream)
}

/// The application error code `conn` was closed with by its peer, waiting for the close.
pub async fn closed_with(runtime: &dyn Runtime, conn: &quinn::Connection) -> Option<u64> {
    let timer = nap(runtime, WAIT);
    match select(pin!(conn.closed()), pin!(timer)).await {
        Either::Left((quinn::ConnectionError::ApplicationClosed(close), _)) => {
            Some(close.error_code.into_inner())
        }
        Either::Left((other, _)) => panic!("closed otherwise: {other}"),
        Either::Right(_) => panic!("connection not closed in time"),
    }
}
