//! Three nodes over QUIC and over TCP with mutual TLS, each on tokio and on smol, built
//! through `NodeBuilder`: concurrent clients write while a member joins late (it catches
//! up, its applied log equal to the others'), the leader is then killed and every
//! acknowledged write survives on the new leader. Meanwhile a stranger with a
//! certificate from another CA dials a member, is refused, and the cluster keeps serving.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use paxos_node::core::message::Decide;
use paxos_node::core::{Envelope, Message};
use paxos_node::quic::{QuicConfig, QuicTransport};
use paxos_node::runtime::{Runtime, timeout_at};
use paxos_node::tcp::{TcpConfig, TcpTransport};
use paxos_node::tls::TlsIdentity;
use paxos_node::tls::dev::DevCa;
use paxos_node::{
    Ballot, Bytes, Committed, Config, NodeBuilder, NodeHandle, NodeId, ProposalId, Role, Slot,
    StateMachine, StateMachineError, Transport, async_trait,
};

const CLUSTER: u64 = 0x5EC;
const CLIENTS: u64 = 4;
const WRITES_PER_PHASE: u64 = 10;
/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Net {
    Quic,
    TcpTls,
}

/// Appends every applied command to a log the test can read; answers a command with its
/// position, a query with the length of the log.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Bytes>>>);

#[async_trait]
impl StateMachine for Log {
    async fn apply(
        &mut self,
        committed: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        let mut log = self.0.lock().unwrap();
        for command in committed.iter().flat_map(|c| c.value.commands()) {
            log.push(command.payload.clone());
            outputs.push((command.id, Bytes::from(log.len().to_string())));
        }
        Ok(())
    }
    async fn query(&mut self, _query: &[u8]) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::from(self.0.lock().unwrap().len().to_string()))
    }
}

/// Each member's pre-bound socket (TCP listener or UDP socket), so every address is known
/// before any node starts.
enum Bound {
    Udp(std::net::UdpSocket),
    Tcp(std::net::TcpListener),
}

struct Setup {
    net: Net,
    ca: DevCa,
    peers: Vec<(NodeId, SocketAddr)>,
    bound: Vec<Option<Bound>>,
}

impl Setup {
    fn new(net: Net) -> Self {
        let ca = DevCa::generate("secure_transports test CA").unwrap();
        let mut peers = Vec::new();
        let mut bound = Vec::new();
        for id in 1..=3 {
            let (addr, socket) = match net {
                Net::Quic => {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    (s.local_addr().unwrap(), Bound::Udp(s))
                }
                Net::TcpTls => {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    (l.local_addr().unwrap(), Bound::Tcp(l))
                }
            };
            peers.push((NodeId(id), addr));
            bound.push(Some(socket));
        }
        Self {
            net,
            ca,
            peers,
            bound,
        }
    }

    fn identity(&self, id: u64) -> TlsIdentity {
        let cert = self.ca.issue(NodeId(id)).unwrap();
        cert.identity(&self.ca.ca_pem()).unwrap()
    }

    async fn start(&mut self, i: usize, rt: &Arc<dyn Runtime>) -> (NodeHandle, Log) {
        let id = NodeId(i as u64 + 1);
        let log = Log::default();
        let ids = self.peers.iter().map(|p| p.0).collect();
        let builder = NodeBuilder::new(Config::new(id, ids))
            .cluster_id(CLUSTER)
            .runtime(rt.clone())
            .memory_storage()
            .state_machine(Box::new(log.clone()));
        let identity = self.identity(id.0);
        let peers = self.peers.clone();
        let builder = match self.bound[i].take().expect("started once") {
            Bound::Udp(socket) => builder
                .quic_socket(socket, peers, identity)
                .quic_config(|c| {
                    c.reconnect_backoff_min = Duration::from_millis(5);
                    c.reconnect_backoff_max = Duration::from_millis(50);
                }),
            Bound::Tcp(listener) => builder
                .tcp_tls_listener(listener, peers, identity)
                .tcp_config(|c| {
                    c.reconnect_backoff_min = Duration::from_millis(5);
                    c.reconnect_backoff_max = Duration::from_millis(50);
                }),
        };
        (builder.start().await.unwrap(), log)
    }

