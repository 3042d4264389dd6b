//! Failure and overload: a storage failure stops the node with a fatal error (on one node,
//! and on a member of a running three-node cluster on `FileStorage`, which loses nothing
//! acknowledged and recovers on restart); a full request queue or waiter table refuses at
//! once, timeouts fire.

mod common;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use paxos_core::{NodeId, Role, SnapshotRead, SnapshotWrite, StateMachineError, Storage};
use paxos_node::{
    FatalError, NodeBuilder, NodeHandle, NodeOptions, ProposeError, ReadError, Runtime, StartError,
};
use paxos_storage::{Fault, FaultPlan, FaultyStorage, IoFaults, MemoryStorage};

use common::{
    Cluster, Disk, Gate, GatedStorage, Kv, NullTransport, core_config, on_tokio, options,
    propose_until_applied, within,
};

async fn single_node(
    rt: &Arc<dyn Runtime>,
    members: &[u64],
    storage: Box<dyn Storage>,
    options: NodeOptions,
) -> NodeHandle {
    NodeBuilder::new(core_config(1, members))
        .options(options)
        .transport(Box::new(NullTransport))
        .storage(storage)
        .state_machine(Box::new(Kv::default()))
        .runtime(rt.clone())
        .start()
        .await
        .unwrap()
}

async fn leading(rt: &Arc<dyn Runtime>, node: &NodeHandle) {
    within(
        &**rt,
        "leadership",
        node.wait_for(common::WAIT, |s| s.role == Role::Leader),
    )
    .await;
}

#[test]
fn storage_failure_stops_the_node() {
    on_tokio(|rt| async move {
        let plan = FaultPlan::new();
        let storage = FaultyStorage::new(MemoryStorage::new(), plan.clone());
        let node = single_node(&rt, &[1], Box::new(storage), options()).await;
        leading(&rt, &node).await;
        assert_eq!(node.propose(Kv::set(1, 1)).await, Ok(Bytes::new()));

        plan.fail_next_write(Fault::LoseWrite);
        let failed = node.propose(Kv::set(1, 2)).await;
        let Err(ProposeError::Fatal(FatalError::Storage(reason))) = failed else {
            panic!("expected a fatal storage error, got {failed:?}");
        };
        let fatal = FatalError::Storage(reason);
        // Stopped for good: every later call fails the same way, and nothing more is
        // written.
        let writes = plan.writes();
        assert_eq!(
            node.propose(Kv::set(1, 3)).await,
            Err(ProposeError::Fatal(fatal.clone()))
        );
        assert_eq!(
            node.read(Kv::get(1)).await,
            Err(ReadError::Fatal(fatal.clone()))
        );
        assert_eq!(node.status().stopped, Some(fatal));
        node.shutdown().await;
        assert_eq!(plan.writes(), writes);
    });
}

/// Writes `count` fresh keys through the running members, each retried until applied, and
/// records them as acknowledged.
async fn write_keys(cluster: &Cluster, acked: &mut Vec<(u64, u64)>, count: u64) {
    let handles = cluster.handles();
    for _ in 0..count {
        let key = acked.len() as u64;
        let value = 1000 + key;
        propose_until_applied(&*cluster.rt, &handles, key as usize, Kv::set(key, value)).await;
        acked.push((key, value));
    }
}

/// Writes `count` more keys, all proposed at once, spread over the members (so that, with
/// pipelined persists, several are under way together), each until it is applied.
async fn write_keys_at_once(cluster: &Cluster, acked: &mut Vec<(u64, u64)>, count: u64) {
    let handles = cluster.handles();
    let first = acked.len() as u64;
    let writes = (first..first + count).map(|key| {
        let handles = &handles;
        let rt = &*cluster.rt;
        async move {
            propose_until_applied(rt, handles, key as usize, Kv::set(key, 1000 + key)).await;
            (key, 1000 + key)
        }
    });
    acked.extend(futures::future::join_all(writes).await);
}

/// Every acknowledged write is read back through member `i` (linearizably: on a follower
/// the read goes through the log). A read that meets an election is retried there.
async fn reads_back(cluster: &Cluster, i: usize, acked: &[(u64, u64)]) {
    let node = cluster.handle(i);
    for &(key, value) in acked {
        let read = async {
            loop {
                match node.read(Kv::get(key)).await {
                    Err(ReadError::NoLeader) => {
                        let _ = node
                            .wait_for(Duration::from_secs(1), |s| s.leader.is_some())
                            .await;
                    }
                    Err(ReadError::LeadershipChanged | ReadError::Timeout) => {}
                    other => return other,
                }
            }
        };
        let answer = within(&*cluster.rt, "a read", read).await;
        assert_eq!(
            answer.map(|a| Kv::value(&a)),
            Ok(Some(value)),
            "member {i} lost acknowledged write {key}={value}"
        );
    }
}

