//! End-to-end tests over loopback; every test runs on tokio and on smol.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::io::AsyncWriteExt;
use paxos_core::{Inbound, NodeId, Transport};
use paxos_net_tcp::{Runtime, StartError, TcpTransport};

use common::*;

on_both_runtimes!(
    three_nodes_exchange_in_all_directions,
    peer_restart_reconnects,
    random_bytes_are_refused,
    wrong_cluster_is_refused,
    gigabyte_frame_closes_the_connection,
    stuck_peer_does_not_block_others,
    recv_is_cancel_safe,
    drops_are_counted,
    bind_conflict_is_reported,
    close_releases_the_port_and_the_peers_notice,
    outbound_queue_is_bounded_in_bytes,
    one_large_message_passes_a_small_byte_bound,
    inbound_queue_is_bounded_in_bytes,
);

/// Every ordered pair of three nodes carries 100 messages, in order.
async fn three_nodes_exchange_in_all_directions(net: Arc<dyn Runtime>) {
    const PER_PAIR: u64 = 100;
    let mut nodes = cluster(&net, 3);
    for seq in 0..PER_PAIR {
        for node in &nodes {
            let me = node.node_id().0;
            let batch = (0..3)
                .filter(|&peer| peer != me)
                .map(|peer| to(peer, msg(me * 1_000 + seq)))
                .collect();
            node.send(batch);
        }
    }
    for node in &mut nodes {
        let me = node.node_id();
        let got = recv_n(&net, node, 2 * PER_PAIR as usize).await;
        for peer in (0..3).map(NodeId).filter(|&p| p != me) {
            let from_peer: Vec<_> = got.iter().filter(|m| m.from == peer).collect();
            let expected: Vec<_> = (0..PER_PAIR)
                .map(|seq| Inbound {
                    from: peer,
                    message: msg(peer.0 * 1_000 + seq),
                })
                .collect();
            assert_eq!(
                from_peer,
                expected.iter().collect::<Vec<_>>(),
                "{peer} -> {me}"
            );
        }
    }
    for node in nodes {
        let stats = node.stats();
        // Counted before the frames they carried were written or delivered.
        assert_eq!(stats.connections_opened, 2, "{stats:?}");
        assert_eq!(stats.connections_accepted, 2, "{stats:?}");
        assert_eq!(stats.received_frames, 2 * PER_PAIR, "{stats:?}");
        assert_eq!(stats.dropped_queue_full, 0, "{stats:?}");
    }
}

/// A node is stopped and restarted on the same port; the others reconnect to it.
async fn peer_restart_reconnects(net: Arc<dyn Runtime>) {
    let mut nodes = cluster(&net, 3);
    let (a, rest) = nodes.split_at_mut(1);
    deliver_eventually(&net, &a[0], &mut rest[1], 1).await;
    deliver_eventually(&net, &rest[1], &mut a[0], 2).await;

    let old = nodes.pop().unwrap();
    let addr = old.local_addr();
    old.close().await;
    let mut restarted = config(2);
    restarted.listen = addr;
    restarted.peers = nodes
        .iter()
        .map(|n| (n.node_id(), n.local_addr()))
        .collect();
    let mut new = TcpTransport::start(restarted, net.clone()).unwrap();
    assert_eq!(new.local_addr(), addr);

    for (tag, node) in nodes.iter_mut().enumerate() {
        deliver_eventually(&net, node, &mut new, 10 + tag as u64).await;
        deliver_eventually(&net, &new, node, 20 + tag as u64).await;
    }
    assert!(
        nodes[0].stats().connections_opened >= 3,
        "{:?}",
        nodes[0].stats()
    );
}

