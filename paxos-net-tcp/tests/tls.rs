//! Mutual TLS end to end over loopback (feature `tls`); every test runs on tokio and on
//! smol. Certificates come from a fresh development CA per test.

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::io::AsyncWriteExt;
use futures_rustls::TlsConnector;
use paxos_core::{Message, NodeId, Transport};
use paxos_net_tcp::paxos_tls::dev::DevCa;
use paxos_net_tcp::paxos_tls::rustls::{self, ClientConfig, RootCertStore};
use paxos_net_tcp::paxos_tls::{TlsIdentity, server_name};
use paxos_net_tcp::{BoxConn, Runtime, StartError, TLS_ALPN, TcpConfig, TcpTransport};

use common::*;

on_both_runtimes!(
    tls_nodes_exchange_in_all_directions,
    dialer_without_client_certificate_is_refused,
    certificate_from_another_ca_is_refused,
    certificate_naming_another_node_is_refused,
    plain_tcp_peer_is_refused,
    gigabyte_frame_inside_tls_closes_the_connection,
    start_refuses_an_identity_naming_another_node,
);

/// What a stranger sends: it must never be delivered.
fn stranger_message() -> Message {
    msg(666)
}

/// `ca`'s identity for node `id`.
fn identity(ca: &DevCa, id: u64) -> TlsIdentity {
    ca.issue(NodeId(id))
        .unwrap()
        .identity(&ca.ca_pem())
        .unwrap()
}

/// The loopback test config of node `id`, with TLS as `ca`'s node `id`.
fn tls_config(ca: &DevCa, id: u64) -> TcpConfig {
    config(id).with_tls(identity(ca, id))
}

/// Starts TLS nodes `ids` from `ca`, each told about all the others.
fn tls_cluster(net: &Arc<dyn Runtime>, ca: &DevCa, ids: &[u64]) -> Vec<TcpTransport> {
    let nodes: Vec<_> = ids
        .iter()
        .map(|&id| TcpTransport::start(tls_config(ca, id), net.clone()).unwrap())
        .collect();
    connect_all(&nodes);
    nodes
}

/// Waits (bounded by [`WAIT`]) until `node` has refused `count` connections for TLS.
async fn wait_refused_tls(net: &Arc<dyn Runtime>, node: &TcpTransport, count: u64) {
    within(
        net,
        &format!("{count} TLS refusals at {}", node.node_id()),
        async {
            while node.stats().refused_tls < count {
                net.sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

/// Dials `addr` over TLS with `config`, expecting to reach node `to`.
async fn tls_dial(
    net: &Arc<dyn Runtime>,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    to: u64,
) -> std::io::Result<BoxConn> {
    let tcp = net.connect_tcp(addr).await?;
    let stream = TlsConnector::from(config)
        .connect(server_name(NodeId(to)), tcp)
        .await?;
    Ok(Box::new(stream))
}

/// A client that trusts the cluster CA of `identity` but presents no certificate.
fn client_without_certificate(identity: &TlsIdentity) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in identity.ca_certificates() {
        roots.add(ca.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![TLS_ALPN.to_vec()];
    Arc::new(config)
}

/// Over TLS, with an identity in `config`, dials node 0 at `addr`, sends a `Hello` as
/// `claims` and then the stranger's message, and expects the connection closed with no
/// answer.
async fn stranger_says_hello(
    net: &Arc<dyn Runtime>,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    claims: u64,
) {
    // The client's side of a TLS 1.3 handshake may complete before the server has checked
    // the client's certificate; the refusal then shows as a closed connection.
    let Ok(mut conn) = within(
        net,
        "the stranger's TLS dial",
        tls_dial(net, addr, config, 0),
    )
    .await
    else {
        return;
    };
    let _ = conn.write_all(&hello_frame(CLUSTER, claims, 0)).await;
    let _ = conn.write_all(&message_frame(&stranger_message())).await;
    let _ = conn.flush().await;
    assert_eq!(expect_closed(net, &mut conn).await, 0, "no hello in answer");
}

/// Three TLS nodes: every ordered pair carries its messages, in order, and nothing is
/// refused.
async fn tls_nodes_exchange_in_all_directions(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("exchange").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 1, 2]);
    exchange_in_all_directions(&net, &mut nodes, 50).await;
    for node in nodes {
        let stats = node.stats();
        assert_eq!(stats.connections_opened, 2, "{stats:?}");
        assert_eq!(stats.connections_accepted, 2, "{stats:?}");
        // A dial can beat `connect_all` and be refused as an unknown peer, never for TLS.
        assert_eq!(stats.refused_tls, 0, "{stats:?}");
    }
}

/// A TLS client without a certificate, claiming to be a configured peer, is refused.
async fn dialer_without_client_certificate_is_refused(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("no cert").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 1]);
    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 1, Some(&stranger_message())).await;
    // A dial can beat `tls_cluster`'s `set_peer` and be refused as an unknown peer.
    let before = nodes[0].stats();

    let config = client_without_certificate(&identity(&ca, 1));
    stranger_says_hello(&net, nodes[0].local_addr(), config, 1).await;
    wait_refused_tls(&net, &nodes[0], 1).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 2, Some(&stranger_message())).await;
    let stats = nodes[0].stats();
    assert_eq!(stats.refused_tls, 1, "{stats:?}");
    assert_eq!(
        stats.connections_refused,
        before.connections_refused + 1,
        "{stats:?}"
    );
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
}

