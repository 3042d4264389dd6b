//! Runs simulation seeds and prints a summary; see the crate docs.

use std::time::Instant;

use clap::Parser;
use paxos_sim::{SimConfig, parse_bug, run};

/// Seeded deterministic simulation of the Multi-Paxos core.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run this many seeds, from --start, alternating 3 and 5 replicas.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// First seed of a --seeds run.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay exactly this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Replicas for --seed (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Client operations per seed.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Keys.
    #[arg(long, default_value_t = 8)]
    keys: u64,
    /// Inject a bug: strip-promise-values | forget-promise | lease-from-reply.
    #[arg(long)]
    bug: Option<String>,
    /// Let simulated clocks drift this far (ppm), beyond the configured bound if larger.
    #[arg(long)]
    actual_drift_ppm: Option<u32>,
    /// Run without leader leases.
    #[arg(long)]
    no_leases: bool,
    /// Run without faults.
    #[arg(long)]
    no_faults: bool,
    /// Send every read through the log instead of Replica::read (lease / read-index).
    #[arg(long)]
    log_reads: bool,
    /// Print one line per seed.
    #[arg(long)]
    verbose: bool,
    /// `core`: the protocol core alone (fast). `node`: whole nodes (the paxos-node driver,
    /// client API and KV state machine on a simulated runtime, network and disk).
    #[arg(long, default_value = "core")]
    mode: String,
    /// Whole-node mode: storm/calm episodes per seed.
    #[arg(long)]
    episodes: Option<usize>,
    /// Whole-node mode: pipelined clients.
    #[arg(long)]
    pipelined: Option<usize>,
    /// Whole-node mode: operations in flight per pipelined client.
    #[arg(long)]
    depth: Option<usize>,
    /// Core mode: take a snapshot and compact every N applied slots (0: never). Default:
    /// chosen by the seed.
    #[arg(long)]
    compact_every: Option<u64>,
}

fn main() {
    let args = Args::parse();
    if args.mode == "node" {
        return run_nodes(&args);
    }
    if args.mode != "core" {
        eprintln!("unknown mode {:?} (core or node)", args.mode);
        std::process::exit(2);
    }
    let bug = match args.bug.as_deref().map(|b| (b, parse_bug(b))) {
        None => None,
        Some((_, Some(bug))) => Some(bug),
        Some((name, None)) => {
            eprintln!("unknown bug {name:?}");
            std::process::exit(2);
        }
    };
    let make = |seed: u64, nodes: usize| {
        let base = SimConfig::new(seed, nodes);
        SimConfig {
            clients: args.clients,
            ops: args.ops,
            keys: args.keys,
            bug,
            actual_drift_ppm: args.actual_drift_ppm.unwrap_or(base.drift_ppm),
            leases: !args.no_leases,
            faults: !args.no_faults,
            direct_reads: !args.log_reads,
            compact_every: args.compact_every.unwrap_or(base.compact_every),
            ..base
        }
    };
    let configs: Vec<SimConfig> = match args.seed {
        Some(seed) => vec![make(seed, args.nodes)],
        None => (args.start..args.start + args.seeds)
            .map(|seed| make(seed, if seed % 2 == 0 { 3 } else { 5 }))
            .collect(),
    };
    let started = Instant::now();
    let (mut violations, mut ops, mut unknown, mut sim_ms, mut events) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut lease_reads, mut index_reads, mut reads, mut writes) = (0u64, 0u64, 0u64, 0u64);
    for cfg in &configs {
        let r = run(cfg);
        ops += r.issued as u64;
        unknown += r.unknown;
        sim_ms += r.sim_time_ms;
        events += r.events;
        lease_reads += r.lease_reads;
        reads += r.reads_ok;
        writes += r.writes_ok;
        index_reads += r.read_index_reads;
        if args.verbose || args.seed.is_some() {
            println!("{r:?}");
        }
        if let Some(v) = &r.violation {
            violations += 1;
            println!(
                "VIOLATION seed={} nodes={}: {v}\n  replay: {}",
                cfg.seed,
                cfg.nodes,
                cfg.replay_command()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let sim_secs = (sim_ms as f64 / 1000.0).max(f64::MIN_POSITIVE);
    println!(
        "per simulated second: {:.0} reads, {:.0} writes; direct reads by lease {:.1}%",
        reads as f64 / sim_secs,
        writes as f64 / sim_secs,
        100.0 * lease_reads as f64 / (lease_reads + index_reads).max(1) as f64
    );
    println!(
        "seeds={} violations={violations} ops={ops} unknown={unknown} lease_reads={lease_reads} \
         read_index_reads={index_reads} events={events} sim_time={:.1}s wall={secs:.2}s seeds_per_sec={:.1}",
        configs.len(),
        sim_ms as f64 / 1000.0,
        configs.len() as f64 / secs
    );
    if violations > 0 {
        std::process::exit(1);
    }
}

/// Whole-node mode: seeds alternate 3, 5 and 7 replicas.
fn run_nodes(args: &Args) {
    use paxos_sim::whole::{NodeBug, NodeSimConfig, run};
    let bug = match args.bug.as_deref().map(|b| (b, NodeBug::parse(b))) {
        None => None,
        Some((_, Some(bug))) => Some(bug),
        Some((name, None)) => {
            eprintln!("unknown bug {name:?} for --mode node");
            std::process::exit(2);
        }
    };
    let make = |seed: u64, nodes: usize| {
        let base = NodeSimConfig::new(seed, nodes);
        NodeSimConfig {
            clients: if args.clients == 5 {
                base.clients
            } else {
                args.clients
            },
            pipelined: args.pipelined.unwrap_or(base.pipelined),
            depth: args.depth.unwrap_or(base.depth),
            episodes: args.episodes.unwrap_or(base.episodes),
            keys: if args.keys == 8 { base.keys } else { args.keys },
            faults: !args.no_faults,
            leases: !args.no_leases,
            bug,
            ..base
        }
    };
    let configs: Vec<NodeSimConfig> = match args.seed {
        Some(seed) => vec![make(seed, args.nodes)],
        None => (args.start..args.start + args.seeds)
            .map(|seed| make(seed, [3, 5, 7][(seed % 3) as usize]))
            .collect(),
    };
    let started = Instant::now();
    let (mut violations, mut writes, mut reads, mut at_once, mut sim_ms, mut polls) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for cfg in &configs {
        let r = run(cfg);
        writes += r.clients.writes_ok;
        reads += r.clients.reads_ok;
        at_once += r.clients.reads_at_once;
        sim_ms += r.sim_time_ms;
        polls += r.polls;
        if args.verbose || args.seed.is_some() {
            println!("{r:?}");
        }
        if let Some(v) = &r.violation {
            violations += 1;
            println!(
                "VIOLATION seed={} nodes={}: {v}\n  replay: {}",
                cfg.seed,
                cfg.nodes,
                cfg.replay_command()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mode=node seeds={} violations={violations} writes={writes} reads={reads} \
         (at once {at_once}) polls={polls} \
         sim_time={:.1}s wall={secs:.2}s seeds_per_sec={:.2}",
        configs.len(),
        sim_ms as f64 / 1000.0,
        configs.len() as f64 / secs
    );
    if violations > 0 {
        std::process::exit(1);
    }
}
