//! The machine's floors, measured in the same run as the results they divide: what this
//! machine needs at least for one round trip between two processes over TCP and over QUIC,
//! and for one `fdatasync`; and, with `redis-server` installed, the practical ceiling of
//! one unreplicated Redis under the same load.
//!
//! The echo peers are this binary again (`paxos-benches echo-tcp` / `echo-quic`, hidden
//! subcommands), so both ends of a floor are separate processes, like two replicas.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::histogram;

/// Bytes of each floor message (the issue's 64 B, about an Accepted or a small Accept).
pub const FLOOR_MESSAGE_BYTES: usize = 64;
/// The ALPN of the QUIC floor.
const ALPN: &[u8] = b"paxos-bench/1";
/// The DNS name of the QUIC floor's echo peer certificate.
const ECHO_NAME: &str = "echo.bench";
/// How long a floor waits for any one thing (a line from its peer, one echo).
const WAIT: Duration = Duration::from_secs(10);

/// One floor: a latency distribution, summarised.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    /// `tcp_rtt`, `quic_rtt`, `fdatasync`, or `ping` (client to node, per cluster).
    pub name: String,
    /// For `ping`: the cluster it was measured on (`tcp/memory/tokio`); else empty.
    pub cluster: String,
    /// Samples taken.
    pub samples: u64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
}

impl Floor {
    /// Summarises `latency_ns`.
    pub fn from_histogram(name: &str, cluster: &str, latency_ns: &Histogram<u64>) -> Self {
        Self {
            name: name.to_owned(),
            cluster: cluster.to_owned(),
            samples: latency_ns.len(),
            p50_us: latency_ns.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: latency_ns.value_at_quantile(0.99) as f64 / 1e3,
        }
    }
}

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary as an echo peer (`args`) and reads the address it prints.
fn start_echo(args: &[&str]) -> Result<(KillOnDrop, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the echo peer: {e}"))?;
    let stdout = child.stdout.take().ok_or("the echo peer has no stdout")?;
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    let line = rx
        .recv_timeout(WAIT)
        .map_err(|_| format!("the echo peer printed no address in {WAIT:?}"))?
        .map_err(|e| format!("reading the echo peer's address: {e}"))?;
    let addr = line
        .trim()
        .parse()
        .map_err(|e| format!("the echo peer printed {line:?}: {e}"))?;
    Ok((child, addr))
}

/// Raw TCP round trip of 64 B messages to an echo peer process, `TCP_NODELAY`, blocking
/// sockets, one message in flight, for `duration`.
pub fn tcp_rtt(duration: Duration) -> Result<Floor, String> {
    let (_peer, addr) = start_echo(&["echo-tcp"])?;
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let mut latency = histogram();
    let out = [7u8; FLOOR_MESSAGE_BYTES];
    let mut back = [0u8; FLOOR_MESSAGE_BYTES];
    let io = |e: std::io::Error| format!("TCP floor: {e}");
    let end = Instant::now() + duration;
    let warm = Instant::now() + duration / 10;
    while Instant::now() < end {
        let sent = Instant::now();
        stream.write_all(&out).map_err(io)?;
        stream.read_exact(&mut back).map_err(io)?;
        if sent >= warm {
            record(&mut latency, sent.elapsed())?;
        }
    }
    Ok(Floor::from_histogram("tcp_rtt", "", &latency))
}

/// The TCP echo peer: prints its address, echoes 64 B messages on one connection, and
/// exits when that connection closes.
pub fn serve_tcp_echo() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", listener.local_addr().map_err(|e| e.to_string())?);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = [0u8; FLOOR_MESSAGE_BYTES];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
    Ok(())
}

/// The development certificates of the QUIC floor, in `dir`: a CA, the echo peer's and the
/// client's certificate (mutual TLS, as between two replicas).
fn write_floor_certs(dir: &Path) -> Result<(), String> {
    let ca =
        paxos_tls::dev::DevCa::generate("paxos-benches floor CA").map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("ca.pem", &ca.ca_pem())?;
    for who in ["server", "client"] {
        let cert = ca.issue_named(ECHO_NAME).map_err(|e| e.to_string())?;
        write(&format!("{who}.pem"), &cert.cert_pem)?;
        write(&format!("{who}.key"), &cert.key_pem)?;
    }
    Ok(())
}

fn identity(dir: &Path, who: &str) -> Result<paxos_tls::TlsIdentity, String> {
    paxos_tls::TlsIdentity::from_pem_files(
        &dir.join("ca.pem"),
        &dir.join(format!("{who}.pem")),
        &dir.join(format!("{who}.key")),
    )
    .map_err(|e| format!("QUIC floor certificates: {e}"))
}

