//! `paxos-node`: a replicated key-value store that speaks the Redis protocol.
//!
//! ```text
//! paxos-node cluster --nodes 3            # a local 3-node cluster, one command
//! paxos-node serve --id 1 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 \
//!     --peer 3=127.0.0.1:7003 --resp 127.0.0.1:6379 --admin 127.0.0.1:8080
//! paxos-node serve --config node.toml      # the same settings from a TOML file
//! paxos-node certs --nodes 3 --out certs   # a dev CA + node-<id>.pem/.key for mutual TLS
//! ```
//!
//! Commands: the Redis 7 connection commands clients open with (`HELLO` for RESP2 and
//! RESP3, `CLIENT`, `INFO`, `COMMAND`, `SELECT 0`, `PING`, `ECHO`, `RESET`, `QUIT`,
//! `CONFIG GET`), and the string commands (`GET`, `SET [NX|XX] [GET]`, `SETNX`, `GETSET`,
//! `MGET`, `MSET`, `APPEND`, `STRLEN`, `INCR`, `INCRBY`, `DECR`, `DECRBY`, `DEL`, `EXISTS`,
//! `DBSIZE`, `SCAN [MATCH] [COUNT]`) plus `CAS key expected new` (1 if swapped, 0 if not),
//! all listed in one table (`commands.rs`) that drives both the arity checks and `COMMAND`.
//! Expiry is refused (`EXPIRE`, `TTL`, `SETEX`, `SET ... EX`): keys never expire. Any node
//! serves every command: writes and reads on a follower go to the leader through the node.
//! A pipeline is executed as groups, consecutive writes in one log entry (see
//! `connection.rs`). Each connection is one client with its own id; a write is retried with
//! the same request id after a leadership change or timeout, so it applies at most once; a
//! command a client resends on a new connection is a new command. Error replies beyond
//! Redis's own: `-NOLEADER` (no leader; nothing applied), `-OVERLOADED` (queues full;
//! nothing applied), `-TIMEOUT` (the outcome is unknown). The largest command and value:
//! see `paxos_kv::server`'s module docs (for `SET`, key + value + 50 bytes <= 1,048,575
//! by default).
//!
//! Runtime: `serve --runtime tokio|smol` (tokio by default), through the library's one
//! runtime seam, with `--threads N` threads (1 by default: a current-thread tokio runtime
//! on the main thread; see `ServerConfig::threads` for why); `cluster --runtime
//! --threads` passes them to every node. The `cluster` supervisor
//! itself runs on tokio. The replica itself is the library's `paxos_kv::server::Server`;
//! this binary adds the flags and the TOML file (`config.rs`), signals, dying with a
//! supervisor, and the `cluster` and `certs` commands. Logging: `tracing`, level `info` unless `RUST_LOG` says otherwise.

mod certs;
mod cluster;
mod config;

use std::sync::Arc;

/// The allocator: jemalloc. The node allocates per command (requests, replies, log
/// entries, map nodes); against glibc's malloc, in runs side by side (3 rounds, SET at 64
/// clients, memory storage, median), CPU per command fell from 25.5 to 21.1 us and
/// throughput rose 11 %, with a lower p99. The library crates leave the choice to their
/// users.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use paxos_kv::server::{RuntimeKind, ServerConfig};
use paxos_node::Runtime;
use tracing_subscriber::EnvFilter;

/// A replicated key-value store over Multi-Paxos, speaking the Redis protocol.
#[derive(Debug, Parser)]
#[command(name = "paxos-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one replica.
    #[command(after_help = SIZE_HELP)]
    Serve(Box<config::ServeArgs>),
    /// Start and supervise a local cluster of `serve` processes.
    Cluster(cluster::ClusterArgs),
    /// Write a development CA and a certificate and key for each node, for mutual TLS
    /// (`serve --tls-ca --tls-cert --tls-key`, QUIC or TCP).
    Certs(certs::CertsArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Cmd::Serve(args) => config::resolve(&args).and_then(serve),
        Cmd::Cluster(args) => tokio_runtime().and_then(|rt| rt.block_on(cluster::run(args))),
        Cmd::Certs(args) => certs::run(&args),
    };
    if let Err(e) = result {
        eprintln!("paxos-node: {e}");
        std::process::exit(1);
    }
}

