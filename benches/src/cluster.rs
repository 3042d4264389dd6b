//! A 3-node cluster, started and owned by the harness: `paxos-node serve` processes
//! (`--cluster process`, the default), or three [`paxos_kv::server::Server`]s inside the
//! harness process (`--cluster in-process`, see `in_process.rs`). Either way the harness
//! talks to the nodes the same way: RESP for the load, the admin port's `/status` and
//! `/metrics` for the leader and the counters.
//!
//! In process mode the harness starts each node itself (not through `paxos-node cluster`) so that it holds
//! every node's process: it reads their CPU time from `/proc/PID/stat`, sees at once when
//! one exits (the supervisor would restart it and hide the failure), and kills them all
//! when it is done or fails. Each node is also told to die with the harness
//! (`PAXOS_NODE_SUPERVISOR_PID`: the node asks the kernel for SIGTERM when the thread that
//! forked it exits, which is the harness's main thread).

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use paxos_kv::server::{Peer, RuntimeKind, ServerConfig, StorageKind, TlsFiles, TransportKind};

use crate::floors::KillOnDrop;
use crate::in_process;

/// Replicas in every cluster the harness starts.
pub const NODES: u64 = 3;
/// The longest one admin request may take.
const HTTP_WAIT: Duration = Duration::from_secs(3);

/// Which cluster: the three choices `paxos-node serve` takes, and where the nodes run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKind {
    /// `process` (three `paxos-node serve` processes) or `in-process` (three servers in
    /// the harness process); `--cluster`.
    pub mode: String,
    /// `tcp` or `quic` (`serve --transport`).
    pub transport: String,
    /// `memory` or `file` (`serve --storage`).
    pub storage: String,
    /// `tokio` or `smol` (`serve --runtime`).
    pub runtime: String,
    /// Threads of each replica's runtime (`serve --threads`).
    pub threads: usize,
}

impl fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.transport, self.storage, self.runtime, self.threads
        )?;
        if self.in_process() {
            f.write_str(" in-process")?;
        }
        Ok(())
    }
}

impl ClusterKind {
    /// Whether the replicas run inside the harness process.
    pub fn in_process(&self) -> bool {
        self.mode == IN_PROCESS
    }
}

/// [`ClusterKind::mode`] of a cluster inside the harness process.
pub const IN_PROCESS: &str = "in-process";
/// [`ClusterKind::mode`] of a cluster of `paxos-node serve` processes.
pub const PROCESS: &str = "process";

struct Node {
    id: u64,
    replica: Replica,
    resp: SocketAddr,
    admin: SocketAddr,
}

/// Where a node runs.
enum Replica {
    /// A `paxos-node serve` process, and its log file.
    Process { process: KillOnDrop, log: PathBuf },
    /// A server inside the harness process.
    InProcess(in_process::Replica),
}

/// A running cluster. Dropping it kills every node (in-process: stops their listeners and
/// runtimes); [`shutdown`](Self::shutdown) stops in-process nodes cleanly.
pub struct Cluster {
    kind: ClusterKind,
    nodes: Vec<Node>,
}

/// Counters scraped from every node's `/metrics`, at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// CPU time (user + system) of every node process together, seconds; in-process, of
    /// the harness process (the clients included).
    pub cpu_secs: f64,
    /// CPU time of each node process, seconds, by node id (empty in-process: the nodes
    /// share the harness's process).
    pub node_cpu_secs: HashMap<u64, f64>,
    /// CPU time of the harness process, seconds: the clients (and the harness's scraping)
    /// when the nodes are processes of their own.
    pub harness_cpu_secs: f64,
    /// When it was taken (before scraping the nodes' `/metrics`).
    pub taken: Option<Instant>,
    /// Each node's `paxos_*` samples (without the `node` label), by node id.
    pub metrics: HashMap<u64, HashMap<String, f64>>,
}

impl Snapshot {
    /// Sample `name` of node `id`, 0 if absent.
    pub fn get(&self, id: u64, name: &str) -> f64 {
        self.metrics
            .get(&id)
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0.0)
    }

    /// Sample `name` summed over the nodes.
    pub fn sum(&self, name: &str) -> f64 {
        self.metrics.keys().map(|&id| self.get(id, name)).sum()
    }
}

