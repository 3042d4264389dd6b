//! Runs the simulator over 500 seeds (3 and 5 replicas alternating), in chunks so that the
//! test harness spreads them over the cores. Any violation fails with the command that
//! replays it.

use paxos_sim::{Report, SimConfig, run};

const SEEDS: u64 = 500;
const CHUNKS: u64 = 10;

fn run_chunk(chunk: u64) {
    let per = SEEDS / CHUNKS;
    let started = std::time::Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for seed in chunk * per..(chunk + 1) * per {
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
        assert!(
            report.issued >= 1000,
            "seed {seed} issued only {} operations",
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
