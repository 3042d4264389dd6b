//! Wall time of rounds of 2,000 concurrent proposals on three in-process nodes, each with
//! a `FileStorage` in a temporary directory, over loopback TCP on smol, with as many
//! executor threads as `SMOL_THREADS` says (smol reads it when its global executor first
//! runs; it defaults to 1).
//!
//! ```text
//! SMOL_THREADS=1 cargo run --release -p paxos-node --features smol \
//!     --example file_executor_threads -- [ROUNDS]
//! SMOL_THREADS=4 cargo run --release ... (same)
//! ```
//!
//! Every task runs on smol's global executor: the three drivers, the transports and the
//! clients (each round is one spawned task that joins its 2,000 proposals). A store that
//! blocks inside its `async fn`s for its `fdatasync` holds an executor thread for the
//! whole flush, and with one thread every other task (the other nodes, the sockets, the
//! clients) waits for it.
//!
//! While the rounds run, a probe task on the same executor sleeps 1 ms at a time and
//! records how late each wake-up is: that lateness is what every other task on the
//! executor (a heartbeat timer, a socket read) waits on top of its own work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    Committed, Config, NodeId, ProposalId, Role, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError,
};
use paxos_net_tcp::{TcpConfig, TcpTransport};
use paxos_node::{AsyncIoRuntime, NodeBuilder, NodeHandle, NodeOptions, Runtime};
use paxos_storage::{FileStorage, FileStorageOptions};

/// Proposals in flight at once in each round.
const CONCURRENT: usize = 2_000;
/// Rounds run first and not counted.
const WARMUP_ROUNDS: usize = 1;
const CLUSTER: u64 = 0xF11E;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(7);
    let threads = std::env::var("SMOL_THREADS").unwrap_or_else(|_| "1 (default)".into());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime: Arc<dyn Runtime> = Arc::new(AsyncIoRuntime::new());
    smol::block_on(async {
        let nodes = start_cluster(&runtime, dir.path()).await;
        let leader = wait_for_leader(&nodes).await;
        let mut times = Vec::with_capacity(rounds);
        let stop = Arc::new(AtomicBool::new(false));
        let probe = smol::spawn(probe(runtime.clone(), stop.clone()));
        for round in 0..WARMUP_ROUNDS + rounds {
            let node = nodes[leader].clone();
            let elapsed = smol::spawn(async move { one_round(&node, round).await }).await;
            if round >= WARMUP_ROUNDS {
                times.push(elapsed);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut late = probe.await;
        late.sort();
        let disk = disk_bytes(dir.path());
        for node in &nodes {
            node.shutdown().await;
        }
        times.sort();
        let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        println!(
            "SMOL_THREADS={threads}: {rounds} rounds of {CONCURRENT} concurrent proposals on \
             the leader (3 nodes, loopback TCP, FileStorage)"
        );
        println!(
            "round wall time ms: median {}, min {}, max {}; all: {}",
            ms(&times[times.len() / 2]),
            ms(&times[0]),
            ms(&times[times.len() - 1]),
            times.iter().map(ms).collect::<Vec<_>>().join(" ")
        );
        let us = |d: &Duration| format!("{:.0}", d.as_secs_f64() * 1e6);
        let at = |q: f64| us(&late[((late.len() - 1) as f64 * q) as usize]);
        println!(
            "1 ms timer lateness us over {} wake-ups: p50 {}, p99 {}, p99.9 {}, max {}",
            late.len(),
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0)
        );
        println!("disk used by the three stores: {:.1} MB", disk as f64 / 1e6);
    });
}

/// Sleeps 1 ms at a time until `stop`, and returns how late each wake-up was.
async fn probe(runtime: Arc<dyn Runtime>, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut late = Vec::new();
    // Bounded: a run of a few seconds wakes a few thousand times.
    while !stop.load(Ordering::Relaxed) && late.len() < 1_000_000 {
        let deadline = Instant::now() + Duration::from_millis(1);
        runtime.sleep_until(deadline).await;
        late.push(Instant::now().saturating_duration_since(deadline));
    }
    late
}

/// Proposes `CONCURRENT` 16-byte commands at once and waits for all of them.
async fn one_round(node: &NodeHandle, round: usize) -> Duration {
    let start = Instant::now();
    let proposals = (0..CONCURRENT).map(|i| {
        let mut command = [0_u8; 16];
        command[..8].copy_from_slice(&(round as u64).to_le_bytes());
        command[8..].copy_from_slice(&(i as u64).to_le_bytes());
        node.propose(Bytes::copy_from_slice(&command))
    });
    for outcome in futures::future::join_all(proposals).await {
        outcome.expect("proposal applied");
    }
    start.elapsed()
}

async fn start_cluster(rt: &Arc<dyn Runtime>, dir: &std::path::Path) -> Vec<NodeHandle> {
    let ids = [1, 2, 3].map(NodeId);
    let transports: Vec<TcpTransport> = ids
        .iter()
        .map(|&id| {
            let loopback = "127.0.0.1:0".parse().expect("addr");
            let config = TcpConfig::new(CLUSTER, id, loopback, BTreeMap::new());
            TcpTransport::start(config, rt.clone()).expect("transport")
        })
        .collect();
    for t in &transports {
        for (&id, other) in ids.iter().zip(&transports) {
            t.set_peer(id, other.local_addr());
        }
    }
    // Room for a whole round in the request queue.
    let mut options = NodeOptions::default();
    options.request_queue = 2 * CONCURRENT;
    let mut nodes = Vec::new();
    for (&id, transport) in ids.iter().zip(transports) {
        let store_dir = dir.join(format!("node-{}", id.0));
        let store =
            FileStorage::open(&store_dir, FileStorageOptions::default()).expect("file storage");
        let node = NodeBuilder::new(Config::new(id, ids.to_vec()))
            .options(options.clone())
            .transport(Box::new(transport))
            .storage(Box::new(store))
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

/// Bytes the files under `dir` occupy on disk (allocated blocks, not apparent sizes).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(items) = std::fs::read_dir(dir) else {
        return 0;
    };
    items
        .filter_map(Result::ok)
        .map(|item| match item.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&item.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Counts applied commands; answers each with an empty output.
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
