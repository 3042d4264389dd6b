//! Compaction through the node handle, with a state machine that freezes its state: the
//! snapshot is written on another thread while the node goes on committing and reading,
//! and a follower that missed the compacted log catches up by installing it.

mod common;

use std::sync::Arc;

use common::{Cluster, FreezeGate, Kv, on_smol, on_tokio, within};
use paxos_node::{Compaction, Runtime};

async fn a_snapshot_in_the_background_leaves_the_node_serving(rt: Arc<dyn Runtime>) {
    let mut options = common::options();
    // Only on demand, and the whole log behind the snapshot is dropped.
    options.compaction = Compaction::never();
    let mut c = Cluster::start_tuned(rt.clone(), 3, options).await;
    let l = c.leader().await;
    let f = (l + 1) % 3;
    for k in 0..50 {
        within(&*rt, "a write", c.handle(l).propose(Kv::set(k, k)))
            .await
            .unwrap();
    }
    // The follower misses what follows, and the compaction drops it from the log. More
    // writes than the leader's transport queues for a peer that is away (1,024 messages):
    // else the restarted follower would get them all from that queue.
    c.kill(f).await;
    for k in 50..1200 {
        within(&*rt, "a write", c.handle(l).propose(Kv::set(k, k)))
            .await
            .unwrap();
    }

    let (started_tx, started_rx) = async_channel::bounded(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    c.kv(l).state().freeze_gate = Some(FreezeGate {
        started: started_tx,
        release: release_rx,
    });
    let (done_tx, done_rx) = futures::channel::oneshot::channel();
    let handle = c.handle(l).clone();
    rt.spawn(Box::pin(async move {
        let _ = done_tx.send(handle.compact().await);
    }));
    within(&*rt, "the snapshot to start", started_rx.recv())
        .await
        .unwrap();
    let frozen_at = c.kv(l).state().applied;

    // The snapshot thread is held: the node still commits writes and answers reads.
    for k in 1200..1250 {
        within(
            &*rt,
            "a write during the snapshot",
            c.handle(l).propose(Kv::set(k, k)),
        )
        .await
        .unwrap();
    }
    let answer = within(
        &*rt,
        "a read during the snapshot",
        c.handle(l).read(Kv::get(1220)),
    )
    .await
    .unwrap();
    assert_eq!(Kv::value(&answer), Some(1220));
    let during = c.handle(l).metrics();
    assert_eq!(
        during.snapshots_taken, 0,
        "the snapshot is still being written"
    );
    assert_eq!(during.log_start, 0);

    release_tx.send(()).unwrap();
    let upto = within(&*rt, "the compaction", done_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        upto, frozen_at,
        "the snapshot covers what was applied when it froze"
    );
    let after = c.handle(l).metrics();
    assert_eq!(after.snapshots_taken, 1);
    assert_eq!(after.snapshots_background, 1);
    assert_eq!(
        after.log_start, upto.0,
        "the log behind the snapshot is dropped"
    );
    assert!(after.snapshot_bytes > 16 + 16 * 100);

    // The other follower compacts too, else the one that was down would take the log
    // from it.
    let other = 3 - l - f;
    within(&*rt, "the other compaction", c.handle(other).compact())
        .await
        .unwrap();
    assert_eq!(c.handle(other).metrics().snapshots_background, 1);

    // The follower comes back below the compaction point: it installs the snapshot, then
    // takes the writes made during it from the log.
    c.restart(f).await;
    let leader_applied = c.handle(l).status().applied;
    let caught_up = c
        .handle(f)
        .wait_for(common::WAIT, |s| s.applied >= leader_applied);
    within(&*rt, "the follower to catch up", caught_up)
        .await
        .expect("the follower caught up");
    assert_eq!(c.handle(f).metrics().snapshots_installed, 1);
    assert_eq!(c.kv(f).map(), c.kv(l).map());
    assert_eq!(c.kv(f).map().len(), 1250);
    c.shutdown().await;
}

#[test]
fn a_snapshot_in_the_background_leaves_the_node_serving_tokio() {
    on_tokio(a_snapshot_in_the_background_leaves_the_node_serving);
}

#[test]
fn a_snapshot_in_the_background_leaves_the_node_serving_smol() {
    on_smol(a_snapshot_in_the_background_leaves_the_node_serving);
}
