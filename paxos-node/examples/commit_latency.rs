//! Commit latency of one client doing sequential proposals against three in-process nodes
//! over loopback TCP with `MemoryStorage`, next to the raw TCP round trip measured in the
//! same run on the same runtime.
//!
//! ```text
//! cargo run --release -p paxos-node --example commit_latency -- [ROUNDS]
//! ```
//!
//! A commit costs, on the leader: one driver cycle to take the proposal, a persist
//! (memory), one round trip to the followers (Accept / Accepted), and a cycle to apply. So
//! the floor is about one raw round trip plus the work of two driver cycles on each side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    Committed, Config, NodeId, ProposalId, Role, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError,
};
use paxos_net_tcp::{TcpConfig, TcpTransport};
use paxos_node::{NodeBuilder, NodeHandle, Runtime, TokioRuntime};
use paxos_storage::MemoryStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WARMUP: usize = 200;
const CLUSTER: u64 = 1;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(5_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime::new(rt.handle().clone()));
    rt.block_on(run(runtime, rounds));
}

async fn run(rt: Arc<dyn Runtime>, rounds: usize) {
    println!("{rounds} sequential operations each, after {WARMUP} warm-up; 16-byte commands");
    println!("tokio, 2 worker threads, 3 nodes in one process, loopback TCP, MemoryStorage");
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "path", "p50 us", "p99 us", "p99.9 us"
    );

    report("raw TCP round trip (16 B echo)", raw_tcp(rounds).await);
    let nodes = start_cluster(&rt).await;
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % nodes.len();
    let before = nodes[leader].metrics();
    report(
        "propose on the leader",
        proposals(&nodes[leader], rounds).await,
    );
    let after = nodes[leader].metrics();
    report(
        "propose on a follower (forwarded)",
        proposals(&nodes[follower], rounds).await,
    );
    report(
        "read on the leader (core: lease)",
        reads(&nodes[leader], rounds).await,
    );
    report(
        "read on a follower (marker in the log)",
        reads(&nodes[follower], rounds).await,
    );
    let persists = after.persists - before.persists;
    let commands = after.committed_commands - before.committed_commands;
    println!(
        "leader, proposals on the leader: {commands} commands, {persists} persists ({:.2} per command)",
        persists as f64 / commands.max(1) as f64
    );
    batching(&nodes[leader], 64, rounds).await;
    for node in &nodes {
        node.shutdown().await;
    }
}

/// `clients` concurrent clients, `rounds` proposals in all: throughput and persists per
/// command, to show proposals batching into shared persists under load.
async fn batching(node: &NodeHandle, clients: usize, rounds: usize) {
    let before = node.metrics();
    let start = Instant::now();
    let per_client = rounds / clients;
    let work = (0..clients).map(|c| async move {
        for i in 0..per_client {
            let command = Bytes::copy_from_slice(&[(c + i) as u8; 16]);
            node.propose(command).await.expect("proposal applied");
        }
    });
    futures::future::join_all(work).await;
    let elapsed = start.elapsed();
    let after = node.metrics();
    let commands = after.committed_commands - before.committed_commands;
    let persists = after.persists - before.persists;
    let slots = after.committed_slots - before.committed_slots;
    println!(
        "{clients} concurrent clients on the leader: {:.0} commands/s, {:.3} persists per command, {:.1} commands per slot",
        commands as f64 / elapsed.as_secs_f64(),
        persists as f64 / commands.max(1) as f64,
        commands as f64 / slots.max(1) as f64,
    );
}

fn report(path: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    println!(
        "{path:<40} {:>9.1} {:>9.1} {:>9.1}",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

async fn raw_tcp(rounds: usize) -> Vec<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 16];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; 16];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let start = Instant::now();
        s.write_all(&buf).await.expect("write");
        s.read_exact(&mut buf).await.expect("read");
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    drop(s);
    let _ = echo.await;
    samples
}

async fn proposals(node: &NodeHandle, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let command = Bytes::copy_from_slice(&[i as u8; 16]);
        let start = Instant::now();
        node.propose(command).await.expect("proposal applied");
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    samples
}

async fn reads(node: &NodeHandle, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let start = Instant::now();
        node.read(Bytes::from_static(b"count"))
            .await
            .expect("read answered");
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    samples
}

async fn start_cluster(rt: &Arc<dyn Runtime>) -> Vec<NodeHandle> {
    let ids = [1, 2, 3].map(NodeId);
    let transports: Vec<TcpTransport> = ids
        .iter()
        .map(|&id| {
            let config = TcpConfig::new(
                CLUSTER,
                id,
                "127.0.0.1:0".parse().expect("addr"),
                BTreeMap::new(),
            );
            TcpTransport::start(config, rt.clone()).expect("transport")
        })
        .collect();
    for t in &transports {
        for (&id, other) in ids.iter().zip(&transports) {
            t.set_peer(id, other.local_addr());
        }
    }
    let mut nodes = Vec::new();
    for (&id, transport) in ids.iter().zip(transports) {
        let node = NodeBuilder::new(Config::new(id, ids.to_vec()))
            .transport(Box::new(transport))
            .storage(Box::new(MemoryStorage::new()))
            .state_machine(Box::new(Counter::default()))
            .runtime(rt.clone())
            .start()
            .await
            .expect("node starts");
        nodes.push(node);
    }
    nodes
}

async fn wait_for_leader(nodes: &[NodeHandle]) -> usize {
    let wait = Duration::from_secs(10);
    let status = nodes[0]
        .wait_for(wait, |s| s.leader.is_some())
        .await
        .expect("a leader within 10 s");
    let leader = status.leader.expect("checked");
    let i = nodes
        .iter()
        .position(|n| n.id() == leader)
        .expect("a member");
    nodes[i]
        .wait_for(wait, |s| s.role == Role::Leader)
        .await
        .expect("leader");
    for node in nodes {
        node.wait_for(wait, |s| s.leader == Some(leader))
            .await
            .expect("every node follows");
    }
    i
}

/// Counts applied commands; outputs nothing; answers queries with the count.
#[derive(Debug, Default)]
struct Counter(u64);

#[async_trait]
impl StateMachine for Counter {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        for c in batch {
            for cmd in c.value.commands() {
                self.0 += 1;
                outputs.push((cmd.id, Bytes::new()));
            }
        }
        Ok(())
    }

    async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::copy_from_slice(&self.0.to_le_bytes()))
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(&self.0.to_le_bytes())
            .await
            .map_err(|e| StateMachineError::with_source("snapshot", e))
    }

    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let mut bytes = [0; 8];
        let read = input
            .read_full(&mut bytes)
            .await
            .map_err(|e| StateMachineError::with_source("restore", e))?;
        if read != 8 {
            return Err(StateMachineError::new("bad snapshot"));
        }
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}
