//! The closed-loop load: each client has its own connection, sends one command (or one
//! pipeline of `depth` commands), waits for every reply, and sends again, until the
//! measured window ends.
//!
//! Latency is measured per command, from the moment its pipeline was written to the
//! moment its reply was read (so with `--pipeline N` every command of a pipeline gets the
//! pipeline's round trip). Only pipelines *sent* inside the window count, after a warm-up
//! that opens connections and fills caches. Every wait has a deadline: a server that stops
//! answering fails the run with an error instead of hanging it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::resp::{self, Reply};

/// What the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Writes only: `SET key value`, each one a command through the log.
    Set,
    /// Reads only: `GET key` of preloaded keys (on the leader: lease reads).
    Get,
    /// `read_percent` % `GET`, the rest `SET`, drawn per command.
    Mix {
        /// Share of reads, 0 to 100.
        read_percent: u8,
    },
    /// `PING`: no replication, no state machine; the client-to-node floor.
    Ping,
}

impl Workload {
    /// Whether any command of this workload goes through the log.
    pub fn writes(self) -> bool {
        match self {
            Self::Set => true,
            Self::Mix { read_percent } => read_percent < 100,
            Self::Get | Self::Ping => false,
        }
    }

    /// Whether the keys must exist before the window starts.
    pub fn reads(self) -> bool {
        matches!(self, Self::Get | Self::Mix { .. })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Set => f.write_str("set"),
            Self::Get => f.write_str("get"),
            Self::Mix { read_percent } => write!(f, "mix{read_percent}"),
            Self::Ping => f.write_str("ping"),
        }
    }
}

impl FromStr for Workload {
    type Err = String;

    /// `set`, `get`, `ping`, or `mixR` with R the percentage of reads (`mix90`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "set" => Ok(Self::Set),
            "get" => Ok(Self::Get),
            "ping" => Ok(Self::Ping),
            _ => {
                let percent = s
                    .strip_prefix("mix")
                    .and_then(|p| p.parse::<u8>().ok())
                    .filter(|&p| p <= 100)
                    .ok_or_else(|| {
                        format!("unknown workload {s:?}: set, get, ping or mixR (R in 0..=100)")
                    })?;
                Ok(Self::Mix {
                    read_percent: percent,
                })
            }
        }
    }
}

/// One load to run against one address.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The commands sent.
    pub workload: Workload,
    /// Concurrent clients, one connection each.
    pub clients: usize,
    /// Commands per round trip (1: no pipelining).
    pub pipeline: usize,
    /// Bytes of each `SET` value.
    pub value_bytes: usize,
    /// Distinct keys, drawn uniformly.
    pub keys: u64,
    /// Unmeasured time before the window.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// The longest any single wait (connect, write, reply) may take.
    pub op_timeout: Duration,
}

/// What one load measured.
#[derive(Clone, Debug)]
pub struct LoadResult {
    /// Commands answered inside the window (error replies included).
    pub ops: u64,
    /// Error replies among them.
    pub errors: u64,
    /// Commands answered in warm-up and window together.
    pub answered: u64,
    /// The first error reply, if any.
    pub first_error: Option<String>,
    /// The window's length.
    pub window: Duration,
    /// Per-command latency, nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl LoadResult {
    /// Nothing answered yet, over a window of `window`.
    fn empty(window: Duration) -> Self {
        Self {
            ops: 0,
            errors: 0,
            answered: 0,
            first_error: None,
            window,
            latency_ns: histogram(),
        }
    }

    /// Commands per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// The latency at `quantile` (0 to 1), microseconds.
    pub fn latency_us(&self, quantile: f64) -> f64 {
        self.latency_ns.value_at_quantile(quantile) as f64 / 1e3
    }
}

/// A fresh latency histogram: 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Writes every key once (one connection, pipelines of 100), so reads find values.
pub async fn preload(addr: SocketAddr, spec: &LoadSpec) -> Result<(), String> {
    let mut conn = Conn::open(addr, spec.op_timeout).await?;
    let value = vec![b'v'; spec.value_bytes];
    let mut key = 0;
    while key < spec.keys {
        let n = (spec.keys - key).min(100);
        let mut out = Vec::new();
        for k in key..key + n {
            resp::encode(&mut out, &[b"SET", key_name(k).as_bytes(), &value]);
        }
        conn.round_trip(&out, n as usize, spec.op_timeout).await?;
        key += n;
    }
    Ok(())
}

