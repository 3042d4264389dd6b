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
//! Its library part holds what the binary is made of and what tests reuse: the replicated
//! state machine and its command encoding ([`kv`]), and the request parser and reply
//! encoder of the Redis protocol ([`resp`]). The server, the admin port and the cluster
//! supervisor live in `src/bin/paxos-node/`.
//!
//! What it is **not**: a general Redis server. It keeps strings only (no lists, hashes or
//! expiry), and it is meant as an example and a test bed of the library, not as a product.

#![forbid(unsafe_code)]

pub mod kv;
pub mod resp;
