//! [`NodeBuilder`]: assembles a node from its parts and starts its driver.

#[cfg(any(feature = "tcp", feature = "quic"))]
use std::collections::BTreeMap;
#[cfg(any(feature = "tcp", feature = "quic"))]
use std::net::SocketAddr;
#[cfg(feature = "file")]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[cfg(any(feature = "tcp", feature = "quic"))]
use paxos_core::NodeId;
use paxos_core::{Config, Replica, StateMachine, Storage, StoreOwner, Transport};
#[cfg(feature = "tcp")]
use paxos_net_tcp::{TcpConfig, TcpTransport};
use paxos_storage::MemoryStorage;
#[cfg(feature = "file")]
use paxos_storage::{FileStorage, FileStorageOptions};

use crate::command;
use crate::compaction::Snapshots;
use crate::driver::{self, DoneSignal, Driver};
use crate::error::StartError;
use crate::handle::{NodeHandle, NodeStatus, Shared};
use crate::options::NodeOptions;
use crate::runtime::{Runtime, default_runtime};
use crate::snapshot::{self, SnapshotFailure};
use crate::waiters::Waiters;

/// Builds a node: the core [`Config`] (which holds the node id and the members, given
/// here only), a transport, a storage backend, a state machine, and optionally a
/// runtime, a cluster id and [`NodeOptions`].
///
/// A three-member cluster in one process on tokio, over TCP on loopback, with memory
/// storage and a replicated counter: everything comes from this crate. (In a deployment,
/// each process builds one node, with the same address map, and listens on its own
/// fixed address with `tcp`.)
///
/// ```
/// # #[cfg(all(feature = "tokio", feature = "tcp"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// use paxos_node::{
///     Bytes, Committed, Config, NodeBuilder, NodeId, ProposalId, StateMachine,
///     StateMachineError, async_trait, wait_for_leader,
/// };
///
/// /// Adds each command's byte to a total; answers the total.
/// #[derive(Default)]
/// struct Counter(u64);
///
/// #[async_trait]
/// impl StateMachine for Counter {
///     async fn apply(
///         &mut self,
///         committed: &[Committed],
///         outputs: &mut Vec<(ProposalId, Bytes)>,
///     ) -> Result<(), StateMachineError> {
///         for command in committed.iter().flat_map(|c| c.value.commands()) {
///             self.0 += u64::from(command.payload.first().copied().unwrap_or(0));
///             outputs.push((command.id, Bytes::from(self.0.to_string())));
///         }
///         Ok(())
///     }
///     async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
///         Ok(Bytes::from(self.0.to_string()))
///     }
/// }
///
/// tokio::runtime::Runtime::new()?.block_on(async {
///     let ids = [NodeId(1), NodeId(2), NodeId(3)];
///     // Bound first, so every node knows every address before any starts.
///     let mut listeners = Vec::new();
///     let mut peers = Vec::new();
///     for id in ids {
///         let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
///         peers.push((id, listener.local_addr()?));
///         listeners.push(listener);
///     }
///     let mut nodes = Vec::new();
///     for (id, listener) in ids.into_iter().zip(listeners) {
///         let node = NodeBuilder::new(Config::new(id, ids.to_vec()))
///             .cluster_id(7)
///             .tcp_listener(listener, peers.clone())
///             .memory_storage()
///             .state_machine(Box::new(Counter::default()))
///             .start()
///             .await?;
///         nodes.push(node);
///     }
///     // A proposal before a leader is known fails at once with `NoLeader`: wait
///     // (boundedly) until every node knows the same leader.
///     wait_for_leader(&nodes, Duration::from_secs(10)).await.ok_or("no leader")?;
///     assert_eq!(nodes[0].propose(Bytes::from_static(&[2])).await?, "2");
///     assert_eq!(nodes[1].propose(Bytes::from_static(&[3])).await?, "5");
///     assert_eq!(nodes[2].read(Bytes::new()).await?, "5");
///     for node in &nodes {
///         node.shutdown().await;
///     }
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// # }
/// # #[cfg(not(all(feature = "tokio", feature = "tcp")))]
/// # fn main() {}
/// ```
#[must_use = "a builder does nothing until `start` is called"]
pub struct NodeBuilder {
    config: Config,
    cluster_id: u64,
    options: NodeOptions,
    transport: Option<TransportPart>,
    storage: Option<StoragePart>,
    state_machine: Option<Box<dyn StateMachine>>,
    runtime: Option<Arc<dyn Runtime>>,
    #[cfg(feature = "tcp")]
    tcp_tune: Option<TcpTune>,
    #[cfg(feature = "quic")]
    quic_tune: Option<QuicTune>,
    #[cfg(feature = "quic")]
    quic_runtime: Option<Arc<dyn paxos_net_quic::Runtime>>,
}

