//! The simulation engine: replicas over `paxos-core`, a faulty network, crashes and
//! restarts, a client workload, all driven by one seed in simulated time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
    waiting_persist: Option<Ready>,
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
                    id,
                    replica: None,
                    storage: Box::new(disk.clone()),
                    disk,
                    waiting_persist: None,
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
                let Some(ready) = self.nodes[node].waiting_persist.take() else {
                    return Ok(());
                };
                self.finish_ready(node, ready)?;
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
        }
    }

    fn start_node(&mut self, n: usize) -> Result<(), String> {
        let cfg = self.config_for(n);
        let node = &mut self.nodes[n];
        node.storage = match self.cfg.bug {
            Some(Bug::ForgetPromiseOnRestart) => Box::new(ForgetfulStorage::new(node.disk.clone())),
            _ => Box::new(node.disk.clone()),
        };
        let recovered = block_on(node.storage.load()).map_err(|e| format!("load failed: {e}"))?;
        node.kv = Kv::default();
        node.paused_until = 0;
        let now = self.local_now(n);
        let replica = Replica::new(cfg, recovered, now).map_err(|e| e.to_string())?;
        self.nodes[n].replica = Some(replica);
        self.drive(n)
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.replica.is_none() {
            return;
        }
        if let Some(r) = node.replica.take() {
            node.past_metrics = add_metrics(node.past_metrics, r.metrics());
        }
        node.waiting_persist = None; // not yet durable: lost
        node.incarnation += 1;
        node.timer_generation += 1;
        self.report.crashes += 1;
        let clients: Vec<usize> = (0..self.clients.len())
            .filter(|&c| {
                self.clients[c]
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.node == n)
            })
            .collect();
        for c in clients {
            self.client_unknown(c);
        }
    }

    /// Takes Readies from replica `n` until it has none or one waits on a persist.
    fn drive(&mut self, n: usize) -> Result<(), String> {
        for _ in 0..1000 {
            if self.nodes[n].waiting_persist.is_some() {
                break;
            }
            let Some(r) = self.nodes[n].replica.as_mut() else {
                return Ok(());
            };
            let Some(ready) = r.poll_ready() else { break };
            if ready.persist.is_empty() {
                self.finish_ready(n, ready)?;
            } else {
                self.nodes[n].waiting_persist = Some(ready);
                let latency = if chance(&mut self.rng, 0.02) {
                    between(&mut self.rng, MS, 20 * MS)
                } else {
                    between(&mut self.rng, 50_000, 400_000)
                };
                let incarnation = self.nodes[n].incarnation;
                self.schedule(
                    latency,
                    Event::PersistDone {
                        node: n,
                        incarnation,
                    },
                );
            }
        }
        self.schedule_timer(n);
        Ok(())
    }

    fn schedule_timer(&mut self, n: usize) {
        let Some(r) = self.nodes[n].replica.as_ref() else {
            return;
        };
        let Some(at) = r.poll_timeout() else { return };
        let delay = self.global_time(n, at).saturating_sub(self.now);
        self.nodes[n].timer_generation += 1;
        let generation = self.nodes[n].timer_generation;
        self.schedule(
            delay,
            Event::Timer {
                node: n,
                generation,
            },
        );
    }

    /// Persist (durable now), then send, then apply, then advance.
    fn finish_ready(&mut self, n: usize, ready: Ready) -> Result<(), String> {
        if !ready.persist.is_empty() {
            block_on(self.nodes[n].storage.persist(&ready.persist))
                .map_err(|e| format!("persist failed: {e}"))?;
            for e in &ready.persist.entries {
                self.chosen.record(n, e)?;
            }
            // Fault point: crash soon after making a promise durable, the moment where a
            // replica that loses state does the most harm.
            let promised = ready.persist.hard_state.is_some() && ready.persist.entries.is_empty();
            if promised && chance(&mut self.rng, 0.05) {
                let d = between(&mut self.rng, 0, 3 * MS);
                self.schedule(d, Event::Crash { node: n });
            }
        }
        for envelope in ready.messages {
            self.promises.on_send(n, &envelope.message)?;
            self.transmit(n, envelope.to, envelope.message);
        }
        self.apply(n, &ready.committed)?;
        for id in ready.reads {
            if let Some(client) = self.waiting_reads.remove(&(n, id)) {
                let key = self.clients[client]
                    .pending
                    .as_ref()
                    .map_or(0, |p| p.op.key());
                let output = self.nodes[n].kv.apply(KvOp::Read { key });
                self.client_done(client, output);
            }
        }
        for id in ready.aborted_reads {
            if let Some(client) = self.waiting_reads.remove(&(n, id)) {
                // Leadership changed: the read was refused, nothing was read.
                self.report.reads_aborted += 1;
                self.client_refused(client);
            }
        }
        if let Some(r) = self.nodes[n].replica.as_mut() {
            r.advance(ready.id);
        }
        Ok(())
    }

    fn transmit(&mut self, from: usize, to: NodeId, mut message: Message) {
        self.report.messages += 1;
        if let Message::Prepare(_) = message {
            self.report.prepares += 1;
        }
        let Some(to) = self.nodes.iter().position(|n| n.id == to) else {
            return;
        };
        if self.partition.blocks(from, to) {
            return;
        }
        if self.cfg.bug == Some(Bug::StripPromiseValues) {
            if let Message::Promise(p) = &mut message {
                p.accepted.clear();
                p.next = None;
            }
        }
        let mut copies = fate(&self.net, &mut self.rng);
        let Some(last) = copies.pop() else { return };
        for delay in copies {
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    from,
                    message: message.clone(),
                },
            );
        }
        self.schedule(last, Event::Deliver { to, from, message });
    }

    fn apply(&mut self, n: usize, committed: &[Committed]) -> Result<(), String> {
        for c in committed {
            self.proposals.check(&c.value)?;
            self.applied.record(c, &self.chosen)?;
            for cmd in c.value.commands() {
                let op = KvOp::decode(&cmd.payload).ok_or("undecodable command applied")?;
                let output = self.nodes[n].kv.apply(op);
                if cmd.id.origin == self.nodes[n].id {
                    if let Some(client) = self.waiting.remove(&cmd.id) {
                        self.client_done(client, output);
                    }
                }
            }
        }
        Ok(())
    }

    fn client_next(&mut self, client: usize) -> Result<(), String> {
        if self.clients[client].pending.is_some() {
            return Ok(());
        }
        let probe = self.clients[client].probe;
        if !probe && (self.phase != Phase::Workload || self.issued >= self.cfg.ops) {
            return Ok(());
        }
        let op = if probe {
            KvOp::Write {
                key: PROBE_KEY,
                value: 1,
            }
        } else {
            self.random_op(client)
        };
        let node = self.clients[client].node;
        let now = self.local_now(node);
        let payload = op.encode();
        let direct_read = self.cfg.direct_reads
            && matches!(op, KvOp::Read { .. })
            && self.rng.next_u64() % 4 != 0;
        let result = match self.nodes[node].replica.as_mut() {
            Some(r) if direct_read => r.read(now).map(Err).map_err(|e| e.to_string()),
            Some(r) => r
                .propose(now, payload.clone())
                .map(Ok)
                .map_err(|e| e.to_string()),
            None => Err("node down".into()),
        };
        match result {
            Ok(id) => {
                match id {
                    Ok(pid) => {
                        self.proposals.record(pid, payload);
                        self.waiting.insert(pid, client);
                    }
                    Err(rid) => {
                        self.waiting_reads.insert((node, rid), client);
                    }
                }
                let c = &mut self.clients[client];
                c.ops += 1;
                let seq = c.ops;
                c.pending = Some(PendingOp {
                    op,
                    id,
                    node,
                    call: self.now,
                    seq,
                });
                if !probe {
                    self.issued += 1;
                }
                self.schedule(OP_TIMEOUT_NS, Event::ClientTimeout { client, op: seq });
                self.drive(node)
            }
            Err(_) => {
                // Definitely not proposed: try another replica shortly.
                self.retry_elsewhere(client);
                Ok(())
            }
        }
    }

    fn retry_elsewhere(&mut self, client: usize) {
        self.report.refused += 1;
        self.clients[client].node = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
        let d = between(&mut self.rng, MS, 10 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    /// The pending operation definitely had no effect: forget it and go on.
    fn client_refused(&mut self, client: usize) {
        if self.clients[client].pending.take().is_some() {
            self.retry_elsewhere(client);
        }
    }

    fn random_op(&mut self, client: usize) -> KvOp {
        let key = self.rng.next_u64() % self.cfg.keys;
        let roll = self.rng.next_u64() % 100;
        let fresh = (client as u64 + 1) * 1_000_000 + self.clients[client].ops + 1;
        if roll < 40 {
            KvOp::Write { key, value: fresh }
        } else if roll < 75 {
            KvOp::Read { key }
        } else {
            let expected = self.last_values.get(&key).copied().unwrap_or(0);
            KvOp::Cas {
                key,
                expected,
                new: fresh,
            }
        }
    }

    fn client_done(&mut self, client: usize, output: KvOutput) {
        let Some(p) = self.clients[client].pending.take() else {
            return;
        };
        match (p.op, output) {
            (KvOp::Write { key, value }, _)
            | (
                KvOp::Cas {
                    key, new: value, ..
                },
                KvOutput::Cas(true),
            ) => {
                self.last_values.insert(key, value);
            }
            (KvOp::Read { key }, KvOutput::Read(Some(v))) => {
                self.last_values.insert(key, v);
            }
            _ => {}
        }
        self.report.ok += 1;
        if matches!(p.op, KvOp::Read { .. }) {
            self.report.reads_ok += 1;
        } else {
            self.report.writes_ok += 1;
        }
        if self.clients[client].probe {
            self.probe_done = true;
            self.clients[client].probe = false;
        }
        self.record(client, &p, Some(output));
        let d = between(&mut self.rng, 0, 2 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    fn client_unknown(&mut self, client: usize) {
        let Some(p) = self.clients[client].pending.take() else {
            return;
        };
        match p.id {
            Ok(pid) => {
                self.waiting.remove(&pid);
            }
            Err(rid) => {
                self.waiting_reads.remove(&(p.node, rid));
            }
        }
        self.report.unknown += 1;
        self.record(client, &p, None);
        self.clients[client].node = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
        let d = between(&mut self.rng, 0, 2 * MS);
        self.schedule(d, Event::ClientNext { client });
    }

    fn record(&mut self, client: usize, p: &PendingOp, output: Option<KvOutput>) {
        let input = match p.op {
            KvOp::Read { .. } => Input::Read,
            KvOp::Write { value, .. } => Input::Write(value),
            KvOp::Cas { expected, new, .. } => Input::Cas { expected, new },
        };
        let output = output.map(|o| match o {
            KvOutput::Read(v) => Output::Read(v),
            KvOutput::Written => Output::Write,
            KvOutput::Cas(hit) => Output::Cas(hit),
        });
        let ret = output.as_ref().map(|_| self.now);
        self.history.push(Operation {
            client: client as u64,
            key: p.op.key(),
            input,
            output,
            call: p.call,
            ret,
        });
    }

    fn inject_fault(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let roll = self.rng.next_u64() % 100;
        let down = self.nodes.iter().filter(|x| x.replica.is_none()).count();
        if roll < 25 {
            let victim = (self.rng.next_u64() % n as u64) as usize;
            if down < n / 2 || chance(&mut self.rng, 0.1) {
                self.crash(victim);
                // A third of restarts are quick, like a supervisor restarting a process.
                let d = if chance(&mut self.rng, 0.33) {
                    between(&mut self.rng, MS / 2, 5 * MS)
                } else {
                    between(&mut self.rng, 5 * MS, 150 * MS)
                };
                self.schedule(d, Event::Restart { node: victim });
            }
        } else if roll < 55 && (self.partition.cut.is_empty() || chance(&mut self.rng, 0.25)) {
            // A partition mostly runs its course (up to 200 ms) before another replaces it,
            // long enough to isolate a leader past the election timeout.
            let node = (self.rng.next_u64() % n as u64) as usize;
            let other = (node + 1 + (self.rng.next_u64() % (n as u64 - 1)) as usize) % n;
            self.partition = match self.rng.next_u64() % 5 {
                0 => Partition::isolate(n, node),
                1 => Partition::split(n, &mut self.rng),
                2 => Partition::random_links(n, &mut self.rng),
                3 => Partition::bridge(node, other),
                _ => Partition::one_way(n, node, chance(&mut self.rng, 0.5)),
            };
            self.report.partitions += 1;
            self.partition_generation += 1;
            let generation = self.partition_generation;
            let d = between(&mut self.rng, 10 * MS, 200 * MS);
            self.schedule(d, Event::HealPartition { generation });
        } else if roll < 62 {
            let node = (self.rng.next_u64() % n as u64) as usize;
            self.schedule(0, Event::Pause { node });
        } else if roll < 80 {
            self.net = NetConfig {
                drop: between(&mut self.rng, 0, 20) as f64 / 100.0,
                duplicate: between(&mut self.rng, 0, 10) as f64 / 100.0,
                delay_min_ns: 50_000,
                delay_max_ns: between(&mut self.rng, 500_000, 5 * MS),
                slow: between(&mut self.rng, 0, 5) as f64 / 100.0,
            };
        } else if roll < 85 {
            self.net = NetConfig::quiet();
        }
        Ok(())
    }

    fn check_phase(&mut self) -> Result<(), String> {
        match self.phase {
            Phase::Workload => {
                let idle = self.clients.iter().all(|c| c.pending.is_none());
                if self.issued >= self.cfg.ops && idle {
                    self.heal()?;
                }
            }
            Phase::Healing { since } => {
                let views: Vec<ReplicaView> = self
                    .nodes
                    .iter()
                    .map(|n| match n.replica.as_ref() {
                        Some(r) => {
                            let s = r.status();
                            ReplicaView {
                                up: true,
                                commit: s.commit,
                                applied: s.applied,
                                idle: n.waiting_persist.is_none(),
                                role: Some(s.role),
                                promised: s.promised,
                            }
                        }
                        None => ReplicaView {
                            up: false,
                            commit: Default::default(),
                            applied: Default::default(),
                            idle: false,
                            role: None,
                            promised: Default::default(),
                        },
                    })
                    .collect();
                if converged(self.probe_done, self.chosen.max_chosen(), &views) {
                    self.report.heal_ms = (self.now - since) / MS;
                    self.phase = Phase::Done;
                } else if self.now > since + HEAL_BOUND_NS {
                    return Err(format!(
                        "liveness: not converged {} ms after faults healed (probe done: {}, views: {views:?})",
                        HEAL_BOUND_NS / MS,
                        self.probe_done
                    ));
                }
            }
            Phase::Done => {}
        }
        Ok(())
    }

    /// Ends the faults: every link heals, the network turns quiet, crashed replicas
    /// restart, and a probe write is proposed.
    fn heal(&mut self) -> Result<(), String> {
        self.phase = Phase::Healing { since: self.now };
        self.partition = Partition::default();
        self.partition_generation += 1;
        self.net = NetConfig::quiet();
        for n in 0..self.nodes.len() {
            if self.nodes[n].replica.is_none() {
                self.start_node(n)?;
            }
        }
        self.clients[0].probe = true;
        self.schedule(0, Event::ClientNext { client: 0 });
        Ok(())
    }

    fn check_leases(&self) -> Result<(), String> {
        if !self.cfg.leases {
            return Ok(());
        }
        let views: Vec<LeaseView> = (0..self.nodes.len())
            .filter_map(|n| {
                let r = self.nodes[n].replica.as_ref()?;
                Some(LeaseView {
                    node: n,
                    local_now: self.local_now(n),
                    until: r.status().lease_until,
                })
            })
            .collect();
        at_most_one_holder(&views)
    }

    fn check_history(&mut self) -> Result<(), String> {
        let mut total = Metrics::default();
        for node in &self.nodes {
            total = add_metrics(total, node.past_metrics);
            if let Some(r) = node.replica.as_ref() {
                total = add_metrics(total, r.metrics());
            }
        }
        self.report.lease_reads = total.lease_reads;
        self.report.read_index_reads = total.read_index_reads;
        self.report.read_rounds = total.read_rounds;
        self.report.elections = total.elections_started;
        let started = std::time::Instant::now();
        let verdict =
            paxos_lincheck::check(&self.history, &paxos_lincheck::CheckOptions::default());
        self.report.check_us = started.elapsed().as_micros() as u64;
        self.report.leaders = self
            .nodes
            .iter()
            .filter(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.status().role == Role::Leader)
            })
            .count();
        match verdict {
            paxos_lincheck::Verdict::Linearizable => Ok(()),
            paxos_lincheck::Verdict::NotLinearizable { key, detail } => {
                Err(format!("history not linearizable on key {key}: {detail}"))
            }
            paxos_lincheck::Verdict::Unknown { key } => {
                self.report.lincheck_unknown = true;
                let _ = key;
                Ok(())
            }
        }
    }
}

fn add_metrics(a: Metrics, b: Metrics) -> Metrics {
    a + b
}
