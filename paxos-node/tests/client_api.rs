//! The client conveniences on three nodes over loopback TCP: the read barrier (then the
//! program reads its own state), the slot of a write, and waiting until every node can
//! take writes.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use paxos_core::{Committed, NodeId, ProposalId, Slot, StateMachine, StateMachineError};
use paxos_net_tcp::TcpTransport;
use paxos_node::{Applied, NodeBuilder, NodeHandle, Runtime, wait_for_leader};
use paxos_storage::MemoryStorage;

use common::{
    Gate, GatedStorage, GatedTransport, Kv, WAIT, core_config, on_tokio, options, tcp_config,
    within,
};

// ---------------------------------------------------------------------------------------
// A state machine that shares its state with the test.

/// What a [`Shared`] state machine has applied, readable by the test at any time.
#[derive(Debug, Default)]
struct State {
    /// `Kv` registers: a 16-byte command `key | value` sets the key.
    map: BTreeMap<u64, u64>,
    /// Every command applied, in order, with the slot of its batch.
    log: Vec<(Slot, Bytes)>,
    /// Calls of `StateMachine::query`.
    queries: u64,
    /// How long each `apply` works (blocking its thread) before it changes the state: a
    /// slow state machine.
    apply_delay: Duration,
}

/// Applies [`Kv`] commands to state behind an `Arc<Mutex<_>>` that the test also holds,
/// as a program that reads its own state after a read barrier would.
#[derive(Clone, Debug, Default)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl StateMachine for Shared {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        let delay = self.state().apply_delay;
        if !delay.is_zero() {
            // The work of a slow apply, holding its thread as CPU-bound work would; it
            // waits for nothing, and no assertion depends on how long it takes.
            std::thread::sleep(delay);
        }
        let mut state = self.state();
        for c in batch {
            for cmd in c.value.commands() {
                state.log.push((c.slot, cmd.payload.clone()));
                let p = &cmd.payload;
                let mut out = Bytes::new();
                if p.len() == 16 {
                    let key = u64::from_le_bytes(p[..8].try_into().unwrap());
                    let value = u64::from_le_bytes(p[8..].try_into().unwrap());
                    if let Some(old) = state.map.insert(key, value) {
                        out = Bytes::copy_from_slice(&old.to_le_bytes());
                    }
                }
                outputs.push((cmd.id, out));
            }
        }
        Ok(())
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        let mut state = self.state();
        state.queries += 1;
        let key = u64::from_le_bytes(
            query
                .try_into()
                .map_err(|_| StateMachineError::new("bad query"))?,
        );
        Ok(state
            .map
            .get(&key)
            .map_or_else(Bytes::new, |v| Bytes::copy_from_slice(&v.to_le_bytes())))
    }
}

// ---------------------------------------------------------------------------------------
// The cluster.

/// One member: its handle, its state as the program sees it, the gate its storage's
/// `persist` waits on while closed, and the gate its transport holds what arrives at
/// while closed (each open unless a test closes it).
struct Node {
    handle: NodeHandle,
    state: Shared,
    gate: Arc<Gate>,
    inbound: Arc<Gate>,
}

/// Starts nodes `1..=n` over gated loopback TCP, each on gated memory storage.
async fn start(rt: &Arc<dyn Runtime>, n: u64) -> Vec<Node> {
    let ids: Vec<u64> = (1..=n).collect();
    let transports: Vec<TcpTransport> = ids
        .iter()
        .map(|&id| TcpTransport::start(tcp_config(id, "127.0.0.1:0".parse().unwrap()), rt.clone()))
        .collect::<Result<_, _>>()
        .unwrap();
    for t in &transports {
        for (&id, peer) in ids.iter().zip(&transports) {
            t.set_peer(NodeId(id), peer.local_addr());
        }
    }
    let mut nodes = Vec::new();
    for (&id, transport) in ids.iter().zip(transports) {
        let state = Shared::default();
        let gate = Arc::new(Gate::default());
        let inbound = Arc::new(Gate::default());
        let storage = GatedStorage {
            inner: MemoryStorage::new(),
            gate: gate.clone(),
        };
        let handle = NodeBuilder::new(core_config(id, &ids))
            .options(options())
            .transport(Box::new(GatedTransport::new(transport, inbound.clone())))
            .storage(Box::new(storage))
            .state_machine(Box::new(state.clone()))
            .runtime(rt.clone())
            .start()
            .await
            .unwrap();
        nodes.push(Node {
            handle,
            state,
            gate,
            inbound,
        });
    }
    nodes
}

