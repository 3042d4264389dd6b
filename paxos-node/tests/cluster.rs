//! Three nodes over loopback TCP, on every runtime, and over QUIC and TCP with mutual TLS
//! on tokio and smol (features `quic`, `tls`): concurrent clients, the leader killed
//! mid-run, every acknowledged write surviving, and the old leader restarted from its disk
//! (on its old port) catching up.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::join_all;
use paxos_core::{NodeId, Role};
use paxos_node::{NodeHandle, ProposeError, ReadError, Runtime};

use common::{Cluster, Kv, Net, propose_until_applied, within};

const CLIENTS: u64 = 4;
const OPS_PER_CLIENT: u64 = 25;
/// Acknowledged writes after which the leader is killed.
const KILL_AFTER: usize = 30;

on_every_net!(leader_failover_and_restart);

async fn leader_failover_and_restart(net: Net, rt: Arc<dyn Runtime>) {
    let mut cluster = Cluster::start_over(net, rt.clone(), 3).await;
    let old = cluster.leader().await;

    // Clients write unique keys through every node (followers forward to the leader),
    // while the leader is killed once KILL_AFTER writes are acknowledged.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (ack_tx, ack_rx) = async_channel::unbounded::<()>();
    let handles = cluster.handles();
    let clients = (0..CLIENTS).map(|c| {
        client(
            rt.clone(),
            handles.clone(),
            c,
            acked.clone(),
            ack_tx.clone(),
        )
    });
    let killer = async {
        for _ in 0..KILL_AFTER {
            ack_rx.recv().await.unwrap();
        }
        cluster.kill(old).await;
    };
    within(
        &*rt,
        "clients and the kill",
        futures::future::join(join_all(clients), killer),
    )
    .await;

    // A new leader among the survivors, which hold every acknowledged write.
    let new = cluster.leader().await;
    assert_ne!(new, old, "the killed node cannot lead");
    let leader = cluster.handle(new).clone();
    // A linearizable read: once answered, the leader applied every earlier write. On the
    // leader the core confirms it; no marker goes through the log.
    let first = acked.lock().unwrap()[0];
    let answer = leader.read(Kv::get(first.0)).await.unwrap();
    assert_eq!(Kv::value(&answer), Some(first.1));
    assert_eq!(leader.metrics().read_markers, 0);
    let map = cluster.kv(new).map();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, CLIENTS * OPS_PER_CLIENT);
    for &(key, value) in &acked {
        assert_eq!(
            map.get(&key),
            Some(&value),
            "acknowledged write {key}={value} lost"
        );
    }

    // The old leader restarts from its disk with an empty state machine, re-applies the
    // log and catches up with what was written while it was down.
    cluster.restart(old).await;
    let handles = cluster.handles();
    propose_until_applied(&*rt, &handles, 0, Kv::set(u64::MAX, 1)).await;
    // Applied on the node that answered; every node must get there.
    let target = handles.iter().map(|h| h.status().applied).max().unwrap();
    for i in 0..3 {
        let caught_up = cluster
            .handle(i)
            .wait_for(common::WAIT, |s| s.applied >= target)
            .await;
        assert!(caught_up.is_some(), "node {i} did not apply up to {target}");
    }
    let restarted = cluster.kv(old).map();
    assert_eq!(
        restarted,
        cluster.kv(new).map(),
        "restarted node differs from the leader"
    );
    for i in 0..3 {
        assert_eq!(cluster.kv(i).map(), restarted, "node {i} differs");
    }
    // It serves reads again, as a follower through the log (a marker forwarded to the
    // leader).
    let answer = cluster.handle(old).read(Kv::get(u64::MAX)).await;
    assert_eq!(answer.map(|a| Kv::value(&a)), Ok(Some(1)));
    assert_eq!(cluster.handle(old).metrics().read_markers, 1);

    let metrics = leader.metrics();
    assert!(
        metrics.persists > 0 && metrics.committed_commands > 0,
        "{metrics:?}"
    );
    cluster.shutdown().await;
}

