//! A seeded, deterministic simulator, in two modes.
//!
//! **Core mode** (the crate root: [`run`], [`SimConfig`]) runs 3 or 5 replicas over
//! `paxos-core` directly, in simulated time, from one seed: a network that drops,
//! duplicates, delays and reorders messages and makes full, partial and one-way
//! partitions; replicas that crash and restart, losing every write not yet persisted; and
//! clients running reads, writes and compare-and-set on a small key-value store. It
//! checks the invariants in [`invariants`] at every step that could break them (it sees
//! every acceptance, so it checks "one value chosen per slot" directly), then checks the
//! whole history for linearizability with `paxos-lincheck`. It is fast (about 20 seeds a
//! second on one core) and finds protocol bugs.
//!
//! **Whole-node mode** ([`whole`]) runs the unchanged `paxos-node` driver, its client API
//! and the binary's KV state machine on a simulated runtime (the one runtime seam,
//! `paxos_runtime::Runtime`, over a seeded single-threaded executor), a simulated network
//! with TCP's frame limit and queues, and simulated disks under `FaultyStorage`, over 3, 5
//! and 7 replicas, with values up to the largest the node accepts, read-only and
//! write-only phases, pipelined clients, retries with the same request id, partitions from
//! milliseconds to minutes, nodes down for good or back with an empty disk. It finds the
//! bugs that live above the core (about 10 seeds a second).
//!
//! Neither is a benchmark: simulated time says nothing about real speed.
//!
//! ```text
//! cargo run -p paxos-sim --release -- --seeds 500                      # core mode
//! cargo run -p paxos-sim --release -- --seed 42 --nodes 5              # replay one
//! cargo run -p paxos-sim --release -- --mode node --seeds 500          # whole nodes
//! cargo run -p paxos-sim --release -- --mode node --seed 7 --nodes 7   # replay one
//! ```
//!
//! A failing seed prints the command that replays it exactly, in its mode.

pub mod bugs;
pub mod invariants;
pub mod kv;
pub mod network;
pub mod rng;
pub mod whole;
mod world;

pub use bugs::Bug;

/// One simulation run's parameters. Everything else derives from `seed`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed.
    pub seed: u64,
    /// Replicas: 3 or 5.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Client operations to issue.
    pub ops: usize,
    /// Keys the workload touches.
    pub keys: u64,
    /// A protocol bug to inject, for checker tests.
    pub bug: Option<Bug>,
    /// Give up (a violation) if the workload has not finished by then.
    pub max_sim_time_ms: u64,
    /// The clock drift bound the replicas are configured with (ppm).
    pub drift_ppm: u32,
    /// How far the simulated clocks really drift (ppm). Equal to `drift_ppm` unless a test
    /// breaks the bound on purpose.
    pub actual_drift_ppm: u32,
    /// Leader leases on (`false`: every read takes a read-index round).
    pub leases: bool,
    /// Inject faults (crashes, pauses, partitions, loss). `false` for a quiet run.
    pub faults: bool,
    /// Serve three reads in four with `Replica::read` (lease or read-index); the rest, and
    /// all reads when `false`, go through the log.
    pub direct_reads: bool,
    /// Log compaction: every replica takes a snapshot and compacts its log each time it has
    /// applied this many slots past its compaction point; a lagging replica then catches
    /// up through a snapshot transfer. 0: never. The default depends on the seed (see
    /// [`SimConfig::compact_every_for`]).
    pub compact_every: u64,
}