/// The transport, as given to the builder: started already, or to be started by it.
enum TransportPart {
    Given(Box<dyn Transport>),
    #[cfg(feature = "tcp")]
    Tcp(TcpPart),
    #[cfg(feature = "quic")]
    Quic(QuicPart),
}

/// TCP, to be started by the builder with the node's id and cluster id.
#[cfg(feature = "tcp")]
struct TcpPart {
    listen: TcpListen,
    peers: BTreeMap<NodeId, SocketAddr>,
    #[cfg(feature = "tls")]
    tls: Option<paxos_tls::TlsIdentity>,
}

/// QUIC, to be started by the builder with the node's id and cluster id.
#[cfg(feature = "quic")]
struct QuicPart {
    listen: QuicListen,
    peers: BTreeMap<NodeId, SocketAddr>,
    identity: paxos_tls::TlsIdentity,
}

#[cfg(feature = "quic")]
enum QuicListen {
    Addr(SocketAddr),
    Bound(std::net::UdpSocket),
}

#[cfg(feature = "tcp")]
enum TcpListen {
    Addr(SocketAddr),
    Bound(std::net::TcpListener),
}

/// The storage, as given to the builder: opened already, or to be opened by it.
enum StoragePart {
    Given(Box<dyn Storage>),
    #[cfg(feature = "file")]
    File(PathBuf, FileStorageOptions),
}

