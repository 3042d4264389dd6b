//! Peers that must be refused: no certificate, another CA, a certificate naming another
//! node than the Hello claims, the wrong cluster, an oversized frame. Each is counted, and
//! a legitimate peer still gets through afterwards.

mod common;

use std::sync::Arc;

use paxos_core::NodeId;
use paxos_net_quic::{QuicConfig, QuicTransport, Runtime, error_code};

use common::{
    CLUSTER, Ca, RawClient, closed_with, decide, open_and_write, recv_n, send, sockets, wait_until,
};

on_both_runtimes!(
    a_dialer_without_a_certificate_is_refused,
    a_certificate_from_another_ca_is_refused,
    a_certificate_naming_another_node_than_the_hello_is_refused,
    a_peer_of_another_cluster_is_refused,
    an_oversized_frame_closes_the_connection,
);

/// Node 1 (the acceptor under test) and node 2 (the legitimate peer), plus the address
/// map with a slot for node 3 (the misbehaving one, configured as a peer so that only the
/// check under test refuses it).
struct Setup {
    ca: Ca,
    nodes: Vec<QuicTransport>,
}

fn setup(runtime: &Arc<dyn Runtime>, name: &str) -> Setup {
    let ca = Ca::new(name);
    let (sockets, peers) = sockets(3);
    let nodes = sockets
        .into_iter()
        .take(2)
        .enumerate()
        .map(|(i, socket)| {
            let config = common::config(&ca, i as u64 + 1, &socket, &peers);
            QuicTransport::start_on(config, socket, runtime.clone()).unwrap()
        })
        .collect();
    Setup { ca, nodes }
}

impl Setup {
    /// Node 2 still reaches node 1, and nothing else was delivered to node 1.
    async fn legitimate_peer_gets_through(mut self, runtime: &Arc<dyn Runtime>) {
        send(&self.nodes[1], 1, decide(77));
        let got = recv_n(&**runtime, &mut self.nodes[0], 1).await;
        assert_eq!((got[0].from, &got[0].message), (NodeId(2), &decide(77)));
        common::assert_nothing_queued(&mut self.nodes[0]).await;
        for node in self.nodes {
            node.close().await;
        }
    }
}

/// The TLS handshake fails on the acceptor: it requires a client certificate.
async fn a_dialer_without_a_certificate_is_refused(runtime: Arc<dyn Runtime>) {
    let setup = setup(&runtime, "no cert");
    let client = RawClient::new(&runtime, &setup.ca.identity(3), false);
    let addr = setup.nodes[0].local_addr();
    // The client may think the handshake done before the server has checked its
    // (absent) certificate; then the connection is closed at once.
    if let Ok(conn) = client.connect(addr, 1).await {
        let _ = open_and_write(&conn, CLUSTER, 3, 1, &[]).await;
        let _ = conn.closed().await;
    }
    wait_until(&*runtime, "refused_tls", || {
        setup.nodes[0].stats().refused_tls == 1
    })
    .await;
    setup.legitimate_peer_gets_through(&runtime).await;
}

/// A certificate for node 3 from another CA fails the acceptor's client verification.
async fn a_certificate_from_another_ca_is_refused(runtime: Arc<dyn Runtime>) {
    let setup = setup(&runtime, "right ca");
    let other = Ca::new("other ca");
    // Trusts the right CA (so the dialer accepts node 1), presents the other CA's cert.
    let cert = other.ca.issue(NodeId(3)).unwrap();
    let identity = cert.identity(&setup.ca.ca.ca_pem()).unwrap();
    let client = RawClient::new(&runtime, &identity, true);
    if let Ok(conn) = client.connect(setup.nodes[0].local_addr(), 1).await {
        let _ = open_and_write(&conn, CLUSTER, 3, 1, &[]).await;
        let _ = conn.closed().await;
    }
    wait_until(&*runtime, "refused_tls", || {
        setup.nodes[0].stats().refused_tls == 1
    })
    .await;
    setup.legitimate_peer_gets_through(&runtime).await;
}

/// The right CA's certificate for node 3, with a Hello claiming node 2: closed with
/// `REFUSED_IDENTITY`.
async fn a_certificate_naming_another_node_than_the_hello_is_refused(runtime: Arc<dyn Runtime>) {
    let setup = setup(&runtime, "wrong name");
    let client = RawClient::new(&runtime, &setup.ca.identity(3), true);
    let conn = client
        .connect(setup.nodes[0].local_addr(), 1)
        .await
        .unwrap();
    let _stream = open_and_write(&conn, CLUSTER, 2, 1, &[]).await;
    let code = closed_with(&*runtime, &conn).await;
    assert_eq!(code, Some(u64::from(error_code::REFUSED_IDENTITY)));
    let stats = setup.nodes[0].stats();
    assert_eq!(
        (stats.refused_tls, stats.refused_hello),
        (1, 0),
        "{stats:?}"
    );
    setup.legitimate_peer_gets_through(&runtime).await;
}

/// A real transport configured with another cluster id: its Hello is refused with
/// `REFUSED_HELLO`, and it keeps redialling (and being refused) without harm.
async fn a_peer_of_another_cluster_is_refused(runtime: Arc<dyn Runtime>) {
    let setup = setup(&runtime, "cluster");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peers = [(NodeId(1), setup.nodes[0].local_addr())].into();
    let config = QuicConfig::new(
        CLUSTER + 1,
        NodeId(3),
        socket.local_addr().unwrap(),
        peers,
        setup.ca.identity(3),
    );
    let stranger = QuicTransport::start_on(config, socket, runtime.clone()).unwrap();
    send(&stranger, 1, decide(5));
    wait_until(&*runtime, "refused_hello", || {
        setup.nodes[0].stats().refused_hello >= 1
    })
    .await;
    wait_until(&*runtime, "the dialer noticing", || {
        stranger.stats().connections_failed >= 1
    })
    .await;
    assert_eq!(setup.nodes[0].stats().received_frames, 0);
    stranger.close().await;
    setup.legitimate_peer_gets_through(&runtime).await;
}

/// After a valid Hello, a frame declaring one byte more than `max_frame_bytes` closes the
/// connection with `BAD_FRAME` before its body is sent; the node keeps serving.
async fn an_oversized_frame_closes_the_connection(runtime: Arc<dyn Runtime>) {
    let setup = setup(&runtime, "oversized");
    let client = RawClient::new(&runtime, &setup.ca.identity(3), true);
    let conn = client
        .connect(setup.nodes[0].local_addr(), 1)
        .await
        .unwrap();
    let max = u32::try_from(setup.nodes[0].max_frame_bytes_for_test()).unwrap();
    let _stream = open_and_write(&conn, CLUSTER, 3, 1, &(max + 1).to_le_bytes()).await;
    let code = closed_with(&*runtime, &conn).await;
    assert_eq!(code, Some(u64::from(error_code::BAD_FRAME)));
    let stats = setup.nodes[0].stats();
    assert_eq!(
        (stats.bad_frames, stats.received_frames),
        (1, 0),
        "{stats:?}"
    );
    setup.legitimate_peer_gets_through(&runtime).await;
}

trait MaxFrame {
    fn max_frame_bytes_for_test(&self) -> usize;
}

impl MaxFrame for QuicTransport {
    fn max_frame_bytes_for_test(&self) -> usize {
        paxos_core::Transport::max_frame_bytes(self)
    }
}
