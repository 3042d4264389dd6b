//! Message exchange among real transports on loopback, on each runtime.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use paxos_core::message::Accept;
use paxos_core::{Ballot, Command, Message, NodeId, ProposalId, Slot, Transport, Value};
use paxos_net_quic::{QuicTransport, Runtime, StreamClass};

use common::{Ca, cluster, decide, recv_n, send, sockets, wait_until};

on_both_runtimes!(
    three_nodes_exchange_both_ways,
    a_big_bulk_backlog_does_not_hold_back_heartbeats,
    start_refuses_an_identity_naming_another_node,
    unknown_peers_and_oversized_messages_are_dropped_and_counted,
    a_restarted_peer_is_redialled,
    a_full_inbound_queue_stops_the_readers_without_loss,
);

/// Every node sends every other node a message; each gets exactly the two meant for it,
/// with the sender named by the connection.
async fn three_nodes_exchange_both_ways(runtime: Arc<dyn Runtime>) {
    let ca = Ca::new("exchange");
    let mut nodes = cluster(&ca, 3, &runtime);
    for from in 1..=3u64 {
        for to in (1..=3u64).filter(|&to| to != from) {
            send(&nodes[from as usize - 1], to, decide(from * 10 + to));
        }
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let me = i as u64 + 1;
        let mut got: Vec<(NodeId, Message)> = recv_n(&*runtime, node, 2)
            .await
            .into_iter()
            .map(|inbound| (inbound.from, inbound.message))
            .collect();
        got.sort_by_key(|(from, _)| *from);
        let want: Vec<(NodeId, Message)> = (1..=3u64)
            .filter(|&from| from != me)
            .map(|from| (NodeId(from), decide(from * 10 + me)))
            .collect();
        assert_eq!(got, want, "node {me}");
    }
    for node in &nodes {
        let stats = node.stats();
        assert_eq!(
            (stats.sent_frames, stats.received_frames),
            (2, 2),
            "{stats:?}"
        );
        assert_eq!(stats.connections_opened, 2, "{stats:?}");
        assert_eq!(stats.connections_accepted, 2, "{stats:?}");
    }
    for node in nodes {
        node.close().await;
    }
}

/// An Accept of about 1 MiB of values.
fn big_accept(first: u64) -> Message {
    let command = Command {
        id: ProposalId {
            origin: NodeId(1),
            seq: first,
            epoch: 0,
        },
        payload: Bytes::from(vec![first as u8; 1 << 20]),
    };
    Message::Accept(Accept {
        ballot: Ballot::new(1, NodeId(1)),
        first: Slot(first),
        values: vec![Value::Batch(vec![command].into())],
        commit: Slot(0),
        stamp: Default::default(),
    })
}

/// The heartbeat: an Accept with no values.
fn heartbeat(commit: u64) -> Message {
    Message::Accept(Accept {
        ballot: Ballot::new(1, NodeId(1)),
        first: Slot(1000),
        values: Vec::new(),
        commit: Slot(commit),
        stamp: Default::default(),
    })
}

/// With 24 MiB of Accepts queued on the bulk stream ahead of it, a heartbeat sent after
/// them arrives before the last of them: it travels on the control stream, sent first. On
/// one shared stream it would arrive last, after every byte of the backlog.
async fn a_big_bulk_backlog_does_not_hold_back_heartbeats(runtime: Arc<dyn Runtime>) {
    const BULK: usize = 24;
    let ca = Ca::new("backlog");
    let mut nodes = cluster(&ca, 2, &runtime);
    // Connection and both streams up first, so the backlog really is a backlog.
    send(&nodes[0], 2, decide(1));
    recv_n(&*runtime, &mut nodes[1], 1).await;
    assert_eq!(StreamClass::of(&big_accept(1)), StreamClass::Bulk);
    assert_eq!(StreamClass::of(&heartbeat(1)), StreamClass::Control);
    for i in 0..BULK as u64 {
        send(&nodes[0], 2, big_accept(i + 1));
    }
    send(&nodes[0], 2, heartbeat(7));
    let got = recv_n(&*runtime, &mut nodes[1], BULK + 1).await;
    let position = got
        .iter()
        .position(|inbound| inbound.message == heartbeat(7))
        .expect("heartbeat delivered");
    let bulk: Vec<&Message> = got
        .iter()
        .map(|inbound| &inbound.message)
        .filter(|m| **m != heartbeat(7))
        .collect();
    // Every Accept arrived whole, and in order within its class.
    let want: Vec<Message> = (0..BULK as u64).map(|i| big_accept(i + 1)).collect();
    assert!(bulk.iter().zip(&want).all(|(got, want)| *got == want));
    assert_eq!(bulk.len(), BULK);
    assert!(
        position < BULK,
        "heartbeat arrived after the whole bulk backlog (position {position})"
    );
    assert_eq!(nodes[0].stats().dropped_queue_full, 0);
    for node in nodes {
        node.close().await;
    }
}

/// A node whose certificate names another node does not start.
async fn start_refuses_an_identity_naming_another_node(runtime: Arc<dyn Runtime>) {
    let ca = Ca::new("names");
    let (mut sockets, peers) = sockets(1);
    let mut config = common::config(&ca, 1, &sockets[0], &peers);
    config.identity = ca.identity(2);
    let started = QuicTransport::start_on(config, sockets.remove(0), runtime);
    assert!(
        matches!(started, Err(paxos_net_quic::StartError::Tls(_))),
        "{started:?}"
    );
}

