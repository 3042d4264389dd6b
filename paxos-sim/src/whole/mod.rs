//! Whole-node mode: the unchanged `paxos-node` driver, its client API (`NodeHandle`) and
//! the binary's KV state machine, run on a simulated runtime, network and disk.
//!
//! * `executor`: a single-threaded executor with simulated time and seeded scheduling
//!   of ready tasks; one seed is one schedule.
//! * `runtime`: the one runtime seam (`paxos_runtime::Runtime`) over it, a clock per
//!   node (drift within the bound; suspensions).
//! * `net`: the network and each node's `Transport`: TCP's frame limit and bounded
//!   queues, plus loss, duplication, delay and partitions.
//! * `disk`: a disk that takes time to sync and loses (or keeps whole) the batch in
//!   flight at a crash, under `FaultyStorage`'s seeded fsync errors.
//! * `cluster`: node lifecycle (start, crash, wipe, suspend) and the agreement check.
//! * `workload`: clients (register operations with values up to the largest accepted,
//!   counters for exactly-once, pipelining, retries with the same request id, reads on
//!   followers, read-only and write-only phases) and the history.
//! * `faults`: storms of faults, and the calms in between.
//!
//! A run alternates storms and calms. In every calm, once every temporary fault is
//! undone and a majority has had a bounded time to settle, a write and a read must
//! complete within a bound (**liveness**). At the end every live node must converge, every
//! node's applied log must agree slot by slot (checked as they apply) and hold each
//! proposal at most once (**at most once**, per incarnation), no message may have exceeded
//! the frame limit and no Accept the leader's pipelining window (**limits**), each counter
//! must have counted each request once (**exactly once**), and the history must be
//! linearizable (an `Unknown` verdict fails the seed).

pub(crate) mod cluster;
pub(crate) mod disk;
pub(crate) mod executor;
pub(crate) mod faults;
pub(crate) mod net;
pub(crate) mod runtime;
pub(crate) mod workload;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use paxos_core::NodeId;
use paxos_kv::kv::{KvCommand, KvQuery, KvRequest, RequestId};
use paxos_lincheck::{CheckOptions, Verdict, check};

pub use self::faults::FaultStats;
pub use self::net::NetStats;
pub use self::workload::Stats as ClientStats;

use self::cluster::{Cluster, Timing};
use self::executor::{Executor, Owner};
use self::faults::Faults;
use self::net::{NetConfig, SimNet};
use self::runtime::NodeClock;
use self::workload::{Phase, Shared};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const MS: u64 = 1_000_000;

/// `SIM_TRACE=1` prints a trace of a run to stderr (node starts and crashes, probes,
/// counter requests, time): the first thing to look at when replaying a failing seed.
fn trace_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SIM_TRACE").is_some())
}

/// A bug to inject in whole-node mode, from outside the production code, for the
/// checkers' teeth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeBug {
    /// The core's byte bound switched off (`max_message_bytes` far above the frame limit),
    /// over a transport that drops frames above the limit but reports a huge one (so the
    /// node's build-time check passes): batching by slots only.
    NoByteBound,
    /// A store that acknowledges a batch before it is synced.
    AckBeforeSync,
    /// A node back with an empty disk is allowed to vote.
    EmptyDiskVotes,
    /// A suspended node's clock stops (a runtime that breaks the clock contract).
    ClockStopsWhenSuspended,
    /// A program that reads its own state at once whenever the node's status says it
    /// leads, instead of asking `NodeHandle::try_read_barrier` (which holds the lease).
    ReadAtOnceWhileLeading,
}

impl NodeBug {
    /// Parses a `--bug` name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "no-byte-bound" => Self::NoByteBound,
            "ack-before-sync" => Self::AckBeforeSync,
            "empty-disk-votes" => Self::EmptyDiskVotes,
            "clock-stops-when-suspended" => Self::ClockStopsWhenSuspended,
            "read-at-once-while-leading" => Self::ReadAtOnceWhileLeading,
            _ => return None,
        })
    }

    /// The `--bug` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoByteBound => "no-byte-bound",
            Self::AckBeforeSync => "ack-before-sync",
            Self::EmptyDiskVotes => "empty-disk-votes",
            Self::ClockStopsWhenSuspended => "clock-stops-when-suspended",
            Self::ReadAtOnceWhileLeading => "read-at-once-while-leading",
        }
    }
}

