//! Test harness: a KV state machine, transports and stores that tests can steer, an
//! in-process cluster over loopback TCP (or, with features `tls` and `quic`, over TCP
//! with mutual TLS or QUIC: [`Net`]), and the same async test body on every runtime and
//! network.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use event_listener::Event;
use futures::channel::oneshot;
use paxos_core::{
    Committed, Config, Envelope, FrozenState, Inbound, NodeId, PersistBatch, ProposalId,
    RecoveredState, Role, Slot, SnapshotMeta, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError, Storage, StorageError, Transport, TransportError,
};
use paxos_net_tcp::TcpConfig;
use paxos_node::{NodeBuilder, NodeHandle, NodeOptions, ProposeError, Runtime, timeout_at};
use paxos_storage::{FileStorage, FileStorageOptions, IoFaults, MemoryStorage, RecoveryReport};

/// Ports outside the ephemeral range, so that a restarted member finds its port free (see
/// the module's docs).
#[path = "../ports/mod.rs"]
pub mod ports;

pub mod net;
pub use net::{Keys, Net, NetStats, NetTransport, Probe, Returning};

/// The cluster id every test node uses.
pub const CLUSTER: u64 = 0x5EED;

/// Bound on any single wait in a test. Generous: it only matters when something is broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `test` on a two-worker tokio runtime.
pub fn on_tokio<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(paxos_node::TokioRuntime::new(rt.handle().clone()));
    rt.block_on(test(runtime));
}

/// Runs `test` under smol's `block_on`, with the async-io runtime.
#[cfg(feature = "smol")]
pub fn on_smol<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    smol::block_on(test(Arc::new(paxos_node::AsyncIoRuntime::new())));
}

/// Runs `test` under async-std's `block_on`, with the async-io runtime.
#[cfg(feature = "async-std")]
pub fn on_async_std<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Runtime>) -> Fut) {
    async_std::task::block_on(test(Arc::new(paxos_node::AsyncIoRuntime::new())));
}

/// Declares `<name>::{tokio, async_std, smol}` tests running `async fn <name>(net,
/// runtime)` over plain TCP, and with [`secure_variants!`] the same over QUIC and TCP+TLS.
#[macro_export]
macro_rules! on_every_net {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn tokio() {
                $crate::common::on_tokio(|rt| super::$name($crate::common::Net::Tcp, rt));
            }
            #[test]
            fn async_std() {
                $crate::common::on_async_std(|rt| super::$name($crate::common::Net::Tcp, rt));
            }
            #[test]
            fn smol() {
                $crate::common::on_smol(|rt| super::$name($crate::common::Net::Tcp, rt));
            }
            $crate::secure_variants!(super::$name);
        }
    )*};
}

/// Declares `<name>::{quic_tokio, quic_smol}` (feature `quic`) and
/// `<name>::{tcp_tls_tokio, tcp_tls_smol}` (feature `tls`) tests running `async fn
/// <name>(net, runtime)`.
#[macro_export]
macro_rules! on_secure_nets {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            $crate::secure_variants!(super::$name);
        }
    )*};
}

/// The secure tests of [`on_every_net!`] and [`on_secure_nets!`], running `$body`.
#[macro_export]
macro_rules! secure_variants {
    ($body:path) => {
        #[cfg(feature = "quic")]
        #[test]
        fn quic_tokio() {
            $crate::common::on_tokio(|rt| $body($crate::common::Net::Quic, rt));
        }
        #[cfg(feature = "quic")]
        #[test]
        fn quic_smol() {
            $crate::common::on_smol(|rt| $body($crate::common::Net::Quic, rt));
        }
        #[cfg(feature = "tls")]
        #[test]
        fn tcp_tls_tokio() {
            $crate::common::on_tokio(|rt| $body($crate::common::Net::TcpTls, rt));
        }
        #[cfg(feature = "tls")]
        #[test]
        fn tcp_tls_smol() {
            $crate::common::on_smol(|rt| $body($crate::common::Net::TcpTls, rt));
        }
    };
}

