//! One replica's server: the node, its Redis-protocol (RESP) front end and its admin
//! port, as [`Server`]. The `paxos-node serve` binary is this plus flags, a TOML file and
//! signals; the benchmark harness runs three of them in one process.
//!
//! ```no_run
//! # async fn run(runtime: std::sync::Arc<dyn paxos_node::Runtime>) -> Result<(), paxos_kv::server::ServeError> {
//! use paxos_kv::server::{Peer, Server, ServerConfig};
//!
//! let peers = vec![Peer { id: 1, addr: "127.0.0.1:7001".parse().unwrap() }];
//! let mut config = ServerConfig::new(1, peers);
//! config.resp = "127.0.0.1:0".parse().unwrap(); // any free port
//! let server = Server::start(config, runtime).await?;
//! println!("redis-cli -p {}", server.resp_addr().port());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Why a handle, not a `serve(config, runtime, shutdown)` future
//!
//! [`Server::start`] returns once everything is listening, with the addresses it bound
//! and the [`NodeHandle`]; [`Server::stopped`] waits for a fatal stop and
//! [`Server::shutdown`] stops it. The binary selects between its signals and
//! [`stopped`](Server::stopped); a program that runs several servers (the harness) needs
//! the bound ports (port 0 in [`ServerConfig::resp`]) and each node's status without a
//! round of HTTP, and a future that only returns at the end would hide both. The server
//! does nothing process-wide: no signals, no logging setup, no environment, no exit;
//! those stay in the binary.
//!
//! Everything goes through the runtime it is given (the one seam): the node, the transport,
//! the RESP and admin listeners, every connection's task and timer. So several servers on
//! different runtimes can share a process.
//!
//! # How large a command may be
//!
//! Let `M` be the node's largest command, [`NodeHandle::max_command_bytes`]: the core's
//! `max_batch_bytes` less the driver's one-byte tag, **1,048,575 bytes** with the default
//! configuration. `/status` reports it as `max_command_bytes`, and the largest key + value
//! of a `SET` as `max_set_bytes`. A write is accepted when
//!
//! ```text
//! (sum of its keys and values) + 40 + 5 x (number of keys and values) <= M
//! ```
//!
//! (10 bytes more for the integer of `INCRBY`, `DECR` and `DECRBY`:
//! [`KvCommand::max_request_bytes`], an upper bound on the encoded request whatever its
//! client id). For `SET key value` that reads **key + value + 50 <= M**: with the default
//! `M`, key + value <= 1,048,525 bytes, so a 1-byte key takes a value of up to 1,048,524
//! bytes. A larger write is refused before anything is proposed, with
//! `-ERR value of N bytes exceeds the largest accepted (L bytes for a key of K bytes)`
//! (`SET`) or `-ERR command of N bytes exceeds the largest accepted (M bytes)` (the other
//! writes), and the connection stays usable.
//!
//! To be able to answer that way, the RESP parser buffers bulk strings of up to `2 x M`
//! bytes and requests of up to `2 x M + 64 KiB`. A request beyond those
//! cannot be skipped without reading it all: it is answered with `-ERR Protocol error:
//! bulk string of N bytes exceeds the largest accepted (2M bytes)` (or `request of ...`)
//! and the connection is closed after the reply.
//!
//! A pipeline of writes goes as batches that each fit `M` by the same rule (see
//! `connection.rs`): a write that fits alone always goes through, alone if need be.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::{AbortHandle, Abortable};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::{Config, NodeId};
use paxos_node::storage::FileStorageOptions;
use paxos_node::{FatalError, NodeBuilder, NodeHandle, NodeOptions, Runtime, StartError};
use paxos_runtime::{BoxConn, Listener, timeout_at};
use tracing::{debug, info, warn};

use self::clients::Clients;
pub use self::config::{
    MAX_FILE_IDLE_SPIN_US, MAX_THREADS, Peer, RuntimeKind, ServerConfig, StorageKind, TlsFiles,
    TransportKind,
};
use self::connection::{Client, connection};
use self::metrics::{Counter, ServerStats};
use crate::kv::{KvCommand, KvReader, KvStateMachine};
use crate::resp::Limits;

mod admin;
mod clients;
mod commands;
mod config;
mod connection;
mod dispatch;
mod local;
mod metrics;
mod transaction;

/// Connections served at once; more are closed on accept.
pub(crate) const MAX_CONNECTIONS: u64 = 10_000;
/// Room for RESP framing (array and bulk headers) beyond the bulk strings of a request.
const REQUEST_FRAMING_BYTES: usize = 64 << 10;