impl Cluster {
    /// Starts the three nodes of `kind`, with their data, logs and (for QUIC) development
    /// certificates under `dir`, on free loopback ports: `exe serve` processes, or, for an
    /// in-process `kind`, servers in this process (`exe` unused, may be `None`).
    pub async fn start(exe: Option<&Path>, kind: &ClusterKind, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if kind.in_process() {
            return Self::start_in_process(kind, dir).await;
        }
        let exe = exe.ok_or("process mode needs the paxos-node binary")?;
        let certs = dir.join("certs");
        if kind.transport == "quic" {
            let status = Command::new(exe)
                .args(["certs", "--nodes", &NODES.to_string(), "--out"])
                .arg(&certs)
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("{} certs: {e}", exe.display()))?;
            if !status.success() {
                return Err(format!("{} certs: {status}", exe.display()));
            }
        }
        let ports = free_ports(3 * NODES as usize)?;
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
        let peers: Vec<String> = (0..NODES as usize)
            .map(|i| format!("{}={}", i + 1, addr(3 * i)))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..NODES as usize {
            let id = i as u64 + 1;
            let log = dir.join(format!("node-{id}.log"));
            let log_file =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let (resp, admin) = (addr(3 * i + 1), addr(3 * i + 2));
            let mut cmd = Command::new(exe);
            cmd.args(["serve", "--id", &id.to_string()]);
            for peer in &peers {
                cmd.args(["--peer", peer]);
            }
            cmd.args(["--resp", &resp.to_string(), "--admin", &admin.to_string()])
                .args(["--storage", &kind.storage, "--runtime", &kind.runtime])
                .args(["--threads", &kind.threads.to_string()])
                .args(["--transport", &kind.transport])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{id}")));
            if kind.transport == "quic" {
                cmd.arg("--tls-ca")
                    .arg(certs.join("ca.pem"))
                    .arg("--tls-cert")
                    .arg(certs.join(format!("node-{id}.pem")))
                    .arg("--tls-key")
                    .arg(certs.join(format!("node-{id}.key")));
            }
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "warn");
            }
            let child = cmd
                .env("PAXOS_NODE_SUPERVISOR_PID", std::process::id().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| format!("starting {} serve: {e}", exe.display()))?;
            nodes.push(Node {
                id,
                replica: Replica::Process {
                    process: KillOnDrop(child),
                    log,
                },
                resp,
                admin,
            });
        }
        Ok(Self {
            kind: kind.clone(),
            nodes,
        })
    }

    /// Three servers of `kind` in this process (see `in_process.rs`).
    async fn start_in_process(kind: &ClusterKind, dir: &Path) -> Result<Self, String> {
        let choice = |what: &str, value: &str| format!("{kind}: unknown {what} {value:?}");
        let transport = match kind.transport.as_str() {
            "tcp" => TransportKind::Tcp,
            "quic" => TransportKind::Quic,
            other => return Err(choice("transport", other)),
        };
        let storage = match kind.storage.as_str() {
            "memory" => StorageKind::Memory,
            "file" => StorageKind::File,
            other => return Err(choice("storage", other)),
        };
        let runtime = match kind.runtime.as_str() {
            "tokio" => RuntimeKind::Tokio,
            "smol" => RuntimeKind::Smol,
            other => return Err(choice("runtime", other)),
        };
        let ids: Vec<u64> = (1..=NODES).collect();
        let certs = if transport == TransportKind::Quic {
            let node_ids: Vec<paxos_node::NodeId> =
                ids.iter().map(|&id| paxos_node::NodeId(id)).collect();
            let files = paxos_tls::dev::write_cluster(&dir.join("certs"), &node_ids)
                .map_err(|e| format!("{kind}: writing the certificates: {e}"))?;
            Some(files)
        } else {
            None
        };
        let ports = free_ports(NODES as usize)?;
        let peers: Vec<Peer> = ids
            .iter()
            .zip(&ports)
            .map(|(&id, &port)| Peer {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            })
            .collect();
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut nodes = Vec::new();
        for &id in &ids {
            let mut config = ServerConfig::new(id, peers.clone());
            config.resp = any_port;
            config.admin = Some(any_port);
            config.data_dir = dir.join(format!("node-{id}"));
            config.storage = storage;
            config.transport = transport;
            config.runtime = runtime;
            config.threads = kind.threads;
            if let Some(files) = &certs {
                let (cert, key) = files.nodes[&paxos_node::NodeId(id)].clone();
                config.tls = Some(TlsFiles {
                    ca: files.ca.clone(),
                    cert,
                    key,
                });
            }
            let replica = in_process::Replica::start(config)
                .await
                .map_err(|e| format!("{kind}: {e}"))?;
            let server = replica.server()?;
            let resp = server.resp_addr();
            let admin = server
                .admin_addr()
                .ok_or_else(|| format!("{kind}: node {id} has no admin port"))?;
            nodes.push(Node {
                id,
                replica: Replica::InProcess(replica),
                resp,
                admin,
            });
        }
        Ok(Self {
            kind: kind.clone(),
            nodes,
        })
    }

    /// Stops every node: in-process servers shut down cleanly (each store closed),
    /// processes are killed.
    pub async fn shutdown(mut self) -> Result<(), String> {
        let mut first_error = None;
        for node in std::mem::take(&mut self.nodes) {
            if let Replica::InProcess(replica) = node.replica {
                if let Err(e) = replica.shutdown().await {
                    first_error.get_or_insert(format!("{}: {e}", self.kind));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Fails if any node has exited, with the tail of its log.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            let (process, log) = match &mut node.replica {
                Replica::Process { process, log } => (process, log),
                Replica::InProcess(replica) => {
                    replica
                        .check_alive()
                        .map_err(|e| format!("{}: {e}", self.kind))?;
                    continue;
                }
            };
            if let Ok(Some(status)) = process.0.try_wait() {
                let log_text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "{}: node {} exited ({status}); the end of {}:\n{}",
                    self.kind,
                    node.id,
                    log.display(),
                    tail.join("\n")
                ));
            }
        }
        Ok(())
    }

    /// Waits until one node's `/status` says `leader` and its lease is held, and returns
    /// its RESP address. Fails after `limit`, or at once if a node exits.
    pub async fn wait_for_leader(&mut self, limit: Duration) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("no admin port answered");
        loop {
            self.check_alive()?;
            for node in &self.nodes {
                match http_get(node.admin, "/status").await {
                    Ok(body) => {
                        let status: serde_json::Value = serde_json::from_str(&body)
                            .map_err(|e| format!("node {} /status: {e}: {body}", node.id))?;
                        if status["role"] == "leader" && status["lease_held"] == true {
                            return Ok(node.resp);
                        }
                        last = format!("node {}: {}", node.id, body.trim());
                    }
                    Err(e) => last = format!("node {}: {e}", node.id),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: no leader after {limit:?} (last: {last})",
                    self.kind
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU time and `/metrics` of every node, now (CPU time in-process: this process's).
    pub async fn snapshot(&mut self) -> Result<Snapshot, String> {
        self.check_alive()?;
        let mut snapshot = Snapshot {
            taken: Some(Instant::now()),
            harness_cpu_secs: cpu_secs(std::process::id())?,
            ..Snapshot::default()
        };
        if self.kind.in_process() {
            snapshot.cpu_secs = snapshot.harness_cpu_secs;
        }
        for node in &self.nodes {
            if let Replica::Process { process, .. } = &node.replica {
                let node_cpu = cpu_secs(process.0.id())?;
                snapshot.cpu_secs += node_cpu;
                snapshot.node_cpu_secs.insert(node.id, node_cpu);
            }
            let text = http_get(node.admin, "/metrics")
                .await
                .map_err(|e| format!("node {} /metrics: {e}", node.id))?;
            snapshot.metrics.insert(node.id, parse_metrics(&text));
        }
        Ok(snapshot)
    }

    /// The node whose RESP address is `resp`.
    pub fn node_id(&self, resp: SocketAddr) -> Option<u64> {
        self.nodes.iter().find(|n| n.resp == resp).map(|n| n.id)
    }
}

/// `n` distinct free loopback ports (held together while chosen, then released for the
/// nodes to bind).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("picking ports: {e}"))?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("picking ports: {e}"))
}

/// User plus system CPU time of process `pid`, seconds (`/proc/PID/stat` fields 14 and
/// 15, in clock ticks).
pub fn cpu_secs(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((tick(11)? + tick(12)?) / ticks_per_sec)
}

/// The unlabelled part of every Prometheus sample: `paxos_persists_total{node="1"} 3`
/// becomes `paxos_persists_total` = 3; labelled families keep their other labels
/// (`paxos_messages_sent_total{kind="accept"}`).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = match name.split_once('{') {
            Some((family, labels)) => {
                let labels: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.starts_with("node="))
                    .collect();
                if labels.is_empty() {
                    family.to_owned()
                } else {
                    format!("{family}{{{}}}", labels.join(","))
                }
            }
            None => name.to_owned(),
        };
        out.insert(key, value);
    }
    out
}

/// `GET path` over HTTP/1.0 (the admin port closes each connection), the body if 200.
async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&reply).into_owned())
    };
    let reply = timeout(HTTP_WAIT, exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer in {HTTP_WAIT:?}"))??;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: not an HTTP reply"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{addr}{path}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_drop_the_node_label_and_keep_the_others() {
        let text = "# HELP x y\npaxos_persists_total{node=\"1\"} 3\n\
                    paxos_messages_sent_total{node=\"1\",kind=\"accept\"} 200\nbare 1.5\n";
        let m = parse_metrics(text);
        assert_eq!(m["paxos_persists_total"], 3.0);
        assert_eq!(m["paxos_messages_sent_total{kind=\"accept\"}"], 200.0);
        assert_eq!(m["bare"], 1.5);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let spent = cpu_secs(std::process::id()).unwrap();
        assert!(spent >= 0.0);
    }
}
