//! Test harness: the same async test body runs on tokio and on smol (async-io).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Wake;
use std::time::Duration;

use bytes::BytesMut;
use futures::future::{Either, select};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::codec::{decode_frame, encode_frame};
use paxos_core::message::{Decide, Forward};
use paxos_core::{
    Ballot, Command, Envelope, Inbound, Message, NodeId, ProposalId, Slot, Transport,
};
use paxos_net_tcp::{
    BoxConn, HELLO_MAX_BYTES, Hello, Runtime, StartError, TcpConfig, TcpTransport,
};
use paxos_runtime::AsyncIoRuntime;
use paxos_runtime::TokioRuntime;

/// The cluster id every test node uses.
pub(crate) const CLUSTER: u64 = 0xC0FFEE;

/// Bound on any single wait in a test. Generous: it only matters when something is broken.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Runs `test` on a two-worker tokio runtime.
pub(crate) fn on_tokio<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let net: Arc<dyn Runtime> = Arc::new(TokioRuntime::new(rt.handle().clone()));
    rt.block_on(test(net));
}

/// Runs `test` on smol (async-io reactor, smol's global executor).
pub(crate) fn on_smol<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    smol::block_on(test(Arc::new(AsyncIoRuntime::new())));
}

/// Declares `<name>::tokio` and `<name>::smol` tests running `async fn <name>(net)`.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn tokio() {
                $crate::common::on_tokio(super::$name);
            }
            #[test]
            fn smol() {
                $crate::common::on_smol(super::$name);
            }
        }
    )*};
}

/// A loopback config with fast reconnects, for node `id`.
pub(crate) fn config(id: u64) -> TcpConfig {
    let mut config = TcpConfig::new(
        CLUSTER,
        NodeId(id),
        "127.0.0.1:0".parse().unwrap(),
        BTreeMap::new(),
    );
    config.reconnect_backoff_min = Duration::from_millis(5);
    config.reconnect_backoff_max = Duration::from_millis(100);
    config.handshake_timeout = Duration::from_secs(2);
    config
}

/// Attempts at binding a port that may be taken for a moment (see [`start_restartable`]).
const BIND_ATTEMPTS: u32 = 50;

/// Loopback ports outside the kernel's ephemeral range, read from
/// `/proc/sys/net/ipv4/ip_local_port_range` (`None` where there is no such file, or no
/// room beside the range).
///
/// A port in the ephemeral range can be given to any outbound socket as its source port,
/// including a peer's redial of that very port while nothing listens there: such a dial
/// connects to itself (TCP simultaneous open), and then the socket, and after it its
/// `TIME_WAIT`, holds the port for up to a minute. Ports outside the range are never
/// handed out that way (nor to `bind` on port 0), so a test can release one and bind it
/// again.
fn non_ephemeral_ports() -> Option<Range<u16>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (bounds.next()?.ok()?, bounds.next()?.ok()?);
    if low >= 11_024 {
        Some(low - 10_000..low)
    } else if high <= 55_000 {
        Some(high + 1..high + 10_001)
    } else {
        None
    }
}

/// Starts `config` on a loopback port that can be released and bound again by a restart
/// ([`start_retrying`]) while the peers keep redialling it: one outside the ephemeral
/// range (see [`non_ephemeral_ports`]), tried at random until one is free. Falls back to
/// port 0 where that range is unknown.
pub(crate) fn start_restartable(net: &Arc<dyn Runtime>, mut config: TcpConfig) -> TcpTransport {
    let Some(ports) = non_ephemeral_ports() else {
        config.listen = "127.0.0.1:0".parse().unwrap();
        return TcpTransport::start(config, net.clone()).unwrap();
    };
    let mut rng = fastrand::Rng::new();
    for _ in 0..BIND_ATTEMPTS {
        config.listen = SocketAddr::from(([127, 0, 0, 1], rng.u16(ports.clone())));
        match TcpTransport::start(config.clone(), net.clone()) {
            Ok(transport) => return transport,
            Err(StartError::Bind {
                kind: ErrorKind::AddrInUse,
                ..
            }) => {}
            Err(error) => panic!("start on {}: {error}", config.listen),
        }
    }
    panic!("no free port in {ports:?} after {BIND_ATTEMPTS} attempts");
}

