//! The run: floors, the Redis ceiling, then every combination of the matrix on a fresh
//! cluster per (cluster mode, transport, storage, runtime), and the reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::cluster::{self, Cluster, ClusterKind, Snapshot};
use crate::floors::{self, Floor};
use crate::load::{self, LoadResult, LoadSpec, Workload};
use crate::report::{self, Row};

/// The matrix and the knobs of one run. Lists are comma-separated.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Where the replicas run: process (three `paxos-node serve` processes) or in-process
    /// (three servers inside this process, through `paxos_kv::server`; CPU time per
    /// command then includes the clients). Both: process,in-process.
    #[arg(long, value_delimiter = ',', default_value = "process", value_parser = [cluster::PROCESS, cluster::IN_PROCESS])]
    pub cluster: Vec<String>,
    /// Transports between the replicas: tcp, quic (QUIC is mutual TLS with development
    /// certificates written into the run directory).
    #[arg(long, value_delimiter = ',', default_value = "tcp,quic", value_parser = ["tcp", "quic"])]
    pub transport: Vec<String>,
    /// Storage backends: memory, file.
    #[arg(long, value_delimiter = ',', default_value = "memory,file", value_parser = ["memory", "file"])]
    pub storage: Vec<String>,
    /// Node runtimes: tokio, smol.
    #[arg(long, value_delimiter = ',', default_value = "tokio", value_parser = ["tokio", "smol"])]
    pub runtime: Vec<String>,
    /// Threads of each replica's runtime (`serve --threads`), e.g. 1,2 to compare.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = parse_threads)]
    pub threads: Vec<usize>,
    /// Concurrent closed-loop clients, each on its own connection to the leader.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Loads: set (writes only), get (reads only: lease reads on the leader), mixR (R %
    /// reads, e.g. mix90).
    #[arg(long = "workload", value_delimiter = ',', default_value = "set,get")]
    pub workloads: Vec<Workload>,
    /// Pipeline depths: commands each client sends per round trip.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub pipeline: Vec<usize>,
    /// Bytes of each SET value.
    #[arg(long, default_value_t = 64)]
    pub value_bytes: usize,
    /// Distinct keys (preloaded before a load that reads).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Measured seconds per combination.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before each window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds per floor (TCP, QUIC, fdatasync, PING).
    #[arg(long, default_value_t = 1.0)]
    pub floor_seconds: f64,
    /// Seconds any single wait may take (a connect, a reply) before the run fails.
    #[arg(long, default_value_t = 10.0)]
    pub op_timeout: f64,
    /// Seconds a new cluster has to elect a leader that holds its lease.
    #[arg(long, default_value_t = 20.0)]
    pub start_timeout: f64,
    /// The `paxos-node` binary (process mode only). Default: $PAXOS_NODE_EXE, else (under cargo) built now with
    /// `cargo build -p paxos-kv --bin paxos-node` in this binary's profile, else the one
    /// beside this binary.
    #[arg(long)]
    pub node_exe: Option<PathBuf>,
    /// Run directory (cluster data, logs, certificates, the fdatasync file). Default: a new
    /// directory under the system temp dir, removed at the end unless --keep.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the run directory.
    #[arg(long)]
    pub keep: bool,
    /// Skip the Redis ceiling even if redis-server is installed.
    #[arg(long)]
    pub no_redis: bool,
    /// Where results.jsonl and plot.svg go.
    #[arg(long, default_value = "target/paxos-benches")]
    pub out: PathBuf,
    /// Also write this markdown file (BENCHMARKS.md): machine, commit, command, tables,
    /// and the plot (linked from --out).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The floors, in the order measured.
    pub floors: Vec<Floor>,
    /// Ceilings first, then one row per combination.
    pub rows: Vec<Row>,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// `/proc/loadavg` when the run started: how busy the machine was.
    pub load_at_start: String,
    /// The commit measured, read before the run writes its reports (which are tracked
    /// files, so reading it after would always find the tree changed).
    pub commit: String,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Runs the whole matrix and writes the reports. Call on a tokio runtime whose