impl NodeBuilder {
    /// A builder for the replica `config.id` of the cluster `config.members`. The id is
    /// given here only: the builder hands it to the transport it starts
    /// (`tcp`) and checks it against a transport given ready-made.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            cluster_id: 0,
            options: NodeOptions::default(),
            transport: None,
            storage: None,
            state_machine: None,
            runtime: None,
            #[cfg(feature = "tcp")]
            tcp_tune: None,
            #[cfg(feature = "quic")]
            quic_tune: None,
            #[cfg(feature = "quic")]
            quic_runtime: None,
        }
    }

    /// The cluster's id, the same on every member. The TCP transport refuses peers that
    /// name another cluster in their handshake, and the storage refuses to be used by
    /// another cluster's node ([`Storage::claim`]). Defaults to 0: give every cluster its
    /// own, so that a node pointed at the wrong cluster, or at another cluster's data
    /// directory, is refused rather than joining it.
    pub fn cluster_id(mut self, cluster_id: u64) -> Self {
        self.cluster_id = cluster_id;
        self
    }

    /// The driver's bounds and timeouts.
    pub fn options(mut self, options: NodeOptions) -> Self {
        self.options = options;
        self
    }

    /// A transport started by the caller (a transport of your own, say). Required, unless
    /// `tcp` or `tcp_listener` (feature `tcp`) is used.
    ///
    /// The builder refuses it if it speaks for another node
    /// ([`Transport::local_node`], [`StartError::IdMismatch`]) or cannot reach a member
    /// ([`Transport::knows_peer`], [`StartError::NoAddress`]).
    pub fn transport(mut self, transport: Box<dyn Transport>) -> Self {
        self.transport = Some(TransportPart::Given(transport));
        self
    }

    /// TCP ([`TcpTransport`]), started by the builder with this node's id and the
    /// [`cluster_id`](Self::cluster_id): listen on `listen`, reach each member at its
    /// address in `peers`.
    ///
    /// `peers` may hold every member, this node included (its entry is ignored), so all
    /// nodes can be given the same map. The builder refuses a member without an address
    /// ([`StartError::NoAddress`]) and an address for a node that is not a member
    /// ([`StartError::NotAMember`]). Tune the transport with
    /// [`tcp_config`](Self::tcp_config).
    #[cfg(feature = "tcp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
    pub fn tcp(
        self,
        listen: SocketAddr,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
    ) -> Self {
        self.tcp_part(TcpListen::Addr(listen), peers)
    }

    /// Like [`tcp`](Self::tcp), on a listener the caller bound already. Binding first (to
    /// port 0, say) tells a program every node's address before any node starts, with no
    /// race for the port: how an in-process cluster is built.
    #[cfg(feature = "tcp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
    pub fn tcp_listener(
        self,
        listener: std::net::TcpListener,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
    ) -> Self {
        self.tcp_part(TcpListen::Bound(listener), peers)
    }

    #[cfg(feature = "tcp")]
    fn tcp_part(
        mut self,
        listen: TcpListen,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
    ) -> Self {
        self.transport = Some(TransportPart::Tcp(TcpPart {
            listen,
            peers: peers.into_iter().collect(),
            #[cfg(feature = "tls")]
            tls: None,
        }));
        self
    }

    /// Turns on mutual TLS for the TCP part just set.
    #[cfg(feature = "tls")]
    fn with_tls(mut self, identity: paxos_tls::TlsIdentity) -> Self {
        if let Some(TransportPart::Tcp(part)) = &mut self.transport {
            part.tls = Some(identity);
        }
        self
    }

    /// Like [`tcp`](Self::tcp), with mutual TLS: this node presents `identity`'s
    /// certificate, and accepts only peers whose certificates the same cluster CA signed
    /// and name the node id they claim (see [`tls`](crate::tls)). The builder refuses an
    /// identity whose certificate does not name this node ([`StartError::Transport`]).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tcp_tls(
        self,
        listen: SocketAddr,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        identity: paxos_tls::TlsIdentity,
    ) -> Self {
        self.tcp(listen, peers).with_tls(identity)
    }

    /// Like [`tcp_tls`](Self::tcp_tls), on a listener the caller bound already.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tcp_tls_listener(
        self,
        listener: std::net::TcpListener,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        identity: paxos_tls::TlsIdentity,
    ) -> Self {
        self.tcp_listener(listener, peers).with_tls(identity)
    }

    /// QUIC ([`QuicTransport`](crate::quic::QuicTransport)), started by the builder with
    /// this node's id and [`cluster_id`](Self::cluster_id): bind UDP `listen`, reach each
    /// member at its address in `peers`, always with mutual TLS from `identity` (the
    /// cluster CA and this node's certificate, which must name it). Addresses are checked
    /// as for `tcp`. The quinn runtime is quinn's pick among the enabled
    /// runtime features (tokio when started inside tokio) unless
    /// [`quic_runtime`](Self::quic_runtime) names one. Tune it with
    /// [`quic_config`](Self::quic_config).
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic(
        self,
        listen: SocketAddr,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        identity: paxos_tls::TlsIdentity,
    ) -> Self {
        self.quic_part(QuicListen::Addr(listen), peers, identity)
    }

    /// Like [`quic`](Self::quic), on a UDP socket the caller bound already (to learn a
    /// port-0 address before any node starts).
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_socket(
        self,
        socket: std::net::UdpSocket,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        identity: paxos_tls::TlsIdentity,
    ) -> Self {
        self.quic_part(QuicListen::Bound(socket), peers, identity)
    }

    #[cfg(feature = "quic")]
    fn quic_part(
        mut self,
        listen: QuicListen,
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        identity: paxos_tls::TlsIdentity,
    ) -> Self {
        self.transport = Some(TransportPart::Quic(QuicPart {
            listen,
            peers: peers.into_iter().collect(),
            identity,
        }));
        self
    }

    /// Adjusts the [`QuicConfig`](crate::quic::QuicConfig) the builder makes for
    /// [`quic`](Self::quic). The ids, the listen address, the peers and the identity are
    /// the builder's: changes to them are overwritten.
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_config(
        mut self,
        tune: impl FnOnce(&mut paxos_net_quic::QuicConfig) + Send + 'static,
    ) -> Self {
        self.quic_tune = Some(Box::new(tune));
        self
    }

    /// The quinn runtime QUIC runs on (for example `paxos_net_quic::tokio_runtime()`);
    /// defaults to [`quic::default_runtime`](crate::quic::default_runtime).
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_runtime(mut self, runtime: Arc<dyn paxos_net_quic::Runtime>) -> Self {
        self.quic_runtime = Some(runtime);
        self
    }

    /// Adjusts the [`TcpConfig`] the builder makes for [`tcp`](Self::tcp) (frame limit,
    /// queue bounds, timeouts) before the transport starts. The ids, the listen address
    /// and the peers are the builder's: changes to them are overwritten.
    #[cfg(feature = "tcp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
    pub fn tcp_config(mut self, tune: impl FnOnce(&mut TcpConfig) + Send + 'static) -> Self {
        self.tcp_tune = Some(Box::new(tune));
        self
    }

    /// Where to keep promises and accepted values, opened by the caller. Required, unless
    /// [`memory_storage`](Self::memory_storage) or `file_storage` (feature `file`) is
    /// used. On start the node [claims](Storage::claim) it for this node and cluster, loads
    /// it, and recovers from what it holds.
    pub fn storage(mut self, storage: Box<dyn Storage>) -> Self {
        self.storage = Some(StoragePart::Given(storage));
        self
    }

    /// Keep the node's state in memory ([`MemoryStorage`]): lost when the process exits.
    /// For tests, examples and benchmarks.
    pub fn memory_storage(self) -> Self {
        self.storage(Box::new(MemoryStorage::new()))
    }

    /// Keep the node's state in `dir` ([`FileStorage`], default options), opened by the
    /// builder. The directory is created if missing; one that belongs to another node or
    /// cluster is refused ([`StorageError::OwnedByOther`](paxos_core::StorageError)), and
    /// one that another process has open is refused too
    /// ([`StorageError::Locked`](paxos_core::StorageError)).
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub fn file_storage(self, dir: impl Into<PathBuf>) -> Self {
        self.file_storage_with(dir, FileStorageOptions::default())
    }

    /// Like [`file_storage`](Self::file_storage), with options (segment size, say).
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub fn file_storage_with(
        mut self,
        dir: impl Into<PathBuf>,
        options: FileStorageOptions,
    ) -> Self {
        self.storage = Some(StoragePart::File(dir.into(), options));
        self
    }

    /// The replicated service. Required. It must start empty: the node replays every
    /// chosen slot into it from slot 0 (there are no snapshots yet).
    pub fn state_machine(mut self, state_machine: Box<dyn StateMachine>) -> Self {
        self.state_machine = Some(state_machine);
        self
    }

    /// The runtime to spawn the driver on and take time from. Defaults to
    /// [`default_runtime`].
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Checks the parts against each other, opens and loads the storage, starts the
    /// transport, builds the [`Replica`] and spawns the driver task. The node serves (as
    /// acceptor and, once elected, leader) until [`NodeHandle::shutdown`] or a fatal
    /// error.
    ///
    /// Refused, with nothing left running, when a part is missing, a config is invalid,
    /// the ids disagree, a member has no address, the core's messages do not fit the
    /// transport's frames, or the storage belongs to another node or cluster: see
    /// [`StartError`].
    pub async fn start(self) -> Result<NodeHandle, StartError> {
        let Self {
            config,
            cluster_id,
            options,
            transport,
            storage,
            state_machine,
            runtime,
            #[cfg(feature = "tcp")]
            tcp_tune,
            #[cfg(feature = "quic")]
            quic_tune,
            #[cfg(feature = "quic")]
            quic_runtime,
        } = self;
        let transport = transport.ok_or(StartError::Missing("transport"))?;
        let storage = storage.ok_or(StartError::Missing("storage"))?;
        let mut state_machine = state_machine.ok_or(StartError::Missing("state machine"))?;
        let runtime = runtime
            .or_else(default_runtime)
            .ok_or(StartError::NoRuntime)?;
        options.validate()?;
        config.validate()?;
        if config.max_batch_bytes <= command::TAG_BYTES {
            return Err(StartError::BatchTooSmall {
                max_batch_bytes: config.max_batch_bytes,
                tag_bytes: command::TAG_BYTES,
            });
        }
        // Checks that need no side effect come first: a refused node binds no port and
        // touches no file.
        match &transport {
            TransportPart::Given(given) => check_given(&config, &**given)?,
            #[cfg(feature = "tcp")]
            TransportPart::Tcp(tcp) => check_addresses(&config, &tcp.peers)?,
            #[cfg(feature = "quic")]
            TransportPart::Quic(quic) => check_addresses(&config, &quic.peers)?,
        }
        #[cfg(feature = "quic")]
        let quic_runtime = match (&transport, quic_runtime) {
            (TransportPart::Quic(_), None) => {
                Some(paxos_net_quic::default_runtime().ok_or(StartError::NoRuntime)?)
            }
            (_, runtime) => runtime,
        };
        let mut storage = match storage {
            StoragePart::Given(storage) => storage,
            #[cfg(feature = "file")]
            StoragePart::File(dir, options) => {
                Box::new(FileStorage::open(&dir, options).map_err(StartError::Storage)?)
            }
        };
        storage
            .claim(StoreOwner::new(cluster_id, config.id))
            .await
            .map_err(StartError::Storage)?;
        let mut recovered = storage.load().await.map_err(StartError::Storage)?;
        // The latest snapshot first, then only the log after it is replayed.
        let saved = storage.snapshot().await.map_err(StartError::Storage)?;
        if let Some(meta) = saved {
            let core = snapshot::restore(&mut *storage, &mut *state_machine, meta)
                .await
                .map_err(|e| match e {
                    SnapshotFailure::Storage(e) => StartError::Storage(e),
                    SnapshotFailure::StateMachine(e) => StartError::StateMachine(e),
                })?;
            recovered.snapshot = Some(core);
        }
        let transport: Box<dyn Transport> = match transport {
            TransportPart::Given(given) => given,
            #[cfg(feature = "tcp")]
            TransportPart::Tcp(tcp) => {
                Box::new(start_tcp(cluster_id, &config, tcp, tcp_tune, &runtime)?)
            }
            #[cfg(feature = "quic")]
            TransportPart::Quic(quic) => {
                let quic_runtime = quic_runtime.expect("chosen above for QUIC");
                Box::new(start_quic(
                    cluster_id,
                    &config,
                    quic,
                    quic_tune,
                    quic_runtime,
                )?)
            }
        };
        // Every message the core builds is bounded by `max_message_bytes`; its frame adds
        // the version byte. Checked here, where both sides are known, so that no message
        // is ever too large for the transport (it would be dropped, forever).
        let frame_limit = transport.max_frame_bytes();
        if config.max_message_bytes.saturating_add(1) > frame_limit {
            return Err(StartError::FrameTooSmall {
                max_message_bytes: config.max_message_bytes,
                frame_limit,
            });
        }
        // A chunk and its message's fields fit one frame.
        let chunk_bytes = options
            .snapshot_chunk_bytes
            .min(frame_limit.saturating_sub(64).max(1));
        let snapshots = Snapshots::new(
            saved,
            chunk_bytes,
            options.snapshot_send_rate,
            runtime.now(),
        );
        let origin = runtime.now();
        // Pipelined persists need a store that takes them (see `NodeOptions`).
        let mut config = config;
        config.max_outstanding_readys = if storage.pipelines_persists() {
            options.persists_in_flight
        } else {
            1
        };
        let replica = Replica::new(config.clone(), recovered, paxos_core::Instant::ZERO)?;
        let status = replica.status();
        let shared = Arc::new(Shared::new(NodeStatus {
            id: status.id,
            role: status.role,
            ballot: status.promised,
            leader: status.leader,
            commit: status.commit,
            applied: status.applied,
            lease_held: false,
            stopped: None,
        }));
        let counters = &shared.counters;
        counters
            .log_start
            .store(status.log_start.0, Ordering::Relaxed);
        counters
            .snapshot_bytes
            .store(saved.map_or(0, |m| m.len), Ordering::Relaxed);
        let (requests_tx, requests) = async_channel::bounded(options.request_queue);
        let (control_tx, control) = async_channel::bounded(1);
        let handle = NodeHandle {
            id: config.id,
            shared: shared.clone(),
            requests: requests_tx.clone(),
            control: control_tx.clone(),
            runtime: runtime.clone(),
            request_timeout: options.request_timeout,
            max_command_bytes: config.max_batch_bytes - command::TAG_BYTES,
        };
        let cap = options.max_waiters.unwrap_or(config.max_pending_proposals);
        let driver = Driver {
            replica,
            transport,
            storage,
            state_machine,
            timer: runtime.new_timer(origin),
            runtime: runtime.clone(),
            options,
            requests,
            _requests_open: requests_tx,
            control,
            _control_open: control_tx,
            origin,
            now: paxos_core::Instant::ZERO,
            waiters: Waiters::new(cap),
            stashed: None,
            new_reads: Vec::new(),
            pipeline: std::collections::VecDeque::new(),
            persists_in_flight: config.max_outstanding_readys,
            inbound: Vec::new(),
            outputs: Vec::new(),
            markers: Vec::new(),
            leader: status.leader,
            shared: shared.clone(),
            snapshots,
            _done: DoneSignal(shared),
        };
        runtime.spawn(Box::pin(driver::run(driver)));
        Ok(handle)
    }
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("cluster_id", &self.cluster_id)
            .field("options", &self.options)
            .field("transport", &self.transport.is_some())
            .field("storage", &self.storage.is_some())
            .field("state_machine", &self.state_machine.is_some())
            .field("runtime", &self.runtime)
            .finish()
    }
}