/// Runs `spec` against `addr`; `progress` counts the commands answered so far (window or
/// not), for a progress display.
pub async fn run(
    addr: SocketAddr,
    spec: &LoadSpec,
    progress: Arc<AtomicU64>,
) -> Result<LoadResult, String> {
    let start = Instant::now() + spec.warmup;
    let end = start + spec.window;
    let mut tasks = Vec::with_capacity(spec.clients);
    for client in 0..spec.clients {
        let spec = spec.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(addr, &spec, client as u64, start, end, &progress).await
        }));
    }
    let mut total = LoadResult::empty(spec.window);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(r)) => {
                total.ops += r.ops;
                total.errors += r.errors;
                total.first_error = total.first_error.or(r.first_error);
                total
                    .latency_ns
                    .add(&r.latency_ns)
                    .map_err(|e| format!("merging histograms: {e}"))?;
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("a client task failed: {e}"))),
        }
    }
    total.answered = progress.load(Ordering::Relaxed);
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

async fn client_loop(
    addr: SocketAddr,
    spec: &LoadSpec,
    client: u64,
    start: Instant,
    end: Instant,
    progress: &AtomicU64,
) -> Result<LoadResult, String> {
    let mut conn = Conn::open(addr, spec.op_timeout)
        .await
        .map_err(|e| format!("client {client}: {e}"))?;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (client + 1).wrapping_mul(0xA24B_AED4));
    let value = vec![b'v'; spec.value_bytes];
    let mut result = LoadResult::empty(spec.window);
    let mut out = Vec::new();
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(result);
        }
        out.clear();
        for _ in 0..spec.pipeline {
            let key = key_name(rng.next() % spec.keys.max(1));
            let read = match spec.workload {
                Workload::Set => false,
                Workload::Get => true,
                Workload::Mix { read_percent } => rng.next() % 100 < u64::from(read_percent),
                Workload::Ping => {
                    resp::encode(&mut out, &[b"PING"]);
                    continue;
                }
            };
            if read {
                resp::encode(&mut out, &[b"GET", key.as_bytes()]);
            } else {
                resp::encode(&mut out, &[b"SET", key.as_bytes(), &value]);
            }
        }
        let replies = conn
            .round_trip(&out, spec.pipeline, spec.op_timeout)
            .await
            .map_err(|e| format!("client {client}: {e}"))?;
        let took = sent.elapsed();
        progress.fetch_add(spec.pipeline as u64, Ordering::Relaxed);
        if sent >= start {
            let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
            result
                .latency_ns
                .record_n(took_ns, spec.pipeline as u64)
                .map_err(|e| format!("recording a latency: {e}"))?;
            result.ops += spec.pipeline as u64;
            for reply in replies {
                if let Reply::Error(e) = reply {
                    result.errors += 1;
                    result.first_error.get_or_insert(e);
                }
            }
        }
    }
}

/// The name of key `n`: fixed width, so every command of a workload has one size.
fn key_name(n: u64) -> String {
    format!("key:{n:08}")
}

/// One client connection.
struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr, limit: Duration) -> Result<Self, String> {
        let stream = timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr}: no answer in {limit:?}"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (read, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::with_capacity(64 << 10, read),
            writer,
            line: Vec::new(),
        })
    }

    /// Writes `out` and reads `n` replies.
    async fn round_trip(
        &mut self,
        out: &[u8],
        n: usize,
        limit: Duration,
    ) -> Result<Vec<Reply>, String> {
        timeout(limit, self.writer.write_all(out))
            .await
            .map_err(|_| format!("writing a request: blocked for {limit:?}"))?
            .map_err(|e| format!("writing a request: {e}"))?;
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            let reply = timeout(limit, resp::read_reply(&mut self.reader, &mut self.line))
                .await
                .map_err(|_| format!("no reply in {limit:?}"))?
                .map_err(|e| format!("reading a reply: {e}"))?;
            replies.push(reply);
        }
        Ok(replies)
    }
}

/// A small, fast, seeded generator for key choice (quality is not the point).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_and_print_back() {
        for s in ["set", "get", "ping", "mix90", "mix0", "mix100"] {
            assert_eq!(s.parse::<Workload>().unwrap().to_string(), s);
        }
        assert!("mix101".parse::<Workload>().is_err());
        assert!("del".parse::<Workload>().is_err());
    }
}
