//! Node lifecycle in the whole-node simulation: start, crash, restart, wipe, pause.
//!
//! A node is the unchanged `paxos-node` driver, built with [`NodeBuilder`] on the node's
//! [`SimRuntime`], over its [`SimTransport`] and a [`SimDisk`] wrapped in
//! [`FaultyStorage`], with the binary's [`KvStateMachine`] wrapped in [`Recording`] (which
//! checks agreement as slots are applied).

use std::collections::{BTreeMap, hash_map::DefaultHasher};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    Committed, Config, FrozenState, NodeId, ProposalId, Slot, SnapshotRead, SnapshotWrite,
    StateMachine, StateMachineError, Storage,
};
use paxos_kv::kv::{KvReader, KvStateMachine};
use paxos_node::{FatalError, NodeBuilder, NodeHandle, NodeOptions};
use paxos_runtime::Runtime;
use paxos_storage::{FaultPlan, FaultyStorage, MemoryStorage};

use super::NodeBug;
use super::disk::{AckBeforeSync, Coin, SimDisk};
use super::executor::{Executor, Owner};
use super::net::SimNet;
use super::runtime::{NodeClock, SimRuntime};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The core's `max_pending_proposals`, and so the driver's waiter bound.
const PENDING_BOUND: usize = 512;

/// What every replica applied, by slot, across the run: the agreement check.
#[derive(Debug, Default)]
pub(crate) struct Agreement {
    /// Slot -> (hash of the value applied, the first node that applied it).
    applied: BTreeMap<Slot, (u64, usize)>,
    pub(crate) violation: Option<String>,
}

/// The binary's state machine, recording what it applies.
pub(crate) struct Recording {
    inner: KvStateMachine,
    node: usize,
    agreement: Arc<Mutex<Agreement>>,
    /// The next slot this incarnation must apply (slots come contiguous from 0).
    next: Slot,
    /// Every proposal this incarnation applied, and where: **at most once**.
    applied: BTreeMap<ProposalId, Slot>,
    /// Whether [`freeze`](StateMachine::freeze) answers (see [`Timing`]).
    freezes: bool,
}

#[async_trait]
impl StateMachine for Recording {
    async fn apply(
        &mut self,
        committed: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        {
            let mut a = lock(&self.agreement);
            for c in committed {
                if c.slot != self.next && a.violation.is_none() {
                    a.violation = Some(format!(
                        "n{} applied {} after {}: not contiguous",
                        self.node + 1,
                        c.slot,
                        self.next
                    ));
                }
                self.next = c.slot.next();
                for cmd in c.value.commands() {
                    if let Some(first) = self.applied.insert(cmd.id, c.slot) {
                        if a.violation.is_none() {
                            a.violation = Some(format!(
                                "at most once: n{} applied proposal {:?} at {first} and again at {}",
                                self.node + 1,
                                cmd.id,
                                c.slot
                            ));
                        }
                    }
                }
                let mut h = DefaultHasher::new();
                c.value.hash(&mut h);
                let hash = h.finish();
                match a.applied.get(&c.slot) {
                    Some(&(seen, by)) if seen != hash => {
                        if a.violation.is_none() {
                            a.violation = Some(format!(
                                "agreement: slot {} applied as {seen:x} on n{} and {hash:x} on n{}",
                                c.slot,
                                by + 1,
                                self.node + 1
                            ));
                        }
                    }
                    Some(_) => {}
                    None => {
                        a.applied.insert(c.slot, (hash, self.node));
                    }
                }
            }
        }
        self.inner.apply(committed, outputs).await
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        self.inner.query(query).await
    }

    /// The next slot to apply, then the KV store's snapshot: a restored incarnation goes
    /// on checking that slots come contiguous from there.
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(&self.next.0.to_le_bytes())
            .await
            .map_err(|e| StateMachineError::with_source("snapshot", e))?;
        self.inner.snapshot(out).await
    }

    /// Half the seeds freeze (the node writes the snapshot in the background), the
    /// others snapshot inline: both of the driver's paths run.
    ///
    /// The simulator runs a background job inline on its one thread
    /// (`SimRuntime::spawn_blocking`), so the job must never wait for the driver: the
    /// driver's pieces channel holds two pieces, one 256 KiB piece of bytes and the end.
    /// The frozen bytes are therefore written here, and a snapshot that would take more
    /// than one piece is taken inline instead (`None`).
    fn freeze(&mut self) -> Option<Box<dyn FrozenState>> {
        if !self.freezes {
            return None;
        }
        let inner = self.inner.freeze()?;
        let mut bytes = self.next.0.to_le_bytes().to_vec();
        if inner.write(&mut bytes).is_err() || bytes.len() > FROZEN_MAX_BYTES {
            return None;
        }
        Some(Box::new(FrozenRecording { bytes }))
    }

    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let mut next = [0; 8];
        let read = input
            .read_full(&mut next)
            .await
            .map_err(|e| StateMachineError::with_source("restore", e))?;
        if read != 8 {
            return Err(StateMachineError::new("snapshot cut short"));
        }
        self.next = Slot(u64::from_le_bytes(next));
        self.inner.restore(input).await
    }
}

