//! The benchmark harness of the workspace: it compares transports, storage backends and
//! runtimes of a real 3-node `paxos-node` cluster, and reports every result as a ratio to
//! floors it measures on the same machine, in the same run.
//!
//! ```text
//! cargo run -p paxos-benches --release -- --transport tcp,quic --storage memory,file \
//!     --runtime tokio,smol --clients 1,16,64 --seconds 10
//! cargo run -p paxos-benches --release -- --out benches/results --markdown BENCHMARKS.md
//! ```
//!
//! What one run does, in order:
//!
//! 1. **Floors** ([`floors`]): the raw TCP round trip of 64 B messages between two
//!    processes (this binary re-executes itself as the echo peer), the raw QUIC round trip
//!    on one stream (quinn, mutual TLS), and `fdatasync` of 4 KiB on a preallocated file in
//!    the run directory; later, per cluster, one client's `PING` to the leader.
//! 2. **The ceiling**: if `redis-server` is on the `PATH`, one unreplicated Redis under
//!    each load of the matrix.
//! 3. **The matrix** ([`harness`]): for each transport x storage x runtime (x cluster mode),
//!    a fresh cluster of three `paxos-node serve` processes, or with `--cluster in-process`
//!    three [`paxos_kv::server::Server`]s inside the harness, each on a runtime of its own
//!    ([`cluster`]); for each workload (`set`, `get`
//!    = lease reads, `mixR`), pipeline depth and client count, a closed-loop load
//!    ([`load`]) over RESP to the leader: ops/s, p50/p99/p99.9 latency (hdrhistogram),
//!    the replicas' CPU time per command (`/proc/PID/stat` of each node process; in-process,
//!    of the harness process, **so it includes the clients**), the batch size and the
//!    persists per second (from `/metrics`).
//! 4. **Reports** ([`report`], [`markdown`]): a table on the terminal, JSON lines (one
//!    object per floor and per combination), an SVG plot of throughput against p99, and
//!    with `--markdown` the BENCHMARKS.md file. Each says which cluster mode produced a
//!    row (`"cluster": "process"` or `"in-process"` in JSON; ` in-process` after the
//!    cluster's name in the tables and the plot).
//!
//! **Process or in-process.** `--cluster process` (the default) is the deployment: three
//! address spaces, and the harness sees a node that dies. `--cluster in-process` (or
//! `--cluster process,in-process` for both in one run) runs the same server code through
//! the library entry point, with the same transports, stores and runtimes (the three smol
//! replicas share smol's global executor; see `in_process.rs`), and needs no `paxos-node`
//! binary. Its CPU time per command counts everything the harness process does, the
//! clients included; the process mode's counts the replicas only.
//!
//! Every wait has a deadline, and a node that exits fails the run at once with the end of
//! its log: a broken build stops the harness instead of hanging it.
//!
//! What it does **not** do: run on more than one machine, or assert any speed (the smoke
//! test checks that a run completes and reports sane numbers, never how fast). The
//! micro-benchmarks of the codec, the core step and the RESP parser are criterion benches
//! in `paxos-core/benches` and `paxos-kv/benches`.

pub mod cluster;
pub mod floors;
pub mod harness;
mod in_process;
pub mod load;
pub mod markdown;
pub mod report;
pub mod resp;