fn handles(nodes: &[Node]) -> Vec<NodeHandle> {
    nodes.iter().map(|n| n.handle.clone()).collect()
}

/// Waits until the nodes agree on a leader; returns its index.
async fn leader(nodes: &[Node]) -> usize {
    let id = wait_for_leader(&handles(nodes), WAIT)
        .await
        .expect("a leader every node follows");
    nodes.iter().position(|n| n.handle.id() == id).unwrap()
}

async fn shutdown(nodes: &[Node]) {
    for n in nodes {
        n.handle.shutdown().await;
    }
}

fn total_queries(nodes: &[Node]) -> u64 {
    nodes.iter().map(|n| n.state.state().queries).sum()
}

// ---------------------------------------------------------------------------------------
// The tests.

/// A read barrier on the leader and on a follower, each after a write acknowledged on
/// another node: once it returns, the program's own view of the state (shared with the
/// state machine) holds the write, and the applied position returned covers its slot.
/// The follower is held back (its transport holds what arrives, so it never sees the
/// write's Accept) while the write is acknowledged without it, so its state provably lacks
/// the write until the barrier waits for it. (Holding back its storage instead would not
/// do: a node applies a chosen value while its own persist runs, and the Accept and the
/// news that it was chosen can arrive in one cycle.) No barrier ever calls
/// `StateMachine::query`.
#[test]
fn read_barrier_then_read_own_state() {
    on_tokio(|rt| async move {
        let nodes = start(&rt, 3).await;
        let l = leader(&nodes).await;
        let (f1, f2) = match l {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };

        // On the leader, after a write acknowledged on a follower.
        let write = nodes[f1].handle.propose_with_slot(Kv::set(1, 10)).await;
        let write = write.unwrap();
        let at = nodes[l].handle.read_barrier().await.unwrap();
        assert!(
            at > write.slot,
            "barrier at {at}, write in slot {}",
            write.slot
        );
        assert_eq!(nodes[l].state.state().map.get(&1), Some(&10));
        assert_eq!(
            nodes[l].handle.metrics().read_markers,
            0,
            "the leader confirms a barrier itself, with no marker"
        );

        // On a follower that has not seen the write: what reaches it is held while the
        // leader and the other follower choose it.
        nodes[f2].inbound.close();
        let write = nodes[l].handle.propose_with_slot(Kv::set(2, 20)).await;
        let write = write.unwrap();
        within(
            &*rt,
            "the follower to hold a message",
            nodes[f2].inbound.blocked(),
        )
        .await;
        assert_eq!(
            nodes[f2].state.state().map.get(&2),
            None,
            "the held-back follower applied the write"
        );
        let (at, ()) = futures::future::join(nodes[f2].handle.read_barrier(), async {
            nodes[f2].inbound.open();
        })
        .await;
        let at = at.unwrap();
        assert!(
            at > write.slot,
            "barrier at {at}, write in slot {}",
            write.slot
        );
        assert_eq!(nodes[f2].state.state().map.get(&2), Some(&20));
        assert!(nodes[f2].handle.status().applied >= at);
        assert_eq!(
            nodes[f2].handle.metrics().read_markers,
            1,
            "a follower's barrier goes through the log"
        );

        // No barrier queried the state machine; a read does (the count works).
        assert_eq!(total_queries(&nodes), 0);
        let answer = nodes[f1].handle.read(Kv::get(2)).await.unwrap();
        assert_eq!(Kv::value(&answer), Some(20));
        assert_eq!(total_queries(&nodes), 1);
        shutdown(&nodes).await;
    });
}

