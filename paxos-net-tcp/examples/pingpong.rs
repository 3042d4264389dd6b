//! Round-trip latency of a small message between two transports on loopback, next to a
//! raw TCP ping-pong of the same bytes in the same run.
//!
//! ```text
//! cargo run --release -p paxos-net-tcp --example pingpong -- [ROUNDS]
//! ```
//!
//! For each runtime (tokio, smol) it prints p50/p99 of: the transport (node 0 sends a
//! `Decide` to node 1, which echoes it back), a raw TCP echo of the same frame through the
//! same runtime adapter, and a raw echo on blocking std sockets (the kernel floor).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::codec::encode_frame;
use paxos_core::message::Decide;
use paxos_core::{Ballot, Envelope, Message, NodeId, Slot, Transport};
use paxos_net_tcp::{Runtime, TcpConfig, TcpTransport};
use paxos_runtime::{AsyncIoRuntime, TokioRuntime};

const WARMUP: usize = 200;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(5_000);
    println!("{rounds} round trips each, after {WARMUP} warm-up; small Decide frame");
    println!(
        "{:<8} {:<24} {:>10} {:>10}",
        "runtime", "path", "p50 us", "p99 us"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let net: Arc<dyn Runtime> = Arc::new(TokioRuntime::new(rt.handle().clone()));
    rt.block_on(run("tokio", net, rounds));
    smol::block_on(run("smol", Arc::new(AsyncIoRuntime::new()), rounds));
    report("-", "raw std blocking", raw_std(rounds));
}

async fn run(runtime: &str, net: Arc<dyn Runtime>, rounds: usize) {
    report(runtime, "TcpTransport", transport(&net, rounds).await);
    report(
        runtime,
        "raw TCP (same adapter)",
        raw_async(&net, rounds).await,
    );
}

fn message(i: usize) -> Message {
    Message::Decide(Decide {
        ballot: Ballot::new(1, NodeId(0)),
        commit: Slot(i as u64),
    })
}

async fn transport(net: &Arc<dyn Runtime>, rounds: usize) -> Vec<Duration> {
    let start = |id| {
        let config = TcpConfig::new(
            1,
            NodeId(id),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::new(),
        );
        TcpTransport::start(config, net.clone()).unwrap()
    };
    let mut ping = start(0);
    let mut pong = start(1);
    ping.set_peer(NodeId(1), pong.local_addr());
    pong.set_peer(NodeId(0), ping.local_addr());
    let (done_tx, done_rx) = futures::channel::oneshot::channel::<()>();
    net.spawn(Box::pin(async move {
        let mut inbox = Vec::new();
        let echo = async {
            while pong.recv(&mut inbox, 64).await.is_ok() {
                let replies = inbox
                    .drain(..)
                    .map(|m| Envelope {
                        to: m.from,
                        message: m.message,
                    })
                    .collect();
                pong.send(replies);
            }
        };
        futures::future::select(Box::pin(echo), done_rx).await;
    }));
    let mut inbox = Vec::new();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let sent = Instant::now();
        ping.send(vec![Envelope {
            to: NodeId(1),
            message: message(i),
        }]);
        inbox.clear();
        ping.recv(&mut inbox, 1).await.unwrap();
        if i >= WARMUP {
            samples.push(sent.elapsed());
        }
        assert_eq!(inbox[0].message, message(i));
    }
    drop(done_tx);
    samples
}

fn frame() -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(&message(1), &mut buf, 1024).unwrap();
    buf.to_vec()
}

async fn raw_async(net: &Arc<dyn Runtime>, rounds: usize) -> Vec<Duration> {
    let frame = frame();
    let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let len = frame.len();
    net.spawn(Box::pin(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; len];
        while conn.read_exact(&mut buf).await.is_ok() {
            if conn.write_all(&buf).await.is_err() {
                return;
            }
        }
    }));
    let mut conn = net.connect_tcp(addr).await.unwrap();
    let mut buf = vec![0u8; len];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let sent = Instant::now();
        conn.write_all(&frame).await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        if i >= WARMUP {
            samples.push(sent.elapsed());
        }
    }
    samples
}

fn raw_std(rounds: usize) -> Vec<Duration> {
    let frame = frame();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let len = frame.len();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; len];
        while conn.read_exact(&mut buf).is_ok() {
            if conn.write_all(&buf).is_err() {
                return;
            }
        }
    });
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; len];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let sent = Instant::now();
        conn.write_all(&frame).unwrap();
        conn.read_exact(&mut buf).unwrap();
        if i >= WARMUP {
            samples.push(sent.elapsed());
        }
    }
    drop(conn);
    server.join().unwrap();
    samples
}

fn report(runtime: &str, path: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    println!(
        "{runtime:<8} {path:<24} {:>10.1} {:>10.1}",
        at(0.50),
        at(0.99)
    );
}