/// Waits until member `i` stopped; its storage error.
async fn stopped_by_storage(cluster: &Cluster, i: usize) -> String {
    let status = within(
        &*cluster.rt,
        "the node to stop",
        cluster
            .handle(i)
            .wait_for(common::WAIT, |s| s.stopped.is_some()),
    )
    .await
    .expect("the node stops");
    match status.stopped {
        Some(FatalError::Storage(reason)) => reason.to_string(),
        other => panic!("member {i} stopped with {other:?}, not a storage error"),
    }
}

/// Three members on `FileStorage` over loopback TCP. An fsync fails on the leader, later a
/// write tears on a follower, each while the cluster serves. Each time the member stops
/// with the storage error and never touches its files again, every write acknowledged
/// before is read back from the others, the others go on, and the member restarted on
/// the same directory recovers (a torn tail dropped, for the torn write), catches up, and
/// holds every acknowledged write.
#[test]
fn file_storage_failure_in_a_running_cluster_loses_nothing_acknowledged() {
    file_storage_failure_loses_nothing(options());
}

/// The same with pipelined persists: while one persist syncs, the next is queued behind
/// it, and the file store writes those queued together with one fdatasync, so a failed
/// sync fails every persist it covered.
#[test]
fn file_storage_failure_with_pipelined_persists_loses_nothing_acknowledged() {
    let mut options = options();
    options.persists_in_flight = 4;
    file_storage_failure_loses_nothing(options);
}

fn file_storage_failure_loses_nothing(options: NodeOptions) {
    on_tokio(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let faults: Vec<IoFaults> = (0..3).map(|_| IoFaults::new()).collect();
        let disks = (0..3)
            .map(|i| Disk::File {
                dir: dir.path().join(format!("node-{i}")),
                faults: faults[i].clone(),
            })
            .collect();
        let mut cluster = Cluster::start_on_tuned(rt.clone(), disks, options.clone()).await;
        let mut acked = Vec::new();
        cluster.leader().await;
        write_keys(&cluster, &mut acked, 10).await;
        // Concurrent writes until a persist started behind another (a round may fit in
        // one batch, so it can take a few); never with one persist at a time.
        let pipelined = |cluster: &Cluster| -> u64 {
            (0..3)
                .map(|i| cluster.handle(i).metrics().persists_pipelined)
                .sum()
        };
        let rounds = if options.persists_in_flight > 1 {
            40
        } else {
            4
        };
        for _ in 0..rounds {
            write_keys_at_once(&cluster, &mut acked, 50).await;
            if pipelined(&cluster) > 0 {
                break;
            }
        }
        assert_eq!(
            pipelined(&cluster) > 0,
            options.persists_in_flight > 1,
            "persists were pipelined exactly when allowed"
        );

        // An fsync fails on the leader, under the next write: the leader stops. The write
        // fails with the storage error, unless the two followers accepted it before the
        // leader's fsync ended: then it was chosen without the leader's vote, and answered
        // as it was chosen (the driver answers what is chosen during a persist), so it is
        // acknowledged like any other and must be read back.
        let l = cluster.leader().await;
        faults[l].fail_next_syncs(1);
        let failed = cluster.handle(l).propose(Kv::set(1_000_000, 999)).await;
        match &failed {
            Err(ProposeError::Fatal(FatalError::Storage(_))) => {}
            Ok(_) => acked.push((1_000_000, 999)),
            other => panic!(
                "a write under a failed fsync must fail with the storage error, or be \
                 chosen by the followers: {other:?}"
            ),
        }
        let reason = stopped_by_storage(&cluster, l).await;
        assert!(reason.contains("injected fsync failure"), "{reason}");
        let touched = (faults[l].write_attempts(), faults[l].sync_attempts());
        cluster.kill(l).await;
        // The others elect a leader, hold every acknowledged write, and go on.
        let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
        cluster.leader().await;
        for &i in &others {
            reads_back(&cluster, i, &acked).await;
        }
        write_keys(&cluster, &mut acked, 10).await;
        assert_eq!(
            (faults[l].write_attempts(), faults[l].sync_attempts()),
            touched,
            "a stopped store is never written or synced again"
        );
        // Restarted on its directory: the record whose fsync failed was written whole, so
        // there is no torn tail; the member catches up.
        cluster.restart(l).await;
        let report = cluster.recoveries[l].clone().expect("opened a file store");
        assert!(
            report.records > 0 && report.torn_tail.is_none(),
            "{report:?}"
        );
        reads_back(&cluster, l, &acked).await;

        // A write tears on a follower: it stops; the leader and the other follower commit.
        let l = cluster.leader().await;
        let f = (l + 1) % 3;
        faults[f].fail_next_writes(1);
        write_keys(&cluster, &mut acked, 1).await;
        let reason = stopped_by_storage(&cluster, f).await;
        assert!(reason.contains("injected write failure"), "{reason}");
        cluster.kill(f).await;
        cluster.leader().await;
        write_keys(&cluster, &mut acked, 10).await;
        for i in (0..3).filter(|&i| i != f) {
            reads_back(&cluster, i, &acked).await;
        }
        // Restarted on its directory: recovery drops the half-written record as a torn
        // tail, and the member catches up from the others.
        cluster.restart(f).await;
        let report = cluster.recoveries[f].clone().expect("opened a file store");
        assert!(report.torn_tail.is_some(), "{report:?}");
        reads_back(&cluster, f, &acked).await;
        for i in 0..3 {
            assert_eq!(cluster.handle(i).status().stopped, None, "member {i}");
        }
        cluster.shutdown().await;
    });
}