/// Raw QUIC round trip of 64 B messages on one bidirectional stream to an echo peer
/// process (quinn, rustls with ring, mutual TLS), one message in flight, for `duration`.
/// `dir` receives the floor's certificates.
pub async fn quic_rtt(dir: &Path, duration: Duration) -> Result<Floor, String> {
    let certs = dir.join("floor-certs");
    write_floor_certs(&certs)?;
    let certs_arg = certs.to_string_lossy().into_owned();
    let (_peer, addr) = start_echo(&["echo-quic", "--certs", &certs_arg])?;
    let tls = identity(&certs, "client")?
        .client_config(&[ALPN])
        .map_err(|e| e.to_string())?;
    let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("QUIC client endpoint: {e}"))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(tls)));
    let connecting = endpoint
        .connect(addr, ECHO_NAME)
        .map_err(|e| format!("QUIC connect: {e}"))?;
    let connection = within(connecting, "the QUIC handshake")
        .await?
        .map_err(|e| format!("QUIC handshake: {e}"))?;
    let (mut send, mut recv) = within(connection.open_bi(), "opening a stream")
        .await?
        .map_err(|e| format!("QUIC stream: {e}"))?;
    let out = [7u8; FLOOR_MESSAGE_BYTES];
    let mut back = [0u8; FLOOR_MESSAGE_BYTES];
    let mut latency = histogram();
    let end = Instant::now() + duration;
    let warm = Instant::now() + duration / 10;
    while Instant::now() < end {
        let sent = Instant::now();
        within(send.write_all(&out), "a QUIC write")
            .await?
            .map_err(|e| format!("QUIC write: {e}"))?;
        within(recv.read_exact(&mut back), "a QUIC echo")
            .await?
            .map_err(|e| format!("QUIC read: {e}"))?;
        if sent >= warm {
            record(&mut latency, sent.elapsed())?;
        }
    }
    connection.close(0u32.into(), b"done");
    endpoint.close(0u32.into(), b"done");
    Ok(Floor::from_histogram("quic_rtt", "", &latency))
}

/// The QUIC echo peer: prints its address, echoes 64 B messages on the first stream of the
/// first connection, and exits when that stream ends.
pub async fn serve_quic_echo(certs: &Path) -> Result<(), String> {
    let tls = identity(certs, "server")?
        .server_config(&[ALPN])
        .map_err(|e| e.to_string())?;
    let tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    let endpoint = quinn::Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("QUIC server endpoint: {e}"))?;
    println!("{}", endpoint.local_addr().map_err(|e| e.to_string())?);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let incoming = endpoint.accept().await.ok_or("the endpoint closed")?;
    let connection = incoming.await.map_err(|e| e.to_string())?;
    let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; FLOOR_MESSAGE_BYTES];
    while recv.read_exact(&mut buf).await.is_ok() {
        if send.write_all(&buf).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// `fdatasync` latency: 4 KiB written at the next offset of a preallocated (written and
/// synced) 16 MiB file in `dir`, then `fdatasync`, for `duration` (at most 5,000 times).
/// The file is removed afterwards.
pub fn fdatasync(dir: &Path, duration: Duration) -> Result<Floor, String> {
    use std::os::unix::fs::FileExt;
    const FILE_BYTES: u64 = 16 << 20;
    const WRITE_BYTES: usize = 4096;
    let path = dir.join("fdatasync-floor.bin");
    let io = |e: std::io::Error| format!("fdatasync floor, {}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..FILE_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, i * zeros.len() as u64)
            .map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    let block = vec![0xA5u8; WRITE_BYTES];
    let mut latency = histogram();
    let end = Instant::now() + duration;
    let mut offset = 0;
    for _ in 0..5000 {
        if Instant::now() >= end {
            break;
        }
        let start = Instant::now();
        file.write_all_at(&block, offset).map_err(io)?;
        file.sync_data().map_err(io)?;
        record(&mut latency, start.elapsed())?;
        offset = (offset + WRITE_BYTES as u64) % FILE_BYTES;
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Floor::from_histogram("fdatasync", "", &latency))
}

/// `redis-server` on the `PATH`, if any.
pub fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|exe| exe.is_file())
}

/// Starts one unreplicated `redis-server` on a free loopback port (no persistence: the
/// ceiling of a single in-memory server) and waits until it answers.
pub async fn start_redis(exe: &Path) -> Result<(KillOnDrop, SocketAddr), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("picking a port: {e}"))?
        .port();
    let child = Command::new(exe)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let mut child = KillOnDrop(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("redis-server exited at start: {status}"));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((child, addr));
        }
        if Instant::now() >= deadline {
            return Err(format!("redis-server did not listen on {addr} in {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn record(latency: &mut Histogram<u64>, took: Duration) -> Result<(), String> {
    let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
    latency
        .record(ns)
        .map_err(|e| format!("recording a latency: {e}"))
}

async fn within<T>(f: impl Future<Output = T>, what: &str) -> Result<T, String> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| format!("{what}: nothing in {WAIT:?}"))
}