/// Random bytes on the port close that connection; the node keeps serving.
async fn random_bytes_are_refused(net: Arc<dyn Runtime>) {
    let mut nodes = cluster(&net, 2);
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..3 {
        let garbage: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
        let mut conn = net.connect_tcp(nodes[0].local_addr()).await.unwrap();
        let _ = conn.write_all(&garbage).await;
        assert_eq!(expect_closed(&net, &mut conn).await, 0, "round {round}");
    }
    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &b[0], &mut a[0], 1).await;
    assert_eq!(
        nodes[0].stats().connections_refused,
        3,
        "{:?}",
        nodes[0].stats()
    );
}

/// A handshake naming another cluster is refused without an answer.
async fn wrong_cluster_is_refused(net: Arc<dyn Runtime>) {
    let mut nodes = cluster(&net, 2);
    let mut conn = net.connect_tcp(nodes[0].local_addr()).await.unwrap();
    conn.write_all(&hello_frame(CLUSTER + 1, 1, 0))
        .await
        .unwrap();
    assert_eq!(
        expect_closed(&net, &mut conn).await,
        0,
        "no hello in answer"
    );
    // An unknown node id in the right cluster is refused the same way.
    let mut conn = net.connect_tcp(nodes[0].local_addr()).await.unwrap();
    conn.write_all(&hello_frame(CLUSTER, 99, 0)).await.unwrap();
    assert_eq!(
        expect_closed(&net, &mut conn).await,
        0,
        "no hello in answer"
    );

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &b[0], &mut a[0], 1).await;
    assert_eq!(
        nodes[0].stats().connections_refused,
        2,
        "{:?}",
        nodes[0].stats()
    );
}

/// A frame declaring 1 GiB closes the connection, before and after the handshake.
async fn gigabyte_frame_closes_the_connection(net: Arc<dyn Runtime>) {
    let mut nodes = cluster(&net, 2);
    // Node 9 is a peer only so that a raw socket may handshake as it.
    nodes[0].set_peer(NodeId(9), unused_addr(&net));
    let gib = (1u32 << 30).to_le_bytes();

    let mut conn = net.connect_tcp(nodes[0].local_addr()).await.unwrap();
    conn.write_all(&gib).await.unwrap();
    assert_eq!(expect_closed(&net, &mut conn).await, 0);

    let mut conn = raw_peer(&net, nodes[0].local_addr(), 9, 0).await;
    conn.write_all(&gib).await.unwrap();
    let _ = conn.write_all(&[1u8; 1024]).await;
    expect_closed(&net, &mut conn).await;

    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &b[0], &mut a[0], 1).await;
    let stats = nodes[0].stats();
    assert_eq!(
        (stats.connections_refused, stats.connections_bad_frame),
        (1, 1),
        "{stats:?}"
    );
}

/// A peer that handshakes and then never reads: sending to it heavily fills only its
/// own queue, and messages to the other peer keep flowing.
async fn stuck_peer_does_not_block_others(net: Arc<dyn Runtime>) {
    const STUCK: u64 = 9;
    let mut config0 = config(0);
    config0.max_outbound_queue = 64;
    let mut n0 = TcpTransport::start(config0, net.clone()).unwrap();
    let mut n1 = TcpTransport::start(config(1), net.clone()).unwrap();
    n0.set_peer(NodeId(1), n1.local_addr());
    n1.set_peer(NodeId(0), n0.local_addr());

    // The stuck peer: listens, answers n0's handshake, then never reads. It also dials
    // n0 with a valid handshake and stays silent.
    let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    n0.set_peer(NodeId(STUCK), listener.local_addr().unwrap());
    let (mut stuck_in, _) = within(&net, "n0 to dial the stuck peer", listener.accept())
        .await
        .unwrap();
    let hello = within(&net, "n0's hello", read_hello(&mut stuck_in)).await;
    assert_eq!(hello.from, NodeId(0));
    stuck_in
        .write_all(&hello_frame(CLUSTER, STUCK, 0))
        .await
        .unwrap();
    let _stuck_out = raw_peer(&net, n0.local_addr(), STUCK, 0).await;

    // Rounds of 64 x 64 KiB to the stuck peer, each followed by one message to n1 that
    // must arrive. The stuck peer's socket buffers fill within a few rounds; then its
    // queue fills and drops.
    let mut round = 0;
    while n0.stats().dropped_queue_full < 1_000 {
        assert!(
            round < 1_000,
            "the stuck peer's queue never filled: {:?}",
            n0.stats()
        );
        n0.send((0..64).map(|_| to(STUCK, big(64 * 1024))).collect());
        n0.send(vec![to(1, msg(round))]);
        let got = recv_n(&net, &mut n1, 1).await;
        assert_eq!(
            got,
            vec![Inbound {
                from: NodeId(0),
                message: msg(round)
            }]
        );
        round += 1;
    }
    // And the other direction is unaffected as well.
    deliver_eventually(&net, &n1, &mut n0, 1).await;
    drop(stuck_in);
}