/// `send` drops (and counts) messages to unknown peers and messages too large for a frame,
/// and still delivers the rest.
async fn unknown_peers_and_oversized_messages_are_dropped_and_counted(runtime: Arc<dyn Runtime>) {
    let ca = Ca::new("drops");
    let (sockets, peers) = sockets(2);
    let mut nodes: Vec<QuicTransport> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let mut config = common::config(&ca, i as u64 + 1, &socket, &peers);
            config.max_frame_bytes = 64 * 1024;
            QuicTransport::start_on(config, socket, runtime.clone()).unwrap()
        })
        .collect();
    assert_eq!(nodes[0].knows_peer(NodeId(2)), Some(true));
    assert_eq!(nodes[0].knows_peer(NodeId(9)), Some(false));
    assert_eq!(nodes[0].local_node(), Some(NodeId(1)));
    send(&nodes[0], 9, decide(1));
    send(&nodes[0], 2, big_accept(1));
    send(&nodes[0], 2, decide(2));
    let got = recv_n(&*runtime, &mut nodes[1], 1).await;
    assert_eq!(got[0].message, decide(2));
    let stats = nodes[0].stats();
    assert_eq!(
        (stats.dropped_unknown_peer, stats.dropped_too_large),
        (1, 1)
    );
    // Removing the peer drops what is sent to it from then on.
    nodes[0].remove_peer(NodeId(2));
    send(&nodes[0], 2, decide(3));
    wait_until(&*runtime, "the drop counted", || {
        nodes[0].stats().dropped_unknown_peer == 2
    })
    .await;
    for node in nodes {
        node.close().await;
    }
}

/// Node 2 closes and starts again on the same address: node 1 notices (the close is
/// signalled, no idle timeout needed), redials, and its messages reach the new node 2.
async fn a_restarted_peer_is_redialled(runtime: Arc<dyn Runtime>) {
    let ca = Ca::new("restart");
    let (sockets, peers) = sockets(2);
    let mut sockets = sockets.into_iter();
    let start = |id: u64, socket: std::net::UdpSocket| {
        let config = common::config(&ca, id, &socket, &peers);
        QuicTransport::start_on(config, socket, runtime.clone()).unwrap()
    };
    let one = start(1, sockets.next().unwrap());
    let mut two = start(2, sockets.next().unwrap());
    send(&one, 2, decide(1));
    recv_n(&*runtime, &mut two, 1).await;
    let addr = two.local_addr();
    two.close().await;
    // The endpoint's driver may hold the port a moment after `close`; retry the bind.
    let mut socket = None;
    wait_until(&*runtime, "the port to be free again", || {
        socket = std::net::UdpSocket::bind(addr).ok();
        socket.is_some()
    })
    .await;
    let mut two = start(2, socket.unwrap());
    // Messages sent while node 1 has not yet noticed may be lost (the core retransmits),
    // so keep sending until one arrives.
    let mut got = Vec::new();
    wait_until(&*runtime, "a message through the new connection", || {
        send(&one, 2, decide(2));
        let mut out = Vec::new();
        if let Some(Ok(())) = futures::FutureExt::now_or_never(two.recv(&mut out, 64)) {
            got.extend(out);
        }
        !got.is_empty()
    })
    .await;
    assert!(
        got.iter()
            .all(|inbound| inbound.message == decide(2) && inbound.from == NodeId(1))
    );
    assert!(one.stats().connections_opened >= 2, "{:?}", one.stats());
    one.close().await;
    two.close().await;
}

/// Node 2's inbound queue holds 4 messages and nobody takes them: its readers stop
/// reading (at most one decoded message in hand per stream besides the queue), QUIC flow
/// control holds the rest at node 1, and once node 2 reads, all 50 arrive, in order,
/// with nothing dropped anywhere.
async fn a_full_inbound_queue_stops_the_readers_without_loss(runtime: Arc<dyn Runtime>) {
    const SENT: u64 = 50;
    const QUEUE: usize = 4;
    let ca = Ca::new("backpressure");
    let (sockets, peers) = sockets(2);
    let mut nodes: Vec<QuicTransport> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let mut config = common::config(&ca, i as u64 + 1, &socket, &peers);
            config.max_inbound_queue = QUEUE;
            QuicTransport::start_on(config, socket, runtime.clone()).unwrap()
        })
        .collect();
    for i in 0..SENT {
        send(&nodes[0], 2, decide(i));
    }
    wait_until(&*runtime, "the inbound queue to fill", || {
        nodes[1].stats().received_frames >= QUEUE as u64
    })
    .await;
    let readers = StreamClass::ACTIVE.len() as u64;
    let taken = nodes[1].stats().received_frames;
    assert!(
        taken <= QUEUE as u64 + readers,
        "read {taken} frames past a full queue"
    );
    let got = recv_n(&*runtime, &mut nodes[1], SENT as usize).await;
    let want: Vec<Message> = (0..SENT).map(decide).collect();
    let got: Vec<Message> = got.into_iter().map(|inbound| inbound.message).collect();
    assert_eq!(got, want);
    assert_eq!(nodes[0].stats().dropped_queue_full, 0);
    for node in nodes {
        node.close().await;
    }
}