/// [`Recording`]'s frozen state: the same bytes as its `snapshot`, written at freeze time.
struct FrozenRecording {
    bytes: Vec<u8>,
}

/// The largest frozen snapshot: what one of the driver's pieces holds (`IO_CHUNK`, 256
/// KiB), less a margin.
const FROZEN_MAX_BYTES: usize = 240 << 10;

impl FrozenState for FrozenRecording {
    fn write(self: Box<Self>, out: &mut dyn std::io::Write) -> Result<(), StateMachineError> {
        out.write_all(&self.bytes)
            .map_err(|e| StateMachineError::with_source("snapshot", e))
    }
}

/// Timing and bounds of every node of a run, scaled down so that a seed runs fast while
/// every bound is still reached.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) election_min: Duration,
    pub(crate) election_max: Duration,
    pub(crate) resend: Duration,
    pub(crate) lease: Option<Duration>,
    pub(crate) drift_ppm: u32,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) sync: Duration,
    /// The core's `max_inflight_slots` (varied by seed): a leader's Accepts stay below its
    /// commit point plus this (checked by the network).
    pub(crate) window: u64,
    /// Compaction every this many applied slots, keeping this many (by seed; `None`:
    /// never by policy).
    pub(crate) compaction: Option<(u64, u64)>,
    /// The state machine freezes its state, and the node writes its snapshots in the
    /// background (else inline).
    pub(crate) background_snapshots: bool,
}

pub(crate) struct NodeSlot {
    platter: MemoryStorage,
    plan: FaultPlan,
    pub(crate) clock: Arc<Mutex<NodeClock>>,
    /// The running incarnation's handle, and a reader of its state machine's state.
    handle: Arc<Mutex<Option<(NodeHandle, KvReader)>>>,
    pub(crate) up: bool,
    pub(crate) paused: bool,
    /// The node came back with an empty disk: it does not vote.
    pub(crate) wiped: bool,
    incarnation: u64,
}