/// Waits for `future` for at most [`WAIT`]; panics with `what` on timeout.
pub async fn within<F: Future>(rt: &dyn Runtime, what: &str, future: F) -> F::Output {
    match timeout_at(rt, rt.now() + WAIT, future).await {
        Some(out) => out,
        None => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------
// The state machine.

/// A map of u64 registers. Command: `key: u64 LE | value: u64 LE` sets the key and
/// outputs the previous value (empty if none). Query: `key: u64 LE`, answers the value.
#[derive(Clone, Debug, Default)]
pub struct Kv {
    state: Arc<Mutex<KvState>>,
}

#[derive(Debug, Default)]
pub struct KvState {
    pub map: BTreeMap<u64, u64>,
    /// Every slot below this was applied.
    pub applied: Slot,
    /// Holds the next snapshot written in the background until the test releases it.
    pub freeze_gate: Option<FreezeGate>,
}

/// Steers one background snapshot of a [`Kv`]: it says when it starts writing, then waits
/// for the test's word.
#[derive(Debug)]
pub struct FreezeGate {
    pub started: async_channel::Sender<()>,
    pub release: std::sync::mpsc::Receiver<()>,
}

/// The snapshot's bytes: the applied point, the number of pairs, then the pairs, 8 bytes
/// each, little-endian.
fn kv_snapshot(applied: Slot, map: &BTreeMap<u64, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 * map.len());
    out.extend_from_slice(&applied.0.to_le_bytes());
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (key, value) in map {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// A [`Kv`]'s frozen state (a copy of its map), written on the node's snapshot thread.
struct FrozenKv {
    applied: Slot,
    map: BTreeMap<u64, u64>,
    gate: Option<FreezeGate>,
}

impl FrozenState for FrozenKv {
    fn write(self: Box<Self>, out: &mut dyn std::io::Write) -> Result<(), StateMachineError> {
        if let Some(gate) = self.gate {
            let _ = gate.started.send_blocking(());
            let _ = gate.release.recv();
        }
        out.write_all(&kv_snapshot(self.applied, &self.map))
            .map_err(|e| StateMachineError::with_source("snapshot", e))
    }
}

impl Kv {
    pub fn state(&self) -> MutexGuard<'_, KvState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn map(&self) -> BTreeMap<u64, u64> {
        self.state().map.clone()
    }

    pub fn set(key: u64, value: u64) -> Bytes {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&key.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
        Bytes::from(b)
    }

    pub fn get(key: u64) -> Bytes {
        Bytes::copy_from_slice(&key.to_le_bytes())
    }

    pub fn value(answer: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(answer.try_into().ok()?))
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[async_trait]
impl StateMachine for Kv {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        let mut state = self.state();
        for c in batch {
            assert_eq!(c.slot, state.applied, "slots applied out of order");
            for cmd in c.value.commands() {
                let out = match (word(&cmd.payload, 0), word(&cmd.payload, 8)) {
                    (Some(key), Some(value)) if cmd.payload.len() == 16 => state
                        .map
                        .insert(key, value)
                        .map_or_else(Bytes::new, |old| Bytes::copy_from_slice(&old.to_le_bytes())),
                    // Any other payload (large filler commands) is a no-op.
                    _ => Bytes::new(),
                };
                outputs.push((cmd.id, out));
            }
            state.applied = c.slot.next();
        }
        Ok(())
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        let key = word(query, 0).ok_or_else(|| StateMachineError::new("bad query"))?;
        let state = self.state();
        Ok(state
            .map
            .get(&key)
            .map_or_else(Bytes::new, |v| Bytes::copy_from_slice(&v.to_le_bytes())))
    }

    /// [`kv_snapshot`]'s bytes.
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let bytes = {
            let state = self.state();
            kv_snapshot(state.applied, &state.map)
        };
        out.write(&bytes)
            .await
            .map_err(|e| StateMachineError::with_source("snapshot", e))
    }

    /// The same bytes, written in the background from a copy.
    fn freeze(&mut self) -> Option<Box<dyn FrozenState>> {
        let mut state = self.state();
        Some(Box::new(FrozenKv {
            applied: state.applied,
            map: state.map.clone(),
            gate: state.freeze_gate.take(),
        }))
    }

    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        async fn next(input: &mut dyn SnapshotRead) -> Result<u64, StateMachineError> {
            let mut word = [0; 8];
            match input.read_full(&mut word).await {
                Ok(8) => Ok(u64::from_le_bytes(word)),
                Ok(_) => Err(StateMachineError::new("snapshot cut short")),
                Err(e) => Err(StateMachineError::with_source("restore", e)),
            }
        }
        let applied = Slot(next(input).await?);
        let mut map = BTreeMap::new();
        for _ in 0..next(input).await? {
            let key = next(input).await?;
            map.insert(key, next(input).await?);
        }
        let mut state = self.state();
        state.applied = applied;
        state.map = map;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Transports and stores the tests steer.

/// A transport with no peers: sends go nowhere, nothing arrives. For one-node clusters.
#[derive(Debug, Default)]
pub struct NullTransport;

#[async_trait]
impl Transport for NullTransport {
    fn send(&self, _batch: Vec<Envelope>) {}

    async fn recv(&mut self, _out: &mut Vec<Inbound>, _max: usize) -> Result<(), TransportError> {
        futures::future::pending().await
    }
}

/// Peers that grant every pre-vote and answer nothing else: the node campaigns (phase 1)
/// forever, and as a candidate it queues proposals.
#[derive(Debug, Default)]
pub struct PreVoteOnly {
    replies: Arc<Mutex<Vec<Inbound>>>,
    arrived: Event,
}

#[async_trait]
impl Transport for PreVoteOnly {
    fn send(&self, batch: Vec<Envelope>) {
        let mut replies = self.replies.lock().unwrap_or_else(PoisonError::into_inner);
        for Envelope { to, message } in batch {
            if let paxos_core::Message::PreVote(ask) = message {
                let reply = paxos_core::message::PreVoteReply {
                    ballot: ask.ballot,
                    round: ask.round,
                    granted: true,
                    promised: paxos_core::Ballot::ZERO,
                    commit: ask.commit,
                };
                replies.push(Inbound {
                    from: to,
                    message: paxos_core::Message::PreVoteReply(reply),
                });
            }
        }
        self.arrived.notify(usize::MAX);
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        loop {
            let listener = self.arrived.listen();
            {
                let mut replies = self.replies.lock().unwrap_or_else(PoisonError::into_inner);
                if !replies.is_empty() {
                    let n = replies.len().min(max);
                    out.extend(replies.drain(..n));
                    return Ok(());
                }
            }
            listener.await;
        }
    }
}

/// A transport that delivers nothing and carries frames of at most this many bytes.
#[derive(Debug)]
pub struct SmallFrames(pub usize);

#[async_trait]
impl Transport for SmallFrames {
    fn send(&self, _batch: Vec<Envelope>) {}

    async fn recv(&mut self, _out: &mut Vec<Inbound>, _max: usize) -> Result<(), TransportError> {
        futures::future::pending().await
    }

    fn max_frame_bytes(&self) -> usize {
        self.0
    }
}

/// A gate that [`GatedStorage`] waits on in `persist`, and [`GatedTransport`] holds what
/// arrives at, while it is closed.
#[derive(Debug, Default)]
pub struct Gate {
    closed: AtomicBool,
    /// A persist (or a received message) is waiting at the closed gate.
    blocked: AtomicBool,
    changed: Event,
}

impl Gate {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.changed.notify(usize::MAX);
    }

    /// Waits until a persist (or a received message) is blocked at the gate.
    pub async fn blocked(&self) {
        loop {
            let listener = self.changed.listen();
            if self.blocked.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }

    async fn pass(&self) {
        loop {
            let listener = self.changed.listen();
            if !self.closed.load(Ordering::SeqCst) {
                self.blocked.store(false, Ordering::SeqCst);
                return;
            }
            if !self.blocked.swap(true, Ordering::SeqCst) {
                // Tell `blocked` waiters, then listen anew: the listener taken above hears
                // this notification too, and awaiting it would spin (on tokio, with the
                // woken test task stuck in this worker's LIFO slot: a hang).
                self.changed.notify(usize::MAX);
                continue;
            }
            listener.await;
        }
    }
}

/// A transport that holds every message it receives while its [`Gate`] is closed, and
/// delivers them, in order, once it opens. Sending is not gated. A message the inner
/// transport returns after [`Gate::close`] is never delivered before [`Gate::open`]: held
/// messages live in the wrapper, not in the caller's buffer, so a `recv` dropped while
/// waiting (the driver's select, or its single poll) loses nothing and passes nothing.
pub struct GatedTransport<T> {
    inner: T,
    gate: Arc<Gate>,
    held: Vec<Inbound>,
}

impl<T> GatedTransport<T> {
    pub fn new(inner: T, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            held: Vec::new(),
        }
    }
}

#[async_trait]
impl<T: Transport> Transport for GatedTransport<T> {
    fn send(&self, batch: Vec<Envelope>) {
        self.inner.send(batch);
    }

    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError> {
        loop {
            if !self.held.is_empty() {
                self.gate.pass().await;
                let n = self.held.len().min(max);
                out.extend(self.held.drain(..n));
                return Ok(());
            }
            // Nothing held: at most `max` more, checked against the gate before delivery.
            self.inner.recv(&mut self.held, max).await?;
        }
    }

    fn max_frame_bytes(&self) -> usize {
        self.inner.max_frame_bytes()
    }

    fn local_node(&self) -> Option<NodeId> {
        self.inner.local_node()
    }

    fn knows_peer(&self, peer: NodeId) -> Option<bool> {
        self.inner.knows_peer(peer)
    }
}

/// A [`MemoryStorage`] whose `persist` waits while its [`Gate`] is closed.
#[derive(Debug)]
pub struct GatedStorage {
    pub inner: MemoryStorage,
    pub gate: Arc<Gate>,
}

#[async_trait]
impl Storage for GatedStorage {
    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.inner.load().await
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.gate.pass().await;
        self.inner.persist(batch).await
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.inner.begin_snapshot(upto).await
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.append_snapshot(bytes).await
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.inner.staged_snapshot().await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        self.inner.commit_snapshot().await
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.inner.snapshot().await
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.inner.read_snapshot(offset, buf).await
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.inner.compact(before).await
    }
}