impl SimConfig {
    /// The default workload for `seed` and `nodes`: 5 clients, 1,000 operations, 8 keys.
    pub fn new(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            clients: 5,
            ops: 1000,
            keys: 8,
            bug: None,
            max_sim_time_ms: 600_000,
            drift_ppm: 20_000,
            actual_drift_ppm: 20_000,
            leases: true,
            faults: true,
            direct_reads: true,
            compact_every: Self::compact_every_for(seed),
        }
    }

    /// The default [`compact_every`](Self::compact_every) for `seed`: off for one seed in
    /// four (the uncompacted path keeps its coverage), else 4 to 64 slots, so that crashes,
    /// pauses and partitions of ordinary length leave a replica behind a compaction point.
    pub fn compact_every_for(seed: u64) -> u64 {
        if seed % 4 == 3 {
            0
        } else {
            4 + (seed / 4) % 61
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p paxos-sim --release -- --seed {} --nodes {}",
            self.seed, self.nodes
        );
        if self.clients != 5 || self.ops != 1000 || self.keys != 8 {
            cmd += &format!(
                " --clients {} --ops {} --keys {}",
                self.clients, self.ops, self.keys
            );
        }
        if self.actual_drift_ppm != self.drift_ppm {
            cmd += &format!(" --actual-drift-ppm {}", self.actual_drift_ppm);
        }
        if !self.leases {
            cmd += " --no-leases";
        }
        if !self.faults {
            cmd += " --no-faults";
        }
        if !self.direct_reads {
            cmd += " --log-reads";
        }
        if self.compact_every != Self::compact_every_for(self.seed) {
            cmd += &format!(" --compact-every {}", self.compact_every);
        }
        if let Some(bug) = self.bug {
            cmd += &format!(" --bug {}", bugs_name(bug));
        }
        cmd
    }
}

fn bugs_name(bug: Bug) -> &'static str {
    match bug {
        Bug::StripPromiseValues => "strip-promise-values",
        Bug::ForgetPromiseOnRestart => "forget-promise",
        Bug::LeaseFromReply => "lease-from-reply",
        Bug::InstallKeepsStaleState => "install-keeps-stale-state",
    }
}

/// What one run did and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Replicas.
    pub nodes: usize,
    /// Client operations issued.
    pub issued: usize,
    /// Snapshots taken (each followed by a compaction).
    pub snapshots: u64,
    /// Snapshots fetched from a peer and installed.
    pub installs: u64,
    /// Snapshot transfers cut off by a crash or a partition before they completed.
    pub transfers_cut: u64,
    /// Operations that completed with a result.
    pub ok: u64,
    /// Completed reads (through the log or `Replica::read`).
    pub reads_ok: u64,
    /// Completed writes and compare-and-sets.
    pub writes_ok: u64,
    /// Operations whose outcome stayed unknown (timeout, crash of the replica asked).
    pub unknown: u64,
    /// Proposals refused at once (no leader known, overloaded, replica down).
    pub refused: u64,
    /// Simulated time, ms.
    pub sim_time_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Messages sent.
    pub messages: u64,
    /// Prepare messages sent.
    pub prepares: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Reads answered under the lease (no message).
    pub lease_reads: u64,
    /// Reads answered after a read-index round.
    pub read_index_reads: u64,
    /// Heartbeat rounds sent on behalf of reads.
    pub read_rounds: u64,
    /// Reads aborted because leadership changed.
    pub reads_aborted: u64,
    /// Elections started, over all replicas and incarnations.
    pub elections: u64,
    /// Pauses injected.
    pub pauses: u64,
    /// Time from healing to convergence, ms.
    pub heal_ms: u64,
    /// Replicas leading at the end.
    pub leaders: usize,
    /// Linearizability check time, µs.
    pub check_us: u64,
    /// The linearizability search ran out of budget.
    pub lincheck_unknown: bool,
    /// The first violation, if any.
    pub violation: Option<String>,
}

/// Runs one simulation. A panic inside the core (a failed safety assertion) is reported as
/// a violation.
pub fn run(cfg: &SimConfig) -> Report {
    let world = world::World::new(cfg.clone());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run())) {
        Ok(report) => report,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Report {
                seed: cfg.seed,
                nodes: cfg.nodes,
                violation: Some(format!("panic: {msg}")),
                ..Report::default()
            }
        }
    }
}

/// The day that picks the CI tests' fresh seed windows: `PAXOS_SIM_DAY` if set (`.ci/run`
/// fixes it and prints the windows), else days since the Unix epoch.
pub fn seed_day() -> u64 {
    std::env::var("PAXOS_SIM_DAY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 86_400)
        })
}

/// Parses a bug name as used by `--bug`.
pub fn parse_bug(name: &str) -> Option<Bug> {
    match name {
        "strip-promise-values" => Some(Bug::StripPromiseValues),
        "forget-promise" => Some(Bug::ForgetPromiseOnRestart),
        "lease-from-reply" => Some(Bug::LeaseFromReply),
        "install-keeps-stale-state" => Some(Bug::InstallKeepsStaleState),
        _ => None,
    }
}
