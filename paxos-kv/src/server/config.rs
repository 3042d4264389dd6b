//! What one replica's server is told: [`ServerConfig`] and the choices it names.
//!
//! These are the resolved settings, every field set. The `paxos-node` binary fills them
//! from its flags and its TOML file (hence the `serde` and `clap::ValueEnum` derives on
//! the choices, which give the file its keys and `--help` its possible values); a program
//! that starts a server itself starts from [`ServerConfig::new`] and sets what it needs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::ServeError;

/// Which transport carries the protocol between replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TransportKind {
    /// `paxos-net-tcp`: plain TCP, or mutual TLS when the TLS files are given.
    #[default]
    Tcp,
    /// `paxos-net-quic`: QUIC on quinn, always mutual TLS (the TLS files are required).
    Quic,
}

/// The TLS files of one node: the cluster CA's certificate, and this node's certificate
/// and private key (PEM). `paxos-node certs` writes a development set; any PKI works if
/// each node's certificate carries the DNS name `node-<id>.paxos` (see `paxos-tls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate: peers must present certificates it signed.
    pub ca: PathBuf,
    /// This node's certificate (chain), issued for `node-<id>.paxos`.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// Where a replica keeps its promises and accepted values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StorageKind {
    /// `FileStorage` under `data_dir` (durable; survives restarts).
    #[default]
    File,
    /// `MemoryStorage` (lost on exit; a restarted node rejoins empty, without a vote since
    /// its promises are gone (`--rejoin`), and catches up).
    Memory,
}

/// The async runtime a server runs on, through the library's one runtime seam
/// (`paxos_node::Runtime`): the node, the transport, the RESP front end and the admin port
/// all use it, and nothing else.
///
/// [`Server::start`](super::Server::start) is handed the runtime itself; this names it,
/// for `/status` and `INFO`. The caller keeps the two in step (the binary picks the runtime
/// from this value).
///
/// How many threads it gets is [`ServerConfig::threads`]: one by default, which is the
/// fastest on a small machine (see there).
///
/// async-std is not offered: it is discontinued upstream in favour of smol, and it runs on
/// the same async-io implementation as smol in the library (`AsyncIoRuntime`), so it would
/// only be another name for `smol` here. The library keeps its `async-std` feature
/// because it costs nothing there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuntimeKind {
    /// tokio: a current-thread runtime for one thread ([`ServerConfig::threads`]), a
    /// multi-threaded one with that many workers for more.
    #[default]
    Tokio,
    /// smol: async-io's reactor and smol's global executor, with as many executor threads
    /// as [`ServerConfig::threads`] (the binary sets `SMOL_THREADS`, unless it is set
    /// already).
    Smol,
}

/// The longest [`ServerConfig::file_idle_spin_us`]: 10 ms, far past the ~30 µs a sleeping
/// thread takes to wake, so longer would only burn CPU.
pub const MAX_FILE_IDLE_SPIN_US: u64 = 10_000;

/// Default of [`ServerConfig::file_idle_spin_us`], in µs.
const DEFAULT_FILE_IDLE_SPIN_US: u64 = {
    let us = paxos_node::storage::FileStorageOptions::DEFAULT_IDLE_SPIN.as_micros();
    assert!(us <= MAX_FILE_IDLE_SPIN_US as u128);
    us as u64
};

/// The most runtime threads [`ServerConfig::threads`] takes.
pub const MAX_THREADS: usize = 256;

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Its replica-to-replica (transport) address.
    pub addr: SocketAddr,
}

