//! One test per mistake the builder refuses, each asserting the error a user sees: a
//! member without an address, an address for a stranger, two ids that disagree, messages
//! that do not fit the transport's frames, a data directory of another node or cluster,
//! one that another node holds open, and a port that is taken. Each refused start leaves
//! nothing running.

mod common;

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use paxos_node::tcp::{TcpConfig, TcpTransport};
use paxos_node::{NodeBuilder, NodeHandle, NodeId, Runtime, StartError, StorageError, StoreOwner};

use common::{CLUSTER, Kv, core_config, on_tokio, ports};

fn members(n: u64) -> Vec<(NodeId, SocketAddr)> {
    (1..=n).map(|i| (NodeId(i), ports::free_addr())).collect()
}

/// Node `id` of a cluster of `n`, on TCP, memory storage.
fn tcp_node(rt: &Arc<dyn Runtime>, id: u64, peers: &[(NodeId, SocketAddr)]) -> NodeBuilder {
    let ids: Vec<u64> = peers.iter().map(|(p, _)| p.0).collect();
    let listen = peers
        .iter()
        .find(|(p, _)| p.0 == id)
        .map_or_else(ports::free_addr, |p| p.1);
    NodeBuilder::new(core_config(id, &ids))
        .cluster_id(CLUSTER)
        .runtime(rt.clone())
        .tcp(listen, peers.iter().copied())
        .memory_storage()
        .state_machine(Box::new(Kv::default()))
}

async fn start_err(builder: NodeBuilder) -> StartError {
    match builder.start().await {
        Ok(node) => {
            node.shutdown().await;
            panic!("the builder started a node it should have refused");
        }
        Err(e) => e,
    }
}

#[test]
fn a_member_without_an_address_is_refused_before_any_port_is_bound() {
    on_tokio(|rt| async move {
        let mut peers = members(3);
        let listen = peers[0].1;
        peers.remove(2);
        let builder = NodeBuilder::new(core_config(1, &[1, 2, 3]))
            .runtime(rt.clone())
            .tcp(listen, peers)
            .memory_storage()
            .state_machine(Box::new(Kv::default()));
        let error = start_err(builder).await;
        assert!(
            matches!(error, StartError::NoAddress { member: NodeId(3) }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "member n3 has no address");
        // Refused before binding: the port is free.
        drop(std::net::TcpListener::bind(listen).expect("the refused node bound no port"));
    });
}

#[test]
fn an_address_for_a_node_that_is_not_a_member_is_refused() {
    on_tokio(|rt| async move {
        let mut peers = members(3);
        peers.push((NodeId(9), ports::free_addr()));
        let builder = NodeBuilder::new(core_config(1, &[1, 2, 3]))
            .runtime(rt.clone())
            .tcp(peers[0].1, peers)
            .memory_storage()
            .state_machine(Box::new(Kv::default()));
        let error = start_err(builder).await;
        assert!(
            matches!(error, StartError::NotAMember { peer: NodeId(9) }),
            "{error:?}"
        );
    });
}

#[test]
fn a_transport_that_speaks_for_another_node_is_refused() {
    on_tokio(|rt| async move {
        let peers = members(3);
        // Started by hand for node 2, given to node 1.
        let tcp = TcpConfig::new(
            CLUSTER,
            NodeId(2),
            peers[1].1,
            peers.iter().copied().collect(),
        );
        let transport = TcpTransport::start(tcp, rt.clone()).unwrap();
        let builder = NodeBuilder::new(core_config(1, &[1, 2, 3]))
            .runtime(rt.clone())
            .transport(Box::new(transport))
            .memory_storage()
            .state_machine(Box::new(Kv::default()));
        let error = start_err(builder).await;
        assert!(
            matches!(
                error,
                StartError::IdMismatch {
                    node: NodeId(1),
                    transport: NodeId(2)
                }
            ),
            "{error:?}"
        );
    });
}

#[test]
fn a_transport_never_told_its_peers_is_refused() {
    on_tokio(|rt| async move {
        let tcp = TcpConfig::new(CLUSTER, NodeId(1), ports::free_addr(), Default::default());
        let transport = TcpTransport::start(tcp, rt.clone()).unwrap();
        let builder = NodeBuilder::new(core_config(1, &[1, 2, 3]))
            .runtime(rt.clone())
            .transport(Box::new(transport))
            .memory_storage()
            .state_machine(Box::new(Kv::default()));
        let error = start_err(builder).await;
        assert!(
            matches!(error, StartError::NoAddress { member: NodeId(2) }),
            "{error:?}"
        );
    });
}

#[test]
fn messages_larger_than_the_transports_frames_are_refused() {
    on_tokio(|rt| async move {
        let peers = members(3);
        // The core's messages are bounded at 4 MiB by default; frames here at 1 MiB.
        let builder = tcp_node(&rt, 1, &peers).tcp_config(|c| c.max_frame_bytes = 1 << 20);
        let error = start_err(builder).await;
        match error {
            StartError::FrameTooSmall {
                max_message_bytes,
                frame_limit,
            } => assert_eq!((max_message_bytes, frame_limit), (4 << 20, 1 << 20)),
            other => panic!("expected FrameTooSmall, got {other:?}"),
        }
        // Lowering the core's bound to fit is accepted.
        let mut config = core_config(1, &[1, 2, 3]);
        config.max_message_bytes = (1 << 20) - 1;
        config.max_batch_bytes = 512 << 10;
        let node = NodeBuilder::new(config)
            .cluster_id(CLUSTER)
            .runtime(rt.clone())
            .tcp(ports::free_addr(), peers)
            .tcp_config(|c| c.max_frame_bytes = 1 << 20)
            .memory_storage()
            .state_machine(Box::new(Kv::default()))
            .start()
            .await
            .expect("bounds that fit are accepted");
        node.shutdown().await;
    });
}

/// Node `id` of cluster `cluster` (one member), on file storage in `dir`.
fn file_node(rt: &Arc<dyn Runtime>, cluster: u64, id: u64, dir: &std::path::Path) -> NodeBuilder {
    NodeBuilder::new(core_config(id, &[id]))
        .cluster_id(cluster)
        .runtime(rt.clone())
        .transport(Box::new(common::NullTransport))
        .file_storage(dir)
        .state_machine(Box::new(Kv::default()))
}

async fn started(builder: NodeBuilder) -> NodeHandle {
    builder.start().await.expect("the node starts")
}

#[test]
fn a_data_directory_of_another_node_or_cluster_is_refused() {
    on_tokio(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        started(file_node(&rt, CLUSTER, 1, dir.path()))
            .await
            .shutdown()
            .await;
        // The same node again: accepted.
        started(file_node(&rt, CLUSTER, 1, dir.path()))
            .await
            .shutdown()
            .await;

        let expected = StoreOwner::new(CLUSTER, NodeId(1));
        for (cluster, id) in [(CLUSTER, 2), (CLUSTER + 1, 1)] {
            let error = start_err(file_node(&rt, cluster, id, dir.path())).await;
            match &error {
                StartError::Storage(StorageError::OwnedByOther {
                    expected: asked,
                    found,
                }) => {
                    assert_eq!(*found, expected, "{error}");
                    assert_eq!(*asked, StoreOwner::new(cluster, NodeId(id)), "{error}");
                }
                other => panic!("expected OwnedByOther, got {other:?}"),
            }
        }
        // The refusals left the directory as it was: its owner still starts.
        started(file_node(&rt, CLUSTER, 1, dir.path()))
            .await
            .shutdown()
            .await;
    });
}