/// The RESP parser's bounds for a node whose largest command is `max_command_bytes` (see
/// the [module docs](self)): bulk strings up to twice that, so that a value somewhat too
/// large is still read whole and refused with an error on a connection that stays open.
pub(crate) fn client_limits(max_command_bytes: usize) -> Limits {
    let max_bulk_bytes = max_command_bytes.saturating_mul(2);
    Limits {
        max_bulk_bytes,
        max_request_bytes: max_bulk_bytes.saturating_add(REQUEST_FRAMING_BYTES),
        ..Limits::default()
    }
}

/// The largest key + value of a `SET` on a node whose largest command is
/// `max_command_bytes`.
pub(crate) fn max_set_bytes(max_command_bytes: usize) -> usize {
    let empty = KvCommand::Set {
        key: Vec::new(),
        value: Vec::new(),
    };
    max_command_bytes.saturating_sub(empty.max_request_bytes())
}

pub(crate) fn bump(counter: &Counter) {
    counter.inc();
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) node: NodeHandle,
    /// The node's state, read directly when the node allows a read at once
    /// ([`NodeHandle::try_read_barrier`]).
    pub(crate) reader: KvReader,
    /// The runtime everything runs on (the one seam: tasks, timers, sockets).
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) config: ServerConfig,
    pub(crate) stats: ServerStats,
    pub(crate) limits: Limits,
    /// The open connections (`CLIENT LIST`), and when the server started.
    pub(crate) clients: Clients,
    client_ids: RandomState,
    next_client: AtomicU64,
}

impl Ctx {
    /// A fresh client: an id random per process and distinct per connection, born at the
    /// slot this node has applied (see `crate::kv`, "Exactly once").
    pub(crate) fn new_client(&self) -> Client {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        Client {
            id: self.client_ids.hash_one((self.config.id, n)),
            born_slot: self.node.status().applied.0,
            seq: 0,
        }
    }

    pub(crate) fn client_deadline(&self) -> Duration {
        Duration::from_millis(self.config.client_deadline_ms)
    }
}

