//! Bad input on a node's port, and a member that never reads: the node keeps serving
//! (proposals still commit) after each. The transport's own tests check the connection
//! handling; these check that the node above it is unaffected.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::NodeId;
use paxos_core::codec::{decode_frame, encode_frame};
use paxos_net_tcp::{BoxConn, HELLO_MAX_BYTES, Hello};
use paxos_node::Runtime;

use common::{CLUSTER, Cluster, Kv, on_tokio, propose_until_applied, within};

/// The frame of a `Hello` from `from` to `to` in `cluster`.
fn hello_frame(cluster: u64, from: u64, to: u64) -> BytesMut {
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
async fn read_hello(conn: &mut BoxConn) -> Hello {
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

/// Waits until the node closes `conn`; returns the bytes it sent before closing.
async fn expect_closed(rt: &dyn Runtime, conn: &mut BoxConn) -> usize {
    within(rt, "the node to close the connection", async {
        let mut total = 0;
        let mut chunk = [0u8; 1024];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
}

/// Proposes a fresh key through every node and checks each is applied.
async fn still_serving(cluster: &Cluster, round: u64) {
    let handles = cluster.handles();
    for i in 0..handles.len() {
        let key = round * 100 + i as u64;
        let out = within(
            &*cluster.rt,
            "a commit",
            propose_until_applied(&handles, i, Kv::set(key, key)),
        )
        .await;
        // Empty for a fresh key; the key itself if a retry applied it twice.
        assert!(
            out.is_empty() || Kv::value(&out) == Some(key),
            "key {key}: {out:?}"
        );
    }
}

#[test]
fn garbage_wrong_cluster_and_huge_frames_leave_the_node_serving() {
    on_tokio(|rt| async move {
        let cluster = Cluster::start(rt.clone(), 3).await;
        let l = cluster.leader().await;
        let (leader_id, leader_addr) = (cluster.ids[l], cluster.addrs[l]);
        let follower_id = cluster.ids[(l + 1) % 3];
        let net = rt.clone();
        still_serving(&cluster, 1).await;

        // Random bytes: the connection is closed, with nothing sent back.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..3 {
            let garbage: Vec<u8> = (0..4096)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut conn = net.connect_tcp(leader_addr).await.unwrap();
            let _ = conn.write_all(&garbage).await;
            assert_eq!(expect_closed(&*rt, &mut conn).await, 0);
        }
        still_serving(&cluster, 2).await;

        // A handshake naming another cluster (from a real member's id) is refused.
        let mut conn = net.connect_tcp(leader_addr).await.unwrap();
        conn.write_all(&hello_frame(CLUSTER + 1, follower_id, leader_id))
            .await
            .unwrap();
        assert_eq!(
            expect_closed(&*rt, &mut conn).await,
            0,
            "no hello in answer"
        );
        still_serving(&cluster, 3).await;

        // A frame declaring 1 GiB, before the handshake, and after a valid one made in a
        // follower's name (which also replaces that follower's real connection for a
        // moment).
        let gib = (1u32 << 30).to_le_bytes();
        let mut conn = net.connect_tcp(leader_addr).await.unwrap();
        conn.write_all(&gib).await.unwrap();
        assert_eq!(expect_closed(&*rt, &mut conn).await, 0);
        let mut conn = net.connect_tcp(leader_addr).await.unwrap();
        conn.write_all(&hello_frame(CLUSTER, follower_id, leader_id))
            .await
            .unwrap();
        let reply = within(&*rt, "the hello", read_hello(&mut conn)).await;
        assert_eq!(reply.from, NodeId(leader_id));
        conn.write_all(&gib).await.unwrap();
        let _ = conn.write_all(&[1u8; 1024]).await;
        expect_closed(&*rt, &mut conn).await;
        still_serving(&cluster, 4).await;

        for i in 0..3 {
            assert_eq!(cluster.handle(i).status().stopped, None);
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_member_that_never_reads_does_not_stop_the_others() {
    on_tokio(|rt| async move {
        // Member 3 is a fake: it answers every handshake, then never reads. Members 1 and
        // 2 form a quorum without it, and keep sending it Accepts and heartbeats.
        let net = rt.clone();
        let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let stuck_addr = listener.local_addr().unwrap();
        let held: Arc<Mutex<Vec<BoxConn>>> = Arc::default();
        let conns = held.clone();
        let pauses = rt.clone();
        rt.spawn(Box::pin(async move {
            // After a failed accept (out of file descriptors, say), a pause that doubles
            // up to 100 ms, rather than a spin.
            let mut pause = Duration::from_millis(1);
            // Ends when the test's runtime is dropped.
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    pauses.sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                    continue;
                };
                pause = Duration::from_millis(1);
                let hello = read_hello(&mut conn).await;
                if conn
                    .write_all(&hello_frame(CLUSTER, 3, hello.from.0))
                    .await
                    .is_ok()
                {
                    conns.lock().unwrap().push(conn);
                }
            }
        }));
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cluster =
            Cluster::start_with(rt.clone(), vec![1, 2, 3], vec![free, free, stuck_addr]).await;
        cluster.leader().await;

        // About 8 MiB of Accepts towards the stuck member (more than loopback socket
        // buffers hold), in rounds of concurrent 32 KiB proposals.
        let handles = cluster.handles();
        for round in 0..8u64 {
            let proposals = (0..32u64).map(|k| {
                let filler = Bytes::from(vec![(round + k) as u8; 32 * 1024]);
                propose_until_applied(&handles, k as usize, filler)
            });
            within(
                &*rt,
                "a round of large proposals",
                futures::future::join_all(proposals),
            )
            .await;
        }
        still_serving(&cluster, 1).await;
        assert!(
            !held.lock().unwrap().is_empty(),
            "the nodes connected to the stuck member"
        );
        cluster.shutdown().await;
    });
}