// ---------------------------------------------------------------------------------------
// Configs.

/// Fast timers for loopback tests. The election timeout stays at the core's default
/// minimum (300 ms), which leaves room for the core's default leader lease (150 ms, at most
/// half of it) where the core has leases.
pub fn core_config(id: u64, members: &[u64]) -> Config {
    let mut config = Config::new(NodeId(id), members.iter().copied().map(NodeId).collect());
    config.heartbeat_interval = Duration::from_millis(20);
    config.election_timeout_min = Duration::from_millis(300);
    config.election_timeout_max = Duration::from_millis(400);
    config.resend_interval = Duration::from_millis(50);
    config
}

pub fn options() -> NodeOptions {
    let mut options = NodeOptions::default();
    options.request_timeout = Duration::from_secs(2);
    options
}

/// A loopback TCP config with fast reconnects.
pub fn tcp_config(id: u64, listen: SocketAddr) -> TcpConfig {
    let mut config = TcpConfig::new(CLUSTER, NodeId(id), listen, BTreeMap::new());
    config.reconnect_backoff_min = Duration::from_millis(5);
    config.reconnect_backoff_max = Duration::from_millis(50);
    config.handshake_timeout = Duration::from_secs(1);
    config.write_timeout = Duration::from_secs(1);
    config
}

