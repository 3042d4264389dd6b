//! The simulation engine: replicas over `paxos-core`, a faulty network, crashes and
//! restarts, a client workload, all driven by one seed in simulated time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use futures::executor::block_on;
use paxos_core::{
    Committed, Config, Instant, Message, Metrics, NodeId, ProposalId, ReadId, Ready, Replica, Role,
    Storage,
};
use paxos_lincheck::{Input, Operation, Output};
use paxos_storage::MemoryStorage;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;

use crate::bugs::{Bug, ForgetfulStorage};
use crate::invariants::applied::AppliedLog;
use crate::invariants::chosen::ChosenTracker;
use crate::invariants::lease::{LeaseView, at_most_one_holder};
use crate::invariants::liveness::{ReplicaView, converged};
use crate::invariants::promises::PromiseLedger;
use crate::invariants::proposed::Proposals;
use crate::kv::{Kv, KvOp, KvOutput};
use crate::network::{NetConfig, Partition, fate};
use crate::rng::{between, chance, rng_for};
use crate::{Report, SimConfig};

mod checks;
mod compaction;
mod faults;
mod lifecycle;
mod workload;

use self::checks::add_metrics;

const MS: u64 = 1_000_000;
/// How long a client waits for an answer before recording the outcome as unknown.
const OP_TIMEOUT_NS: u64 = 400 * MS;
/// How long the cluster has to converge once faults heal.
const HEAL_BOUND_NS: u64 = 5_000 * MS;
/// A run that processes more events than this is stuck in a loop.
const MAX_EVENTS: u64 = 5_000_000;
/// The probe write uses a key of its own.
const PROBE_KEY: u64 = u64::MAX;