/// `try_read_barrier`: `None` on every follower. On the leader, `Some` once its driver is
/// between two cycles under the lease, and then the program's own state holds a write
/// acknowledged on a follower before the call, with no `query` and no read marker. Cut off
/// from its followers' answers, the leader loses its lease, and from then on says `None`.
#[test]
fn try_read_barrier_answers_at_once_only_on_the_leader_under_its_lease() {
    on_tokio(|rt| async move {
        let nodes = start(&rt, 3).await;
        let l = leader(&nodes).await;
        let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
        let write = nodes[followers[0]]
            .handle
            .propose_with_slot(Kv::set(1, 10))
            .await;
        let write = write.unwrap();
        for &f in &followers {
            assert_eq!(
                nodes[f].handle.try_read_barrier(),
                None,
                "a follower answered a read barrier at once"
            );
        }
        let at_once = |l: usize| {
            let (handle, rt) = (nodes[l].handle.clone(), rt.clone());
            async move {
                loop {
                    if let Some(at) = handle.try_read_barrier() {
                        break at;
                    }
                    rt.sleep(Duration::from_millis(1)).await;
                }
            }
        };
        let at = within(&*rt, "a read barrier at once on the leader", at_once(l)).await;
        assert!(
            at > write.slot,
            "barrier at {at}, write in slot {}",
            write.slot
        );
        assert_eq!(nodes[l].state.state().map.get(&1), Some(&10));
        let metrics = nodes[l].handle.metrics();
        assert_eq!(metrics.local_read_barriers, 1);
        assert_eq!((metrics.reads, metrics.read_markers), (0, 0));
        assert_eq!(total_queries(&nodes), 0);

        // What reaches the leader is held: no follower renews its lease.
        nodes[l].inbound.close();
        within(
            &*rt,
            "the cut-off leader to lose its lease",
            nodes[l].handle.wait_for(WAIT, |s| !s.lease_held),
        )
        .await
        .expect("the lease ends");
        assert_eq!(
            nodes[l].handle.try_read_barrier(),
            None,
            "a read barrier at once without a lease"
        );
        // Heard again, the cluster has a leader with a lease again (it or another).
        nodes[l].inbound.open();
        let l = leader(&nodes).await;
        let at = within(&*rt, "a leader's lease", at_once(l)).await;
        assert!(at > write.slot);
        shutdown(&nodes).await;
    });
}