/// A node whose certificate comes from another CA (while it trusts the right one, so it
/// gets as far as presenting it) is refused; the node keeps serving its real peers.
async fn certificate_from_another_ca_is_refused(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("cluster").unwrap();
    let other = DevCa::generate("another cluster").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 2]);
    let forged = other
        .issue(NodeId(1))
        .unwrap()
        .identity(&ca.ca_pem())
        .unwrap();
    let stranger = TcpTransport::start(config(1).with_tls(forged), net.clone()).unwrap();
    nodes[0].set_peer(NodeId(1), stranger.local_addr());
    stranger.set_peer(NodeId(0), nodes[0].local_addr());
    stranger.send(vec![to(0, stranger_message())]);
    wait_refused_tls(&net, &nodes[0], 1).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 1, Some(&stranger_message())).await;
    assert_eq!(stranger.stats().connections_opened, 0);
    assert_eq!(
        nodes[0].stats().connections_accepted,
        1,
        "{:?}",
        nodes[0].stats()
    );
}

/// A certificate from the right CA for node 3, used by a dialer whose `Hello` claims node
/// 2: refused, and node 2's own connection is untouched.
async fn certificate_naming_another_node_is_refused(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("cluster").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 2]);
    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 1, Some(&stranger_message())).await;

    let three = identity(&ca, 3).client_config(&[TLS_ALPN]).unwrap();
    stranger_says_hello(&net, nodes[0].local_addr(), three, 2).await;
    wait_refused_tls(&net, &nodes[0], 1).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 2, Some(&stranger_message())).await;
    let stats = nodes[0].stats();
    assert_eq!(
        (stats.refused_tls, stats.connections_accepted),
        (1, 1),
        "{stats:?}"
    );
}

/// A plain-TCP transport and a TLS transport refuse each other; the TLS node keeps
/// serving its TLS peers.
async fn plain_tcp_peer_is_refused(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("cluster").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 2]);
    let plain = TcpTransport::start(config(1), net.clone()).unwrap();
    nodes[0].set_peer(NodeId(1), plain.local_addr());
    plain.set_peer(NodeId(0), nodes[0].local_addr());
    plain.send(vec![to(0, stranger_message())]);
    wait_refused_tls(&net, &nodes[0], 1).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually_but_never(&net, &b[0], &mut a[0], 1, Some(&stranger_message())).await;
    assert_eq!(plain.stats().connections_opened, 0);
    // The TLS node's ClientHello is garbage to the plain node.
    within(&net, "the plain node refusing the TLS node", async {
        while plain.stats().connections_refused == 0 {
            net.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Inside TLS the frame bound holds as on plain TCP: a frame declaring 1 GiB closes an
/// established connection (counted as a bad frame, not a TLS refusal).
async fn gigabyte_frame_inside_tls_closes_the_connection(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("cluster").unwrap();
    let mut nodes = tls_cluster(&net, &ca, &[0, 1]);
    // Node 9 is a peer only so that a raw TLS client may handshake as it.
    nodes[0].set_peer(NodeId(9), unused_addr(&net));
    let nine = identity(&ca, 9).client_config(&[TLS_ALPN]).unwrap();
    let mut conn = within(&net, "a TLS dial as node 9", async {
        tls_dial(&net, nodes[0].local_addr(), nine, 0)
            .await
            .unwrap()
    })
    .await;
    conn.write_all(&hello_frame(CLUSTER, 9, 0)).await.unwrap();
    conn.flush().await.unwrap();
    let reply = within(&net, "node 0's hello", read_hello(&mut conn)).await;
    assert_eq!(reply.from, NodeId(0));
    conn.write_all(&(1u32 << 30).to_le_bytes()).await.unwrap();
    let _ = conn.write_all(&[1u8; 1024]).await;
    let _ = conn.flush().await;
    expect_closed(&net, &mut conn).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &b[0], &mut a[0], 1).await;
    let stats = nodes[0].stats();
    assert_eq!(
        (stats.connections_bad_frame, stats.refused_tls),
        (1, 0),
        "{stats:?}"
    );
}

/// An identity whose certificate names another node is refused at start, before binding.
async fn start_refuses_an_identity_naming_another_node(net: Arc<dyn Runtime>) {
    let ca = DevCa::generate("cluster").unwrap();
    let wrong = config(2).with_tls(identity(&ca, 3));
    let error = TcpTransport::start(wrong.clone(), net.clone()).unwrap_err();
    assert!(
        matches!(
            error,
            StartError::Tls {
                node: NodeId(2),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("node 2"), "{error}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = TcpTransport::start_on(wrong, listener, net.clone()).unwrap_err();
    assert!(matches!(error, StartError::Tls { .. }), "{error}");
    // The right identity starts.
    let right = TcpTransport::start(tls_config(&ca, 2), net.clone()).unwrap();
    right.close().await;
}
