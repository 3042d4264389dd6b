//! End-to-end tests over loopback; every test runs on tokio and on smol.

mod common;

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use futures::future::{Either, select};
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
    handshake_timeout_closes_a_silent_connection,
    inbound_connections_beyond_the_bound_are_closed,
    write_timeout_gives_up_on_a_peer_that_never_reads,
    a_second_connection_from_a_peer_replaces_the_first,
);

/// Every ordered pair of three nodes carries 100 messages, in order.
async fn three_nodes_exchange_in_all_directions(net: Arc<dyn Runtime>) {
    const PER_PAIR: u64 = 100;
    let mut nodes = cluster(&net, 3);
    exchange_in_all_directions(&net, &mut nodes, PER_PAIR).await;
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
    // Node 2 is restarted on its port while the others redial it: see `start_restartable`.
    let mut nodes = vec![
        TcpTransport::start(config(0), net.clone()).unwrap(),
        TcpTransport::start(config(1), net.clone()).unwrap(),
        start_restartable(&net, config(2)),
    ];
    connect_all(&nodes);
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
    let mut new = start_retrying(&net, restarted).await;
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

/// `recv` cancelled while it waits loses nothing and duplicates nothing. Each round drops
/// one `recv` while it waits with nothing queued, and one after a message arrived and woke
/// it but before it was polled again; a later `recv` must get that message, once. Then
/// thousands of `recv`s are cut short at arbitrary points of a stream of messages.
async fn recv_is_cancel_safe(net: Arc<dyn Runtime>) {
    const ROUNDS: u64 = 20;
    const COUNT: u64 = 2_000;
    let mut config1 = config(1);
    config1.max_outbound_queue = COUNT as usize;
    let mut nodes = vec![
        TcpTransport::start(config(0), net.clone()).unwrap(),
        TcpTransport::start(config1, net.clone()).unwrap(),
    ];
    connect_all(&nodes);
    let [n0, n1] = &mut nodes[..] else {
        unreachable!()
    };
    // Sent once: queued until the connection is up, then delivered.
    n1.send(vec![to(0, msg(u64::MAX))]);
    let first = recv_n(&net, n0, 1).await;
    assert_eq!(first[0].message, msg(u64::MAX));

    let mut got = Vec::new();
    for round in 0..ROUNDS {
        // Nothing is queued: the recv waits, and is dropped while it waits.
        let waited = timeout(&net, Duration::from_millis(5), n0.recv(&mut got, 8)).await;
        assert!(
            waited.is_none() && got.is_empty(),
            "round {round}: recv returned with nothing sent: {got:?}"
        );
        // Polled once, so that it waits; the message arrives and wakes it; dropped unpolled.
        let woken = Arc::new(WakeFlag::default());
        let mut pending = n0.recv(&mut got, 8);
        let waker = Waker::from(woken.clone());
        let polled = pending.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending(), "round {round}: recv did not wait");
        n1.send(vec![to(0, msg(round))]);
        within(&net, "the message to wake the waiting recv", async {
            while !woken.is_set() {
                net.sleep(Duration::from_millis(1)).await; // polling
            }
        })
        .await;
        drop(pending);
        assert!(
            got.is_empty(),
            "round {round}: the dropped recv returned {got:?}"
        );
        let later = recv_n(&net, n0, 1).await;
        assert_eq!(
            later,
            vec![Inbound {
                from: NodeId(1),
                message: msg(round)
            }],
            "round {round}: a later recv"
        );
    }
    // Nothing was delivered twice: no message is left.
    let extra = timeout(&net, Duration::from_millis(50), n0.recv(&mut got, 8)).await;
    assert!(extra.is_none() && got.is_empty(), "left over: {got:?}");

    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(100) {
        n1.send(chunk.iter().map(|&i| to(0, msg(i))).collect());
    }
    within(&net, "all messages through a cancelled recv", async {
        while got.len() < COUNT as usize {
            let _ = timeout(&net, Duration::from_micros(50), n0.recv(&mut got, 7)).await;
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
    // Node 1's port is bound again while node 0 redials it: see `start_restartable`.
    let mut nodes = vec![
        TcpTransport::start(config(0), net.clone()).unwrap(),
        start_restartable(&net, config(1)),
    ];
    connect_all(&nodes);
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
    let mut n1 = start_retrying(&net, again).await;
    assert_eq!(n1.local_addr(), addr);
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
            net.sleep(Duration::from_millis(1)).await; // polling
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

/// A connection that sends nothing, or only part of a hello, is closed once
/// `handshake_timeout` has passed (not before), and the node keeps serving.
async fn handshake_timeout_closes_a_silent_connection(net: Arc<dyn Runtime>) {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
    // Scheduling slack on a loaded machine.
    const SLACK: Duration = Duration::from_millis(1_500);
    let mut config0 = config(0);
    config0.handshake_timeout = HANDSHAKE_TIMEOUT;
    let mut nodes = vec![
        TcpTransport::start(config0, net.clone()).unwrap(),
        TcpTransport::start(config(1), net.clone()).unwrap(),
    ];
    connect_all(&nodes);
    let addr = nodes[0].local_addr();
    let started = Instant::now();
    let mut silent = net.connect_tcp(addr).await.unwrap();
    let mut partial = net.connect_tcp(addr).await.unwrap();
    partial
        .write_all(&hello_frame(CLUSTER, 1, 0)[..3])
        .await
        .unwrap();
    for (what, conn) in [("silent", &mut silent), ("partial hello", &mut partial)] {
        let answered = expect_closed_within(&net, what, conn, HANDSHAKE_TIMEOUT + SLACK).await;
        let elapsed = started.elapsed();
        assert_eq!(answered, 0, "{what}: answered");
        assert!(
            elapsed >= HANDSHAKE_TIMEOUT,
            "{what}: closed after {elapsed:?}, before the handshake timeout"
        );
    }
    let (a, b) = nodes.split_at_mut(1);
    deliver_eventually(&net, &b[0], &mut a[0], 1).await;
    let stats = nodes[0].stats();
    assert_eq!(
        (stats.connections_refused, stats.connections_accepted),
        (2, 1),
        "{stats:?}"
    );
}

/// `max_inbound_connections` counts connections in the handshake and established ones:
/// past it, a new connection is closed on accept without an answer to its (valid) hello;
/// once one closes, a new one is served again.
async fn inbound_connections_beyond_the_bound_are_closed(net: Arc<dyn Runtime>) {
    const PEER: u64 = 9;
    let mut config0 = config(0);
    config0.max_inbound_connections = 2;
    // Longer than the test: the silent connections stay open until dropped.
    config0.handshake_timeout = Duration::from_secs(60);
    let mut n0 = TcpTransport::start(config0, net.clone()).unwrap();
    // A peer only so that a raw socket may handshake as it.
    n0.set_peer(NodeId(PEER), unused_addr(&net));
    let addr = n0.local_addr();

    // Two connections in the handshake fill the bound (accepted in order, before the third).
    let silent_a = net.connect_tcp(addr).await.unwrap();
    let _silent_b = net.connect_tcp(addr).await.unwrap();
    let mut third = net.connect_tcp(addr).await.unwrap();
    let _ = third.write_all(&hello_frame(CLUSTER, PEER, 0)).await;
    let answered =
        expect_closed_within(&net, "the connection over the bound", &mut third, WAIT).await;
    assert_eq!(answered, 0, "the connection over the bound: answered");
    assert_eq!(n0.stats().connections_refused, 1, "{:?}", n0.stats());

    // One closes (its handshake fails: counted): a slot is free again.
    drop(silent_a);
    within(&net, "the closed connection to be counted", async {
        while n0.stats().connections_refused < 2 {
            net.sleep(Duration::from_millis(1)).await; // polling
        }
    })
    .await;
    let mut peer = within(&net, "a handshake once a slot is free", async {
        // The slot is given back a moment after the count: retry, a bounded number of times.
        for _ in 0..100 {
            if let Some(conn) = try_handshake(&net, addr, PEER, 0).await {
                return conn;
            }
            net.sleep(Duration::from_millis(10)).await;
        }
        panic!("every handshake refused with a slot free: {:?}", n0.stats());
    })
    .await;

    // An established connection counts too: the bound is full again.
    let mut over = net.connect_tcp(addr).await.unwrap();
    let _ = over.write_all(&hello_frame(CLUSTER, PEER, 0)).await;
    let answered = expect_closed_within(
        &net,
        "the connection over the bound, an established one counted",
        &mut over,
        WAIT,
    )
    .await;
    assert_eq!(
        answered, 0,
        "the connection over the bound, an established one counted: answered"
    );
    // And the established one carries messages.
    peer.write_all(&message_frame(&msg(1))).await.unwrap();
    let got = recv_n(&net, &mut n0, 1).await;
    assert_eq!(
        got,
        vec![Inbound {
            from: NodeId(PEER),
            message: msg(1)
        }]
    );
    assert_eq!(n0.stats().connections_accepted, 1, "{:?}", n0.stats());
}

/// A peer that handshakes and then never reads: once the socket buffers are full, the
/// write waits `write_timeout` and gives up (the connection is closed and redialled), not
/// sooner and not much later; meanwhile another peer keeps getting messages.
async fn write_timeout_gives_up_on_a_peer_that_never_reads(net: Arc<dyn Runtime>) {
    const STUCK: u64 = 9;
    const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
    // Scheduling slack on a loaded machine.
    const SLACK: Duration = Duration::from_millis(2_000);
    // 512 x 64 KiB = 32 MiB: far more than loopback socket buffers take.
    const FLOOD: usize = 512;
    let mut config0 = config(0);
    config0.write_timeout = WRITE_TIMEOUT;
    config0.max_outbound_queue = FLOOD + 1;
    let n0 = TcpTransport::start(config0, net.clone()).unwrap();
    let mut n1 = TcpTransport::start(config(1), net.clone()).unwrap();
    n0.set_peer(NodeId(1), n1.local_addr());
    n1.set_peer(NodeId(0), n0.local_addr());
    n0.send(vec![to(1, msg(u64::MAX))]);
    assert_eq!(recv_n(&net, &mut n1, 1).await[0].message, msg(u64::MAX));

    let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    n0.set_peer(NodeId(STUCK), listener.local_addr().unwrap());
    let (mut stuck, _) = within(&net, "n0 to dial the stuck peer", listener.accept())
        .await
        .unwrap();
    let hello = within(&net, "n0's hello", read_hello(&mut stuck)).await;
    assert_eq!(hello.from, NodeId(0));
    stuck
        .write_all(&hello_frame(CLUSTER, STUCK, 0))
        .await
        .unwrap();

    let started = Instant::now();
    n0.send((0..FLOOD).map(|_| to(STUCK, big(64 * 1024))).collect());
    // Ping n1 until n0 gives up on the stuck connection and dials again.
    let mut pings = 0;
    let mut last_ping = started;
    let pinging = async {
        loop {
            n0.send(vec![to(1, msg(pings))]);
            let got = recv_n(&net, &mut n1, 1).await;
            assert_eq!(got[0].message, msg(pings), "ping {pings}");
            pings += 1;
            last_ping = Instant::now();
        }
    };
    let (accepted, elapsed) = {
        let (accepting, pinging) = (pin!(listener.accept()), pin!(pinging));
        let redialled = within(
            &net,
            "n0 to give up on the stuck peer and dial it again",
            select(accepting, pinging),
        )
        .await;
        // Pinging never ends.
        let Either::Left((accepted, _)) = redialled;
        (accepted, started.elapsed())
    };
    accepted.unwrap();
    assert!(
        elapsed >= WRITE_TIMEOUT,
        "gave up after {elapsed:?}, before the write timeout"
    );
    assert!(
        elapsed <= WRITE_TIMEOUT + SLACK,
        "gave up only after {elapsed:?}"
    );
    assert!(
        pings > 0 && last_ping - started >= WRITE_TIMEOUT / 2,
        "n1 was not served while the write to the stuck peer waited: {pings} pings, the \
         last {:?} in",
        last_ping - started
    );
    // The old connection was closed: what n0 had written, then the end.
    let written = expect_closed_within(&net, "the stuck connection", &mut stuck, WAIT).await;
    assert!(
        written > 0 && written < FLOOD * 64 * 1024,
        "{written} bytes"
    );
}

/// A second connection that completes the handshake as the same peer replaces the first:
/// the transport closes the first, and messages flow on the second.
async fn a_second_connection_from_a_peer_replaces_the_first(net: Arc<dyn Runtime>) {
    const PEER: u64 = 9;
    let mut n0 = TcpTransport::start(config(0), net.clone()).unwrap();
    // A peer only so that a raw socket may handshake as it.
    n0.set_peer(NodeId(PEER), unused_addr(&net));
    let addr = n0.local_addr();
    let from_peer = |tag| Inbound {
        from: NodeId(PEER),
        message: msg(tag),
    };

    let mut first = within(&net, "the first handshake", raw_peer(&net, addr, PEER, 0)).await;
    first.write_all(&message_frame(&msg(1))).await.unwrap();
    assert_eq!(recv_n(&net, &mut n0, 1).await, vec![from_peer(1)]);

    let mut second = within(&net, "the second handshake", raw_peer(&net, addr, PEER, 0)).await;
    let answered = expect_closed_within(&net, "the replaced connection", &mut first, WAIT).await;
    assert_eq!(answered, 0, "the replaced connection: answered");
    second.write_all(&message_frame(&msg(2))).await.unwrap();
    assert_eq!(recv_n(&net, &mut n0, 1).await, vec![from_peer(2)]);
    // Nothing else arrived (from the first connection or twice).
    let mut extra = Vec::new();
    let waited = timeout(&net, Duration::from_millis(50), n0.recv(&mut extra, 8)).await;
    assert!(waited.is_none() && extra.is_empty(), "{extra:?}");
    let stats = n0.stats();
    assert_eq!(
        (stats.connections_accepted, stats.connections_bad_frame),
        (2, 0),
        "{stats:?}"
    );
}