/// `block_on` runs on the main thread (see [`crate::cluster`] on why).
pub async fn run(args: &BenchArgs) -> Result<Outcome, String> {
    let began = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let commit = crate::markdown::commit();
    validate(args)?;
    let exe = if args.cluster.iter().any(|m| m == cluster::PROCESS) {
        Some(locate_node_exe(args)?)
    } else {
        None
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("paxos-benches-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(args, exe.as_deref(), &dir, began, load_at_start, commit).await;
    if !args.keep && args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("run directory kept: {}", dir.display());
    }
    let outcome = result?;
    write_reports(args, &outcome)?;
    Ok(outcome)
}

fn validate(args: &BenchArgs) -> Result<(), String> {
    if args.clients.contains(&0) || args.pipeline.contains(&0) {
        return Err("--clients and --pipeline must be at least 1".into());
    }
    if args.seconds <= 0.0 || args.keys == 0 {
        return Err("--seconds and --keys must be positive".into());
    }
    if args.cluster.is_empty() {
        return Err("--cluster needs process, in-process or both".into());
    }
    Ok(())
}

async fn run_in(
    args: &BenchArgs,
    exe: Option<&Path>,
    dir: &Path,
    began: Instant,
    load_at_start: String,
    commit: String,
) -> Result<Outcome, String> {
    let floor_time = secs(args.floor_seconds);
    eprintln!(
        "floors: TCP and QUIC round trips between two processes, fdatasync in {}",
        dir.display()
    );
    let mut floors = vec![
        floors::tcp_rtt(floor_time)?,
        floors::quic_rtt(dir, floor_time).await?,
        floors::fdatasync(dir, floor_time)?,
    ];
    for f in &floors {
        eprintln!(
            "  {}: p50 {:.1} us, p99 {:.1} us",
            f.name, f.p50_us, f.p99_us
        );
    }
    let loads = loads(args);
    let mut rows = Vec::new();
    let mut ceilings = HashMap::new();
    match floors::redis_server().filter(|_| !args.no_redis) {
        Some(redis) => {
            let (server, addr) = floors::start_redis(&redis).await?;
            for (i, spec) in loads.iter().enumerate() {
                eprintln!(
                    "[ceiling {}/{}] redis-server {} c={} P{}",
                    i + 1,
                    loads.len(),
                    spec.workload,
                    spec.clients,
                    spec.pipeline
                );
                if spec.workload.reads() && !loads[..i].iter().any(|s| s.workload.reads()) {
                    load::preload(addr, spec).await?;
                }
                let pids = [server.0.id(), std::process::id()];
                let before = pids.map(cluster::cpu_secs);
                let result = load_with_progress(addr, spec).await?;
                let after = pids.map(cluster::cpu_secs);
                let mut row = ceiling_row(args, spec, &result, &floors[0]);
                if let ([Ok(s0), Ok(h0)], [Ok(s1), Ok(h1)], true) =
                    (before, after, result.answered > 0)
                {
                    let per_op = |secs: f64| secs * 1e6 / result.answered as f64;
                    row.cpu_us_per_op = Some(per_op(s1 - s0));
                    row.clients_cpu_us_per_op = Some(per_op(h1 - h0));
                }
                eprintln!("  {}", summary(&row));
                ceilings.insert(key(spec), row.ops_per_sec);
                rows.push(row);
            }
        }
        None => eprintln!("no redis-server on the PATH (or --no-redis): no ceiling"),
    }
    let kinds = cluster_kinds(args);
    let total = kinds.len() * loads.len();
    let mut done = 0;
    for kind in &kinds {
        let mut cluster_dir = format!(
            "{}-{}-{}-{}",
            kind.transport, kind.storage, kind.runtime, kind.threads
        );
        if kind.in_process() {
            cluster_dir.push_str("-in-process");
        }
        let cluster_dir = dir.join(cluster_dir);
        eprintln!(
            "cluster {kind}: starting 3 nodes in {}",
            cluster_dir.display()
        );
        let mut cluster = Cluster::start(exe, kind, &cluster_dir).await?;
        let leader = cluster.wait_for_leader(secs(args.start_timeout)).await?;
        let leader_id = cluster.node_id(leader).ok_or("the leader is not a node")?;
        let ping = ping_floor(args, kind, leader).await?;
        eprintln!(
            "  leader node {leader_id} at {leader}; PING p50 {:.1} us",
            ping.p50_us
        );
        floors.push(ping.clone());
        let mut preloaded = false;
        for spec in &loads {
            done += 1;
            eprintln!(
                "[{done}/{total}] {kind} {} c={} P{} ({:.0} s elapsed)",
                spec.workload,
                spec.clients,
                spec.pipeline,
                began.elapsed().as_secs_f64()
            );
            if spec.workload.reads() && !preloaded {
                load::preload(leader, spec).await?;
                preloaded = true;
            }
            cluster.check_alive()?;
            let before = cluster.snapshot().await?;
            let result = load_with_progress(leader, spec).await;
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    cluster.check_alive()?;
                    return Err(format!("{kind} {}: {e}", spec.workload));
                }
            };
            let after = cluster.snapshot().await?;
            let mut row = result_row(args, kind, spec, &result, &before, &after, leader_id);
            add_floor(&mut row, kind, spec.workload, &floors, &ping);
            if let Some(&c) = ceilings.get(&key(spec)) {
                row.ceiling_ops_per_sec = Some(c);
                row.ops_x_ceiling = Some(row.ops_per_sec / c);
            }
            eprintln!("  {}", summary(&row));
            rows.push(row);
        }
        cluster.shutdown().await?;
    }
    Ok(Outcome {
        floors,
        rows,
        wall: began.elapsed(),
        load_at_start,
        commit,
    })
}

