//! `paxos-benches`: the benchmark harness (see the library's docs, `paxos_benches`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paxos_benches::{cluster, floors, harness};

/// Benchmarks a 3-node paxos-node cluster against floors measured on this machine.
#[derive(Debug, Parser)]
#[command(name = "paxos-benches", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    peer: Option<Peer>,
    #[command(flatten)]
    bench: harness::BenchArgs,
}

/// The floors' echo peers: this binary, started by itself.
#[derive(Debug, Subcommand)]
enum Peer {
    /// Echo 64 B messages on one TCP connection (the TCP floor's peer).
    #[command(hide = true)]
    EchoTcp,
    /// Echo 64 B messages on one QUIC stream (the QUIC floor's peer).
    #[command(hide = true)]
    EchoQuic {
        /// The directory holding the floor's certificates.
        #[arg(long)]
        certs: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if cli.peer.is_none() && cli.bench.cluster.iter().any(|m| m == cluster::IN_PROCESS) {
        smol_threads();
    }
    // One thread: the clients, the floors and the node processes are all forked and
    // driven from the main thread (see `paxos_benches::cluster` on why that matters).
    // In-process replicas get runtimes of their own (`--cluster in-process`).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("starting tokio: {e}")),
    };
    let result = match cli.peer {
        Some(Peer::EchoTcp) => floors::serve_tcp_echo(),
        Some(Peer::EchoQuic { certs }) => rt.block_on(floors::serve_quic_echo(&certs)),
        None => rt.block_on(harness::run(&cli.bench)).map(|_| ()),
    };
    if let Err(e) = result {
        fail(&e);
    }
}

/// Gives smol's global executor, which in-process smol replicas share, one thread per CPU
/// (smol's own default is one thread in all), unless `SMOL_THREADS` is already set: what
/// `paxos-node serve --runtime smol` does for itself.
fn smol_threads() {
    if std::env::var_os("SMOL_THREADS").is_some() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // SAFETY: `main` calls this first, before any thread of the process is started (the
    // tokio runtime, the floors' peers and smol's executor threads all start after it),
    // so no other thread can read or write the environment at the same time.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SMOL_THREADS", threads.to_string());
    }
}

fn fail(e: &str) -> ! {
    eprintln!("paxos-benches: {e}");
    std::process::exit(1);
}