/// A loopback QUIC config with fast reconnects, as node `id` with `identity`.
#[cfg(feature = "quic")]
pub fn quic_config(
    id: u64,
    listen: SocketAddr,
    identity: paxos_tls::TlsIdentity,
) -> paxos_net_quic::QuicConfig {
    let mut config =
        paxos_net_quic::QuicConfig::new(CLUSTER, NodeId(id), listen, BTreeMap::new(), identity);
    config.reconnect_backoff_min = Duration::from_millis(5);
    config.reconnect_backoff_max = Duration::from_millis(50);
    config.handshake_timeout = Duration::from_secs(1);
    config.write_timeout = Duration::from_secs(1);
    config.initial_rtt = Duration::from_millis(5);
    // Shorter than the default 10 s: now and then `QuicTransport::close` returns only once
    // one of its connections has idled out (seen in ~2% of closes under load).
    config.idle_timeout = Duration::from_secs(2);
    config.keep_alive_interval = Duration::from_millis(500);
    config
}

/// quinn's runtime for the executor the caller runs on: tokio inside a tokio runtime,
/// else smol's.
#[cfg(feature = "quic")]
pub fn quinn_runtime() -> Arc<dyn paxos_net_quic::Runtime> {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        return paxos_net_quic::tokio_runtime();
    }
    quinn_off_tokio()
}

#[cfg(all(feature = "quic", feature = "smol"))]
fn quinn_off_tokio() -> Arc<dyn paxos_net_quic::Runtime> {
    paxos_net_quic::smol_runtime()
}