/// Every node of a run.
pub(crate) struct Cluster {
    exec: Executor,
    net: SimNet,
    ids: Vec<NodeId>,
    pub(crate) slots: Vec<NodeSlot>,
    base: Instant,
    coin: Coin,
    seed: u64,
    timing: Timing,
    bug: Option<NodeBug>,
    fsync_fault_ppm: u32,
    pub(crate) agreement: Arc<Mutex<Agreement>>,
    pub(crate) crashes: u64,
    pub(crate) wipes: u64,
    pub(crate) storage_stops: u64,
    /// Stops that no fault explains (a panic, a state machine error): violations.
    pub(crate) bad_stops: Vec<String>,
    /// Bounds a node's queues went over: violations.
    pub(crate) over_bounds: Vec<String>,
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        exec: Executor,
        net: SimNet,
        ids: Vec<NodeId>,
        clocks: Vec<NodeClock>,
        seed: u64,
        timing: Timing,
        bug: Option<NodeBug>,
        fsync_fault_ppm: u32,
    ) -> Self {
        use rand_chacha::rand_core::SeedableRng;
        let mut coin_seed = [0u8; 32];
        coin_seed[..8].copy_from_slice(&seed.to_le_bytes());
        coin_seed[8] = 0xd1;
        let slots = clocks
            .into_iter()
            .enumerate()
            .map(|(i, clock)| NodeSlot {
                platter: MemoryStorage::new(),
                plan: FaultPlan::seeded(seed ^ ((i as u64 + 1) * 0x9e37_79b9), 0),
                clock: Arc::new(Mutex::new(clock)),
                handle: Arc::default(),
                up: false,
                paused: false,
                wiped: false,
                incarnation: 0,
            })
            .collect();
        Self {
            exec,
            net,
            ids,
            slots,
            base: Instant::now(),
            coin: Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::from_seed(coin_seed))),
            seed,
            timing,
            bug,
            fsync_fault_ppm,
            agreement: Arc::default(),
            crashes: 0,
            wipes: 0,
            storage_stops: 0,
            bad_stops: Vec::new(),
            over_bounds: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The runtime the world's own tasks use: a perfect clock.
    pub(crate) fn world_runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(SimRuntime::new(
            self.exec.clone(),
            Owner::World,
            Arc::new(Mutex::new(NodeClock::new(0, 0))),
            self.base,
        ))
    }

    fn config(&self, i: usize) -> Config {
        let t = self.timing;
        let mut c = Config::new(self.ids[i], self.ids.clone());
        c.heartbeat_interval = t.heartbeat;
        c.election_timeout_min = t.election_min;
        c.election_timeout_max = t.election_max;
        c.resend_interval = t.resend;
        c.lease_duration = t.lease;
        c.max_clock_drift_ppm = t.drift_ppm;
        c.max_batch_bytes = t.max_batch_bytes;
        c.max_message_bytes = t.max_message_bytes;
        c.max_inflight_slots = t.window;
        c.max_slots_per_message = 16;
        c.max_pending_proposals = PENDING_BOUND;
        c.max_pending_bytes = 4 * t.max_message_bytes;
        c.max_inflight_bytes = 4 * t.max_message_bytes;
        let slot = &self.slots[i];
        c.bootstrap = !slot.wiped || self.bug == Some(NodeBug::EmptyDiskVotes);
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        seed[16..24].copy_from_slice(&slot.incarnation.to_le_bytes());
        c.rng_seed = Some(seed);
        c
    }

    /// Starts node `i` from its disk (a new incarnation).
    pub(crate) fn start(&mut self, i: usize) {
        if super::trace_on() {
            eprintln!(
                "t={} start n{} wiped={}",
                self.exec.now() / 1_000_000,
                i + 1,
                self.slots[i].wiped
            );
        }
        let config = self.config(i);
        let slot = &mut self.slots[i];
        slot.incarnation += 1;
        slot.up = true;
        slot.paused = false;
        let rt: Arc<dyn Runtime> = Arc::new(SimRuntime::new(
            self.exec.clone(),
            Owner::Node(i),
            slot.clock.clone(),
            self.base,
        ));
        let disk = SimDisk {
            platter: slot.platter.clone(),
            rt: rt.clone(),
            sync: self.timing.sync,
            coin: self.coin.clone(),
            // Half the nodes pipeline their persists (and so run several Readys at once).
            pipelined: i % 2 == 0,
            chain: Default::default(),
        };
        let storage: Box<dyn Storage> = if self.bug == Some(NodeBug::AckBeforeSync) {
            // It syncs lazily, every 20 ms, like a store that fsyncs "every so often".
            let lazy = SimDisk {
                sync: Duration::from_millis(20),
                ..disk
            };
            Box::new(FaultyStorage::new(
                AckBeforeSync::new(lazy),
                slot.plan.clone(),
            ))
        } else {
            Box::new(FaultyStorage::new(disk, slot.plan.clone()))
        };
        let inner = KvStateMachine::new(paxos_kv::kv::DEFAULT_MAX_SESSIONS);
        let reader = inner.reader();
        let state_machine = Recording {
            inner,
            node: i,
            agreement: self.agreement.clone(),
            next: Slot(0),
            applied: BTreeMap::new(),
            freezes: self.timing.background_snapshots,
        };
        let mut options = NodeOptions::default();
        // Pipelined persists where the disk takes them (half the nodes, see `SimDisk`).
        options.persists_in_flight = 3;
        options.request_timeout = self.timing.request_timeout;
        options.request_queue = 256;
        options.compaction = paxos_node::Compaction::never();
        if let Some((every, keep)) = self.timing.compaction {
            options.compaction.every_entries = Some(every);
            options.compaction.keep_entries = keep;
        }
        let builder = NodeBuilder::new(config)
            .options(options)
            .transport(Box::new(self.net.attach(i)))
            .storage(storage)
            .state_machine(Box::new(state_machine))
            .runtime(rt);
        let handle = slot.handle.clone();
        let agreement = self.agreement.clone();
        self.exec.spawn(Owner::Node(i), async move {
            match builder.start().await {
                Ok(node) => *lock(&handle) = Some((node, reader)),
                Err(e) => {
                    let mut a = lock(&agreement);
                    if a.violation.is_none() {
                        a.violation = Some(format!("n{} failed to start: {e}", i + 1));
                    }
                }
            }
        });
    }

    /// **Limits**: node `i`'s queues stayed within their configured bounds (the core's
    /// pending proposals, the driver's waiters).
    pub(crate) fn check_bounds(&mut self, i: usize) {
        let Some(m) = self.handle(i).map(|h| h.metrics()) else {
            return;
        };
        let bound = PENDING_BOUND as u64;
        if m.peak_pending_proposals > bound || m.peak_waiters > bound {
            self.over_bounds.push(format!(
                "limits: n{} queued {} proposals and {} waiters, over the bound of {bound}",
                i + 1,
                m.peak_pending_proposals,
                m.peak_waiters
            ));
        }
    }

    /// Kills node `i`'s process: every task it owns is dropped, unsynced writes may be lost.
    pub(crate) fn crash(&mut self, i: usize) {
        self.check_bounds(i);
        let now = self.exec.now();
        lock(&self.slots[i].clock).thaw(now);
        if super::trace_on() {
            eprintln!("t={} crash n{}", self.exec.now() / 1_000_000, i + 1);
        }
        self.exec.resume(Owner::Node(i));
        self.exec.kill(Owner::Node(i));
        self.net.detach(i);
        *lock(&self.slots[i].handle) = None;
        let slot = &mut self.slots[i];
        slot.up = false;
        slot.paused = false;
        self.crashes += 1;
    }

    /// Crashes node `i` and gives it an empty disk: it comes back without a vote.
    pub(crate) fn wipe(&mut self, i: usize) {
        if self.slots[i].up {
            self.crash(i);
        }
        let slot = &mut self.slots[i];
        slot.platter = MemoryStorage::new();
        slot.plan = FaultPlan::seeded(self.seed ^ 0x5eed ^ slot.incarnation, 0);
        slot.wiped = true;
        self.wipes += 1;
    }

    /// Suspends node `i` (SIGSTOP, or a VM suspend): its tasks stop; its clock keeps
    /// counting unless `freeze` (a clock that stops while suspended).
    pub(crate) fn pause(&mut self, i: usize, freeze_until: Option<u64>) {
        self.exec.pause(Owner::Node(i));
        self.slots[i].paused = true;
        if let Some(until) = freeze_until {
            let now = self.exec.now();
            lock(&self.slots[i].clock).freeze(now, until);
        }
    }

    pub(crate) fn resume(&mut self, i: usize) {
        self.exec.resume(Owner::Node(i));
        self.slots[i].paused = false;
        let now = self.exec.now();
        lock(&self.slots[i].clock).thaw(now);
    }

    /// Random fsync failures on (a storm) or off (a calm), on every disk.
    pub(crate) fn set_fsync_faults(&mut self, on: bool) {
        let rate = if on { self.fsync_fault_ppm } else { 0 };
        for slot in &self.slots {
            slot.plan.set_rate(rate);
        }
    }

    /// Node `i`'s handle, if it is up and started.
    pub(crate) fn handle(&self, i: usize) -> Option<NodeHandle> {
        lock(&self.slots[i].handle).as_ref().map(|(h, _)| h.clone())
    }

    /// A reader of the state of node `id`'s running incarnation, if it is up and started.
    pub(crate) fn reader_of(&self, id: NodeId) -> Option<KvReader> {
        self.slots
            .iter()
            .find_map(|slot| match &*lock(&slot.handle) {
                Some((h, reader)) if h.id() == id => Some(reader.clone()),
                _ => None,
            })
    }

    /// Nodes that stopped by themselves. A storage failure (an injected fsync error) is
    /// expected: the node is crashed so that the fault scheduler restarts it. Any other
    /// reason is a violation.
    pub(crate) fn reap_stopped(&mut self) -> Vec<usize> {
        let mut stopped = Vec::new();
        for i in 0..self.slots.len() {
            let Some(status) = self.handle(i).map(|h| h.status()) else {
                continue;
            };
            match status.stopped {
                None => {}
                Some(FatalError::Storage(_)) => {
                    self.storage_stops += 1;
                    stopped.push(i);
                }
                Some(other) => {
                    self.bad_stops.push(format!("n{} stopped: {other}", i + 1));
                    stopped.push(i);
                }
            }
        }
        for &i in &stopped {
            self.crash(i);
            self.crashes -= 1;
        }
        stopped
    }
}