/// What `serve --help` says about sizes (keep in step with `paxos_kv::server`'s module
/// docs).
const SIZE_HELP: &str = "\
Sizes: a write is accepted when its keys and values + 40 + 5 per key or value fit in the
node's largest command M (1,048,575 bytes by default; /status reports max_command_bytes
and max_set_bytes). For SET: key + value + 50 <= M, so by default key + value <=
1,048,525 bytes. A larger write gets `-ERR value of N bytes exceeds the largest accepted
(...)` and nothing is proposed; the connection stays open. A bulk string over 2 x M bytes
(a request over 2 x M + 64 KiB) gets `-ERR Protocol error: ...` and the connection is
closed.

Exactly once: a write that the server retries for you (after a timeout or a leadership
change) is applied at most once. A new connection is a new client: a command your client
library resends on a new connection is a new command.";

/// `serve` on the runtime its configuration names.
///
/// Called by `main` on its thread before any other thread is started.
fn serve(config: ServerConfig) -> Result<(), String> {
    if config.runtime == RuntimeKind::Smol {
        smol_threads(config.threads);
    }
    let signals = Signals::install()?;
    match config.runtime {
        RuntimeKind::Tokio => {
            let rt = node_runtime(config.threads)?;
            let runtime: Arc<dyn Runtime> =
                Arc::new(paxos_node::TokioRuntime::new(rt.handle().clone()));
            watch_supervisor();
            rt.block_on(serve_until_signal(config, runtime, signals))
        }
        RuntimeKind::Smol => {
            let runtime: Arc<dyn Runtime> = Arc::new(paxos_node::AsyncIoRuntime::new());
            watch_supervisor();
            smol::block_on(serve_until_signal(config, runtime, signals))
        }
        other => Err(format!("runtime {other:?} is not supported")),
    }
}

/// Runs the replica on `runtime` until SIGINT/SIGTERM or a fatal error.
async fn serve_until_signal(
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    signals: Signals,
) -> Result<(), String> {
    let server = paxos_kv::server::Server::start(config, runtime)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = match futures::future::select(
        std::pin::pin!(signals.recv()),
        std::pin::pin!(server.stopped()),
    )
    .await
    {
        futures::future::Either::Left((signal, _)) => {
            tracing::info!("{signal}: shutting down");
            Ok(())
        }
        futures::future::Either::Right((fatal, _)) => {
            Err(paxos_kv::server::ServeError::Stopped(fatal).to_string())
        }
    };
    server.shutdown().await;
    outcome
}

/// When started by `paxos-node cluster`, die with the supervisor: without this, a
/// supervisor killed with SIGKILL would leave its nodes running.
///
/// The kernel sends the signal when the *thread* that forked this process exits, which is
/// why the supervisor forks from its main thread only (see `cluster`'s module docs). On
/// this side the setting belongs to the calling thread, and is checked for as long as that
/// thread lives: call it from the main thread (`serve` calls it just before it blocks on
/// the server).
fn watch_supervisor() {
    let Some(parent) = std::env::var("PAXOS_NODE_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!("cannot watch the supervisor: {e}");
    }
    // The supervisor may have died before the call above.
    if nix::unistd::getppid().as_raw() != parent {
        tracing::warn!("supervisor {parent} is gone; exiting");
        std::process::exit(1);
    }
}

/// Gives smol's global executor `threads` threads, unless `SMOL_THREADS` is already set.
fn smol_threads(threads: usize) {
    if std::env::var_os("SMOL_THREADS").is_some() {
        return;
    }
    // SAFETY: `serve` calls this before any thread of the process is started (smol's
    // executor threads start on first use, after this), so no other thread can read or
    // write the environment at the same time.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SMOL_THREADS", threads.to_string());
    }
}

/// SIGINT and SIGTERM, on any runtime: a signal-hook thread hands the first one over.
struct Signals(futures::channel::oneshot::Receiver<&'static str>);

impl Signals {
    fn install() -> Result<Self, String> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| format!("installing signal handlers: {e}"))?;
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let _ = tx.send(if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    });
                }
            })
            .map_err(|e| format!("starting the signal thread: {e}"))?;
        Ok(Self(rx))
    }

    /// The name of the first signal received.
    async fn recv(self) -> &'static str {
        self.0.await.unwrap_or("signal thread gone")
    }
}

/// A replica's tokio runtime: current-thread for one thread (its tasks run on the thread
/// that blocks on it, `main`'s), multi-threaded with `threads` workers for more.
fn node_runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))
}

/// The `cluster` supervisor's runtime: multi-threaded, one worker per CPU.
fn tokio_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))
}