    /// A transport for node 3 (a member's id) with a certificate from another CA, dialling
    /// member 1; returns it and a closure telling whether it was refused.
    fn stranger(&self, rt: &Arc<dyn Runtime>) -> Stranger {
        let other = DevCa::generate("another CA").unwrap();
        let identity = other
            .issue(NodeId(3))
            .unwrap()
            .identity(&other.ca_pem())
            .unwrap();
        let peers = BTreeMap::from([self.peers[0]]);
        let listen = "127.0.0.1:0".parse().unwrap();
        match self.net {
            Net::Quic => {
                let config = QuicConfig::new(CLUSTER, NodeId(3), listen, peers, identity);
                let quinn = paxos_node::quic::default_runtime().unwrap();
                Stranger::Quic(QuicTransport::start(config, quinn).unwrap())
            }
            Net::TcpTls => {
                let config = TcpConfig::new(CLUSTER, NodeId(3), listen, peers).with_tls(identity);
                Stranger::Tcp(TcpTransport::start(config, rt.clone()).unwrap())
            }
        }
    }
}

enum Stranger {
    Quic(QuicTransport),
    Tcp(TcpTransport),
}

impl Stranger {
    fn send(&self, to: NodeId) {
        let message = Message::Decide(Decide {
            ballot: Ballot::new(99, NodeId(3)),
            commit: Slot(1_000_000),
        });
        let batch = vec![Envelope { to, message }];
        match self {
            Self::Quic(t) => t.send(batch),
            Self::Tcp(t) => t.send(batch),
        }
    }

    /// Whether the member has refused it. QUIC tells the dialer (the handshake fails);
    /// TCP+TLS refuses after the dialer's side of the handshake is done, so the dialer
    /// cannot tell (the transport tests count it at the acceptor, `refused_tls`).
    fn refused(&self) -> Option<bool> {
        match self {
            Self::Quic(t) => Some(t.stats().connections_failed > 0),
            Self::Tcp(_) => None,
        }
    }
}

async fn within<F: Future>(rt: &Arc<dyn Runtime>, what: &str, f: F) -> F::Output {
    match timeout_at(&**rt, rt.now() + WAIT, f).await {
        Some(out) => out,
        None => panic!("{what}: not within {WAIT:?}"),
    }
}

/// The index of the node that leads, once every node given follows it.
async fn leader(rt: &Arc<dyn Runtime>, nodes: &[&NodeHandle]) -> usize {
    within(rt, "a leader", async {
        loop {
            let handles: Vec<NodeHandle> = nodes.iter().map(|&n| n.clone()).collect();
            if let Some(id) = paxos_node::wait_for_leader(&handles, Duration::from_secs(1)).await {
                if let Some(i) = nodes.iter().position(|n| n.id() == id) {
                    if nodes[i].status().role == Role::Leader {
                        return i;
                    }
                }
            }
        }
    })
    .await
}

