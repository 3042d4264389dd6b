//! The node's configuration: a TOML file, flags, or both (a flag overrides the file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// Which transport carries the protocol between replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TransportKind {
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
pub(crate) struct TlsFiles {
    /// The cluster CA certificate: peers must present certificates it signed.
    pub(crate) ca: PathBuf,
    /// This node's certificate (chain), issued for `node-<id>.paxos`.
    pub(crate) cert: PathBuf,
    /// This node's private key.
    pub(crate) key: PathBuf,
}

/// Where a replica keeps its promises and accepted values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StorageKind {
    /// `FileStorage` under `data_dir` (durable; survives restarts).
    #[default]
    File,
    /// `MemoryStorage` (lost on exit; a restarted node rejoins empty, without a vote since
    /// its promises are gone (`--rejoin`), and catches up).
    Memory,
}

/// The async runtime `serve` runs on, through the library's one runtime seam
/// (`paxos_node::Runtime`): the node, the transport, the RESP front end and the admin port
/// all use it, and nothing else.
///
/// async-std is not offered: it is discontinued upstream in favour of smol, and it runs on
/// the same async-io implementation as smol in the library (`AsyncIoRuntime`), so it would
/// only be another name for `smol` here. The library keeps its `async-std` feature
/// because it costs nothing there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RuntimeKind {
    /// A multi-threaded tokio runtime, one worker per CPU.
    #[default]
    Tokio,
    /// smol: async-io's reactor and smol's global executor, with one executor thread per
    /// CPU unless `SMOL_THREADS` says otherwise.
    Smol,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Peer {
    /// Its node id.
    pub(crate) id: u64,
    /// Its replica-to-replica (transport) address.
    pub(crate) addr: SocketAddr,
}

/// The config file: every field optional, so flags can fill or override it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub(crate) id: Option<u64>,
    pub(crate) cluster_id: Option<u64>,
    /// Every member, this node included; this node listens on its own entry.
    #[serde(default)]
    pub(crate) peers: Vec<Peer>,
    pub(crate) resp: Option<SocketAddr>,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) storage: Option<StorageKind>,
    pub(crate) transport: Option<TransportKind>,
    pub(crate) runtime: Option<RuntimeKind>,
    pub(crate) max_sessions: Option<usize>,
    pub(crate) request_timeout_ms: Option<u64>,
    pub(crate) client_deadline_ms: Option<u64>,
    pub(crate) compact_every_entries: Option<u64>,
    pub(crate) compact_every_bytes: Option<u64>,
    pub(crate) compact_keep_entries: Option<u64>,
    pub(crate) compact_keep_bytes: Option<u64>,
    /// Last: a TOML table must follow the plain keys.
    pub(crate) tls: Option<TlsFiles>,
}

/// `paxos-node serve`: run one replica.
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of the settings below (flags override it).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// This node's id (must be one of the peers).
    #[arg(long)]
    pub(crate) id: Option<u64>,
    /// Cluster id; a peer of another cluster is refused. Default 1.
    #[arg(long)]
    pub(crate) cluster_id: Option<u64>,
    /// A member as ID=HOST:PORT (its transport address); repeat for every member, this
    /// node included.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub(crate) peers: Vec<Peer>,
    /// Where to serve Redis clients. Default 127.0.0.1:6379.
    #[arg(long)]
    pub(crate) resp: Option<SocketAddr>,
    /// Where to serve the admin HTTP endpoints (/status, /metrics, /health). Off if unset.
    #[arg(long)]
    pub(crate) admin: Option<SocketAddr>,
    /// Directory for file storage. Default ./paxos-data-<id>.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Storage backend. Default file.
    #[arg(long, value_enum)]
    pub(crate) storage: Option<StorageKind>,
    /// Transport between replicas. Default tcp (plain, or mutual TLS with the --tls-*
    /// files); quic requires the --tls-* files.
    #[arg(long, value_enum)]
    pub(crate) transport: Option<TransportKind>,
    /// The cluster CA certificate (PEM). With --tls-cert and --tls-key: mutual TLS.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), issued by the CA for the name `node-<id>.paxos`.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    pub(crate) tls_key: Option<PathBuf>,
    /// Async runtime. Default tokio.
    #[arg(long, value_enum)]
    pub(crate) runtime: Option<RuntimeKind>,
    /// Client sessions kept for exactly-once writes. Default 16384.
    #[arg(long)]
    pub(crate) max_sessions: Option<usize>,
    /// How long one proposal or read may wait inside the node, in ms. Default 5000.
    #[arg(long)]
    pub(crate) request_timeout_ms: Option<u64>,
    /// How long the server retries one client command (same request id) before replying
    /// with an error, in ms. Default 10000.
    #[arg(long)]
    pub(crate) client_deadline_ms: Option<u64>,
    /// Snapshot the store and compact the log after this many log slots applied since the
    /// last snapshot; 0: never by count. Default 50000.
    #[arg(long)]
    pub(crate) compact_every_entries: Option<u64>,
    /// ... or after this many bytes of commands applied; 0: never by size. Default 64 MiB.
    #[arg(long)]
    pub(crate) compact_every_bytes: Option<u64>,
    /// Log slots kept behind a snapshot, for followers a little behind. Default 1000.
    #[arg(long)]
    pub(crate) compact_keep_entries: Option<u64>,
    /// ... but fewer if they carry more than this many bytes of commands. Default 16 MiB.
    #[arg(long)]
    pub(crate) compact_keep_bytes: Option<u64>,
    /// This node ran before under this id and may have lost what it stored (memory
    /// storage, or a wiped data directory). If its store is empty it rejoins as a
    /// non-voting learner, because the promises it made are gone (`Config::bootstrap`
    /// false); a store that holds state is used as usual. `paxos-node cluster` passes it
    /// on every restart. Not read from the config file: it is about this start.
    #[arg(long)]
    pub(crate) rejoin: bool,
}