/// Every load of the matrix, in run order: workload, then pipeline depth, then clients.
fn loads(args: &BenchArgs) -> Vec<LoadSpec> {
    let mut out = Vec::new();
    for &workload in &args.workloads {
        for &pipeline in &args.pipeline {
            for &clients in &args.clients {
                out.push(LoadSpec {
                    workload,
                    clients,
                    pipeline,
                    value_bytes: args.value_bytes,
                    keys: args.keys,
                    warmup: secs(args.warmup),
                    window: secs(args.seconds),
                    op_timeout: secs(args.op_timeout),
                });
            }
        }
    }
    out
}

/// One `--threads` value: what `serve --threads` takes.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=paxos_kv::server::MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected 1 to {}, got {s:?}",
            paxos_kv::server::MAX_THREADS
        )),
    }
}

fn cluster_kinds(args: &BenchArgs) -> Vec<ClusterKind> {
    let mut out = Vec::new();
    for mode in &args.cluster {
        for transport in &args.transport {
            for storage in &args.storage {
                for runtime in &args.runtime {
                    for &threads in &args.threads {
                        out.push(ClusterKind {
                            mode: mode.clone(),
                            transport: transport.clone(),
                            storage: storage.clone(),
                            runtime: runtime.clone(),
                            threads,
                        });
                    }
                }
            }
        }
    }
    out
}

fn key(spec: &LoadSpec) -> (Workload, usize, usize) {
    (spec.workload, spec.clients, spec.pipeline)
}

/// One client sending `PING` to the leader for the floor time: the client-to-node floor
/// of this cluster's runtime.
async fn ping_floor(
    args: &BenchArgs,
    kind: &ClusterKind,
    leader: SocketAddr,
) -> Result<Floor, String> {
    let spec = LoadSpec {
        workload: Workload::Ping,
        clients: 1,
        pipeline: 1,
        value_bytes: 0,
        keys: 1,
        warmup: secs(args.floor_seconds / 10.0),
        window: secs(args.floor_seconds),
        op_timeout: secs(args.op_timeout),
    };
    let result = load::run(leader, &spec, Arc::new(AtomicU64::new(0))).await?;
    Ok(Floor::from_histogram(
        "ping",
        &kind.to_string(),
        &result.latency_ns,
    ))
}

/// Runs one load, printing the commands answered so far every second on a terminal.
async fn load_with_progress(addr: SocketAddr, spec: &LoadSpec) -> Result<LoadResult, String> {
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let progress = progress.clone();
        let total = spec.warmup + spec.window;
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!(
                    "\r  {:.0}/{:.0} s, {} commands answered   ",
                    start.elapsed().as_secs_f64(),
                    total.as_secs_f64(),
                    progress.load(Ordering::Relaxed)
                );
            }
        })
    });
    let result = load::run(addr, spec, progress).await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r{:60}\r", "");
    }
    result
}

