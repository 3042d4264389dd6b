//! The lock service on three nodes over loopback TCP, on tokio and on smol, over memory
//! and over files: one owner at a time, releases by others refused, the lock surviving the
//! leader's shutdown and a restart of the whole cluster, bad input answered without
//! stopping a node.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use paxos_example_lock::{
    Holder, LocalCluster, LockClient, Query, Response, RuntimeChoice, StorageChoice,
};
use paxos_node::{Bytes, Runtime, timeout_at};

/// Bound on any one wait. Generous: it only matters when something is broken.
const WAIT: Duration = Duration::from_secs(20);

fn holder(owner: &str, token: u64) -> Holder {
    Holder {
        owner: owner.into(),
        token,
    }
}

/// The whole scenario, bounded by [`WAIT`] per step and by twice the sum of them in all.
async fn scenario(rt: Arc<dyn Runtime>, storage: StorageChoice) {
    let whole = async {
        let mut cluster = LocalCluster::start(rt.clone(), 3, storage)
            .await
            .expect("the cluster starts");
        let leader = cluster.leader(WAIT).await.expect("a leader");
        let follower = (leader + 1) % 3;
        let mut alice = LockClient::new(rt.clone(), cluster.handles())
            .prefer(follower)
            .deadline(WAIT);
        let mut bob = LockClient::new(rt.clone(), cluster.handles())
            .prefer(leader)
            .deadline(WAIT);

        // One owner at a time; an acquire retried by the holder is the same acquisition.
        let token = match alice.acquire("db", "alice").await {
            Ok(Response::Acquired { token }) => token,
            other => panic!("alice cannot take a free lock: {other:?}"),
        };
        assert_eq!(
            alice.acquire("db", "alice").await,
            Ok(Response::Acquired { token })
        );
        assert_eq!(
            bob.acquire("db", "bob").await,
            Ok(Response::Held(holder("alice", token)))
        );
        // Releases by anyone but the holder, or for another acquisition, are refused.
        let not_owner = Ok(Response::NotOwner {
            holder: holder("alice", token),
        });
        assert_eq!(bob.release("db", "bob", token).await, not_owner);
        assert_eq!(alice.release("db", "alice", token + 1).await, not_owner);
        // Every node answers the same, linearizably (followers through the log).
        for i in 0..3 {
            let mut pinned = LockClient::new(rt.clone(), vec![cluster.handle(i).unwrap().clone()])
                .deadline(WAIT);
            assert_eq!(
                pinned.holder("db").await,
                Ok(Some(holder("alice", token))),
                "node {i}"
            );
        }

        // Bad bytes are answered, not fatal: the node keeps serving.
        let node = cluster.handle(follower).unwrap().clone();
        let garbage = Bytes::from_static(b"\xff\xff\xff not a command");
        let answer = node.propose(garbage.clone()).await.expect("applied");
        assert_eq!(Response::decode(&answer), Some(Response::Invalid));
        let answer = node.read(garbage).await.expect("answered");
        assert_eq!(Response::decode(&answer), Some(Response::Invalid));
        assert_eq!(node.status().stopped, None);

        // The leader goes away; the lock does not.
        let old = cluster.ids()[leader];
        cluster.stop(leader).await;
        let new = cluster.leader(WAIT).await.expect("a new leader");
        assert_ne!(cluster.ids()[new], old);
        assert_eq!(bob.holder("db").await, Ok(Some(holder("alice", token))));
        assert_eq!(
            bob.acquire("db", "bob").await,
            Ok(Response::Held(holder("alice", token)))
        );
        assert_eq!(
            alice.release("db", "alice", token).await,
            Ok(Response::Released)
        );
        assert_eq!(
            alice.release("db", "alice", token).await,
            Ok(Response::NotHeld)
        );
        let bobs = match bob.acquire("db", "bob").await {
            Ok(Response::Acquired { token }) => token,
            other => panic!("bob cannot take the released lock: {other:?}"),
        };
        assert!(bobs > token, "fencing tokens grow: {bobs} after {token}");

        // The whole cluster restarts (on fresh ports) from its disks: the lock is still
        // Bob's, and tokens keep growing.
        cluster.restart().await.expect("the cluster restarts");
        let mut carol = LockClient::new(rt.clone(), cluster.handles()).deadline(WAIT);
        assert_eq!(carol.holder("db").await, Ok(Some(holder("bob", bobs))));
        assert_eq!(
            carol.acquire("db", "carol").await,
            Ok(Response::Held(holder("bob", bobs)))
        );
        match carol.acquire("queue", "carol").await {
            Ok(Response::Acquired { token }) => assert!(token > bobs, "{token} after {bobs}"),
            other => panic!("carol cannot take a free lock: {other:?}"),
        }
        let query = Query::Holder {
            lock: "queue".into(),
        };
        assert_eq!(
            carol.read(query.encode()).await,
            Ok(Response::HolderIs(Some(holder("carol", bobs + 1))))
        );
        cluster.shutdown().await;
    };
    let limit = WAIT * 20;
    if timeout_at(&*rt, rt.now() + limit, whole).await.is_none() {
        panic!("the scenario took more than {limit:?}");
    }
}

fn run(runtime: RuntimeChoice, storage: impl FnOnce() -> StorageChoice) {
    runtime
        .block_on(|rt| scenario(rt, storage()))
        .expect("the runtime starts");
}

fn file_storage() -> (tempfile::TempDir, StorageChoice) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let choice = StorageChoice::File(dir.path().to_path_buf());
    (dir, choice)
}

#[test]
fn tokio_memory() {
    run(RuntimeChoice::Tokio, || StorageChoice::Memory);
}

#[test]
fn smol_memory() {
    run(RuntimeChoice::Smol, || StorageChoice::Memory);
}

#[test]
fn tokio_file() {
    let (_dir, storage) = file_storage();
    run(RuntimeChoice::Tokio, || storage);
}

#[test]
fn smol_file() {
    let (_dir, storage) = file_storage();
    run(RuntimeChoice::Smol, || storage);
}
