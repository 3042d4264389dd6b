//! Runs the core-mode simulator over 500 fixed seeds (3 and 5 replicas alternating) and a
//! **fresh window** of 100 more that moves every day (or is set with
//! `PAXOS_SIM_FRESH_START`), printed so that a failure there can be replayed. In chunks,
//! so that the test harness spreads them over the cores. Any violation fails with the
//! command that replays it.

use paxos_sim::{Report, SimConfig, run};

const SEEDS: u64 = 500;
const FRESH: u64 = 100;
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
    10_000_000 + day * FRESH
}

fn run_chunk(chunk: u64) {
    let per = SEEDS / CHUNKS;
    let started = std::time::Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    let fresh = fresh_start() + chunk * (FRESH / CHUNKS);
    eprintln!(
        "chunk {chunk}: fresh seeds {fresh}..{}",
        fresh + FRESH / CHUNKS
    );
    for seed in (chunk * per..(chunk + 1) * per).chain(fresh..fresh + FRESH / CHUNKS) {
        let cfg = SimConfig::new(seed, if seed % 2 == 0 { 3 } else { 5 });
        assert!(
            cfg.clients >= 5 && cfg.ops >= 1000,
            "the workload is the one the issue asks for"
        );
        let report = run(&cfg);
        if let Some(v) = &report.violation {
            panic!(
                "seed {seed} ({} nodes): {v}\nreplay: {}",
                cfg.nodes,
                cfg.replay_command()
            );
        }
        // Most operations complete: a run whose cluster stalled for long (without breaking
        // an invariant) fails here, where counting issued operations could not fail.
        assert!(
            report.ok * 10 >= report.issued as u64 * 7,
            "seed {seed}: only {} of {} operations completed",
            report.ok,
            report.issued
        );
        assert!(
            report.crashes + report.partitions > 10,
            "seed {seed} saw too few faults: {report:?}"
        );
        reports.push(report);
    }
    let ops: usize = reports.iter().map(|r| r.issued).sum();
    let unknown: u64 = reports.iter().map(|r| r.unknown).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let partitions: u64 = reports.iter().map(|r| r.partitions).sum();
    let check_ms: u64 = reports.iter().map(|r| r.check_us).sum::<u64>() / 1000;
    eprintln!(
        "chunk {chunk}: seeds={} violations=0 ops={ops} unknown={unknown} crashes={crashes} partitions={partitions} \
         lincheck={check_ms}ms wall={:.1}s",
        reports.len(),
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
    seeds_000_049 = 0;
    seeds_050_099 = 1;
    seeds_100_149 = 2;
    seeds_150_199 = 3;
    seeds_200_249 = 4;
    seeds_250_299 = 5;
    seeds_300_349 = 6;
    seeds_350_399 = 7;
    seeds_400_449 = 8;
    seeds_450_499 = 9;
}

/// Leases off while the faults run: every read on the leader takes a read-index round, and
/// the same invariants hold (a lease bug cannot hide a read-index one).
#[test]
fn leases_off_under_faults() {
    let mut index_reads = 0;
    for seed in 0..30 {
        let cfg = SimConfig {
            leases: false,
            ..SimConfig::new(seed, if seed % 2 == 0 { 3 } else { 5 })
        };
        let report = run(&cfg);
        if let Some(v) = &report.violation {
            panic!("seed {seed}: {v}\nreplay: {}", cfg.replay_command());
        }
        assert_eq!(
            report.lease_reads, 0,
            "seed {seed}: a lease read with leases off"
        );
        assert!(
            report.ok * 10 >= report.issued as u64 * 7,
            "seed {seed}: only {} of {} operations completed",
            report.ok,
            report.issued
        );
        index_reads += report.read_index_reads;
    }
    assert!(
        index_reads > 1_000,
        "reads went through read-index rounds: {index_reads}"
    );
}