#[cfg(all(feature = "quic", not(feature = "smol")))]
fn quinn_off_tokio() -> Arc<dyn paxos_net_quic::Runtime> {
    paxos_net_quic::default_runtime().expect("a quinn runtime feature")
}

// ---------------------------------------------------------------------------------------
// The cluster.

/// One running member of a [`Cluster`].
pub struct Member {
    pub handle: NodeHandle,
    pub kv: Kv,
    pub probe: Probe,
    transport_back: oneshot::Receiver<NetTransport>,
}

/// Where a member keeps its promises and accepted values, across its restarts.
#[derive(Clone, Debug)]
pub enum Disk {
    /// A [`MemoryStorage`]: each start gets a clone of the same store.
    Memory(MemoryStorage),
    /// A [`FileStorage`] directory, opened (so recovered) on each start, with every write
    /// and fsync routed through `faults`.
    File { dir: PathBuf, faults: IoFaults },
}

/// Nodes `1..=n` over loopback TCP (or another [`Net`]) with [`Kv`], on [`MemoryStorage`]
/// unless the test gives [`Disk`]s. Members that are not started (`real < n`) are left to
/// the test (e.g. a fake peer on `addrs[i]`).
pub struct Cluster {
    pub rt: Arc<dyn Runtime>,
    pub net: Net,
    /// The cluster CA, for a secure net.
    pub keys: Keys,
    pub ids: Vec<u64>,
    pub addrs: Vec<SocketAddr>,
    pub disks: Vec<Disk>,
    /// What the last open of each member's [`Disk::File`] recovered.
    pub recoveries: Vec<Option<RecoveryReport>>,
    pub members: Vec<Option<Member>>,
    /// The transports of members [`stop`](Self::stop)ped, to close on shutdown.
    stopped: Vec<oneshot::Receiver<NetTransport>>,
    /// What members are started with ([`options`] unless the test says otherwise).
    options: NodeOptions,
}

/// Attempts at a fresh port for a member's first start: a port checked free can still be
/// bound by another process before the member binds it.
const BIND_ATTEMPTS: usize = 5;

/// Ids `1..=n`, fresh loopback ports (port 0) and a [`MemoryStorage`] each.
fn fresh_members(n: usize) -> (Vec<u64>, Vec<SocketAddr>, Vec<Disk>) {
    let ids = (1..=n as u64).collect();
    let addrs = vec!["127.0.0.1:0".parse().unwrap(); n];
    let disks = (0..n).map(|_| Disk::Memory(MemoryStorage::new())).collect();
    (ids, addrs, disks)
}

impl Cluster {
    /// Starts every node of a cluster of `n` on free loopback ports.
    pub async fn start(rt: Arc<dyn Runtime>, n: usize) -> Self {
        Self::start_over(Net::Tcp, rt, n).await
    }

    /// Starts every node of a cluster of `n` over `net` on free loopback ports.
    pub async fn start_over(net: Net, rt: Arc<dyn Runtime>, n: usize) -> Self {
        let (ids, addrs, disks) = fresh_members(n);
        Self::start_full(net, rt, ids, addrs, disks).await
    }

    /// Starts every node of a cluster of `disks.len()` on free loopback ports, member `i`
    /// on `disks[i]`.
    pub async fn start_on(rt: Arc<dyn Runtime>, disks: Vec<Disk>) -> Self {
        let (ids, addrs, _) = fresh_members(disks.len());
        Self::start_full(Net::Tcp, rt, ids, addrs, disks).await
    }

    /// Starts a member on each of `disks`, as [`start_on`](Self::start_on) does, with
    /// `options`.
    pub async fn start_on_tuned(
        rt: Arc<dyn Runtime>,
        disks: Vec<Disk>,
        options: NodeOptions,
    ) -> Self {
        let (ids, addrs, _) = fresh_members(disks.len());
        Self::start_full_with(Net::Tcp, rt, ids, addrs, disks, Some(options)).await
    }

    /// Starts a node for every address that is port 0 (on a fresh port); the others are
    /// members the test runs itself.
    pub async fn start_with(rt: Arc<dyn Runtime>, ids: Vec<u64>, addrs: Vec<SocketAddr>) -> Self {
        let (_, _, disks) = fresh_members(ids.len());
        Self::start_full(Net::Tcp, rt, ids, addrs, disks).await
    }