/// A tuning closure for the TCP config.
#[cfg(feature = "tcp")]
type TcpTune = Box<dyn FnOnce(&mut TcpConfig) + Send>;

/// The checks a transport started by the caller allows: its id, and whether it can
/// reach every member.
fn check_given(config: &Config, transport: &dyn Transport) -> Result<(), StartError> {
    if let Some(speaks_for) = transport.local_node() {
        if speaks_for != config.id {
            return Err(StartError::IdMismatch {
                node: config.id,
                transport: speaks_for,
            });
        }
    }
    for &member in config.members.iter().filter(|&&m| m != config.id) {
        if transport.knows_peer(member) == Some(false) {
            return Err(StartError::NoAddress { member });
        }
    }
    Ok(())
}

/// A tuning closure for the QUIC config.
#[cfg(feature = "quic")]
type QuicTune = Box<dyn FnOnce(&mut paxos_net_quic::QuicConfig) + Send>;

/// Every member but this node has an address, and every address is a member's.
#[cfg(any(feature = "tcp", feature = "quic"))]
fn check_addresses(
    config: &Config,
    peers: &BTreeMap<NodeId, SocketAddr>,
) -> Result<(), StartError> {
    for &member in config.members.iter().filter(|&&m| m != config.id) {
        if !peers.contains_key(&member) {
            return Err(StartError::NoAddress { member });
        }
    }
    if let Some(&peer) = peers.keys().find(|p| !config.members.contains(p)) {
        return Err(StartError::NotAMember { peer });
    }
    Ok(())
}