/// Starts `config` on its fixed `listen` address, retrying (at most [`BIND_ATTEMPTS`]
/// times, 20 ms apart) while the port is in use: another process may hold it for a
/// moment. For restarts on a port from [`start_restartable`].
pub(crate) async fn start_retrying(net: &Arc<dyn Runtime>, config: TcpConfig) -> TcpTransport {
    for _ in 1..BIND_ATTEMPTS {
        match TcpTransport::start(config.clone(), net.clone()) {
            Ok(transport) => return transport,
            Err(StartError::Bind {
                kind: ErrorKind::AddrInUse,
                ..
            }) => net.sleep(Duration::from_millis(20)).await,
            Err(error) => panic!("restart on {}: {error}", config.listen),
        }
    }
    let listen = config.listen;
    TcpTransport::start(config, net.clone())
        .unwrap_or_else(|e| panic!("restart on {listen}, {BIND_ATTEMPTS} attempts: {e}"))
}

/// Starts `n` transports (ids 0..n) on port 0 and tells each about all the others.
pub(crate) fn cluster(net: &Arc<dyn Runtime>, n: u64) -> Vec<TcpTransport> {
    let nodes: Vec<_> = (0..n)
        .map(|id| TcpTransport::start(config(id), net.clone()).unwrap())
        .collect();
    connect_all(&nodes);
    nodes
}

/// Tells every transport in `nodes` about every other.
pub(crate) fn connect_all(nodes: &[TcpTransport]) {
    for a in nodes {
        for b in nodes {
            a.set_peer(b.node_id(), b.local_addr());
        }
    }
}

/// A small message tagged with `tag`.
pub(crate) fn msg(tag: u64) -> Message {
    Message::Decide(Decide {
        ballot: Ballot::new(1, NodeId(0)),
        commit: Slot(tag),
    })
}

/// A message carrying `bytes` of payload.
pub(crate) fn big(bytes: usize) -> Message {
    Message::Forward(Forward {
        commands: vec![Command {
            id: ProposalId {
                origin: NodeId(0),
                seq: 0,
                epoch: 0,
            },
            payload: vec![0xAB; bytes].into(),
        }],
    })
}

/// Envelope to `to`.
pub(crate) fn to(to: u64, message: Message) -> Envelope {
    Envelope {
        to: NodeId(to),
        message,
    }
}

/// Runs `fut` for at most `limit`; `None` if it did not finish.
pub(crate) async fn timeout<T>(
    net: &Arc<dyn Runtime>,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    match select(pin!(fut), net.sleep(limit)).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

/// Runs `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub(crate) async fn within<T>(
    net: &Arc<dyn Runtime>,
    what: &str,
    fut: impl Future<Output = T>,
) -> T {
    match timeout(net, WAIT, fut).await {
        Some(value) => value,
        None => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Receives until `count` messages have arrived (bounded by [`WAIT`]).
pub(crate) async fn recv_n(
    net: &Arc<dyn Runtime>,
    node: &mut TcpTransport,
    count: usize,
) -> Vec<Inbound> {
    within(
        net,
        &format!("{count} messages at {}", node.node_id()),
        async {
            let mut got = Vec::new();
            while got.len() < count {
                let missing = count - got.len();
                node.recv(&mut got, missing).await.unwrap();
            }
            got
        },
    )
    .await
}

/// Resends `msg(tag)` from `from` to `dest` every 20 ms until `dest` receives it: for
/// paths that may lose messages while connections come up, like the core's retransmits.
pub(crate) async fn deliver_eventually(
    net: &Arc<dyn Runtime>,
    from: &TcpTransport,
    dest: &mut TcpTransport,
    tag: u64,
) {
    deliver_eventually_but_never(net, from, dest, tag, None).await;
}

/// Like [`deliver_eventually`], and fails if `dest` receives `forbidden` meanwhile (a
/// stranger's message, say).
pub(crate) async fn deliver_eventually_but_never(
    net: &Arc<dyn Runtime>,
    from: &TcpTransport,
    dest: &mut TcpTransport,
    tag: u64,
    forbidden: Option<&Message>,
) {
    let (src, id) = (from.node_id(), dest.node_id());
    within(
        net,
        &format!("delivery {src} -> {id} of tag {tag}"),
        async {
            let mut got = Vec::new();
            loop {
                from.send(vec![to(id.0, msg(tag))]);
                // Cancelling recv here exercises its cancel safety too.
                let _ = timeout(net, Duration::from_millis(20), dest.recv(&mut got, 64)).await;
                assert!(
                    got.iter().all(|m| Some(&m.message) != forbidden),
                    "a forbidden message was delivered: {got:?}"
                );
                if got.iter().any(|m| m.from == src && m.message == msg(tag)) {
                    return;
                }
            }
        },
    )
    .await;
}

/// Every ordered pair of `nodes` (ids 0, 1, ...) carries `per_pair` messages, and each
/// arrives in order, with the sender's id from the handshake.
pub(crate) async fn exchange_in_all_directions(
    net: &Arc<dyn Runtime>,
    nodes: &mut [TcpTransport],
    per_pair: u64,
) {
    let n = nodes.len() as u64;
    for seq in 0..per_pair {
        for node in nodes.iter() {
            let me = node.node_id().0;
            let batch = (0..n)
                .filter(|&peer| peer != me)
                .map(|peer| to(peer, msg(me * 1_000 + seq)))
                .collect();
            node.send(batch);
        }
    }
    for node in nodes.iter_mut() {
        let me = node.node_id();
        let got = recv_n(net, node, ((n - 1) * per_pair) as usize).await;
        for peer in (0..n).map(NodeId).filter(|&p| p != me) {
            let from_peer: Vec<_> = got
                .iter()
                .filter(|m| m.from == peer)
                .map(|m| m.message.clone())
                .collect();
            let expected: Vec<_> = (0..per_pair).map(|seq| msg(peer.0 * 1_000 + seq)).collect();
            assert_eq!(from_peer, expected, "{peer} -> {me}");
        }
    }
}

/// The frame of `message`, as a dialer writes it after the handshake.
pub(crate) fn message_frame(message: &Message) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(message, &mut buf, 1 << 20).unwrap();
    buf
}

/// The frame of a `Hello` from `from` to `to` in `cluster`.
pub(crate) fn hello_frame(cluster: u64, from: u64, to: u64) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(
        &Hello::new(cluster, NodeId(from), NodeId(to)),
        &mut buf,
        HELLO_MAX_BYTES,
    )
    .unwrap();
    buf
}