/// `recv` dropped mid-wait, thousands of times, loses nothing.
async fn recv_is_cancel_safe(net: Arc<dyn Runtime>) {
    const COUNT: u64 = 2_000;
    let mut config1 = config(1);
    config1.max_outbound_queue = COUNT as usize;
    let mut nodes = vec![
        TcpTransport::start(config(0), net.clone()).unwrap(),
        TcpTransport::start(config1, net.clone()).unwrap(),
    ];
    connect_all(&nodes);
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(100) {
        nodes[1].send(chunk.iter().map(|&i| to(0, msg(i))).collect());
    }
    let mut got = Vec::new();
    within(&net, "all messages through a cancelled recv", async {
        while got.len() < COUNT as usize {
            let _ = timeout(
                &net,
                std::time::Duration::from_micros(50),
                nodes[0].recv(&mut got, 7),
            )
            .await;
        }
    })
    .await;
    let tags: Vec<_> = got.iter().map(|m| m.message.clone()).collect();
    assert_eq!(tags, (0..COUNT).map(msg).collect::<Vec<_>>());
}

/// Messages to unknown peers and messages too large for a frame are dropped and counted;
/// the rest of the queue still goes out.
async fn drops_are_counted(net: Arc<dyn Runtime>) {
    let mut config0 = config(0);
    config0.max_frame_bytes = 1024;
    let n0 = TcpTransport::start(config0, net.clone()).unwrap();
    let mut n1 = TcpTransport::start(config(1), net.clone()).unwrap();
    n0.set_peer(NodeId(1), n1.local_addr());
    n1.set_peer(NodeId(0), n0.local_addr());
    n0.send(vec![to(7, msg(0)), to(1, big(4096)), to(1, msg(1))]);
    let got = recv_n(&net, &mut n1, 1).await;
    assert_eq!(
        got,
        vec![Inbound {
            from: NodeId(0),
            message: msg(1)
        }]
    );
    let stats = n0.stats();
    assert_eq!(
        (stats.dropped_unknown_peer, stats.dropped_too_large),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(n0.peers(), BTreeMap::from([(NodeId(1), n1.local_addr())]));
}

/// Binding a port in use fails with the kind of the error; an invalid config is refused.
async fn bind_conflict_is_reported(net: Arc<dyn Runtime>) {
    let n0 = TcpTransport::start(config(0), net.clone()).unwrap();
    let mut clash = config(1);
    clash.listen = n0.local_addr();
    let err = TcpTransport::start(clash, net.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Bind {
                kind: std::io::ErrorKind::AddrInUse,
                ..
            }
        ),
        "{err:?}"
    );
    let mut bad = config(1);
    bad.max_outbound_queue = 0;
    assert!(matches!(
        TcpTransport::start(bad, net.clone()),
        Err(StartError::Config(_))
    ));
}