/// Starts TCP with the node's id and cluster id, tuned by the caller's closure.
#[cfg(feature = "tcp")]
fn start_tcp(
    cluster_id: u64,
    config: &Config,
    tcp: TcpPart,
    tune: Option<TcpTune>,
    runtime: &Arc<dyn Runtime>,
) -> Result<TcpTransport, StartError> {
    let TcpPart {
        listen,
        peers,
        #[cfg(feature = "tls")]
        tls,
    } = tcp;
    let addr = match &listen {
        TcpListen::Addr(addr) => *addr,
        TcpListen::Bound(listener) => listener
            .local_addr()
            .map_err(|e| StartError::Transport(Arc::new(e)))?,
    };
    let peers: BTreeMap<NodeId, SocketAddr> = peers
        .into_iter()
        .filter(|&(id, _)| id != config.id)
        .collect();
    let mut tcp = TcpConfig::new(cluster_id, config.id, addr, peers.clone());
    if let Some(tune) = tune {
        tune(&mut tcp);
        tcp.cluster_id = cluster_id;
        tcp.node_id = config.id;
        tcp.listen = addr;
        tcp.peers = peers;
    }
    #[cfg(feature = "tls")]
    {
        tcp.tls = tls;
    }
    let started = match listen {
        TcpListen::Addr(_) => TcpTransport::start(tcp, runtime.clone()),
        TcpListen::Bound(listener) => TcpTransport::start_on(tcp, listener, runtime.clone()),
    };
    started.map_err(|e| StartError::Transport(Arc::new(e)))
}

