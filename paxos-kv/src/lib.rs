//! The sample application of the workspace: a replicated key-value store that speaks the
//! Redis protocol, built on [`paxos_node`] with its public API only.
//!
//! The crate owns the `paxos-node` binary:
//!
//! ```text
//! cargo run --release -p paxos-kv -- cluster --nodes 3   # a local 3-node cluster
//! paxos-node serve --help                                # one replica
//! ```
//!
//! Its library part holds what the binary is made of and what tests and the benchmark
//! harness reuse: the replicated state machine and its command encoding ([`kv`]), the
//! request parser and reply encoder of the Redis protocol ([`resp`]), and one replica's
//! server, its RESP front end and admin port included ([`server`]: [`server::Server`]
//! starts one on any runtime, so several can share a process). The binary in
//! `src/bin/paxos-node/` adds the command line (flags and TOML file), signals, the
//! `cluster` supervisor and `certs`.
//!
//! What it is **not**: a general Redis server. It keeps strings only (no lists, hashes or
//! expiry), and it is meant as an example and a test bed of the library, not as a product.

#![forbid(unsafe_code)]

pub mod kv;
pub mod resp;
pub mod server;