#[test]
fn full_request_queue_is_overloaded_at_once() {
    on_tokio(|rt| async move {
        let gate = Arc::new(Gate::default());
        let storage = GatedStorage {
            inner: MemoryStorage::new(),
            gate: gate.clone(),
        };
        let mut options = options();
        options.request_queue = 4;
        let node = single_node(&rt, &[1], Box::new(storage), options).await;
        leading(&rt, &node).await;

        // The driver takes the first proposal and blocks persisting it.
        gate.close();
        let mut first = Box::pin(node.propose(Kv::set(0, 0)));
        assert!(matches!(futures::poll!(&mut first), Poll::Pending));
        within(&*rt, "the persist to block", gate.blocked()).await;

        // Four more fill the queue; the next is refused without waiting.
        let mut queued: Vec<_> = (1..=4)
            .map(|k| Box::pin(node.propose(Kv::set(k, k))))
            .collect();
        for p in &mut queued {
            assert!(matches!(futures::poll!(p), Poll::Pending));
        }
        assert_eq!(
            node.propose(Kv::set(9, 9)).await,
            Err(ProposeError::Overloaded)
        );
        assert_eq!(node.read(Kv::get(9)).await, Err(ReadError::Overloaded));

        // Once storage moves again, every queued proposal is applied, batched into few
        // persists.
        let persists = node.metrics().persists;
        gate.open();
        assert_eq!(first.await, Ok(Bytes::new()));
        for p in queued {
            assert_eq!(p.await, Ok(Bytes::new()));
        }
        assert!(
            node.metrics().persists - persists <= 3,
            "{:?}",
            node.metrics()
        );
        assert_eq!(
            node.read(Kv::get(4)).await.map(|a| Kv::value(&a)),
            Ok(Some(4))
        );
        node.shutdown().await;
    });
}

#[test]
fn waiters_are_bounded_and_time_out() {
    on_tokio(|rt| async move {
        // One of three members alive, and its pre-votes granted: it campaigns forever and
        // never commits, but as a candidate it queues proposals.
        let mut options = options();
        options.max_waiters = Some(2);
        options.request_timeout = Duration::from_millis(300);
        let node = NodeBuilder::new(core_config(1, &[1, 2, 3]))
            .options(options)
            .transport(Box::new(common::PreVoteOnly::default()))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Kv::default()))
            .runtime(rt.clone())
            .start()
            .await
            .unwrap();
        within(
            &*rt,
            "candidacy",
            node.wait_for(common::WAIT, |s| s.role == Role::Candidate),
        )
        .await;

        let mut waiting: Vec<_> = (0..2)
            .map(|k| Box::pin(node.propose(Kv::set(k, k))))
            .collect();
        for p in &mut waiting {
            assert!(matches!(futures::poll!(p), Poll::Pending));
        }
        // The driver takes requests in order: once it has answered this one, the two
        // before it hold the waiter table.
        let overflow = node.propose(Kv::set(2, 2)).await;
        assert_eq!(overflow, Err(ProposeError::Overloaded));
        for p in waiting {
            assert_eq!(p.await, Err(ProposeError::Timeout));
        }
        // Timed-out waiters free their room.
        assert_eq!(node.read(Kv::get(0)).await, Err(ReadError::Timeout));
        node.shutdown().await;
    });
}