fn parse_peer(s: &str) -> Result<Peer, String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {s:?}"))?;
    Ok(Peer {
        id: id.parse().map_err(|e| format!("bad id {id:?}: {e}"))?,
        addr: addr
            .parse()
            .map_err(|e| format!("bad address {addr:?}: {e}"))?,
    })
}

/// The node's default policy, which the `--compact-*` defaults repeat.
static DEFAULT_COMPACTION: std::sync::LazyLock<paxos_node::Compaction> =
    std::sync::LazyLock::new(paxos_node::Compaction::default);

impl NodeConfig {
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

/// The resolved settings of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeConfig {
    pub(crate) id: u64,
    pub(crate) cluster_id: u64,
    pub(crate) peers: Vec<Peer>,
    pub(crate) resp: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) data_dir: PathBuf,
    pub(crate) storage: StorageKind,
    pub(crate) transport: TransportKind,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) runtime: RuntimeKind,
    pub(crate) max_sessions: usize,
    pub(crate) request_timeout_ms: u64,
    pub(crate) client_deadline_ms: u64,
    /// The compaction policy (see the `--compact-*` flags); 0 disables a threshold.
    pub(crate) compact_every_entries: u64,
    pub(crate) compact_every_bytes: u64,
    pub(crate) compact_keep_entries: u64,
    pub(crate) compact_keep_bytes: u64,
    /// See [`ServeArgs::rejoin`].
    pub(crate) rejoin: bool,
}