/// `try_read_barrier` under real threads (two tokio workers), with a leader whose state
/// machine takes 2 ms per `apply`: the leader announces a commit point in the Accepts it
/// sends before it applies, so a follower can apply a write and acknowledge it while the
/// leader's state still lacks it. Four clients write 1, 2, 3, ... to a key each through
/// that follower, while four more write through the leader all along (so that every Ready
/// that chooses a batch also sends Accepts); a task on the other worker reads the keys
/// from the leader's shared state whenever `try_read_barrier` says yes. Every such read
/// sees at least the value acknowledged before the call. With the gate left open at the
/// start of a driver cycle, this test failed 3 runs of 5.
#[test]
fn reads_at_once_see_every_write_acknowledged_before_them_across_threads() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const CLIENTS: usize = 4;
    const WRITES: u64 = 100;
    on_tokio(|rt| async move {
        let nodes = start(&rt, 3).await;
        let l = leader(&nodes).await;
        let f = (l + 1) % 3;
        nodes[l].state.state().apply_delay = Duration::from_millis(2);
        let acked: Arc<Vec<AtomicU64>> =
            Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
        let done = Arc::new(AtomicBool::new(false));
        let (report, reported) = futures::channel::oneshot::channel();
        {
            let (acked, done) = (acked.clone(), done.clone());
            let (handle, state) = (nodes[l].handle.clone(), nodes[l].state.clone());
            rt.spawn(Box::pin(async move {
                let (mut at_once, mut stale, mut first_stale) = (0u64, 0u64, Vec::new());
                while !done.load(Ordering::SeqCst) {
                    let floors: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                    if handle.try_read_barrier().is_some() {
                        let state = state.state();
                        for (k, &floor) in floors.iter().enumerate() {
                            let seen = state.map.get(&(k as u64)).copied().unwrap_or(0);
                            if seen < floor {
                                stale += 1;
                                if first_stale.len() < 4 {
                                    first_stale.push((k, seen, floor));
                                }
                            }
                        }
                        at_once += 1;
                    }
                    tokio::task::yield_now().await;
                }
                let _ = report.send((at_once, stale, first_stale));
            }));
        }
        // Writes through the leader itself, all along: every Ready that chooses a batch
        // also carries Accepts for the next, which announce the new commit point before the
        // leader applies it.
        for k in 0..CLIENTS as u64 {
            let (handle, done) = (nodes[l].handle.clone(), done.clone());
            rt.spawn(Box::pin(async move {
                let mut v = 0;
                while !done.load(Ordering::SeqCst) {
                    v += 1;
                    let _ = handle.propose(Kv::set(100 + k, v)).await;
                }
            }));
        }
        let writers = (0..CLIENTS).map(|k| {
            let (handle, acked) = (nodes[f].handle.clone(), acked.clone());
            async move {
                for v in 1..=WRITES {
                    handle.propose(Kv::set(k as u64, v)).await.unwrap();
                    acked[k].store(v, Ordering::SeqCst);
                }
            }
        });
        join_all(writers).await;
        done.store(true, Ordering::SeqCst);
        let (at_once, stale, first) = within(&*rt, "the reader to stop", reported).await.unwrap();
        assert_eq!(
            stale, 0,
            "stale reads at once; the first (key, seen, acknowledged before the read): {first:?}"
        );
        assert!(at_once > 0, "no read was answered at once");
        shutdown(&nodes).await;
    });
}

/// `propose_with_slot`: sequential writes get increasing slots; each write is in the
/// applied log of every replica at the slot it was given; writes batched together share a
/// slot; `propose` returns the same output without the slot.
#[test]
fn propose_with_slot_names_the_log_position() {
    on_tokio(|rt| async move {
        let nodes = start(&rt, 3).await;
        let l = leader(&nodes).await;

        // Sequential writes through every node in turn.
        let mut written: Vec<(Slot, Bytes)> = Vec::new();
        for k in 0..6u64 {
            let command = Kv::set(100 + k % 2, k);
            let applied = nodes[k as usize % 3]
                .handle
                .propose_with_slot(command.clone())
                .await
                .unwrap();
            // The output is the previous value of the register.
            let previous = (k >= 2).then(|| Bytes::copy_from_slice(&(k - 2).to_le_bytes()));
            assert_eq!(applied.output, previous.unwrap_or_default(), "write {k}");
            if let Some((last, _)) = written.last() {
                assert!(
                    applied.slot > *last,
                    "write {k} in {} after {last}",
                    applied.slot
                );
            }
            written.push((applied.slot, command));
        }
        assert_eq!(
            nodes[l].handle.propose(Kv::set(100, 9)).await,
            Ok(Bytes::copy_from_slice(&4u64.to_le_bytes()))
        );

        // Writes queued together while the leader's persist is blocked go into one batch:
        // one slot.
        let gate = &nodes[l].gate;
        gate.close();
        let leader = &nodes[l].handle;
        let first = leader.propose_with_slot(Kv::set(200, 0));
        let rest = async {
            within(&*rt, "the leader to block", gate.blocked()).await;
            let batch = join_all((1..=8u64).map(|k| leader.propose_with_slot(Kv::set(200 + k, k))));
            // Every proposal of `batch` is queued in its first poll, before the gate opens.
            let (batch, ()) = futures::future::join(batch, async { gate.open() }).await;
            batch
        };
        let (first, batch) = futures::future::join(first, rest).await;
        let first = first.unwrap();
        written.push((first.slot, Kv::set(200, 0)));
        let batch: Vec<Applied> = batch.into_iter().map(Result::unwrap).collect();
        let slot = batch[0].slot;
        assert!(
            batch.iter().all(|a| a.slot == slot),
            "a batch spread over slots: {batch:?}"
        );
        assert!(slot >= first.slot);
        for k in 1..=8u64 {
            written.push((slot, Kv::set(200 + k, k)));
        }

        // Every replica applied each write at the slot it was given, in the same order.
        let last = written.iter().map(|(s, _)| *s).max().unwrap();
        for n in &nodes {
            let caught_up = n.handle.wait_for(WAIT, |s| s.applied > last).await;
            assert!(
                caught_up.is_some(),
                "{} did not apply {last}",
                n.handle.id()
            );
            let log = n.state.state().log.clone();
            for (slot, command) in &written {
                assert!(
                    log.contains(&(*slot, command.clone())),
                    "{} did not apply {command:?} in slot {slot}",
                    n.handle.id()
                );
            }
        }
        let logs: Vec<_> = nodes.iter().map(|n| n.state.state().log.clone()).collect();
        assert!(logs.iter().all(|log| *log == logs[0]), "replicas differ");
        shutdown(&nodes).await;
    });
}