/// Writes `OPS_PER_CLIENT` unique keys, each through a different node, retrying until
/// applied; records each acknowledged write.
async fn client(
    rt: Arc<dyn Runtime>,
    nodes: Vec<NodeHandle>,
    c: u64,
    acked: Arc<Mutex<Vec<(u64, u64)>>>,
    ack: async_channel::Sender<()>,
) {
    for k in 0..OPS_PER_CLIENT {
        let (key, value) = (c * 1000 + k, c * 1_000_000 + k);
        propose_until_applied(&*rt, &nodes, (c + k) as usize, Kv::set(key, value)).await;
        acked.lock().unwrap().push((key, value));
        let _ = ack.try_send(());
    }
}

on_every_net!(stopped_node_fails_fast);

/// After shutdown, every call fails at once with `Fatal(Stopped)`, and the status says so.
async fn stopped_node_fails_fast(net: Net, rt: Arc<dyn Runtime>) {
    let mut cluster = Cluster::start_over(net, rt.clone(), 3).await;
    let l = cluster.leader().await;
    let leader = cluster.handle(l).clone();
    assert_eq!(leader.propose(Kv::set(1, 1)).await, Ok(Bytes::new()));
    assert_eq!(
        leader.propose(Kv::set(1, 2)).await,
        Ok(Bytes::copy_from_slice(&1u64.to_le_bytes()))
    );
    cluster.kill(l).await;
    let stopped = paxos_node::FatalError::Stopped;
    assert_eq!(
        leader.propose(Kv::set(1, 3)).await,
        Err(ProposeError::Fatal(stopped.clone()))
    );
    assert_eq!(
        leader.read(Kv::get(1)).await,
        Err(ReadError::Fatal(stopped.clone()))
    );
    assert_eq!(leader.status().stopped, Some(stopped));
    // The survivors elect a leader other than the stopped one.
    let new = cluster.leader().await;
    assert_ne!(new, l);
    assert_eq!(cluster.handle(new).status().role, Role::Leader);
    assert_ne!(
        cluster.handle(new).status().leader,
        Some(NodeId(cluster.ids[l]))
    );
    cluster.shutdown().await;
}

on_every_net!(isolated_leader_fails_pending_requests);

/// A leader that loses its quorum steps down; the proposals waiting on it fail with
/// `LeadershipChanged` (outcome unknown) well before the request timeout. A read started
/// at the same time is either served under the lease the leader still holds, or fails the
/// same way.
async fn isolated_leader_fails_pending_requests(net: Net, rt: Arc<dyn Runtime>) {
    let mut cluster = Cluster::start_over(net, rt.clone(), 3).await;
    let l = cluster.leader().await;
    let leader = cluster.handle(l).clone();
    assert_eq!(leader.propose(Kv::set(1, 1)).await, Ok(Bytes::new()));
    // Stopped, not killed: the leader must still lead when the requests reach it, and it
    // steps down one election timeout after its last ack, which closing the transports
    // (QUIC drains its connections) could outlast.
    for i in (0..3).filter(|&i| i != l) {
        cluster.stop(i).await;
    }
    let start = rt.now();
    let (write, read) =
        futures::future::join(leader.propose(Kv::set(2, 2)), leader.read(Kv::get(1))).await;
    assert_eq!(write, Err(ProposeError::LeadershipChanged));
    let served = Ok(Some(1));
    let read = read.map(|a| Kv::value(&a));
    assert!(
        read == served || read == Err(ReadError::LeadershipChanged),
        "{read:?}"
    );
    let waited = rt.now() - start;
    assert!(
        waited < common::options().request_timeout,
        "failed only after {waited:?}"
    );
    assert_ne!(leader.status().role, Role::Leader);
    cluster.shutdown().await;
}