fn base_row(args: &BenchArgs, spec: &LoadSpec, result: &LoadResult) -> Row {
    Row {
        kind: "result".into(),
        cluster: String::new(),
        transport: String::new(),
        storage: String::new(),
        runtime: String::new(),
        threads: 0,
        workload: spec.workload.to_string(),
        clients: spec.clients,
        pipeline: spec.pipeline,
        value_bytes: args.value_bytes,
        seconds: spec.window.as_secs_f64(),
        ops: result.ops,
        errors: result.errors,
        first_error: result.first_error.clone(),
        ops_per_sec: result.ops_per_sec(),
        p50_us: result.latency_us(0.5),
        p99_us: result.latency_us(0.99),
        p999_us: result.latency_us(0.999),
        cpu_us_per_op: None,
        leader_cpu_us_per_op: None,
        leader_busy: None,
        clients_cpu_us_per_op: None,
        batch: None,
        persists_per_sec: None,
        lease_reads: None,
        floor_us: None,
        floor: String::new(),
        p50_x_floor: None,
        p99_x_floor: None,
        ceiling_ops_per_sec: None,
        ops_x_ceiling: None,
    }
}

fn ceiling_row(args: &BenchArgs, spec: &LoadSpec, result: &LoadResult, tcp: &Floor) -> Row {
    let mut row = base_row(args, spec, result);
    row.kind = "ceiling".into();
    row.transport = "redis".into();
    set_floor(&mut row, tcp.p50_us, "tcp_rtt");
    row
}

fn result_row(
    args: &BenchArgs,
    kind: &ClusterKind,
    spec: &LoadSpec,
    result: &LoadResult,
    before: &Snapshot,
    after: &Snapshot,
    leader: u64,
) -> Row {
    let mut row = base_row(args, spec, result);
    row.cluster = kind.mode.clone();
    row.transport = kind.transport.clone();
    row.storage = kind.storage.clone();
    row.runtime = kind.runtime.clone();
    row.threads = kind.threads;
    let delta = |id: u64, name: &str| after.get(id, name) - before.get(id, name);
    let slots = delta(leader, "paxos_committed_slots_total");
    let commands = delta(leader, "paxos_committed_commands_total");
    if slots > 0.0 {
        row.batch = Some(commands / slots);
    }
    // The counters move between the snapshots, which bracket warm-up and window: per
    // second of that whole span.
    let span = spec.warmup.as_secs_f64() + spec.window.as_secs_f64();
    let persists = after.sum("paxos_persists_total") - before.sum("paxos_persists_total");
    row.persists_per_sec = Some(persists / span);
    row.lease_reads = Some(delta(leader, "paxos_lease_reads_total"));
    if result.answered > 0 {
        // CPU is taken over warm-up and window: divided by the commands of both. In-process
        // it is the harness's own, the clients' included (see `Snapshot::cpu_secs`).
        let per_op = |secs: f64| secs * 1e6 / result.answered as f64;
        row.cpu_us_per_op = Some(per_op(after.cpu_secs - before.cpu_secs));
        if !kind.in_process() {
            row.clients_cpu_us_per_op =
                Some(per_op(after.harness_cpu_secs - before.harness_cpu_secs));
        }
        if let (Some(l0), Some(l1)) = (
            before.node_cpu_secs.get(&leader),
            after.node_cpu_secs.get(&leader),
        ) {
            row.leader_cpu_us_per_op = Some(per_op(l1 - l0));
            if let (Some(t0), Some(t1)) = (before.taken, after.taken) {
                let wall = t1.duration_since(t0).as_secs_f64();
                if wall > 0.0 {
                    row.leader_busy = Some((l1 - l0) / wall);
                }
            }
        }
    }
    row
}

