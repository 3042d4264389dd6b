//! Whole-node simulation in CI: the `paxos-node` driver, client API and KV state machine on
//! the simulated runtime, network and disk, over 3, 5 and 7 replicas.
//!
//! Every run covers a fixed regression set and a **fresh window** of seeds that moves
//! every day (or is set with `PAXOS_SIM_FRESH_START`), printed so that a failure there can
//! be replayed. A violation fails with the command that replays it.

use paxos_sim::whole::{NodeReport, NodeSimConfig, run};

/// Fixed seeds per chunk (regressions: the same every run).
const FIXED: u64 = 30;
/// Fresh seeds per chunk (new every day).
const FRESH: u64 = 25;
const CHUNKS: u64 = 10;

/// Where today's fresh window starts: far above the fixed set, one window per day.
fn fresh_start() -> u64 {
    if let Some(start) = std::env::var("PAXOS_SIM_FRESH_START")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return start;
    }
    let day = paxos_sim::seed_day();
    1_000_000 + day * FRESH * CHUNKS
}

fn nodes_for(seed: u64) -> usize {
    [3, 5, 7][(seed % 3) as usize]
}

fn check(cfg: &NodeSimConfig, report: &NodeReport) {
    if let Some(v) = &report.violation {
        panic!(
            "seed {} ({} nodes): {v}\nreplay: {}",
            cfg.seed,
            cfg.nodes,
            cfg.replay_command()
        );
    }
    // What the run could have missed, and must not have.
    assert!(
        report.probes > cfg.episodes as u64,
        "seed {}: {} liveness probes completed, expected one per calm and the first election",
        cfg.seed,
        report.probes
    );
    assert!(
        report.clients.writes_ok + report.clients.reads_ok > 0,
        "seed {}: no work done: {report:?}",
        cfg.seed
    );
    let f = report.faults;
    assert!(
        f.crashes + f.partitions + f.pauses >= 3,
        "seed {}: too few faults: {f:?}",
        cfg.seed
    );
}

fn run_chunk(chunk: u64) {
    let started = std::time::Instant::now();
    let fresh = fresh_start();
    let seeds: Vec<u64> = (chunk * FIXED..(chunk + 1) * FIXED)
        .chain(fresh + chunk * FRESH..fresh + (chunk + 1) * FRESH)
        .collect();
    let mut reports = Vec::new();
    for &seed in &seeds {
        let cfg = NodeSimConfig::new(seed, nodes_for(seed));
        let report = run(&cfg);
        check(&cfg, &report);
        reports.push(report);
    }
    let sum = |f: fn(&NodeReport) -> u64| reports.iter().map(f).sum::<u64>();
    let largest = reports
        .iter()
        .map(|r| r.clients.largest_value)
        .max()
        .unwrap_or(0);
    // Values reach the largest the node accepts in every chunk; reads and writes both ran.
    assert!(
        largest >= 90 << 10,
        "largest value written: {largest} bytes"
    );
    assert!(sum(|r| r.clients.writes_ok) > 0 && sum(|r| r.clients.reads_ok) > 0);
    // Reads answered at once under the lease ran too, checked like every other read.
    assert!(
        sum(|r| r.clients.reads_at_once) > 0,
        "chunk {chunk}: no read was answered at once"
    );
    // Compaction ran, and nodes left behind a compaction point caught up by transfer.
    assert!(
        sum(|r| r.snapshots_taken) > 0 && sum(|r| r.snapshots_installed) > 0,
        "chunk {chunk}: no snapshot taken or installed"
    );
    // Both ways of taking one ran: inline, and in the background while the node served.
    assert!(
        sum(|r| r.snapshots_background) > 0
            && sum(|r| r.snapshots_taken) > sum(|r| r.snapshots_background),
        "chunk {chunk}: snapshots_taken={} of which in the background {}",
        sum(|r| r.snapshots_taken),
        sum(|r| r.snapshots_background)
    );
    // Values chosen while a persist was under way were applied and answered then.
    assert!(
        sum(|r| r.chosen_during_persist) > 0,
        "chunk {chunk}: nothing was applied during a persist"
    );
    eprintln!(
        "chunk {chunk}: seeds {}..{} and {}..{} (fresh window from {fresh}), violations=0 \
         writes={} reads={} (at once {}) crashes={} partitions={} long_partitions={} pauses={} wipes={} \
         down_for_good={} storage_stops={} snapshots_taken={} (background {}) \
         snapshots_installed={} chosen_during_persist={} \
         largest_value={largest} wall={:.1}s",
        chunk * FIXED,
        (chunk + 1) * FIXED,
        fresh + chunk * FRESH,
        fresh + (chunk + 1) * FRESH,
        sum(|r| r.clients.writes_ok),
        sum(|r| r.clients.reads_ok),
        sum(|r| r.clients.reads_at_once),
        sum(|r| r.faults.crashes),
        sum(|r| r.faults.partitions),
        sum(|r| r.faults.long_partitions),
        sum(|r| r.faults.pauses),
        sum(|r| r.faults.wipes),
        sum(|r| r.faults.down_for_good),
        sum(|r| r.storage_stops),
        sum(|r| r.snapshots_taken),
        sum(|r| r.snapshots_background),
        sum(|r| r.snapshots_installed),
        sum(|r| r.chosen_during_persist),
        started.elapsed().as_secs_f64()
    );
}

macro_rules! chunks {
    ($($name:ident = $n:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_chunk($n);
            }
        )*
    };
}

chunks! {
    chunk_0 = 0;
    chunk_1 = 1;
    chunk_2 = 2;
    chunk_3 = 3;
    chunk_4 = 4;
    chunk_5 = 5;
    chunk_6 = 6;
    chunk_7 = 7;
    chunk_8 = 8;
    chunk_9 = 9;
}

/// Leases off while the faults run (whole-node): leader reads take read-index rounds.
#[test]
fn leases_off_under_faults() {
    for seed in 0..15 {
        let cfg = NodeSimConfig {
            leases: false,
            ..NodeSimConfig::new(seed, nodes_for(seed))
        };
        let report = run(&cfg);
        check(&cfg, &report);
    }
}
