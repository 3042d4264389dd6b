//! `paxos-node serve`: one replica with its Redis-protocol front end and admin port.
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
//! bytes and requests of up to `2 x M + 64 KiB` ([`client_limits`]). A request beyond those
//! cannot be skipped without reading it all: it is answered with `-ERR Protocol error:
//! bulk string of N bytes exceeds the largest accepted (2M bytes)` (or `request of ...`)
//! and the connection is closed after the reply.
//!
//! A pipeline of writes goes as batches that each fit `M` by the same rule (see
//! `connection.rs`): a write that fits alone always goes through, alone if need be.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::{AbortHandle, Abortable};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::{Config, NodeId};
use paxos_kv::kv::{KvCommand, KvStateMachine};
use paxos_kv::resp::Limits;
use paxos_node::{NodeBuilder, NodeHandle, NodeOptions, Runtime};
use paxos_runtime::{BoxConn, Listener, timeout_at};
use tracing::{debug, info, warn};

use crate::clients::Clients;
use crate::config::{NodeConfig, StorageKind, TransportKind};
use crate::connection::{Client, connection};
use crate::metrics::{Counter, ServerStats};

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

/// What `serve --help` says about sizes (keep in step with the module docs).
pub(crate) const SIZE_HELP: &str = "\
Sizes: a write is accepted when its keys and values + 40 + 5 per key or value fit in the
node's largest command M (1,048,575 bytes by default; /status reports max_command_bytes
and max_set_bytes). For SET: key + value + 50 <= M, so by default key + value <=
1,048,525 bytes. A larger write gets `-ERR value of N bytes exceeds the largest accepted
(...)` and nothing is proposed; the connection stays open. A bulk string over 2 x M bytes
(a request over 2 x M + 64 KiB) gets `-ERR Protocol error: ...` and the connection is
closed.

Exactly once: a write that the server retries for you (after a timeout or a leadership
change) is applied at most once. A new connection is a new client: a command your client
library resends on a new connection is a new command.";

pub(crate) fn bump(counter: &Counter) {
    counter.inc();
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) node: NodeHandle,
    /// The runtime everything runs on (the one seam: tasks, timers, sockets).
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) config: NodeConfig,
    pub(crate) stats: ServerStats,
    pub(crate) limits: Limits,
    /// The open connections (`CLIENT LIST`), and when the server started.
    pub(crate) clients: Clients,
    client_ids: RandomState,
    next_client: AtomicU64,
}

impl Ctx {
    /// A fresh client: an id random per process and distinct per connection, born at the
    /// slot this node has applied (see `paxos_kv::kv`, "Exactly once").
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

/// Runs the replica on `runtime` until SIGINT/SIGTERM or a fatal error.
///
/// Everything goes through `runtime`: the node, the transport, the RESP and admin
/// listeners, every connection's task and timer. Signals come from `signals`, which works
/// on any runtime.
pub(crate) async fn serve(
    config: NodeConfig,
    runtime: Arc<dyn Runtime>,
    signals: crate::Signals,
) -> Result<(), String> {
    watch_supervisor();
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
    let builder = NodeBuilder::new(core)
        .cluster_id(config.cluster_id)
        .options(options)
        .runtime(runtime.clone())
        .state_machine(Box::new(KvStateMachine::new(config.max_sessions)));
    let builder = match config.transport {
        TransportKind::Tcp if config.tls.is_none() => builder.tcp(config.listen(), peers),
        TransportKind::Tcp => builder.tcp_tls(config.listen(), peers, tls_identity(&config)?),
        TransportKind::Quic => builder.quic(config.listen(), peers, tls_identity(&config)?),
    };
    let builder = match config.storage {
        StorageKind::Memory => builder.memory_storage(),
        StorageKind::File => builder.file_storage(config.data_dir.join("log")),
    };
    let node = builder.start().await.map_err(|e| e.to_string())?;
    let resp_listener = runtime
        .bind_tcp(config.resp)
        .map_err(|e| format!("RESP {}: {e}", config.resp))?;
    let admin_listener = match config.admin {
        Some(addr) => Some(
            runtime
                .bind_tcp(addr)
                .map_err(|e| format!("admin {addr}: {e}"))?,
        ),
        None => None,
    };
    info!(
        id = config.id,
        peer = %config.listen(),
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
        let admin = Abortable::new(
            crate::admin::serve(l, runtime.clone(), ctx.clone()),
            stopped,
        );
        runtime.spawn(Box::pin(async move {
            let _ = admin.await;
        }));
        stop
    });

    let stopped = async {
        // A server runs until told to stop: re-arm the (bounded) wait while the node is up.
        loop {
            if let Some(status) = node
                .wait_for(Duration::from_secs(3600), |s| s.stopped.is_some())
                .await
            {
                return status.stopped;
            }
        }
    };
    let outcome = match futures::future::select(
        std::pin::pin!(signals.recv()),
        std::pin::pin!(stopped),
    )
    .await
    {
        futures::future::Either::Left((signal, _)) => {
            info!("{signal}: shutting down");
            Ok(())
        }
        futures::future::Either::Right((fatal, _)) => Err(format!("node stopped: {fatal:?}")),
    };
    resp_stop.abort();
    if let Some(stop) = admin_stop {
        stop.abort();
    }
    node.shutdown().await;
    info!("node stopped");
    outcome
}

/// When started by `paxos-node cluster`, die with the supervisor: without this, a
/// supervisor killed with SIGKILL would leave its nodes running.
///
/// The kernel sends the signal when the *thread* that forked this process exits, which is
/// why the supervisor forks from its main thread only (see `cluster`'s module docs). On
/// this side the setting belongs to the calling thread, and is checked for as long as that
/// thread lives: call it from the main thread (`serve` runs in the future `main` blocks on).
fn watch_supervisor() {
    let Some(parent) = std::env::var("PAXOS_NODE_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        warn!("cannot watch the supervisor: {e}");
    }
    // The supervisor may have died before the call above.
    if nix::unistd::getppid().as_raw() != parent {
        warn!("supervisor {parent} is gone; exiting");
        std::process::exit(1);
    }
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

/// The mutual-TLS identity from the configured files (`resolve` made sure QUIC has them).
fn tls_identity(config: &NodeConfig) -> Result<paxos_node::tls::TlsIdentity, String> {
    let files = config
        .tls
        .as_ref()
        .ok_or("this transport needs --tls-ca, --tls-cert and --tls-key")?;
    paxos_node::tls::TlsIdentity::from_pem_files(&files.ca, &files.cert, &files.key)
        .map_err(|e| format!("loading the TLS files: {e}"))
}

#[cfg(test)]
mod tests {
    use paxos_kv::kv::{KvRequest, RequestId};

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