/// `CLIENTS` clients write `WRITES_PER_PHASE` unique commands each through `nodes`
/// (round robin), retrying while the outcome is unknown or a leader is being elected;
/// returns the commands acknowledged.
async fn write_phase(rt: &Arc<dyn Runtime>, nodes: &[&NodeHandle], phase: u64) -> Vec<Bytes> {
    let clients = (0..CLIENTS).map(|c| async move {
        let mut acked = Vec::new();
        for n in 0..WRITES_PER_PHASE {
            let command = Bytes::from(format!("phase {phase} client {c} write {n}"));
            let mut attempt = 0_usize;
            loop {
                let node = nodes[(c as usize + attempt) % nodes.len()];
                match node.propose(command.clone()).await {
                    Ok(_) => break,
                    // Retrying may apply a command twice (no sessions here); the checks
                    // below look for each acknowledged command, not for counts.
                    Err(e) if e.is_retryable() || e.outcome_unknown() => attempt += 1,
                    Err(e) => panic!("client {c}: {e}"),
                }
            }
            acked.push(command);
        }
        acked
    });
    within(rt, "the writes", join_all(clients))
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn scenario(net: Net, rt: Arc<dyn Runtime>) {
    let mut setup = Setup::new(net);
    let (n1, log1) = setup.start(0, &rt).await;
    let (n2, log2) = setup.start(1, &rt).await;
    // Two of three: a majority, so the cluster serves while node 3 is away.
    leader(&rt, &[&n1, &n2]).await;
    let stranger = setup.stranger(&rt);
    let mut acked = write_phase(&rt, &[&n1, &n2], 1).await;

    // The stranger (a certificate from another CA) dials member 1 with a forged Decide
    // while clients write: it is refused, and the cluster keeps serving.
    let spam = async {
        for _ in 0..20 {
            stranger.send(NodeId(1));
            // Pacing for the resends, not a synchronisation: nothing waits on it.
            rt.sleep(Duration::from_millis(10)).await;
        }
    };
    let (phase2, ()) = futures::future::join(write_phase(&rt, &[&n1, &n2], 2), spam).await;
    acked.extend(phase2);
    if stranger.refused().is_some() {
        within(&rt, "the stranger refused", async {
            while stranger.refused() != Some(true) {
                stranger.send(NodeId(1));
                rt.sleep(Duration::from_millis(10)).await; // a poll interval, bounded by WAIT
            }
        })
        .await;
    }
    assert!(
        n1.status().commit < Slot(1_000_000),
        "the stranger's Decide reached node 1"
    );

    // Node 3 joins late and catches up.
    let (n3, log3) = setup.start(2, &rt).await;
    acked.extend(write_phase(&rt, &[&n1, &n2, &n3], 3).await);
    let all = [&n1, &n2, &n3];
    let l = leader(&rt, &all).await;
    let barrier = all[l].read_barrier().await.unwrap();
    within(&rt, "node 3 caught up", async {
        for node in all {
            node.wait_for(WAIT, |s| s.applied >= barrier).await.unwrap();
        }
    })
    .await;
    let logs = [&log1, &log2, &log3];
    let reference = logs[l].0.lock().unwrap().clone();
    for (i, log) in logs.iter().enumerate() {
        let log = log.0.lock().unwrap();
        assert_eq!(
            log[..reference.len().min(log.len())],
            reference[..reference.len().min(log.len())],
            "node {} applied another order",
            i + 1
        );
    }
    let caught_up = log3.0.lock().unwrap().clone();
    for command in &acked {
        assert!(
            caught_up.contains(command),
            "node 3 lacks {command:?}, acknowledged before or after it started"
        );
    }

    // Kill the leader; the survivors elect another and keep every acknowledged write.
    all[l].shutdown().await;
    let survivors: Vec<&NodeHandle> = all
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != l)
        .map(|(_, n)| *n)
        .collect();
    acked.extend(write_phase(&rt, &survivors, 4).await);
    let s = leader(&rt, &survivors).await;
    survivors[s].read_barrier().await.unwrap();
    let new_log = logs[all
        .iter()
        .position(|n| n.id() == survivors[s].id())
        .unwrap()];
    let applied = new_log.0.lock().unwrap().clone();
    for command in &acked {
        assert!(
            applied.contains(command),
            "acknowledged write lost: {command:?}"
        );
    }
    for node in survivors {
        node.shutdown().await;
    }
    match stranger {
        Stranger::Quic(t) => t.close().await,
        Stranger::Tcp(t) => t.close().await,
    }
}

fn on_tokio(net: Net) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rt: Arc<dyn Runtime> = Arc::new(paxos_node::runtime::TokioRuntime::new(
        tokio.handle().clone(),
    ));
    tokio.block_on(scenario(net, rt));
}

fn on_smol(net: Net) {
    let rt: Arc<dyn Runtime> = Arc::new(paxos_node::runtime::AsyncIoRuntime::new());
    smol::block_on(scenario(net, rt));
}

#[test]
fn quic_on_tokio() {
    on_tokio(Net::Quic);
}

#[test]
fn quic_on_smol() {
    on_smol(Net::Quic);
}

#[test]
fn tcp_tls_on_tokio() {
    on_tokio(Net::TcpTls);
}

#[test]
fn tcp_tls_on_smol() {
    on_smol(Net::TcpTls);
}