#[test]
fn a_data_directory_another_node_holds_open_is_refused() {
    on_tokio(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let running = started(file_node(&rt, CLUSTER, 1, dir.path())).await;
        let error = start_err(file_node(&rt, CLUSTER, 1, dir.path())).await;
        assert!(
            matches!(error, StartError::Storage(StorageError::Locked { .. })),
            "{error:?}"
        );
        running.shutdown().await;
        started(file_node(&rt, CLUSTER, 1, dir.path()))
            .await
            .shutdown()
            .await;
    });
}

#[test]
fn a_taken_port_is_refused_with_the_bind_error_as_source() {
    on_tokio(|rt| async move {
        let peers = members(3);
        let taken = std::net::TcpListener::bind(peers[0].1).unwrap();
        let error = start_err(tcp_node(&rt, 1, &peers)).await;
        let StartError::Transport(source) = &error else {
            panic!("expected a transport error, got {error:?}");
        };
        match source.downcast_ref::<paxos_node::tcp::StartError>() {
            Some(paxos_node::tcp::StartError::Bind { addr, kind, .. }) => {
                assert_eq!((*addr, *kind), (peers[0].1, io::ErrorKind::AddrInUse));
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
        // The chain reaches the io::Error itself.
        let io = error.source().and_then(|e| e.source());
        let io = io
            .and_then(|e| e.downcast_ref::<io::Error>())
            .expect("an io::Error source");
        assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
        drop(taken);
    });
}

#[test]
fn the_ids_given_once_reach_the_transport() {
    on_tokio(|rt| async move {
        // Three nodes built from one address map, each id given once: they elect a leader
        // and commit, which they could not if the transport announced another id or
        // cluster (handshakes refused).
        let peers = members(3);
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(started(tcp_node(&rt, id, &peers)).await);
        }
        let leader = paxos_node::wait_for_leader(&nodes, common::WAIT)
            .await
            .expect("a leader within the wait");
        let leader = nodes.iter().find(|n| n.id() == leader).unwrap();
        leader.propose(Kv::set(1, 2)).await.unwrap();
        for node in &nodes {
            assert_eq!(Kv::value(&node.read(Kv::get(1)).await.unwrap()), Some(2));
        }
        for node in &nodes {
            node.shutdown().await;
        }
    });
}
