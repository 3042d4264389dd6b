//! The driver that turns a [`paxos_core::Replica`] into a running node.
//!
//! `paxos-node` wires the sans-IO core to a [`Transport`], a
//! [`Storage`] and a [`StateMachine`], on
//! an async runtime of your choice, and gives clients a [`NodeHandle`]:
//! [`propose`](NodeHandle::propose) (or [`propose_with_slot`](NodeHandle::propose_with_slot),
//! which also names the write's log slot), [`read`](NodeHandle::read),
//! [`read_barrier`](NodeHandle::read_barrier) (and
//! [`try_read_barrier`](NodeHandle::try_read_barrier), the same at once on a leader under
//! its lease), [`status`](NodeHandle::status),
//! [`metrics`](NodeHandle::metrics) and [`shutdown`](NodeHandle::shutdown). Start one with
//! [`NodeBuilder`]; [`wait_for_leader`] waits until a set of nodes in this process can all
//! take writes.
//!
//! What it does **not** do: no protocol logic (every decision is the core's; this crate
//! only feeds it inputs and carries out its outputs), no sockets and no files of its own
//! (those are the transport's and the storage's), no membership change yet (the core has
//! none), and no exactly-once semantics in the driver
//! (a retried command can be applied twice unless the state machine deduplicates it, as
//! the Redis-protocol sample application's state machine does: `paxos-kv`), and no
//! application: this crate has no command-line, no client protocol and no config files.
//!
//! The sample application, `paxos-kv`, is a separate crate: a replicated key-value store
//! that speaks the Redis protocol, with the `paxos-node` binary (`paxos-node serve`,
//! `paxos-node cluster --nodes 3`). It uses only this crate's public API.
//!
//! # The driver
//!
//! One task per node owns the replica, the transport, the storage and the state machine.
//! Each cycle it drains the available inputs (client requests from a bounded queue,
//! inbound messages, due timers), each bounded per cycle, then takes **one**
//! [`Ready`](paxos_core::Ready) and handles it by its ordering rule: one
//! [`Storage::persist`] call and, while it runs, one [`StateMachine::apply`] call and the
//! answers to the waiting clients (chosen values are durable on a majority already), then
//! the sends, then it advances the replica. Proposals that arrive during a persist go
//! into the next `Ready` together: under load, a batch costs one persist.
//!
//! Time: the replica's clock is nanoseconds since the node started, read from the
//! runtime's monotonic clock ([`Runtime::now`]) and never moved backwards.
//!
//! # Snapshots and log compaction
//!
//! By [`Compaction`] policy (in [`NodeOptions`]) or on demand
//! ([`NodeHandle::compact`]), the driver snapshots the state machine and drops the log
//! behind the snapshot, in the core and in storage. A state machine that implements
//! [`StateMachine::freeze`] has its snapshot written on a thread of its own
//! ([`FrozenState`], through [`Runtime::spawn_blocking`]) while the node goes on serving;
//! otherwise [`StateMachine::snapshot`] runs on the driver's task. A node that fell behind
//! a peer's compaction point fetches that peer's snapshot in checksummed, rate-limited
//! chunks and installs it atomically; a restarted node restores its latest snapshot and
//! replays only the log after it. The formats and the transfer are described in
//! `ARCHITECTURE.md` ("Log compaction and snapshots").
//!
//! # Proposals, and what an error means
//!
//! [`NodeHandle::propose`] resolves with the state machine's output once the command is
//! applied **on this node**. The core tags each proposal with a
//! [`ProposalId`]; the driver matches the outputs of `apply` to the
//! ids this node issued. Only `Ok` means applied. When the leader a request went through
//! changes (this node loses leadership, or a follower's leader changes), every waiting
//! request fails with `LeadershipChanged`: the leader may have dropped it, or may not have.
//! That error and `Timeout` leave the outcome **unknown**; the command may still be
//! applied. An outcome is never reported as success unless it was applied.
//!
//! [`NodeHandle::propose_with_slot`] also returns the [`Slot`] of the
//! batch that held the command ([`Applied`]): the driver notes each waiting id's slot as
//! it hands the batch to `apply`. The slot is the same on every replica; commands batched
//! into one slot are applied in batch order.
//!
//! Whether a proposal gets through depends on *this* node knowing a leader: right after
//! start, or after an election, one node may know the new leader while another still
//! refuses with `NoLeader`. [`wait_for_leader`] waits until every given node names the
//! same leader, and that leader (if given) has finished phase 1.
//!
//! # Reads: on the leader by the core, elsewhere through the log
//!
//! [`NodeHandle::read`] answers a query with
//! [`StateMachine::query`], linearizably.
//! [`NodeHandle::read_barrier`] is the same read without the query: it returns once this
//! node has applied every write acknowledged (anywhere) before the call, with the applied
//! position, so that the program can then read its own view of the state (say, an
//! `Arc<Mutex<_>>` its state machine updates in `apply`) from any task. Reads and
//! barriers taken in the same driver cycle share one of two paths:
//!
//! * **On the leader**, the core serves them ([`Replica::read`](paxos_core::Replica::read)):
//!   under the leader lease with no message at all, otherwise after one heartbeat round
//!   (read index). The driver queries the state machine when the read's id comes back in
//!   [`Ready::reads`](paxos_core::Ready::reads), after applying that `Ready`'s commits.
//! * **Elsewhere** (a follower, or a candidate), the driver proposes a **read marker**
//!   through the log and queries the state machine once the marker is applied on this
//!   node. The marker is ordered after every write acknowledged before the read began. The
//!   query runs after the whole applied batch, so it may also see writes ordered after the
//!   marker; those were chosen before the read returns, so the read can be ordered after
//!   them and the answer stays linearizable.
//! * **At once, on the caller's task**: [`NodeHandle::try_read_barrier`] answers a barrier
//!   without the driver when this node is the leader holding its lease, with everything
//!   chosen applied, between two driver cycles; otherwise it says `None` and the caller
//!   takes one of the paths above. It costs a lock and a clock reading: no message, no
//!   driver wake-up, no `query`. The `paxos-node` binary answers its leader's GETs this
//!   way (see ARCHITECTURE.md, "Reads on the caller's task").
//!
//! **Why `query` runs on the driver task.** The driver calls `query` at the read's
//! confirmation point, between two applies, and applies nothing more until it returns: the
//! state it sees holds every write acknowledged before the read. Off the driver task, the
//! query would race with the applies that follow, unless the driver stopped applying or
//! copied the state for it. So a slow `query` delays the whole node; to read from another
//! task, share the state and use [`NodeHandle::read_barrier`] instead, which never calls
//! `query`.
//!
//! The state machine never sees markers: every command in the log carries a one-byte tag
//! (write or read marker) that the driver adds on propose and strips before `apply`,
//! removing markers altogether, the same way on every replica. This was chosen over
//! "reads are ordinary commands the state machine must ignore" because it keeps the
//! state machine's contract unchanged (it sees exactly the commands clients proposed) and
//! leaves room for other driver-level entries. The cost is one byte per command, and every
//! member of a cluster must run this driver.
//!
//! # Failure
//!
//! A storage error, a state machine error, a transport that stops delivering, or a panic
//! stops the node for good: the driver records a [`FatalError`], fails every queued and
//! waiting request with it, drops its parts and exits. Every later call gets the same
//! error. The node is never left half alive; restart it from its storage.
//!
//! # Limits
//!
//! Every queue is bounded ([`NodeOptions`]): a full request queue or waiter table refuses
//! a request at once with `Overloaded`; the core bounds its own pending proposals.
//!
//! # Runtimes
//!
//! The node takes the one runtime seam of the paxos crates,
//! [`paxos_runtime::Runtime`] (spawn, a resettable timer, `now`), re-exported here with
//! its implementations: `TokioRuntime` (feature `tokio`) and `AsyncIoRuntime`
//! (`smol` or `async-std`: both run on async-io, one implementation).
//! The transports take the same trait, and the simulator implements it with simulated
//! time. Everything else uses runtime-neutral primitives.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod client;
mod command;
mod compaction;
mod driver;
mod error;
mod handle;
mod metrics;
mod options;
mod snapshot;
mod waiters;