impl NodeConfig {
    /// Merges the file (if any) and the flags, flags first, then checks the result.
    pub(crate) fn resolve(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        let id = args
            .id
            .or(file.id)
            .ok_or("no node id: give --id or `id` in the config file")?;
        let peers = if args.peers.is_empty() {
            file.peers
        } else {
            args.peers.clone()
        };
        if peers.is_empty() {
            return Err("no members: give --peer ID=ADDR for every member".into());
        }
        let mut ids: Vec<u64> = peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != peers.len() {
            return Err("a peer id is listed twice".into());
        }
        if !ids.contains(&id) {
            return Err(format!("node id {id} is not among the peers"));
        }
        let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => file.tls,
        };
        let config = Self {
            id,
            cluster_id: args.cluster_id.or(file.cluster_id).unwrap_or(1),
            peers,
            resp: args
                .resp
                .or(file.resp)
                .unwrap_or_else(|| "127.0.0.1:6379".parse().expect("valid address")),
            admin: args.admin.or(file.admin),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(format!("paxos-data-{id}"))),
            storage: args.storage.or(file.storage).unwrap_or_default(),
            transport: args.transport.or(file.transport).unwrap_or_default(),
            tls,
            runtime: args.runtime.or(file.runtime).unwrap_or_default(),
            max_sessions: args
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(paxos_kv::kv::DEFAULT_MAX_SESSIONS),
            request_timeout_ms: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .unwrap_or(5000),
            client_deadline_ms: args
                .client_deadline_ms
                .or(file.client_deadline_ms)
                .unwrap_or(10_000),
            compact_every_entries: args
                .compact_every_entries
                .or(file.compact_every_entries)
                .unwrap_or(DEFAULT_COMPACTION.every_entries.unwrap_or(0)),
            compact_every_bytes: args
                .compact_every_bytes
                .or(file.compact_every_bytes)
                .unwrap_or(DEFAULT_COMPACTION.every_bytes.unwrap_or(0)),
            compact_keep_entries: args
                .compact_keep_entries
                .or(file.compact_keep_entries)
                .unwrap_or(DEFAULT_COMPACTION.keep_entries),
            compact_keep_bytes: args
                .compact_keep_bytes
                .or(file.compact_keep_bytes)
                .unwrap_or(DEFAULT_COMPACTION.keep_bytes),
            rejoin: args.rejoin,
        };
        if config.max_sessions == 0
            || config.request_timeout_ms == 0
            || config.client_deadline_ms == 0
        {
            return Err(
                "max_sessions, request_timeout_ms and client_deadline_ms must be at least 1".into(),
            );
        }
        if config.transport == TransportKind::Quic && config.tls.is_none() {
            return Err("--transport quic needs --tls-ca, --tls-cert and --tls-key \
                 (QUIC is always mutual TLS; `paxos-node certs` writes a development set)"
                .into());
        }
        Ok(config)
    }

    /// This node's own transport address.
    pub(crate) fn listen(&self) -> SocketAddr {
        self.peers
            .iter()
            .find(|p| p.id == self.id)
            .map(|p| p.addr)
            .expect("resolve checked that the id is a peer")
    }

    /// The config as a file that resolves back to it.
    pub(crate) fn to_file(&self) -> ConfigFile {
        ConfigFile {
            id: Some(self.id),
            cluster_id: Some(self.cluster_id),
            peers: self.peers.clone(),
            resp: Some(self.resp),
            admin: self.admin,
            data_dir: Some(self.data_dir.clone()),
            storage: Some(self.storage),
            transport: Some(self.transport),
            runtime: Some(self.runtime),
            max_sessions: Some(self.max_sessions),
            request_timeout_ms: Some(self.request_timeout_ms),
            client_deadline_ms: Some(self.client_deadline_ms),
            compact_every_entries: Some(self.compact_every_entries),
            compact_every_bytes: Some(self.compact_every_bytes),
            compact_keep_entries: Some(self.compact_keep_entries),
            compact_keep_bytes: Some(self.compact_keep_bytes),
            tls: self.tls.clone(),
        }
    }
}

/// Reads and parses a config file.
pub(crate) fn read_file(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a config file.
pub(crate) fn write_file(path: &Path, file: &ConfigFile) -> Result<(), String> {
    let text = toml::to_string(file).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_flags_override() {
        let args = ServeArgs {
            id: Some(2),
            peers: vec![
                parse_peer("1=127.0.0.1:7001").unwrap(),
                parse_peer("2=127.0.0.1:7002").unwrap(),
            ],
            storage: Some(StorageKind::Memory),
            tls_ca: Some("certs/ca.pem".into()),
            tls_cert: Some("certs/node-2.pem".into()),
            tls_key: Some("certs/node-2.key".into()),
            ..ServeArgs::default()
        };
        let config = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            config.tls.as_ref().unwrap().key,
            Path::new("certs/node-2.key")
        );
        assert_eq!(config.listen(), "127.0.0.1:7002".parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        write_file(&path, &config.to_file()).unwrap();
        let from_file = NodeConfig::resolve(&ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(from_file, config);
        let overridden = NodeConfig::resolve(&ServeArgs {
            config: Some(path),
            storage: Some(StorageKind::File),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(overridden.storage, StorageKind::File);
        assert_eq!(
            overridden.tls, config.tls,
            "the TLS files come from the file"
        );
        let quic_without_tls = ServeArgs {
            transport: Some(TransportKind::Quic),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            ..args.clone()
        };
        let refused = NodeConfig::resolve(&quic_without_tls).unwrap_err();
        assert!(refused.contains("--transport quic needs"), "{refused}");
        assert!(
            NodeConfig::resolve(&ServeArgs {
                id: Some(9),
                ..args
            })
            .is_err()
        );
    }
}