#[test]
fn builder_refuses_what_is_missing_or_invalid() {
    on_tokio(|rt| async move {
        let missing = NodeBuilder::new(core_config(1, &[1]))
            .transport(Box::new(NullTransport))
            .runtime(rt.clone())
            .start()
            .await;
        assert!(
            matches!(missing.err(), Some(StartError::Missing("storage"))),
            "a missing storage is named"
        );

        let mut config = core_config(1, &[1]);
        config.id = NodeId(7);
        let invalid = NodeBuilder::new(config)
            .transport(Box::new(NullTransport))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Kv::default()))
            .runtime(rt.clone())
            .start()
            .await;
        assert!(matches!(invalid.err(), Some(StartError::Config(_))));

        // Messages bounded at 4 MiB (the default) over a transport that frames 1 MiB.
        let small = NodeBuilder::new(core_config(1, &[1]))
            .transport(Box::new(common::SmallFrames(1 << 20)))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Kv::default()))
            .runtime(rt.clone())
            .start()
            .await;
        match small.err() {
            Some(StartError::FrameTooSmall {
                max_message_bytes,
                frame_limit,
            }) => assert_eq!((max_message_bytes, frame_limit), (4 << 20, 1 << 20)),
            other => panic!("expected FrameTooSmall, got {other:?}"),
        }

        let mut options = options();
        options.request_queue = 0;
        let invalid = NodeBuilder::new(core_config(1, &[1]))
            .options(options)
            .transport(Box::new(NullTransport))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Kv::default()))
            .runtime(rt.clone())
            .start()
            .await;
        assert!(
            matches!(invalid.err(), Some(StartError::Options(e)) if e.field == "request_queue")
        );
    });
}

#[test]
fn too_large_commands_are_refused_before_queueing() {
    on_tokio(|rt| async move {
        let mut config = core_config(1, &[1]);
        config.max_batch_bytes = 64;
        let node = NodeBuilder::new(config)
            .transport(Box::new(NullTransport))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Kv::default()))
            .runtime(rt.clone())
            .start()
            .await
            .unwrap();
        leading(&rt, &node).await;
        let big = Bytes::from(vec![0u8; 64]);
        assert_eq!(
            node.propose(big).await,
            Err(ProposeError::TooLarge { len: 64, max: 63 })
        );
        let fits = Bytes::from(vec![0u8; 63]);
        assert_eq!(node.propose(fits).await, Ok(Bytes::new()));
        node.shutdown().await;
    });
}

/// A state machine that fails on the command `fail` and panics on the command `panic`.
#[derive(Debug, Default)]
struct Brittle;

#[async_trait::async_trait]
impl paxos_core::StateMachine for Brittle {
    async fn apply(
        &mut self,
        batch: &[paxos_core::Committed],
        outputs: &mut Vec<(paxos_core::ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        for cmd in batch.iter().flat_map(|c| c.value.commands()) {
            match &cmd.payload[..] {
                b"fail" => return Err(StateMachineError::new("refused")),
                b"panic" => panic!("the state machine panics (on purpose, in a test)"),
                _ => outputs.push((cmd.id, Bytes::new())),
            }
        }
        Ok(())
    }

    async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }

    async fn snapshot(&mut self, _out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        Ok(())
    }

    async fn restore(&mut self, _input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        Ok(())
    }
}

#[test]
fn state_machine_failure_and_panic_stop_the_node() {
    on_tokio(|rt| async move {
        for (command, expected) in [
            (
                "fail",
                FatalError::StateMachine(StateMachineError::new("refused")),
            ),
            ("panic", FatalError::Panicked),
        ] {
            let node = NodeBuilder::new(core_config(1, &[1]))
                .options(options())
                .transport(Box::new(NullTransport))
                .storage(Box::new(MemoryStorage::new()))
                .state_machine(Box::new(Brittle))
                .runtime(rt.clone())
                .start()
                .await
                .unwrap();
            leading(&rt, &node).await;
            assert_eq!(
                node.propose(Bytes::from_static(b"ok")).await,
                Ok(Bytes::new())
            );
            let fatal = Err(ProposeError::Fatal(expected.clone()));
            assert_eq!(
                node.propose(Bytes::from_static(command.as_bytes())).await,
                fatal
            );
            assert_eq!(node.propose(Bytes::from_static(b"ok")).await, fatal);
            assert_eq!(node.status().stopped, Some(expected));
            node.shutdown().await;
        }
    });
}