/// One whole-node run's parameters. Everything else derives from `seed`.
#[derive(Clone, Debug)]
pub struct NodeSimConfig {
    /// The seed.
    pub seed: u64,
    /// Replicas: 3, 5 or 7.
    pub nodes: usize,
    /// Clients issuing one operation at a time.
    pub clients: usize,
    /// Pipelined clients, each with `depth` operations in flight.
    pub pipelined: usize,
    /// Operations in flight per pipelined client.
    pub depth: usize,
    /// Storm/calm episodes.
    pub episodes: usize,
    /// Register keys.
    pub keys: u64,
    /// Faults on (`false`: a quiet run).
    pub faults: bool,
    /// Leader leases on.
    pub leases: bool,
    /// A bug to inject.
    pub bug: Option<NodeBug>,
}

impl NodeSimConfig {
    /// The default run for `seed` on `nodes` replicas.
    pub fn new(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            clients: 3,
            pipelined: 1,
            depth: 4,
            episodes: 3,
            keys: 4,
            faults: true,
            leases: true,
            bug: None,
        }
    }

    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p paxos-sim --release -- --mode node --seed {} --nodes {}",
            self.seed, self.nodes
        );
        let d = Self::new(self.seed, self.nodes);
        if (
            self.clients,
            self.pipelined,
            self.depth,
            self.episodes,
            self.keys,
        ) != (d.clients, d.pipelined, d.depth, d.episodes, d.keys)
        {
            cmd += &format!(
                " --clients {} --pipelined {} --depth {} --episodes {} --keys {}",
                self.clients, self.pipelined, self.depth, self.episodes, self.keys
            );
        }
        if !self.faults {
            cmd += " --no-faults";
        }
        if !self.leases {
            cmd += " --no-leases";
        }
        if let Some(bug) = self.bug {
            cmd += &format!(" --bug {}", bug.name());
        }
        cmd
    }
}

/// What one whole-node run did and found.
#[derive(Clone, Debug, Default)]
pub struct NodeReport {
    /// The seed.
    pub seed: u64,
    /// Replicas.
    pub nodes: usize,
    /// Simulated time, milliseconds.
    pub sim_time_ms: u64,
    /// Task polls.
    pub polls: u64,
    /// What the clients did.
    pub clients: ClientStats,
    /// What the network did.
    pub net: NetStats,
    /// What was injected.
    pub faults: FaultStats,
    /// Nodes stopped by an injected fsync error (and restarted).
    pub storage_stops: u64,
    /// Snapshots taken by the nodes' last incarnations (compaction by policy).
    pub snapshots_taken: u64,
    /// Snapshots the last incarnations began writing in the background.
    pub snapshots_background: u64,
    /// Snapshots the nodes' last incarnations fetched from a peer and installed.
    pub snapshots_installed: u64,
    /// Batches of chosen values the last incarnations applied while a persist of theirs
    /// was under way (`Replica::poll_chosen`).
    pub chosen_during_persist: u64,
    /// Probes (a read, a write and a read, in a calm) that completed.
    pub probes: u64,
    /// Times a node lost the processor right after reading its clock.
    pub preemptions: u64,
    /// The first violation found, if any.
    pub violation: Option<String>,
}