/// Why a [`Server`] did not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration was refused ([`ServerConfig::validate`]); the reason.
    #[error("{0}")]
    Config(String),
    /// The TLS files could not be loaded.
    #[error("loading the TLS files: {0}")]
    Tls(#[source] paxos_node::tls::TlsError),
    /// The node did not start (its transport or storage, say).
    #[error("{0}")]
    Start(#[source] StartError),
    /// A listener could not be bound.
    #[error("{port} {addr}: {source}")]
    Bind {
        /// `RESP` or `admin`.
        port: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node stopped for good while serving.
    #[error("node stopped: {0}")]
    Stopped(#[source] FatalError),
}

/// One running replica: its node, RESP port and (if configured) admin port.
///
/// Stop it with [`shutdown`](Self::shutdown). Dropping it stops accepting on both ports,
/// but the node and the connections already open run on until their runtime ends.
#[derive(Debug)]
#[must_use = "dropping a Server stops its listeners but leaves its node running"]
pub struct Server {
    ctx: Arc<Ctx>,
    resp_stop: AbortHandle,
    admin_stop: Option<AbortHandle>,
}

impl Server {
    /// Starts the node (transport and storage included) and binds the RESP and admin
    /// ports, all on `runtime`; returns once every port is listening.
    ///
    /// `config.runtime` should name `runtime` (it is what `/status` and `INFO` report).
    /// Nothing is left running when this returns an error, except a node whose listener
    /// failed to bind, which is shut down first.
    pub async fn start(
        mut config: ServerConfig,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Self, ServeError> {
        config.validate()?;
        let listen = config.listen().ok_or_else(|| {
            ServeError::Config(format!("node id {} is not among the peers", config.id))
        })?;
        let (node, reader) = start_node(&config, listen, runtime.clone()).await?;
        let listeners = bind_ports(&mut config, &*runtime);
        let Listeners {
            resp: resp_listener,
            admin: admin_listener,
        } = match listeners {
            Ok(l) => l,
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        };
        info!(
            id = config.id,
            peer = %listen,
            resp = %config.resp,
            admin = ?config.admin,
            storage = ?config.storage,
            runtime = ?config.runtime,
            max_command_bytes = node.max_command_bytes(),
            max_set_bytes = max_set_bytes(node.max_command_bytes()),
            "node started"
        );
        let ctx = Arc::new(Ctx {
            node: node.clone(),
            reader,
            runtime: runtime.clone(),
            config,
            stats: ServerStats::default(),
            limits: client_limits(node.max_command_bytes()),
            clients: Clients::new(runtime.now()),
            client_ids: RandomState::new(),
            next_client: AtomicU64::new(0),
        });
        let (resp_stop, resp_stopped) = AbortHandle::new_pair();
        let accept = Abortable::new(accept_loop(resp_listener, ctx.clone()), resp_stopped);
        runtime.spawn(Box::pin(async move {
            let _ = accept.await;
        }));
        let admin_stop = admin_listener.map(|l| {
            let (stop, stopped) = AbortHandle::new_pair();
            let admin = Abortable::new(admin::serve(l, runtime.clone(), ctx.clone()), stopped);
            runtime.spawn(Box::pin(async move {
                let _ = admin.await;
            }));
            stop
        });
        Ok(Self {
            ctx,
            resp_stop,
            admin_stop,
        })
    }

    /// The address the RESP port is bound to (the configured one, with the port the
    /// system picked if it was 0).
    pub fn resp_addr(&self) -> SocketAddr {
        self.ctx.config.resp
    }

    /// The address the admin port is bound to, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.ctx.config.admin
    }

    /// The node, for its status and metrics.
    pub fn node(&self) -> &NodeHandle {
        &self.ctx.node
    }

    /// Waits until the node stops for good, and says why: a fatal error, or
    /// [`FatalError::Stopped`] if someone shut the node down through a [`NodeHandle`].
    pub async fn stopped(&self) -> FatalError {
        // A server runs until told to stop: re-arm the (bounded) wait while the node is up.
        loop {
            if let Some(stopped) = self
                .ctx
                .node
                .wait_for(Duration::from_secs(3600), |s| s.stopped.is_some())
                .await
                .and_then(|status| status.stopped)
            {
                return stopped;
            }
        }
    }

    /// Stops accepting on both ports and shuts the node down; returns once its driver has
    /// dropped its transport, storage and state machine. Connections still open get
    /// errors from then on and close.
    pub async fn shutdown(self) {
        self.resp_stop.abort();
        if let Some(stop) = &self.admin_stop {
            stop.abort();
        }
        self.ctx.node.shutdown().await;
        info!("node stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.resp_stop.abort();
        if let Some(stop) = &self.admin_stop {
            stop.abort();
        }
    }
}

/// Builds and starts the node of `config`; returns it with a reader of its state.
async fn start_node(
    config: &ServerConfig,
    listen: SocketAddr,
    runtime: Arc<dyn Runtime>,
) -> Result<(NodeHandle, KvReader), ServeError> {
    let peers = config.peers.iter().map(|p| (NodeId(p.id), p.addr));
    let members = config.peers.iter().map(|p| NodeId(p.id)).collect();
    let mut options = NodeOptions::default();
    options.request_timeout = Duration::from_millis(config.request_timeout_ms);
    options.compaction = config.compaction();
    // The builder starts the transport and opens the storage, so that the node id and
    // cluster id are given once and checked (addresses, frame limit, data directory).
    let mut core = Config::new(NodeId(config.id), members);
    // An empty store on a node that ran before: its promises are gone, so it must not
    // vote (it becomes a learner); see `--rejoin`.
    core.bootstrap = !config.rejoin;
    let state_machine = KvStateMachine::new(config.max_sessions);
    let reader = state_machine.reader();
    let builder = NodeBuilder::new(core)
        .cluster_id(config.cluster_id)
        .options(options)
        .runtime(runtime)
        .state_machine(Box::new(state_machine));
    let builder = match config.transport {
        TransportKind::Tcp if config.tls.is_none() => builder.tcp(listen, peers),
        TransportKind::Tcp => builder.tcp_tls(listen, peers, tls_identity(config)?),
        TransportKind::Quic => builder.quic(listen, peers, tls_identity(config)?),
    };
    let builder = match config.storage {
        StorageKind::Memory => builder.memory_storage(),
        StorageKind::File => builder.file_storage_with(
            config.data_dir.join("log"),
            FileStorageOptions::default()
                .idle_spin(Duration::from_micros(config.file_idle_spin_us)),
        ),
    };
    let node = builder.start().await.map_err(ServeError::Start)?;
    Ok((node, reader))
}

/// The listeners of a server: RESP, and admin if configured.
struct Listeners {
    resp: Box<dyn Listener>,
    admin: Option<Box<dyn Listener>>,
}

/// Binds the RESP and admin listeners, and writes the bound addresses into `config`.
fn bind_ports(config: &mut ServerConfig, runtime: &dyn Runtime) -> Result<Listeners, ServeError> {
    let bind = |port: &'static str, addr: SocketAddr| {
        let bound = runtime
            .bind_tcp(addr)
            .and_then(|l| l.local_addr().map(|local| (l, local)));
        bound.map_err(|source| ServeError::Bind { port, addr, source })
    };
    let (resp, resp_addr) = bind("RESP", config.resp)?;
    config.resp = resp_addr;
    let admin = match config.admin {
        Some(addr) => {
            let (admin, admin_addr) = bind("admin", addr)?;
            config.admin = Some(admin_addr);
            Some(admin)
        }
        None => None,
    };
    Ok(Listeners { resp, admin })
}

async fn accept_loop(listener: Box<dyn Listener>, ctx: Arc<Ctx>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin.
                warn!("accept failed: {e}");
                ctx.runtime.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ctx.stats.connections_open.get() >= MAX_CONNECTIONS {
            bump(&ctx.stats.connections_refused);
            continue;
        }
        bump(&ctx.stats.connections_total);
        ctx.stats.connections_open.inc();
        let task_ctx = ctx.clone();
        ctx.runtime.spawn(Box::pin(async move {
            if let Err(e) = connection(stream, peer, &task_ctx).await {
                debug!(%peer, "connection closed: {e}");
            }
            task_ctx.stats.connections_open.dec();
        }));
    }
}

/// Closes a connection whose client may still be sending: shuts down the write side, then
/// discards input (at most `max_bytes`, until `until`) so that the reply is not lost to a
/// reset caused by closing with unread data. The RESP port and the admin port both close
/// this way.
pub(crate) async fn lingering_close(
    runtime: &dyn Runtime,
    mut stream: BoxConn,
    until: Instant,
    max_bytes: usize,
) {
    if stream.close().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 16 << 10];
        let mut total = 0usize;
        while total < max_bytes {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout_at(runtime, until, drain).await;
}

/// The error to answer if `command` breaks the size rule of the [module docs](self).
pub(crate) fn too_large(command: &KvCommand, max_command_bytes: usize) -> Option<String> {
    let bound = command.max_request_bytes();
    if bound <= max_command_bytes {
        return None;
    }
    Some(match command {
        KvCommand::Set { key, value } => format!(
            "ERR value of {} bytes exceeds the largest accepted ({} bytes for a key of {} bytes)",
            value.len(),
            max_set_bytes(max_command_bytes).saturating_sub(key.len()),
            key.len()
        ),
        _ => format!(
            "ERR command of {bound} bytes exceeds the largest accepted ({max_command_bytes} bytes)"
        ),
    })
}

/// The mutual-TLS identity from the configured files (`validate` made sure QUIC has them).
fn tls_identity(config: &ServerConfig) -> Result<paxos_node::tls::TlsIdentity, ServeError> {
    let files = config.tls.as_ref().ok_or_else(|| {
        ServeError::Config("this transport needs --tls-ca, --tls-cert and --tls-key".into())
    })?;
    paxos_node::tls::TlsIdentity::from_pem_files(&files.ca, &files.cert, &files.key)
        .map_err(ServeError::Tls)
}

#[cfg(test)]
mod tests {
    use crate::kv::{KvRequest, RequestId};

    use super::*;

    /// The numbers the docs state (module docs, `SIZE_HELP`, README) for the default core
    /// configuration.
    #[test]
    fn documented_sizes_hold_for_the_defaults() {
        let config = Config::new(NodeId(1), vec![NodeId(1)]);
        let m = config.max_batch_bytes - 1; // NodeHandle::max_command_bytes
        assert_eq!(m, 1_048_575);
        assert_eq!(max_set_bytes(m), 1_048_525);
        let limits = client_limits(m);
        assert_eq!(limits.max_bulk_bytes, 2 * m);
        assert_eq!(limits.max_request_bytes, 2 * m + (64 << 10));
    }

    #[test]
    fn the_size_rule_is_exact_at_the_boundary() {
        let m = 1_048_575;
        let set = |k: usize, v: usize| KvCommand::Set {
            key: vec![b'k'; k],
            value: vec![0; v],
        };
        assert_eq!(too_large(&set(8, max_set_bytes(m) - 8), m), None);
        assert_eq!(
            too_large(&set(8, max_set_bytes(m) - 7), m).unwrap(),
            "ERR value of 1048518 bytes exceeds the largest accepted (1048517 bytes for a key of 8 bytes)"
        );
        let del = KvCommand::Del {
            keys: vec![vec![0; 1000]; 1100],
        };
        assert_eq!(
            too_large(&del, m).unwrap(),
            "ERR command of 1105540 bytes exceeds the largest accepted (1048575 bytes)"
        );
        // Whatever the parser accepts is either within the rule or refused by it, and what
        // the rule lets through fits the node's command bound for any request id.
        let id = RequestId {
            client: u64::MAX,
            born_slot: u64::MAX,
            seq: u64::MAX,
        };
        let command = set(0, max_set_bytes(m));
        let encoded = KvRequest { id, command }.encode();
        assert!(encoded.len() <= m, "{}", encoded.len());
    }
}