/// The latency floor of a row: writes against two round trips of the transport (client to
/// leader, leader to a follower) plus one fdatasync with file storage; reads against the
/// PING of this cluster.
fn add_floor(
    row: &mut Row,
    kind: &ClusterKind,
    workload: Workload,
    floors: &[Floor],
    ping: &Floor,
) {
    if !workload.writes() {
        return set_floor(row, ping.p50_us, "ping");
    }
    let rtt_name = format!("{}_rtt", kind.transport);
    let rtt = floors
        .iter()
        .find(|f| f.name == rtt_name)
        .map_or(0.0, |f| f.p50_us);
    let (fsync, what) = if kind.storage == "file" {
        let f = floors
            .iter()
            .find(|f| f.name == "fdatasync")
            .map_or(0.0, |f| f.p50_us);
        (f, format!("2x{rtt_name}+fdatasync"))
    } else {
        (0.0, format!("2x{rtt_name}"))
    };
    set_floor(row, 2.0 * rtt + fsync, &what);
}

fn set_floor(row: &mut Row, floor_us: f64, what: &str) {
    if floor_us > 0.0 {
        row.floor_us = Some(floor_us);
        row.floor = what.to_owned();
        row.p50_x_floor = Some(row.p50_us / floor_us);
        row.p99_x_floor = Some(row.p99_us / floor_us);
    }
}

fn summary(row: &Row) -> String {
    let mut s = format!(
        "{:.0} ops/s, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us",
        row.ops_per_sec, row.p50_us, row.p99_us, row.p999_us
    );
    if let Some(r) = row.p50_x_floor {
        s += &format!(", p50 {r:.1}x floor");
    }
    if row.errors > 0 {
        s += &format!(
            ", {} errors (first: {})",
            row.errors,
            row.first_error.as_deref().unwrap_or("?")
        );
    }
    s
}

/// The `paxos-node` binary to start (see [`BenchArgs::node_exe`]).
pub fn locate_node_exe(args: &BenchArgs) -> Result<PathBuf, String> {
    if let Some(exe) = args
        .node_exe
        .clone()
        .or_else(|| std::env::var_os("PAXOS_NODE_EXE").map(PathBuf::from))
    {
        return Ok(exe);
    }
    let me = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let profile_dir = me.parent().ok_or("this binary has no directory")?;
    // A test binary lives in PROFILE/deps.
    let profile_dir = if profile_dir.ends_with("deps") {
        profile_dir.parent().ok_or("no profile directory")?
    } else {
        profile_dir
    };
    let sibling = profile_dir.join("paxos-node");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let target = profile_dir.parent().ok_or("no target directory")?;
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-q", "-p", "paxos-kv", "--bin", "paxos-node"])
            .arg("--target-dir")
            .arg(target);
        if profile != "debug" {
            cmd.args([
                "--profile",
                if profile == "release" {
                    "release"
                } else {
                    profile
                },
            ]);
        }
        eprintln!("building paxos-node ({profile})");
        let status = cmd
            .status()
            .map_err(|e| format!("cargo build -p paxos-kv: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p paxos-kv: {status}"));
        }
    }
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "no paxos-node at {}: build it (cargo build --release -p paxos-kv) or give --node-exe",
            sibling.display()
        ))
    }
}

fn write_reports(args: &BenchArgs, outcome: &Outcome) -> Result<(), String> {
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut jsonl = String::new();
    for f in &outcome.floors {
        jsonl.push_str(&report::floor_json(f));
        jsonl.push('\n');
    }
    for r in &outcome.rows {
        jsonl.push_str(&report::row_json(r));
        jsonl.push('\n');
    }
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(out.join("results.jsonl"), &jsonl)?;
    let svg = report::svg(
        &outcome.rows,
        "paxos-benches: throughput against p99 latency",
    );
    write(out.join("plot.svg"), &svg)?;
    println!("{}", report::table(&outcome.floors, &outcome.rows));
    println!(
        "wrote {} and {} ({:.0} s)",
        out.join("results.jsonl").display(),
        out.join("plot.svg").display(),
        outcome.wall.as_secs_f64()
    );
    if let Some(md) = &args.markdown {
        let text = crate::markdown::render(args, outcome, md)?;
        write(md.clone(), &text)?;
        println!("wrote {}", md.display());
    }
    Ok(())
}