/// The runtime seam: [`paxos_runtime`], re-exported.
pub mod runtime {
    #[cfg(any(feature = "smol", feature = "async-std"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "smol", feature = "async-std"))))]
    pub use paxos_runtime::AsyncIoRuntime;
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub use paxos_runtime::TokioRuntime;
    pub use paxos_runtime::{AsyncTimer, Runtime, default_runtime, timeout_at};
}

/// Storage backends ([`paxos_storage`]): [`MemoryStorage`]
/// always, `FileStorage` with the `file` feature.
pub mod storage {
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub use paxos_storage::{FileStorage, FileStorageOptions, Preallocate, RecoveryReport};
    pub use paxos_storage::{MemoryStorage, testing};
}

/// The TCP transport ([`paxos_net_tcp`]), for [`NodeBuilder::tcp`] and for tuning it
/// ([`NodeBuilder::tcp_config`]).
#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub mod tcp {
    pub use paxos_net_tcp::{ConfigError, StartError, TcpConfig, TcpStats, TcpTransport};
}

/// Mutual TLS identities ([`paxos_tls`]) for `NodeBuilder::tcp_tls` (feature `tls`) and
/// `NodeBuilder::quic` (feature `quic`): the cluster CA, this node's certificate naming it
/// (`node-<id>.paxos`), and a development CA ([`tls::dev`]).
#[cfg(any(feature = "tls", feature = "quic"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "quic"))))]
pub mod tls {
    pub use paxos_tls::{TlsError, TlsIdentity, dev, node_name};
}

/// The QUIC transport ([`paxos_net_quic`]), for [`NodeBuilder::quic`] and for tuning it
/// ([`NodeBuilder::quic_config`]).
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub mod quic {
    pub use paxos_net_quic::{
        ConfigError, QuicConfig, QuicStats, QuicTransport, Runtime, StartError, default_runtime,
    };
}

/// The core, whole: messages, the codec, the [`Replica`](paxos_core::Replica), for what
/// the names re-exported at this crate's root do not cover.
pub use paxos_core as core;

// What a program needs to build a node and write its state machine, from this one crate.
pub use async_trait::async_trait;
pub use bytes::{self, Bytes};
pub use paxos_core::{
    Ballot, Command, Committed, Config, ConfigError, FrozenState, NodeId, ProposalId, Role, Slot,
    SnapshotMeta, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError, Storage,
    StorageError, StoreOwner, Transport, TransportError, Value,
};

pub use builder::NodeBuilder;
pub use client::{Applied, wait_for_leader};
pub use error::{CompactError, FatalError, OptionsError, ProposeError, ReadError, StartError};
pub use handle::{NodeHandle, NodeStatus, PeerContact};
pub use metrics::{LATENCY_BOUNDS_US, LatencyHistogram, Metric, MetricValue, NodeMetrics};
pub use options::{Compaction, NodeOptions};
#[cfg(any(feature = "smol", feature = "async-std"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "smol", feature = "async-std"))))]
pub use runtime::AsyncIoRuntime;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use runtime::TokioRuntime;
pub use runtime::{AsyncTimer, Runtime, default_runtime, timeout_at};
pub use storage::MemoryStorage;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use storage::{FileStorage, FileStorageOptions};
#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub use tcp::{TcpConfig, TcpTransport};
