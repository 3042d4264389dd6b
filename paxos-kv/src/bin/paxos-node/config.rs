//! The node's configuration: a TOML file, flags, or both (a flag overrides the file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use paxos_kv::server::{Peer, RuntimeKind, ServerConfig, StorageKind, TlsFiles, TransportKind};
use serde::{Deserialize, Serialize};

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
    pub(crate) threads: Option<usize>,
    pub(crate) file_idle_spin_us: Option<u64>,
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
    /// Threads of that runtime (1 to 256): 1 is a current-thread tokio runtime, more a
    /// multi-threaded one with that many workers; smol gets them as SMOL_THREADS. Default
    /// 1, the fastest on small machines (`ServerConfig::threads` says why).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// With file storage: how long its I/O thread polls for the next write before it
    /// sleeps, in µs (0 to 10000). Longer cuts a light load's latency and costs CPU,
    /// and so throughput on a busy machine (`ServerConfig::file_idle_spin_us`). Default 250.
    #[arg(long)]
    pub(crate) file_idle_spin_us: Option<u64>,
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

/// Merges the file (if any) and the flags, flags first, then checks the result
/// ([`ServerConfig::validate`]); what neither gives keeps [`ServerConfig::new`]'s default.
pub(crate) fn resolve(args: &ServeArgs) -> Result<ServerConfig, String> {
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
    let mut config = ServerConfig::new(id, peers);
    let set = |field: &mut u64, flag: Option<u64>, in_file: Option<u64>| {
        if let Some(v) = flag.or(in_file) {
            *field = v;
        }
    };
    set(&mut config.cluster_id, args.cluster_id, file.cluster_id);
    set(
        &mut config.file_idle_spin_us,
        args.file_idle_spin_us,
        file.file_idle_spin_us,
    );
    set(
        &mut config.request_timeout_ms,
        args.request_timeout_ms,
        file.request_timeout_ms,
    );
    set(
        &mut config.client_deadline_ms,
        args.client_deadline_ms,
        file.client_deadline_ms,
    );
    set(
        &mut config.compact_every_entries,
        args.compact_every_entries,
        file.compact_every_entries,
    );
    set(
        &mut config.compact_every_bytes,
        args.compact_every_bytes,
        file.compact_every_bytes,
    );
    set(
        &mut config.compact_keep_entries,
        args.compact_keep_entries,
        file.compact_keep_entries,
    );
    set(
        &mut config.compact_keep_bytes,
        args.compact_keep_bytes,
        file.compact_keep_bytes,
    );
    if let Some(resp) = args.resp.or(file.resp) {
        config.resp = resp;
    }
    config.admin = args.admin.or(file.admin);
    if let Some(dir) = args.data_dir.clone().or(file.data_dir) {
        config.data_dir = dir;
    }
    config.storage = args.storage.or(file.storage).unwrap_or_default();
    config.transport = args.transport.or(file.transport).unwrap_or_default();
    config.runtime = args.runtime.or(file.runtime).unwrap_or_default();
    if let Some(n) = args.threads.or(file.threads) {
        config.threads = n;
    }
    if let Some(n) = args.max_sessions.or(file.max_sessions) {
        config.max_sessions = n;
    }
    config.tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => file.tls,
    };
    config.rejoin = args.rejoin;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The config as a file that resolves back to it.
pub(crate) fn to_file(config: &ServerConfig) -> ConfigFile {
    ConfigFile {
        id: Some(config.id),
        cluster_id: Some(config.cluster_id),
        peers: config.peers.clone(),
        resp: Some(config.resp),
        admin: config.admin,
        data_dir: Some(config.data_dir.clone()),
        storage: Some(config.storage),
        transport: Some(config.transport),
        runtime: Some(config.runtime),
        threads: Some(config.threads),
        file_idle_spin_us: Some(config.file_idle_spin_us),
        max_sessions: Some(config.max_sessions),
        request_timeout_ms: Some(config.request_timeout_ms),
        client_deadline_ms: Some(config.client_deadline_ms),
        compact_every_entries: Some(config.compact_every_entries),
        compact_every_bytes: Some(config.compact_every_bytes),
        compact_keep_entries: Some(config.compact_keep_entries),
        compact_keep_bytes: Some(config.compact_keep_bytes),
        tls: config.tls.clone(),
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
            threads: Some(2),
            file_idle_spin_us: Some(400),
            tls_ca: Some("certs/ca.pem".into()),
            tls_cert: Some("certs/node-2.pem".into()),
            tls_key: Some("certs/node-2.key".into()),
            ..ServeArgs::default()
        };
        let config = resolve(&args).unwrap();
        assert_eq!(
            config.tls.as_ref().unwrap().key,
            Path::new("certs/node-2.key")
        );
        assert_eq!(config.listen(), Some("127.0.0.1:7002".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        write_file(&path, &to_file(&config)).unwrap();
        let from_file = resolve(&ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(from_file, config);
        let overridden = resolve(&ServeArgs {
            config: Some(path),
            storage: Some(StorageKind::File),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(overridden.storage, StorageKind::File);
        assert_eq!(
            overridden.threads, 2,
            "the thread count comes from the file"
        );
        assert_eq!(
            overridden.file_idle_spin_us, 400,
            "the I/O thread's spin comes from the file"
        );
        let defaults = ServerConfig::new(1, args.peers.clone());
        assert_eq!(defaults.file_idle_spin_us, 250);
        let long_spin = resolve(&ServeArgs {
            file_idle_spin_us: Some(10_001),
            ..args.clone()
        })
        .unwrap_err();
        assert!(
            long_spin.contains("file_idle_spin_us must be 0 to 10000, not 10001"),
            "{long_spin}"
        );
        let no_threads = resolve(&ServeArgs {
            threads: Some(0),
            ..args.clone()
        })
        .unwrap_err();
        assert!(
            no_threads.contains("threads must be 1 to 256"),
            "{no_threads}"
        );
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
        let refused = resolve(&quic_without_tls).unwrap_err();
        assert!(refused.contains("--transport quic needs"), "{refused}");
        assert!(
            resolve(&ServeArgs {
                id: Some(9),
                ..args
            })
            .is_err()
        );
    }
}