/// Starts QUIC with the node's id and cluster id, tuned by the caller's closure.
#[cfg(feature = "quic")]
fn start_quic(
    cluster_id: u64,
    config: &Config,
    quic: QuicPart,
    tune: Option<QuicTune>,
    runtime: Arc<dyn paxos_net_quic::Runtime>,
) -> Result<paxos_net_quic::QuicTransport, StartError> {
    use paxos_net_quic::{QuicConfig, QuicTransport};
    let QuicPart {
        listen,
        peers,
        identity,
    } = quic;
    let addr = match &listen {
        QuicListen::Addr(addr) => *addr,
        QuicListen::Bound(socket) => socket
            .local_addr()
            .map_err(|e| StartError::Transport(Arc::new(e)))?,
    };
    let peers: BTreeMap<NodeId, SocketAddr> = peers
        .into_iter()
        .filter(|&(id, _)| id != config.id)
        .collect();
    let mut quic = QuicConfig::new(cluster_id, config.id, addr, peers.clone(), identity.clone());
    if let Some(tune) = tune {
        tune(&mut quic);
        quic.cluster_id = cluster_id;
        quic.node_id = config.id;
        quic.listen = addr;
        quic.peers = peers;
        quic.identity = identity;
    }
    let started = match listen {
        QuicListen::Addr(_) => QuicTransport::start(quic, runtime),
        QuicListen::Bound(socket) => QuicTransport::start_on(quic, socket, runtime),
    };
    started.map_err(|e| StartError::Transport(Arc::new(e)))
}