    /// Starts every node of a cluster of `n` on free loopback ports, with `options`.
    pub async fn start_tuned(rt: Arc<dyn Runtime>, n: usize, options: NodeOptions) -> Self {
        let (ids, addrs, disks) = fresh_members(n);
        Self::start_full_with(Net::Tcp, rt, ids, addrs, disks, Some(options)).await
    }

    async fn start_full(
        net: Net,
        rt: Arc<dyn Runtime>,
        ids: Vec<u64>,
        addrs: Vec<SocketAddr>,
        disks: Vec<Disk>,
    ) -> Self {
        Self::start_full_with(net, rt, ids, addrs, disks, None).await
    }

    async fn start_full_with(
        net: Net,
        rt: Arc<dyn Runtime>,
        ids: Vec<u64>,
        addrs: Vec<SocketAddr>,
        disks: Vec<Disk>,
        options: Option<NodeOptions>,
    ) -> Self {
        let n = ids.len();
        let real: Vec<bool> = addrs.iter().map(|a| a.port() == 0).collect();
        let keys = Keys::for_net(net);
        let mut transports = Vec::new();
        let mut addrs = addrs;
        for i in 0..n {
            if real[i] {
                // A port outside the ephemeral range (not the kernel's pick for port 0), so
                // that a restart on it cannot find it taken by some socket's source port.
                let t = (0..BIND_ATTEMPTS)
                    .find_map(|_| net.start(&keys, ids[i], None, &rt).ok())
                    .expect("a transport on a free port");
                addrs[i] = t.local_addr();
                transports.push(Some(t));
            } else {
                transports.push(None);
            }
        }
        for t in transports.iter().flatten() {
            for (i, &addr) in addrs.iter().enumerate() {
                t.set_peer(NodeId(ids[i]), addr);
            }
        }
        let mut cluster = Self {
            rt,
            net,
            keys,
            ids,
            addrs,
            disks,
            recoveries: vec![None; n],
            members: (0..n).map(|_| None).collect(),
            stopped: Vec::new(),
            options: options.unwrap_or_else(self::options),
        };
        for (i, t) in transports.into_iter().enumerate() {
            if let Some(t) = t {
                cluster.launch(i, t).await;
            }
        }
        cluster
    }

    async fn launch(&mut self, i: usize, transport: NetTransport) {
        let (transport, probe, transport_back) = Returning::new(transport);
        let kv = Kv::default();
        let storage: Box<dyn Storage> = match &self.disks[i] {
            Disk::Memory(disk) => Box::new(disk.clone()),
            Disk::File { dir, faults } => {
                let options = FileStorageOptions::default()
                    .segment_bytes(1 << 20)
                    .faults(faults.clone());
                let store = FileStorage::open(dir, options)
                    .unwrap_or_else(|e| panic!("member {i} cannot open {}: {e}", dir.display()));
                self.recoveries[i] = Some(store.recovery().clone());
                Box::new(store)
            }
        };
        let handle = NodeBuilder::new(core_config(self.ids[i], &self.ids))
            .options(self.options.clone())
            .transport(Box::new(transport))
            .storage(storage)
            .state_machine(Box::new(kv.clone()))
            .runtime(self.rt.clone())
            .start()
            .await
            .unwrap();
        self.members[i] = Some(Member {
            handle,
            kv,
            probe,
            transport_back,
        });
    }

    pub fn handle(&self, i: usize) -> &NodeHandle {
        &self.members[i].as_ref().expect("member is running").handle
    }

    pub fn kv(&self, i: usize) -> &Kv {
        &self.members[i].as_ref().expect("member is running").kv
    }

    /// Member `i`'s transport counters now.
    pub async fn stats(&self, i: usize) -> NetStats {
        let probe = &self.members[i].as_ref().expect("member is running").probe;
        within(&*self.rt, "the transport's counters", probe.stats()).await
    }

    /// How many [`forged`](net::forged) messages member `i`'s core has been handed since it
    /// started.
    pub fn forged(&self, i: usize) -> u64 {
        self.members[i]
            .as_ref()
            .expect("member is running")
            .probe
            .forged()
    }

    /// Handles of the running members.
    pub fn handles(&self) -> Vec<NodeHandle> {
        self.members
            .iter()
            .flatten()
            .map(|m| m.handle.clone())
            .collect()
    }

