//! [`LocalCluster`]: a few nodes in one process, over loopback TCP, on the runtime and the
//! storage you choose.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use paxos_node::{
    AsyncIoRuntime, Config, MemoryStorage, NodeBuilder, NodeHandle, NodeId, Runtime, StartError,
    TokioRuntime, wait_for_leader,
};

use crate::machine::LockMachine;

/// The async runtime the nodes run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    /// A two-worker multi-threaded tokio runtime, through [`TokioRuntime`].
    Tokio,
    /// smol: the caller blocks in `smol::block_on`, the nodes run on smol's global
    /// executor, through [`AsyncIoRuntime`].
    Smol,
}

impl RuntimeChoice {
    /// Runs `body` to completion on this runtime, handing it the runtime seam that the
    /// transports and nodes take.
    pub fn block_on<F: Future>(
        self,
        body: impl FnOnce(Arc<dyn Runtime>) -> F,
    ) -> io::Result<F::Output> {
        match self {
            Self::Tokio => {
                let tokio = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime::new(tokio.handle().clone()));
                Ok(tokio.block_on(body(runtime)))
            }
            Self::Smol => Ok(smol::block_on(body(Arc::new(AsyncIoRuntime::new())))),
        }
    }
}

/// Where each node keeps its promises and accepted values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// [`MemoryStorage`]: lost with the process, kept across a [`LocalCluster::restart`].
    Memory,
    /// [`FileStorage`](paxos_node::FileStorage) in `dir/node-<id>`: fsynced, kept across runs of the program.
    File(PathBuf),
}

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No loopback port could be bound for a node.
    #[error("binding a port on 127.0.0.1: {0}")]
    Bind(#[source] io::Error),
    /// A node refused to start: its storage could not be opened, say (the
    /// [`StartError`] says which mistake, and keeps its cause as its source).
    #[error("node {id}: {source}")]
    Node {
        /// The node.
        id: NodeId,
        /// Why.
        source: StartError,
    },
}

/// Each node's disk: what survives a [`LocalCluster::restart`].
#[derive(Debug)]
enum Disk {
    /// Every start gets a clone, which shares the "disk".
    Memory(MemoryStorage),
    File(PathBuf),
}

/// Nodes `1..=n` of one cluster, in this process, over TCP on 127.0.0.1.
///
/// Every listener binds port 0 (the kernel picks a free port) before any node starts, and
/// every node is given every address, so clusters never collide on ports. A [`restart`](Self::restart) starts
/// every node again on fresh ports: nothing else has to know the addresses.
///
/// Dropping a `LocalCluster` does not stop its nodes (nor does dropping a
/// [`NodeHandle`]); call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct LocalCluster {
    runtime: Arc<dyn Runtime>,
    /// Random per cluster: a node of another cluster (another test, say) that happens to
    /// get a freed port refuses this cluster's handshakes.
    cluster_id: u64,
    ids: Vec<NodeId>,
    disks: Vec<Disk>,
    nodes: Vec<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    handle: NodeHandle,
    addr: SocketAddr,
}

impl LocalCluster {
    /// Starts `n` nodes with fresh, empty state machines, over `storage`.
    pub async fn start(
        runtime: Arc<dyn Runtime>,
        n: usize,
        storage: StorageChoice,
    ) -> Result<Self, ClusterError> {
        let ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
        let disks = ids
            .iter()
            .map(|id| match &storage {
                StorageChoice::Memory => Disk::Memory(MemoryStorage::new()),
                StorageChoice::File(dir) => Disk::File(dir.join(format!("node-{}", id.0))),
            })
            .collect();
        let mut cluster = Self {
            runtime,
            cluster_id: RandomState::new().build_hasher().finish(),
            ids,
            disks,
            nodes: (0..n).map(|_| None).collect(),
        };
        match cluster.launch().await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop_all().await;
                Err(e)
            }
        }
    }

    /// Starts every node that is not running: each on a fresh port, with a fresh
    /// state machine (the node replays the log into it), over its old disk.
    async fn launch(&mut self) -> Result<(), ClusterError> {
        // Every listener first (port 0: the kernel picks), so that each node can be told
        // every address before any starts.
        let mut listeners = Vec::new();
        for i in (0..self.ids.len()).filter(|&i| self.nodes[i].is_none()) {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").map_err(ClusterError::Bind)?;
            let addr = listener.local_addr().map_err(ClusterError::Bind)?;
            listeners.push((i, listener, addr));
        }
        let mut peers: Vec<(NodeId, SocketAddr)> = self
            .ids
            .iter()
            .zip(&self.nodes)
            .filter_map(|(&id, n)| Some((id, n.as_ref()?.addr)))
            .collect();
        peers.extend(listeners.iter().map(|(i, _, addr)| (self.ids[*i], *addr)));
        for (i, listener, addr) in listeners {
            let id = self.ids[i];
            let builder = NodeBuilder::new(Config::new(id, self.ids.clone()))
                .cluster_id(self.cluster_id)
                .runtime(self.runtime.clone())
                .tcp_listener(listener, peers.iter().copied())
                .state_machine(Box::new(LockMachine::new()));
            let builder = match &self.disks[i] {
                Disk::Memory(disk) => builder.storage(Box::new(disk.clone())),
                Disk::File(dir) => builder.file_storage(dir),
            };
            let handle = builder
                .start()
                .await
                .map_err(|source| ClusterError::Node { id, source })?;
            self.nodes[i] = Some(Running { handle, addr });
        }
        Ok(())
    }

    /// The runtime the nodes run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The members' ids, node `i` at index `i`.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Node `i`'s handle, if it is running.
    pub fn handle(&self, i: usize) -> Option<&NodeHandle> {
        self.nodes.get(i)?.as_ref().map(|n| &n.handle)
    }

    /// Node `i`'s listening address, if it is running.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.nodes.get(i)?.as_ref().map(|n| n.addr)
    }

    /// Handles of the running nodes. (A handle kept after its node stopped answers every
    /// call with `Fatal(Stopped)`.)
    pub fn handles(&self) -> Vec<NodeHandle> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.handle.clone())
            .collect()
    }

    /// Waits, for at most `timeout`, until one running node leads and every running node
    /// follows it; returns its index.
    pub async fn leader(&self, timeout: Duration) -> Option<usize> {
        let leader = wait_for_leader(&self.handles(), timeout).await?;
        (0..self.nodes.len()).find(|&i| self.handle(i).is_some_and(|h| h.id() == leader))
    }

    /// Stops node `i` (its disk is kept). Does nothing if it is not running.
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.handle.shutdown().await;
        }
    }

    /// Stops every node, then starts them all again on fresh ports over their disks, with
    /// fresh state machines: what a whole-cluster restart looks like. Handles taken
    /// before are stale (stopped) afterwards. On an error, the nodes that did start keep
    /// running; [`shutdown`](Self::shutdown) stops them.
    pub async fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop_all().await;
        self.launch().await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        let handles = self.nodes.iter_mut().filter_map(Option::take);
        join_all(handles.map(|n| async move { n.handle.shutdown().await })).await;
    }
}