/// `wait_for_leader`: once it returns, a write on every node succeeds at once (no
/// `NoLeader` from a node that has not heard of the leader yet), right after start and
/// after the leader stops; with no quorum left it returns `None` at its timeout, and
/// with every node stopped it returns `None` at once.
#[test]
fn wait_for_leader_then_write_anywhere() {
    on_tokio(|rt| async move {
        let nodes = start(&rt, 3).await;
        let all = handles(&nodes);

        // Right after start, the moment a per-node wait is most likely to mislead.
        let first = wait_for_leader(&all, WAIT).await.expect("a leader");
        for h in &all {
            assert_eq!(h.status().leader, Some(first), "{}", h.id());
        }
        let writes = join_all(
            all.iter()
                .enumerate()
                .map(|(i, h)| h.propose(Kv::set(i as u64, 1))),
        );
        for (i, w) in writes.await.into_iter().enumerate() {
            assert_eq!(w, Ok(Bytes::new()), "write on node {}", all[i].id());
        }

        // The leader stops: the two others agree on a new one. Its stopped handle is
        // still given, and must not count as the leader.
        let old = all.iter().position(|h| h.id() == first).unwrap();
        all[old].shutdown().await;
        let second = wait_for_leader(&all, WAIT).await.expect("a new leader");
        assert_ne!(second, first);
        let running: Vec<&NodeHandle> = all.iter().filter(|h| h.id() != first).collect();
        let writes = join_all(running.iter().map(|h| h.propose(Kv::set(10, 2))));
        for w in writes.await {
            assert!(w.is_ok(), "{w:?}");
        }

        // One node left of three: no leader can be elected, or served.
        let new = all.iter().position(|h| h.id() == second).unwrap();
        all[new].shutdown().await;
        let timeout = Duration::from_millis(1500);
        let started = rt.now();
        assert_eq!(wait_for_leader(&all, timeout).await, None);
        let waited = rt.now() - started;
        assert!(
            waited >= timeout && waited < timeout + Duration::from_secs(2),
            "returned after {waited:?}"
        );

        // Every node stopped: nothing can change, so no wait at all.
        shutdown(&nodes).await;
        let started = rt.now();
        assert_eq!(wait_for_leader(&all, Duration::from_secs(60)).await, None);
        assert!(rt.now() - started < Duration::from_secs(5));
        assert_eq!(wait_for_leader(&[], Duration::from_secs(60)).await, None);
    });
}