enum Event {
    Deliver {
        to: usize,
        from: usize,
        message: Message,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    PersistDone {
        node: usize,
        incarnation: u64,
    },
    ClientNext {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        op: u64,
    },
    Fault,
    Crash {
        node: usize,
    },
    Pause {
        node: usize,
    },
    Restart {
        node: usize,
    },
    HealPartition {
        generation: u64,
    },
    /// A snapshot transfer from `from` to `to` ends (see `compaction.rs`).
    SnapshotArrive {
        to: usize,
        from: usize,
        to_incarnation: u64,
        from_incarnation: u64,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct SimNode {
    id: NodeId,
    replica: Option<Replica>,
    storage: Box<dyn Storage>,
    disk: MemoryStorage,
    /// Readys handed out and not yet advanced, oldest first: at most the replica's
    /// `max_outstanding_readys` (1 to 3, drawn per incarnation), persisted in order.
    waiting_persist: VecDeque<Ready>,
    /// The last `PersistDone` scheduled for `waiting_persist`: a later persist never ends
    /// before it.
    persist_done_at: u64,
    /// The Readys in `waiting_persist` were applied and answered when they were polled,
    /// and what is chosen while their persists run is too (`Replica::poll_chosen`). Drawn
    /// whenever a Ready starts with none waiting: the other half of the time everything
    /// waits for its persist, as a driver that applies late does, and answers stay
    /// outstanding longer.
    apply_early: bool,
    incarnation: u64,
    timer_generation: u64,
    kv: Kv,
    /// This node's clock: `local = offset + t + t * rate_ppm / 10^6` at simulated time `t`.
    clock_offset: u64,
    clock_rate_ppm: i64,
    /// Paused (like SIGSTOP) until this simulated time: it handles nothing, its clock runs.
    paused_until: u64,
    /// Counters of earlier incarnations.
    past_metrics: Metrics,
    /// A snapshot transfer to this node is under way.
    fetching: bool,
}

struct PendingOp {
    op: KvOp,
    /// The proposal carrying the op, or the read id for a read served by `Replica::read`.
    id: Result<ProposalId, ReadId>,
    node: usize,
    call: u64,
    seq: u64,
}

struct Client {
    node: usize,
    pending: Option<PendingOp>,
    ops: u64,
    probe: bool,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Workload,
    Healing { since: u64 },
    Done,
}

pub(crate) struct World {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    net: NetConfig,
    partition: Partition,
    partition_generation: u64,
    rng: ChaCha8Rng,
    clients: Vec<Client>,
    waiting: HashMap<ProposalId, usize>,
    waiting_reads: HashMap<(usize, ReadId), usize>,
    history: Vec<Operation>,
    last_values: HashMap<u64, u64>,
    issued: usize,
    phase: Phase,
    probe_done: bool,
    chosen: ChosenTracker,
    proposals: Proposals,
    promises: PromiseLedger,
    applied: AppliedLog,
    /// The first snapshot data taken at each `upto`: every later one must equal it.
    snapshots: HashMap<paxos_core::Slot, Vec<u8>>,
    report: Report,
}

impl World {
    pub(crate) fn new(cfg: SimConfig) -> Self {
        let members: Vec<NodeId> = (1..=cfg.nodes as u64).map(NodeId).collect();
        let quorum = cfg.nodes / 2 + 1;
        let nodes_n = cfg.nodes;
        let mut clock_rng = rng_for(cfg.seed, 2);
        let drift = i64::from(cfg.actual_drift_ppm);
        let nodes = members
            .iter()
            .map(|&id| {
                let disk = MemoryStorage::new();
                // Within the bound, rates spread uniformly; beyond it (a test breaking the
                // bound on purpose), every clock sits at one extreme or the other.
                let clock_rate_ppm = if drift == 0 {
                    0
                } else if cfg.actual_drift_ppm > cfg.drift_ppm {
                    if clock_rng.next_u64() % 2 == 0 {
                        drift
                    } else {
                        -drift
                    }
                } else {
                    (clock_rng.next_u64() % (2 * drift as u64 + 1)) as i64 - drift
                };
                SimNode {
                    clock_offset: clock_rng.next_u64() % (1_000 * MS),
                    clock_rate_ppm,
                    paused_until: 0,
                    past_metrics: Metrics::default(),
                    fetching: false,
                    id,
                    replica: None,
                    storage: Box::new(disk.clone()),
                    disk,
                    waiting_persist: VecDeque::new(),
                    persist_done_at: 0,
                    apply_early: false,
                    incarnation: 0,
                    timer_generation: 0,
                    kv: Kv::default(),
                }
            })
            .collect();
        let clients = (0..cfg.clients)
            .map(|c| Client {
                node: c % cfg.nodes,
                pending: None,
                ops: 0,
                probe: false,
            })
            .collect();
        let report = Report {
            seed: cfg.seed,
            nodes: cfg.nodes,
            ..Report::default()
        };
        Self {
            rng: rng_for(cfg.seed, 1),
            cfg,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            net: NetConfig::quiet(),
            partition: Partition::default(),
            partition_generation: 0,
            clients,
            waiting: HashMap::new(),
            waiting_reads: HashMap::new(),
            history: Vec::new(),
            last_values: HashMap::new(),
            issued: 0,
            phase: Phase::Workload,
            probe_done: false,
            chosen: ChosenTracker::new(quorum),
            proposals: Proposals::default(),
            promises: PromiseLedger::new(nodes_n),
            applied: AppliedLog::default(),
            snapshots: HashMap::new(),
            report,
        }
    }

    fn config_for(&self, node: usize) -> Config {
        let members: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let mut cfg = Config::new(self.nodes[node].id, members);
        cfg.heartbeat_interval = Duration::from_millis(10);
        cfg.election_timeout_min = Duration::from_millis(50);
        cfg.election_timeout_max = Duration::from_millis(100);
        cfg.resend_interval = Duration::from_millis(20);
        cfg.max_inflight_slots = 32;
        cfg.max_batch_commands = 8;
        cfg.max_slots_per_message = 8;
        cfg.max_pending_proposals = 64;
        // Pipelined Readys on some incarnations, one at a time on the others.
        let draw = self.cfg.seed
            ^ (node as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ self.nodes[node]
                .incarnation
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        cfg.max_outstanding_readys = 1 + (draw.rotate_left(17) % 3) as usize;
        cfg.lease_duration = self.cfg.leases.then_some(Duration::from_millis(25));
        cfg.max_clock_drift_ppm = self.cfg.drift_ppm;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.cfg.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(node as u64).to_le_bytes());
        seed[16..24].copy_from_slice(&self.nodes[node].incarnation.to_le_bytes());
        cfg.rng_seed = Some(seed);
        cfg
    }

    fn local_now(&self, node: usize) -> Instant {
        let n = &self.nodes[node];
        let skew = (i128::from(self.now) * i128::from(n.clock_rate_ppm) / 1_000_000) as i64;
        Instant::from_nanos(n.clock_offset + self.now.saturating_add_signed(skew))
    }

    /// The simulated time at which `node`'s clock shows `local` (rounded up).
    fn global_time(&self, node: usize, local: Instant) -> u64 {
        let n = &self.nodes[node];
        let since = i128::from(local.as_nanos().saturating_sub(n.clock_offset));
        let rate = 1_000_000 + i128::from(n.clock_rate_ppm);
        ((since * 1_000_000 + rate - 1) / rate) as u64
    }

    /// If `node` is paused, puts `event` back until it resumes.
    fn deferred(&mut self, node: usize, event: Event) -> Option<Event> {
        let until = self.nodes[node].paused_until;
        if self.now < until {
            self.schedule(until - self.now, event);
            return None;
        }
        Some(event)
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            event,
        }));
    }

