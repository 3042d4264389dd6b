//! `paxos-benches`: the benchmark harness (see the library's docs, `paxos_benches`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paxos_benches::{floors, harness};

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
    // One thread: the clients, the floors and the node processes are all forked and
    // driven from the main thread (see `paxos_benches::cluster` on why that matters).
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

fn fail(e: &str) -> ! {
    eprintln!("paxos-benches: {e}");
    std::process::exit(1);
}