    /// Waits until a running member leads and every running member follows it; returns its
    /// index.
    pub async fn leader(&self) -> usize {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].is_some())
            .collect();
        let wait = async {
            loop {
                // Whoever believes it leads; then check the others agree.
                let mut found = None;
                for &i in &running {
                    let s = self.handle(i).status();
                    if s.role == Role::Leader {
                        found = Some(i);
                    }
                }
                if let Some(l) = found {
                    let id = NodeId(self.ids[l]);
                    let mut all = true;
                    for &i in &running {
                        let ok = self
                            .handle(i)
                            .wait_for(Duration::from_millis(500), |s| s.leader == Some(id))
                            .await;
                        all &= ok.is_some();
                    }
                    if all && self.handle(l).status().role == Role::Leader {
                        return l;
                    }
                } else {
                    // Wait for any status change on the first member.
                    let before = self.handle(running[0]).status();
                    let _ = self
                        .handle(running[0])
                        .wait_for(Duration::from_millis(500), |s| *s != before)
                        .await;
                }
            }
        };
        within(&*self.rt, "a leader", wait).await
    }

    /// Stops member `i` and closes its transport, so its port is free and its peers see
    /// the connections drop (QUIC: the peers are told).
    pub async fn kill(&mut self, i: usize) {
        self.stop(i).await;
        let back = self.stopped.pop().expect("stopped just now");
        close_returned(&*self.rt, back).await;
    }

    /// Stops member `i` like [`kill`](Self::kill), but leaves its transport open until
    /// [`shutdown`](Self::shutdown): it returns as soon as the node has stopped, for a test
    /// that must act before the peers notice (closing a QUIC transport drains its
    /// connections, which can take a while on a loaded machine).
    pub async fn stop(&mut self, i: usize) {
        let member = self.members[i].take().expect("member is running");
        member.handle.shutdown().await;
        self.stopped.push(member.transport_back);
    }

    /// Restarts member `i` on its old address, over the same disk, with a fresh state
    /// machine.
    pub async fn restart(&mut self, i: usize) {
        // The port is outside the ephemeral range: no peer's redial or other outbound
        // socket can have taken it as a source port since `kill` freed it.
        let t = self
            .net
            .start(&self.keys, self.ids[i], Some(self.addrs[i]), &self.rt)
            .unwrap_or_else(|e| panic!("member {i} cannot bind {} again: {e}", self.addrs[i]));
        for (j, &addr) in self.addrs.iter().enumerate() {
            t.set_peer(NodeId(self.ids[j]), addr);
        }
        self.launch(i, t).await;
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            if self.members[i].is_some() {
                self.kill(i).await;
            }
        }
        for back in std::mem::take(&mut self.stopped) {
            close_returned(&*self.rt, back).await;
        }
    }
}

/// Closes the transport a stopped node hands `back`, once it has.
async fn close_returned(rt: &dyn Runtime, back: oneshot::Receiver<NetTransport>) {
    let transport = within(rt, "the transport back", back)
        .await
        .expect("the driver hands the transport back when it drops it");
    within(rt, "the transport closed", transport.close()).await;
}

/// Proposes `command` through `nodes`, starting at `first`, until one applies it; retries
/// on errors that leave the outcome unknown or mean "try elsewhere". Gives up (panics)
/// after [`WAIT`] in all, however many attempts that is.
pub async fn propose_until_applied(
    rt: &dyn Runtime,
    nodes: &[NodeHandle],
    first: usize,
    command: Bytes,
) -> Bytes {
    let attempts = async {
        let mut at = first;
        let mut stopped = 0;
        // Bounded by the deadline around this loop. Every arm that can answer at once
        // either waits or moves on, so the loop always yields to that deadline.
        loop {
            let node = &nodes[at % nodes.len()];
            match node.propose(command.clone()).await {
                Ok(out) => return out,
                Err(ProposeError::NoLeader) => {
                    // An election is under way: wait for it, then retry here.
                    let _ = node
                        .wait_for(Duration::from_secs(1), |s| s.leader.is_some())
                        .await;
                }
                Err(ProposeError::LeadershipChanged | ProposeError::Timeout) => {}
                // Back off: the queues drain at their own pace.
                Err(ProposeError::Overloaded) => rt.sleep(Duration::from_millis(10)).await,
                Err(ProposeError::Fatal(e)) => {
                    stopped += 1;
                    assert!(stopped < nodes.len(), "every node stopped; the last: {e}");
                    at += 1;
                    continue;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
            stopped = 0;
        }
    };
    within(rt, "a node to apply the command", attempts).await
}