    /// Runs to completion; `Err` is the first violation found.
    pub(crate) fn run(mut self) -> Report {
        let result = self.run_inner();
        self.report.sim_time_ms = self.now / MS;
        self.report.issued = self.issued;
        if let Err(v) = result {
            self.report.violation = Some(v);
        }
        self.report
    }

    fn run_inner(&mut self) -> Result<(), String> {
        for n in 0..self.nodes.len() {
            self.start_node(n)?;
        }
        for c in 0..self.clients.len() {
            let d = between(&mut self.rng, 0, 5 * MS);
            self.schedule(d, Event::ClientNext { client: c });
        }
        if self.cfg.faults {
            self.schedule(20 * MS, Event::Fault);
        }
        let max_time = self.cfg.max_sim_time_ms * MS;
        while self.phase != Phase::Done {
            let Some(Reverse(next)) = self.queue.pop() else {
                return Err("event queue ran dry".into());
            };
            assert!(next.at >= self.now);
            self.now = next.at;
            self.report.events += 1;
            self.step(next.event)?;
            self.check_leases()?;
            if self.report.events > MAX_EVENTS {
                return Err(format!(
                    "runaway: over {MAX_EVENTS} events by {} ms of simulated time",
                    self.now / MS
                ));
            }
            self.check_phase()?;
            if self.now > max_time {
                return Err(format!(
                    "workload did not finish within {} ms of simulated time",
                    max_time / MS
                ));
            }
        }
        self.check_history()
    }

    fn step(&mut self, event: Event) -> Result<(), String> {
        let target = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. } | Event::PersistDone { node, .. } => Some(*node),
            Event::ClientNext { client } => Some(self.clients[*client].node),
            _ => None,
        };
        let event = match target {
            Some(node) => match self.deferred(node, event) {
                Some(event) => event,
                None => return Ok(()),
            },
            None => event,
        };
        match event {
            Event::Deliver {
                to,
                from,
                mut message,
            } => {
                let now = self.local_now(to);
                if self.cfg.bug == Some(Bug::LeaseFromReply) {
                    if let Message::Accepted(a) = &mut message {
                        a.stamp = now;
                    }
                }
                let from_id = self.nodes[from].id;
                let Some(r) = self.nodes[to].replica.as_mut() else {
                    return Ok(());
                };
                r.handle_message(now, from_id, message);
                self.drive(to)
            }
            Event::Timer { node, generation } => {
                if self.nodes[node].timer_generation != generation {
                    return Ok(());
                }
                let now = self.local_now(node);
                let Some(r) = self.nodes[node].replica.as_mut() else {
                    return Ok(());
                };
                r.handle_timeout(now);
                self.drive(node)
            }
            Event::PersistDone { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return Ok(());
                }
                let Some(ready) = self.nodes[node].waiting_persist.pop_front() else {
                    return Ok(());
                };
                self.finish_ready(node, ready)?;
                // Readys with nothing to persist waited only for those before them.
                while self.nodes[node]
                    .waiting_persist
                    .front()
                    .is_some_and(|r| r.persist.is_empty())
                {
                    if let Some(ready) = self.nodes[node].waiting_persist.pop_front() {
                        self.finish_ready(node, ready)?;
                    }
                }
                self.drive(node)
            }
            Event::ClientNext { client } => self.client_next(client),
            Event::ClientTimeout { client, op } => {
                let timed_out = self.clients[client]
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.seq == op);
                if timed_out {
                    self.client_unknown(client);
                }
                Ok(())
            }
            Event::Fault => {
                if self.phase == Phase::Workload {
                    self.inject_fault()?;
                    let d = between(&mut self.rng, 5 * MS, 40 * MS);
                    self.schedule(d, Event::Fault);
                }
                Ok(())
            }
            Event::Crash { node } => {
                if self.phase == Phase::Workload {
                    self.crash(node);
                    let d = between(&mut self.rng, MS / 2, 5 * MS);
                    self.schedule(d, Event::Restart { node });
                }
                Ok(())
            }
            Event::Pause { node } => {
                if self.nodes[node].replica.is_some() && self.nodes[node].paused_until <= self.now {
                    self.report.pauses += 1;
                    self.nodes[node].paused_until =
                        self.now + between(&mut self.rng, 5 * MS, 80 * MS);
                }
                Ok(())
            }
            Event::Restart { node } => {
                if self.nodes[node].replica.is_none() {
                    self.start_node(node)?;
                }
                Ok(())
            }
            Event::HealPartition { generation } => {
                if generation == self.partition_generation {
                    self.partition = Partition::default();
                }
                Ok(())
            }
            Event::SnapshotArrive {
                to,
                from,
                to_incarnation,
                from_incarnation,
            } => self.snapshot_arrive(to, from, to_incarnation, from_incarnation),
        }
    }
}