/// Reads one `Hello` frame from a raw connection.
pub(crate) async fn read_hello(conn: &mut BoxConn) -> Hello {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        if let Some((hello, _)) = decode_frame::<Hello>(&buf, HELLO_MAX_BYTES).unwrap() {
            return hello;
        }
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the hello");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Dials `addr` and completes a valid handshake as node `from`, within [`WAIT`].
pub(crate) async fn raw_peer(
    net: &Arc<dyn Runtime>,
    addr: SocketAddr,
    from: u64,
    to: u64,
) -> BoxConn {
    within(net, "a raw handshake with the transport", async {
        let mut conn = net.connect_tcp(addr).await.unwrap();
        conn.write_all(&hello_frame(CLUSTER, from, to))
            .await
            .unwrap();
        let reply = read_hello(&mut conn).await;
        assert_eq!(reply, Hello::new(CLUSTER, NodeId(to), NodeId(from)));
        conn
    })
    .await
}

/// Dials `addr` and tries a valid handshake as node `from`: the connection if the
/// transport answered, `None` if it closed the connection instead.
pub(crate) async fn try_handshake(
    net: &Arc<dyn Runtime>,
    addr: SocketAddr,
    from: u64,
    to: u64,
) -> Option<BoxConn> {
    let mut conn = net.connect_tcp(addr).await.unwrap();
    conn.write_all(&hello_frame(CLUSTER, from, to)).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        if let Some((hello, _)) = decode_frame::<Hello>(&buf, HELLO_MAX_BYTES).unwrap() {
            assert_eq!(hello, Hello::new(CLUSTER, NodeId(to), NodeId(from)));
            return Some(conn);
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the transport closes `conn`; returns the bytes it sent before closing.
pub(crate) async fn expect_closed(net: &Arc<dyn Runtime>, conn: &mut BoxConn) -> usize {
    expect_closed_within(net, "the connection", conn, WAIT).await
}

/// [`expect_closed`], failing the test (naming the connection `what`) if it is still open
/// after `limit`.
pub(crate) async fn expect_closed_within(
    net: &Arc<dyn Runtime>,
    what: &str,
    conn: &mut BoxConn,
    limit: Duration,
) -> usize {
    let read_to_end = async {
        let mut total = 0;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    match timeout(net, limit, read_to_end).await {
        Some(total) => total,
        None => panic!("the transport did not close {what} within {limit:?}"),
    }
}

/// A waker that records that it was woken.
#[derive(Debug, Default)]
pub(crate) struct WakeFlag(AtomicBool);

impl WakeFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A free loopback address: nothing listens there (a dialer gets "connection refused").
pub(crate) fn unused_addr(net: &Arc<dyn Runtime>) -> SocketAddr {
    let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    listener.local_addr().unwrap()
}