/// The resolved settings of one replica's server.
///
/// [`new`](Self::new) gives the defaults `paxos-node serve` documents; set the fields to
/// change them. [`Server::start`](super::Server::start) checks them with
/// [`validate`](Self::validate).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// This node's id; one of `peers`.
    pub id: u64,
    /// The cluster id; a peer of another cluster is refused. Default 1.
    pub cluster_id: u64,
    /// Every member, this node included; this node listens on its own entry.
    pub peers: Vec<Peer>,
    /// Where to serve Redis clients. Default 127.0.0.1:6379. Port 0 picks a free port
    /// ([`Server::resp_addr`](super::Server::resp_addr) says which).
    pub resp: SocketAddr,
    /// Where to serve the admin HTTP endpoints (`/status`, `/metrics`, `/health`,
    /// `POST /compact`); off if `None`, the default. Port 0 picks a free port.
    pub admin: Option<SocketAddr>,
    /// Directory for file storage (the log goes in `data_dir/log`). Default
    /// `./paxos-data-<id>`.
    pub data_dir: PathBuf,
    /// Storage backend. Default file.
    pub storage: StorageKind,
    /// Transport between replicas. Default TCP (plain, or mutual TLS with `tls`); QUIC
    /// requires `tls`.
    pub transport: TransportKind,
    /// The mutual-TLS files; `None` (the default) is plain TCP.
    pub tls: Option<TlsFiles>,
    /// The runtime the server is given (see [`RuntimeKind`]). Default tokio.
    pub runtime: RuntimeKind,
    /// Threads of that runtime, 1 to [`MAX_THREADS`]. Default 1.
    ///
    /// Like [`runtime`](Self::runtime), this names what the caller built (the binary
    /// builds it from this value); the server itself spawns no runtime threads. Blocking
    /// work (fsyncs, snapshots) runs on threads of its own either way.
    ///
    /// Why one: on the 2-core machine of `BENCHMARKS.md`, one thread per replica gave 28 %
    /// more SETs at 64 clients than two (memory storage: the leader batches ~24 proposals
    /// per persist instead of ~2, because work no longer wakes the other worker at once)
    /// and 41 % more lease reads, for a quarter less CPU per command. What it costs: a lone
    /// client's read waits for the thread to wake from `epoll` (PING p50 ~90 us against
    /// ~30 us with two workers, one of which is often awake). More threads pay off on
    /// machines with cores to spare per replica.
    ///
    /// With one thread, everything the replica does in async code shares it. The restore
    /// of a snapshot sent by a peer (a member that fell behind the others' compaction) is
    /// such work: while it rebuilds the store, that replica's client connections and
    /// transport wait. The other replicas, and so the cluster, keep serving.
    pub threads: usize,
    /// With file storage: how long its I/O thread polls for the next write, in µs, after
    /// its queue runs dry, before it sleeps; 0 to [`MAX_FILE_IDLE_SPIN_US`]. Default 250
    /// ([`FileStorageOptions::DEFAULT_IDLE_SPIN`](paxos_node::storage::FileStorageOptions::DEFAULT_IDLE_SPIN)).
    ///
    /// A write that finds the thread asleep waits ~30 µs for it to wake. Longer spins
    /// spare light loads that wait, at the price of CPU, which a loaded machine feels as
    /// lost throughput: see
    /// [`FileStorageOptions::idle_spin`](paxos_node::storage::FileStorageOptions::idle_spin)
    /// for figures.
    pub file_idle_spin_us: u64,
    /// Client sessions kept for exactly-once writes. Default 16384.
    pub max_sessions: usize,
    /// How long one proposal or read may wait inside the node, in ms. Default 5000.
    pub request_timeout_ms: u64,
    /// How long the server retries one client command (same request id) before replying
    /// with an error, in ms. Default 10000.
    pub client_deadline_ms: u64,
    /// Snapshot and compact after this many slots applied since the last snapshot; 0:
    /// never by count. Default: the node's ([`paxos_node::Compaction`]).
    pub compact_every_entries: u64,
    /// ... or after this many bytes of commands applied; 0: never by size.
    pub compact_every_bytes: u64,
    /// Log slots kept behind a snapshot.
    pub compact_keep_entries: u64,
    /// ... but fewer if they carry more than this many bytes of commands.
    pub compact_keep_bytes: u64,
    /// This node ran before under this id and may have lost what it stored: if its store
    /// is empty it rejoins as a non-voting learner (`Config::bootstrap` false). Default
    /// false.
    pub rejoin: bool,
}

impl ServerConfig {
    /// Node `id` of the cluster of `peers`, with every other setting at its default.
    pub fn new(id: u64, peers: Vec<Peer>) -> Self {
        let compaction = paxos_node::Compaction::default();
        Self {
            id,
            cluster_id: 1,
            peers,
            resp: SocketAddr::from(([127, 0, 0, 1], 6379)),
            admin: None,
            data_dir: PathBuf::from(format!("paxos-data-{id}")),
            storage: StorageKind::default(),
            transport: TransportKind::default(),
            tls: None,
            runtime: RuntimeKind::default(),
            threads: 1,
            file_idle_spin_us: DEFAULT_FILE_IDLE_SPIN_US,
            max_sessions: crate::kv::DEFAULT_MAX_SESSIONS,
            request_timeout_ms: 5000,
            client_deadline_ms: 10_000,
            compact_every_entries: compaction.every_entries.unwrap_or(0),
            compact_every_bytes: compaction.every_bytes.unwrap_or(0),
            compact_keep_entries: compaction.keep_entries,
            compact_keep_bytes: compaction.keep_bytes,
            rejoin: false,
        }
    }

    /// Checks what the node builder cannot: the members (at least one, no id twice, this
    /// node among them), the limits (at least 1), and TLS files for QUIC.
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |reason: String| Err(ServeError::Config(reason));
        if self.peers.is_empty() {
            return invalid("no members: give --peer ID=ADDR for every member".into());
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.peers.len() {
            return invalid("a peer id is listed twice".into());
        }
        if !ids.contains(&self.id) {
            return invalid(format!("node id {} is not among the peers", self.id));
        }
        if self.max_sessions == 0 || self.request_timeout_ms == 0 || self.client_deadline_ms == 0 {
            return invalid(
                "max_sessions, request_timeout_ms and client_deadline_ms must be at least 1".into(),
            );
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return invalid(format!(
                "threads must be 1 to {MAX_THREADS}, not {}",
                self.threads
            ));
        }
        if self.file_idle_spin_us > MAX_FILE_IDLE_SPIN_US {
            return invalid(format!(
                "file_idle_spin_us must be 0 to {MAX_FILE_IDLE_SPIN_US}, not {}",
                self.file_idle_spin_us
            ));
        }
        if self.transport == TransportKind::Quic && self.tls.is_none() {
            return invalid(
                "--transport quic needs --tls-ca, --tls-cert and --tls-key \
                 (QUIC is always mutual TLS; `paxos-node certs` writes a development set)"
                    .into(),
            );
        }
        Ok(())
    }

    /// This node's own transport address, if it is among the peers (which
    /// [`validate`](Self::validate) checks).
    pub fn listen(&self) -> Option<SocketAddr> {
        self.peers.iter().find(|p| p.id == self.id).map(|p| p.addr)
    }

    /// The compaction policy these settings give.
    pub(crate) fn compaction(&self) -> paxos_node::Compaction {
        let mut policy = paxos_node::Compaction::never();
        policy.every_entries =
            (self.compact_every_entries > 0).then_some(self.compact_every_entries);
        policy.every_bytes = (self.compact_every_bytes > 0).then_some(self.compact_every_bytes);
        policy.keep_entries = self.compact_keep_entries;
        policy.keep_bytes = self.compact_keep_bytes;
        policy
    }
}