/// Runs one whole-node simulation.
pub fn run(cfg: &NodeSimConfig) -> NodeReport {
    let cfg = cfg.clone();
    let outcome = std::panic::catch_unwind(move || run_inner(&cfg));
    match outcome {
        Ok(report) => report,
        Err(panic) => NodeReport {
            violation: Some(format!(
                "the simulator panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
            ..NodeReport::default()
        },
    }
}

fn timing(cfg: &NodeSimConfig) -> Timing {
    Timing {
        heartbeat: Duration::from_millis(20),
        election_min: Duration::from_millis(100),
        election_max: Duration::from_millis(200),
        resend: Duration::from_millis(40),
        lease: cfg.leases.then_some(Duration::from_millis(50)),
        drift_ppm: 20_000,
        max_batch_bytes: 96 << 10,
        max_message_bytes: if cfg.bug == Some(NodeBug::NoByteBound) {
            64 << 20
        } else {
            256 << 10
        },
        request_timeout: Duration::from_millis(800),
        sync: Duration::from_micros(200),
        // A small window now and then: a new leader's re-proposals must respect it too.
        window: match cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62 {
            0 => 8,
            1 => 16,
            _ => 64,
        },
        // Three seeds in four compact every 8 to 64 applied slots, keeping 0 to 7 behind,
        // so crashes, pauses and partitions leave nodes behind a compaction point and
        // they catch up by snapshot transfer (interrupted by the same faults).
        compaction: match cfg.seed.wrapping_mul(0xd6e8_feb8_6659_fd93) >> 62 {
            0 => None,
            _ => Some((8 + cfg.seed % 57, cfg.seed % 8)),
        },
        // Odd seeds write snapshots in the background (the state machine freezes).
        background_snapshots: cfg.seed % 2 == 1,
    }
}

fn run_inner(cfg: &NodeSimConfig) -> NodeReport {
    let exec = Executor::new(cfg.seed);
    let ids: Vec<NodeId> = (1..=cfg.nodes as u64).map(NodeId).collect();
    let t = timing(cfg);
    let frame = (256 << 10) + 1;
    let net = SimNet::new(
        exec.clone(),
        ids.clone(),
        NetConfig {
            max_frame_bytes: frame,
            reported_frame_bytes: if cfg.bug == Some(NodeBug::NoByteBound) {
                usize::MAX / 2
            } else {
                frame
            },
            max_queue: 1024,
            loss_ppm: 0,
            dup_ppm: 0,
            echo_ppm: 0,
            latency_min: 50_000,
            latency_max: 1_500_000,
            ns_per_byte: 1,
            election_min: t.election_min.as_nanos() as u64,
            window: t.window,
        },
    );
    {
        let net = net.clone();
        exec.on_advance(Arc::new(move || net.deliver_due()));
    }
    {
        let net = net.clone();
        exec.on_next_event(Arc::new(move || net.next_delivery()));
    }
    if cfg.faults {
        // One clock read in 2,000 by a node loses the processor mid-poll (up to 2 s).
        exec.set_preemption(500);
    }
    let clocks = (0..cfg.nodes)
        .map(|_| {
            let drift = i64::from(t.drift_ppm);
            let rate = (exec.random() % (2 * drift as u64 + 1)) as i64 - drift;
            NodeClock::new(exec.random() % (1 << 40), rate)
        })
        .collect();
    let fsync_ppm = if cfg.faults { 2_000 } else { 0 };
    let cluster = Cluster::new(
        exec.clone(),
        net.clone(),
        ids,
        clocks,
        cfg.seed,
        t,
        cfg.bug,
        fsync_ppm,
    );
    let rt = cluster.world_runtime();
    // The largest SET value: the node's largest command less the key and the overhead.
    let max_value = t.max_batch_bytes - 1 - 50 - 4;
    let cluster = Arc::new(Mutex::new(cluster));
    let shared = Arc::new(Shared::new(
        cluster.clone(),
        exec.clone(),
        rt,
        cfg.keys,
        max_value,
        cfg.bug == Some(NodeBug::ReadAtOnceWhileLeading),
    ));
    let faults = Arc::new(Mutex::new(Faults::new(net.clone(), cfg.bug)));
    let result: Arc<Mutex<Option<Result<u64, String>>>> = Arc::default();
    {
        let (shared, faults, result, cfg) =
            (shared.clone(), faults.clone(), result.clone(), cfg.clone());
        exec.spawn(Owner::World, async move {
            let r = conduct(shared, faults, &cfg).await;
            *lock(&result) = Some(r);
        });
    }
    // The event loop: run what is ready, else move time to the next event.
    let limit = 3_600_000 * MS;
    let mut last = (0u64, 0u64);
    loop {
        let mut spins = 0u64;
        while exec.poll_one() {
            spins += 1;
            if spins > 1_000_000 {
                *lock(&result) = Some(Err(format!(
                    "livelock: a million polls at {} ms without time moving",
                    exec.now() / MS
                )));
                break;
            }
        }
        if trace_on() && exec.now() / (100 * MS) != last.0 {
            last = (exec.now() / (100 * MS), exec.polls());
            eprintln!("t={}ms polls={}", exec.now() / MS, exec.polls());
        }
        if lock(&result).is_some() {
            break;
        }
        net.deliver_due();
        if exec.poll_one() {
            continue;
        }
        let next = [exec.next_timer(), net.next_delivery()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= limit => {
                exec.advance_to(t);
                net.deliver_due();
            }
            _ => {
                *lock(&result) = Some(Err("the run stalled: nothing left to do".into()));
                break;
            }
        }
    }
    let outcome = lock(&result).take().unwrap_or(Ok(0));
    let preemptions = exec.preemptions();
    exec.shut_down();
    let mut cluster = lock(&cluster);
    for i in 0..cluster.len() {
        cluster.check_bounds(i);
    }
    let agreement = lock(&cluster.agreement).violation.clone();
    let mut violation = outcome.as_ref().err().cloned();
    // Root causes first: a message the network could not frame explains a stall.
    violation = net
        .violations()
        .first()
        .cloned()
        .or(agreement)
        .or_else(|| cluster.bad_stops.first().cloned())
        .or_else(|| cluster.over_bounds.first().cloned())
        .or(violation);
    let metrics: Vec<_> = (0..cluster.len())
        .filter_map(|i| cluster.handle(i))
        .map(|h| h.metrics())
        .collect();
    NodeReport {
        snapshots_taken: metrics.iter().map(|m| m.snapshots_taken).sum(),
        snapshots_background: metrics.iter().map(|m| m.snapshots_background).sum(),
        snapshots_installed: metrics.iter().map(|m| m.snapshots_installed).sum(),
        chosen_during_persist: metrics.iter().map(|m| m.chosen_during_persist).sum(),
        seed: cfg.seed,
        nodes: cfg.nodes,
        sim_time_ms: exec.now() / MS,
        polls: exec.polls(),
        clients: *lock(&shared.stats),
        net: net.stats(),
        faults: lock(&faults).stats,
        storage_stops: cluster.storage_stops,
        probes: *outcome.as_ref().unwrap_or(&0),
        preemptions,
        violation,
    }
}

/// The scenario, start to end. Returns the number of probes that completed.
async fn conduct(
    shared: Arc<Shared>,
    faults: Arc<Mutex<Faults>>,
    cfg: &NodeSimConfig,
) -> Result<u64, String> {
    let n = cfg.nodes;
    {
        let mut cluster = lock(&shared.cluster);
        for i in 0..n {
            cluster.start(i);
        }
    }
    let mut probes = 0;
    probe(&shared, Duration::from_secs(5), "the first election").await?;
    probes += 1;
    let mut done = Vec::new();
    for c in 0..cfg.clients + cfg.pipelined {
        let depth = if c < cfg.clients { 1 } else { cfg.depth };
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let shared2 = shared.clone();
        shared.exec.spawn(Owner::World, async move {
            workload::client(shared2, c as u64 + 1, depth).await;
            let _ = tx.send(());
        });
        done.push(rx);
    }
    // One in eight runs has a storm long enough for partitions of minutes.
    let long_run = shared.exec.random() % 8 == 0;
    for episode in 0..cfg.episodes {
        let phase = match shared.exec.random() % 10 {
            0..=5 => Phase::Mixed,
            6 | 7 => Phase::ReadOnly,
            _ => Phase::WriteOnly,
        };
        *lock(&shared.phase) = phase;
        if cfg.faults {
            let long = long_run && episode == 0;
            let span = if long {
                150_000
            } else {
                1_000 + shared.exec.random() % 4_000
            };
            let until = shared.exec.now() + span * MS;
            faults::storm(shared.clone(), faults.clone(), until, long).await;
        } else {
            shared.rt.sleep(Duration::from_secs(2)).await;
        }
        // The calm: every temporary fault undone; a majority is up and connected.
        faults::reap_now(&shared, &faults);
        lock(&faults).heal(&shared);
        shared.rt.sleep(Duration::from_secs(1)).await;
        faults::reap_now(&shared, &faults);
        probe(
            &shared,
            Duration::from_secs(5),
            &format!("the calm after storm {episode}"),
        )
        .await?;
        probes += 1;
        // Some calm time for the workload, in the episode's phase.
        shared
            .rt
            .sleep(Duration::from_millis(500 + shared.exec.random() % 1_500))
            .await;
    }
    *lock(&shared.phase) = Phase::Stop;
    for rx in done {
        let _ = rx.await;
    }
    lock(&faults).heal(&shared);
    converge(&shared, Duration::from_secs(20)).await?;
    workload::final_reads(&shared).await;
    workload::check_counters(&shared)?;
    let history = lock(&shared.history).clone();
    match check(&history, &CheckOptions::default()) {
        Verdict::Linearizable => Ok(probes),
        Verdict::NotLinearizable { key, detail } => {
            Err(format!("history not linearizable on key {key}: {detail}"))
        }
        Verdict::Unknown { key } => Err(format!(
            "the linearizability check ran out of budget on key {key} (an Unknown verdict fails the seed)"
        )),
    }
}

/// Liveness: a write and a read, through any live node, complete within `bound`.
async fn probe(shared: &Shared, bound: Duration, when: &str) -> Result<(), String> {
    let started = shared.exec.now();
    let deadline = started + bound.as_nanos() as u64;
    let request = KvRequest {
        id: RequestId {
            client: u64::MAX - started,
            born_slot: 0,
            seq: 1,
        },
        command: KvCommand::Set {
            key: b"probe".to_vec(),
            value: started.to_le_bytes().to_vec(),
        },
    }
    .encode();
    // A read first (no write has refreshed anything), then a write, then a read.
    let mut read_first = false;
    let mut wrote = false;
    while shared.exec.now() < deadline {
        let nodes: Vec<_> = {
            let cluster = lock(&shared.cluster);
            (0..cluster.len())
                .filter_map(|i| cluster.handle(i))
                .collect()
        };
        let pick = (shared.exec.random() % nodes.len().max(1) as u64) as usize;
        // The first read goes to the leader, if one is known: a leader must serve reads
        // with no write at all (the lease or a read-index round), whatever is down.
        let leader = nodes
            .iter()
            .find(|n| n.status().role == paxos_core::Role::Leader);
        let node = if read_first {
            nodes.get(pick)
        } else {
            leader.or(nodes.get(pick))
        };
        if let Some(node) = node {
            if !read_first {
                read_first = node
                    .read(
                        KvQuery::Get {
                            key: b"probe".to_vec(),
                        }
                        .encode(),
                    )
                    .await
                    .is_ok();
            } else if !wrote {
                let r = node.propose(request.clone()).await;
                if trace_on() {
                    eprintln!(
                        "probe t={}ms via {} -> {:?}",
                        shared.exec.now() / MS,
                        node.id(),
                        r.as_ref().map(|_| ())
                    );
                }
                wrote = r.is_ok();
            } else if node
                .read(
                    KvQuery::Get {
                        key: b"probe".to_vec(),
                    }
                    .encode(),
                )
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        shared.rt.sleep(Duration::from_millis(10)).await;
    }
    let statuses: Vec<String> = {
        let cluster = lock(&shared.cluster);
        (0..cluster.len())
            .map(|i| match cluster.handle(i) {
                Some(h) => {
                    let s = h.status();
                    format!(
                        "n{}: {:?} {} commit {}",
                        i + 1,
                        s.role,
                        s.ballot,
                        s.commit.0
                    )
                }
                None => format!("n{}: down", i + 1),
            })
            .collect()
    };
    Err(format!(
        "liveness: {} not done {} ms into {when} (statuses: {statuses:?})",
        if !read_first {
            "a first read"
        } else if wrote {
            "a read"
        } else {
            "a write"
        },
        bound.as_millis()
    ))
}

/// Every live node reaches the same commit and apply point within `bound`.
async fn converge(shared: &Shared, bound: Duration) -> Result<(), String> {
    // A write after the heal, so that every node learns a commit point beyond it.
    probe(shared, Duration::from_secs(5), "the final heal").await?;
    let deadline = shared.exec.now() + bound.as_nanos() as u64;
    loop {
        let statuses: Vec<_> = {
            let cluster = lock(&shared.cluster);
            (0..cluster.len())
                .filter_map(|i| cluster.handle(i))
                .map(|h| h.status())
                .collect()
        };
        let commits: Vec<u64> = statuses.iter().map(|s| s.commit.0).collect();
        let same = commits.windows(2).all(|w| w[0] == w[1])
            && statuses.iter().all(|s| s.applied == s.commit);
        if same && !statuses.is_empty() {
            return Ok(());
        }
        if shared.exec.now() > deadline {
            return Err(format!(
                "liveness: live nodes did not converge {} ms after the final heal: commits {commits:?}",
                bound.as_millis()
            ));
        }
        shared.rt.sleep(Duration::from_millis(50)).await;
    }
}