/// `close` stops the listener (the port is free again at once) and every connection (the
/// peer's reader sees its inbound connection end and the peer redials in vain).
async fn close_releases_the_port_and_the_peers_notice(net: Arc<dyn Runtime>) {
    let mut nodes = cluster(&net, 2);
    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &a[0], &mut b[0], 1).await;
    let n1 = nodes.pop().unwrap();
    let addr = n1.local_addr();
    n1.close().await;
    assert!(net.connect_tcp(addr).await.is_err(), "listener still open");
    // n0 keeps serving: a message to the closed peer is queued (not blocking), and a new
    // node on the old port gets it once n0 has reconnected.
    nodes[0].send(vec![to(1, msg(2))]);
    let mut again = config(1);
    again.listen = addr;
    again.peers = BTreeMap::from([(NodeId(0), nodes[0].local_addr())]);
    let mut n1 = TcpTransport::start(again, net.clone()).unwrap();
    deliver_eventually(&net, &nodes[0], &mut n1, 3).await;
}

/// Frames queued for a peer that cannot be reached stay queued: past the byte bound, more
/// are dropped and counted, though the message bound is far away.
async fn outbound_queue_is_bounded_in_bytes(net: Arc<dyn Runtime>) {
    let mut config0 = config(0);
    config0.max_outbound_queue_bytes = 256 * 1024;
    let n0 = TcpTransport::start(config0, net.clone()).unwrap();
    n0.set_peer(NodeId(1), unused_addr(&net));
    // Each frame is a little over 100 KiB: two fit in 256 KiB, the third does not.
    n0.send((0..10).map(|_| to(1, big(100 * 1024))).collect());
    let stats = n0.stats();
    assert_eq!(stats.dropped_queue_full, 8, "{stats:?}");
    // Small messages still fit beside them.
    n0.send(vec![to(1, msg(1))]);
    assert_eq!(n0.stats().dropped_queue_full, 8);
}

/// A message larger than the byte bounds is admitted to an empty queue, alone, so that
/// progress is possible: every one is delivered when they are sent one at a time.
async fn one_large_message_passes_a_small_byte_bound(net: Arc<dyn Runtime>) {
    let mut config0 = config(0);
    config0.max_outbound_queue_bytes = 1024;
    let mut config1 = config(1);
    config1.max_inbound_queue_bytes = 1024;
    let mut nodes = vec![
        TcpTransport::start(config0, net.clone()).unwrap(),
        TcpTransport::start(config1, net.clone()).unwrap(),
    ];
    connect_all(&nodes);
    let (n0, n1) = nodes.split_at_mut(1);
    for _ in 0..5 {
        n0[0].send(vec![to(1, big(100 * 1024))]);
        let got = recv_n(&net, &mut n1[0], 1).await;
        assert_eq!(got[0].message, big(100 * 1024));
    }
    assert_eq!(n0[0].stats().dropped_queue_full, 0);
}

/// Readers stop at the inbound byte bound (nothing is dropped): with 200 KiB, three
/// frames of 64 KiB are queued and the fourth waits until `recv` takes some.
async fn inbound_queue_is_bounded_in_bytes(net: Arc<dyn Runtime>) {
    const COUNT: usize = 8;
    let mut config1 = config(1);
    config1.max_inbound_queue_bytes = 200 * 1024;
    let mut nodes = vec![
        TcpTransport::start(config(0), net.clone()).unwrap(),
        TcpTransport::start(config1, net.clone()).unwrap(),
    ];
    connect_all(&nodes);
    let (n0, n1) = nodes.split_at_mut(1);
    n0[0].send((0..COUNT).map(|_| to(1, big(64 * 1024))).collect());
    within(&net, "three frames queued", async {
        while n1[0].stats().received_frames < 3 {
            net.sleep(std::time::Duration::from_millis(1)).await; // polling
        }
    })
    .await;
    let got = recv_n(&net, &mut n1[0], COUNT).await;
    assert!(got.iter().all(|m| m.message == big(64 * 1024)));
    let stats = n1[0].stats();
    assert_eq!(stats.received_frames, COUNT as u64, "{stats:?}");
    assert!(
        (3 * 64 * 1024..=200 * 1024).contains(&stats.peak_inbound_queue_bytes),
        "{stats:?}"
    );
    assert_eq!(n0[0].stats().dropped_queue_full, 0);
}
