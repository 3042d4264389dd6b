//! Helpers for tests that run the `paxos-node` binary as real processes on 127.0.0.1.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_paxos-node");

/// Bound on any single wait. Generous: it only matters when something is broken.
pub const WAIT: Duration = Duration::from_secs(20);

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test
/// leaves nothing running.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal the child");
    }

    /// Waits for the process to exit, for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports outside the ephemeral range, so that a restarted node finds its ports free (see
/// the module's docs).
#[path = "../../../paxos-node/tests/ports/mod.rs"]
pub mod ports;

pub use ports::free_ports;

/// A raw RESP client, for byte-exact replies.
pub mod raw;

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The addresses of one `serve` node.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    pub id: u64,
    pub peer: u16,
    pub resp: u16,
    pub admin: u16,
}

/// `n` distinct ports from [`free_ports`] that are free for UDP as well as TCP: under
/// QUIC a node's peer port is a UDP port. A port some UDP socket holds is skipped
/// (`free_ports` hands each port out once, so the next call offers others).
pub fn free_tcp_udp_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    // Bounded: a few passes; each offers fresh ports.
    for _ in 0..16 {
        if ports.len() == n {
            break;
        }
        for port in free_ports(n - ports.len()) {
            if !ports.contains(&port) && UdpSocket::bind(local(port)).is_ok() {
                ports.push(port);
            }
        }
    }
    assert_eq!(ports.len(), n, "no {n} ports free for both TCP and UDP");
    ports
}

/// Addresses for nodes `1..=n`, each port free for TCP and UDP (QUIC's peer port is UDP).
pub fn layout(n: usize) -> Vec<NodeAddrs> {
    let ports = free_tcp_udp_ports(3 * n);
    (0..n)
        .map(|i| NodeAddrs {
            id: i as u64 + 1,
            peer: ports[3 * i],
            resp: ports[3 * i + 1],
            admin: ports[3 * i + 2],
        })
        .collect()
}

/// The cluster id of the cluster `nodes`: the same for all its nodes and their restarts,
/// and different from any other test cluster's (the test process and the first peer port),
/// so that a node left running by an earlier test that crashed, still dialling ports this
/// cluster now uses, is refused at the handshake instead of joining as a member.
pub fn cluster_id(nodes: &[NodeAddrs]) -> u64 {
    (u64::from(std::process::id()) << 16) | u64::from(nodes[0].peer)
}

/// How the nodes talk to each other (`serve --transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP, the default.
    Tcp,
    /// QUIC, always mutual TLS: each node gets the files `paxos-node certs` wrote into
    /// `dir/certs` (see [`Transport::prepare`]).
    Quic,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }

    /// What the nodes of `dir` need before they start: for QUIC, a development CA and a
    /// certificate and key for each of `nodes`, written into `dir/certs` by
    /// `paxos-node certs`.
    pub fn prepare(self, nodes: &[NodeAddrs], dir: &Path) {
        if self == Self::Tcp {
            return;
        }
        let out = Command::new(EXE)
            .args(["certs", "--nodes", &nodes.len().to_string(), "--out"])
            .arg(dir.join("certs"))
            .output()
            .expect("run paxos-node certs");
        assert!(out.status.success(), "paxos-node certs: {out:?}");
    }

    /// The `serve` flags of node `id` of the cluster in `dir`.
    fn flags(self, id: u64, dir: &Path) -> Vec<OsString> {
        match self {
            Self::Tcp => Vec::new(),
            Self::Quic => {
                let certs = dir.join("certs");
                vec![
                    "--transport".into(),
                    "quic".into(),
                    "--tls-ca".into(),
                    certs.join("ca.pem").into(),
                    "--tls-cert".into(),
                    certs.join(format!("node-{id}.pem")).into(),
                    "--tls-key".into(),
                    certs.join(format!("node-{id}.key")).into(),
                ]
            }
        }
    }

    /// Asserts that the running `nodes` listen on their peer ports over this transport:
    /// for TCP a TCP listener; for QUIC a UDP socket (binding the port fails) and no TCP
    /// listener. Neither `/status` nor the log says which transport a node runs.
    pub fn assert_listening(self, nodes: &[NodeAddrs]) {
        for n in nodes {
            let tcp = TcpStream::connect(local(n.peer)).is_ok();
            let udp_taken = UdpSocket::bind(local(n.peer)).is_err();
            match self {
                Self::Tcp => assert!(tcp, "node {}: no TCP listener on {}", n.id, n.peer),
                Self::Quic => assert!(
                    udp_taken && !tcp,
                    "node {} on peer port {}: UDP socket bound {udp_taken}, TCP listener {tcp}",
                    n.id,
                    n.peer
                ),
            }
        }
    }
}

/// Starts `paxos-node serve` for `nodes[i]`, with file storage under `dir`, logging to
/// `dir/node-<id>.log`.
pub fn serve(nodes: &[NodeAddrs], i: usize, dir: &Path, extra: &[&str]) -> Proc {
    serve_over(Transport::Tcp, nodes, i, dir, extra)
}

/// [`serve`] over `transport` ([`Transport::prepare`] must have run for `dir`).
pub fn serve_over(
    transport: Transport,
    nodes: &[NodeAddrs],
    i: usize,
    dir: &Path,
    extra: &[&str],
) -> Proc {
    let node = &nodes[i];
    let log_path = dir.join(format!("node-{}.log", node.id));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut cmd = Command::new(EXE);
    cmd.arg("serve")
        .arg("--id")
        .arg(node.id.to_string())
        .arg("--cluster-id")
        .arg(cluster_id(nodes).to_string())
        .arg("--resp")
        .arg(local(node.resp).to_string())
        .arg("--admin")
        .arg(local(node.admin).to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("data-{}", node.id)));
    for n in nodes {
        cmd.arg("--peer").arg(format!("{}={}", n.id, local(n.peer)));
    }
    cmd.args(transport.flags(node.id, dir))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Proc {
        child: cmd.spawn().expect("spawn paxos-node serve"),
    }
}

/// Polls `f` until it returns `Some`, every 20 ms, for at most `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis connection with read and write timeouts.
pub fn redis_conn(port: u16, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Waits until the node on `port` accepts a write (a leader is elected and reachable).
pub fn wait_writable(port: u16) -> redis::Connection {
    poll("a node to accept writes", WAIT, || {
        let mut con = redis_conn(port, Duration::from_secs(5)).ok()?;
        redis::cmd("SET")
            .arg("__ready")
            .arg("1")
            .query::<()>(&mut con)
            .ok()?;
        Some(con)
    })
}

/// [`wait_writable`] on every node; if one never accepts a write, prints the end of every
/// node's log (`dir/node-<id>.log`, as [`serve`] writes it) before failing, so that a
/// failure in CI says why.
pub fn wait_all_writable(nodes: &[NodeAddrs], dir: &Path) {
    let waited = std::panic::catch_unwind(|| {
        for n in nodes {
            drop(wait_writable(n.resp));
        }
    });
    if let Err(panic) = waited {
        for n in nodes {
            let log = std::fs::read_to_string(dir.join(format!("node-{}.log", n.id)))
                .unwrap_or_else(|e| format!("(no log: {e})"));
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "---- node {} (peer {}, resp {}), last lines of its log ----\n{tail}",
                n.id, n.peer, n.resp
            );
        }
        std::panic::resume_unwind(panic);
    }
}

/// `GET path` on the admin port: (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(local(port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// A fresh temporary directory for a test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_of(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}
