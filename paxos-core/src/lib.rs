//! Multi-Paxos as a pure, deterministic state machine.
//!
//! `paxos-core` is the protocol and nothing else: a [`Replica`] that plays proposer,
//! acceptor and learner for one member of a cluster, and agrees with its peers on one
//! ordered log of commands. It is **sans-IO**: no async runtime, no clock, no sockets, no
//! files, no threads. Every input is a method call that carries the current time, and every
//! output is data that the caller carries out. The same replica therefore runs under a
//! production driver, in a unit test that checks each output exactly, and in a seeded
//! simulator that replays a run byte for byte.
//!
//! What it does **not** do: it never sends a message (it hands you [`Envelope`]s), never
//! writes to disk (it hands you a [`PersistBatch`]), never reads a clock (you pass
//! [`Instant`]s), never applies a command (it hands you [`Committed`] values), and never
//! calls the [`Storage`], [`Transport`] or [`StateMachine`] traits defined here: those are
//! the contracts between a driver and its backends. It never takes or moves a snapshot
//! either: log compaction ([`compaction`]) is driven by the driver, the core only drops
//! what the driver says is in a durable snapshot. No membership change yet.
//!
//! If you want a running replicated service rather than a protocol to drive by hand, use
//! the `paxos-node` crate: its `NodeBuilder` wires a `Replica` to a transport
//! (`paxos-net-tcp`), a storage backend (`paxos-storage`), your [`StateMachine`] and the
//! runtime of your choice (`paxos-runtime`), and its `NodeHandle` gives you `propose`
//! and `read` as `async fn`s (the repository's `examples/lock-service` is a complete
//! service built that way). This page is for those who write such a driver, or want to
//! know what one does.
//!
//! # Building a replica
//!
//! A replica needs a [`Config`] (its own [`NodeId`], every member's id, timers and bounds)
//! and the state its storage recovered ([`Storage::load`]; a fresh store gives
//! [`RecoveredState::default()`]). [`Replica::new`] validates the config.
//!
//! ```
//! use paxos_core::{Config, Instant, NodeId, RecoveredState, Replica, Role};
//!
//! let members = vec![NodeId(1), NodeId(2), NodeId(3)];
//! let config = Config::new(NodeId(1), members);
//! let replica = Replica::new(config, RecoveredState::default(), Instant::ZERO)?;
//! assert_eq!(replica.status().role, Role::Follower);
//! assert_eq!(replica.leader_id(), None);
//! # Ok::<(), paxos_core::ConfigError>(())
//! ```
//!
//! # Inputs
//!
//! Each input takes `now`, the replica's monotonic time: an [`Instant`] in nanoseconds
//! since an origin the driver picks (its start, say). `now` must never go backwards for
//! one replica; the core asserts it, because lease and timeout arithmetic depend on it.
//!
//! * [`Replica::handle_message`]`(now, from, message)`: a [`Message`] from peer `from`.
//!   `from` must be the authenticated sender (the transport's [`Inbound::from`]).
//!   Messages from non-members, messages claiming to come from this replica, and
//!   malformed messages (a reserved ballot, overflowing slot numbers) are dropped. Peers
//!   are trusted to follow the protocol (this is not Byzantine consensus): a member that
//!   reported two different chosen values for one slot would trip a safety assertion
//!   rather than corrupt the log.
//! * [`Replica::handle_timeout`]`(now)`: fires every timer due at `now` (heartbeats,
//!   resends, elections, catch-up). Call it when [`Replica::poll_timeout`] says so, and ask
//!   `poll_timeout` again after every input: inputs move deadlines. There are no ticks;
//!   timeouts are deadlines, so a driver that stalls never undercounts elapsed time.
//! * [`Replica::propose`]`(now, payload)`: a command for the log, opaque bytes. On the
//!   leader it is queued for the next batch; on a follower it is forwarded to the leader
//!   it knows. The returned [`ProposalId`] comes back on the command in [`Committed`]
//!   once it is chosen. A [`ProposeRefused`] means nothing was queued; `Ok` means queued,
//!   not chosen (a command can be lost with a leader that fails, so callers time out and
//!   retry, and a state machine that must apply each command once deduplicates).
//! * [`Replica::read`]`(now)`: a linearizable read, on the leader only. The returned
//!   [`ReadId`] shows up in [`Ready::reads`] once the state machine may be read (or in
//!   [`Ready::aborted_reads`] if leadership changed first). Under the leader lease it costs
//!   no message; otherwise it waits for one heartbeat round.
//!
//! Inputs only change state. The work they cause comes out of [`Replica::poll_ready`], so
//! a driver that feeds many inputs before polling gets them batched into one persist.
//!
//! # Outputs: one `Ready` at a time
//!
//! [`Replica::poll_ready`] returns a [`Ready`]: the state to make durable, the messages to
//! send, the chosen values to apply, and the reads that may be answered. Handle it by the
//! **ordering rule** written on the type:
//!
//! 1. write [`Ready::persist`] with one atomic, durable [`Storage::persist`] call;
//! 2. only then send [`Ready::messages`] (they include Promise and Accepted messages that
//!    report the state just persisted; sent earlier, a crash could break a promise, and two
//!    values could be chosen for one slot);
//! 3. apply [`Ready::committed`] to the state machine, in order, then answer
//!    [`Ready::reads`] from it and fail [`Ready::aborted_reads`] (this may run while the
//!    persist of step 1 is under way: the values are chosen, so already durable on a
//!    majority);
//! 4. call [`Replica::advance`] with [`Ready::id`].
//!
//! `poll_ready` returns `None` while a `Ready` is outstanding (or, with
//! [`Config::max_outstanding_readys`] above 1, that many: they are then persisted and
//! advanced in order). A replica's messages to
//! itself never appear in `messages`: they are delivered inside `advance`, after the
//! persist, so the leader's own acceptor obeys the same persist-before-reply rule as the
//! others. If persisting fails, drop the replica and restart it from storage; never retry
//! and go on.
//!
//! The full contract, including what panics (driver bugs, such as advancing the wrong
//! `Ready` or moving time backwards), is on [`Replica`].
//!
//! # A three-replica cluster, driven by hand
//!
//! Everything a driver does, in memory: each replica gets a "disk" (the last hard state
//! and one entry per slot) and a "state machine" (the list of applied commands); a queue
//! stands in for the network and delivers every message, in order, with no delay; when
//! nothing is in flight, the clock jumps to the earliest deadline. The run elects a leader,
//! commits a command proposed on the leader and one proposed on a follower, reads on the
//! leader, and restarts a replica from its disk.
//!
//! ```
//! use std::collections::{BTreeMap, VecDeque};
//!
//! use bytes::Bytes;
//! use paxos_core::{
//!     Ballot, Config, Entry, Envelope, HardState, Instant, NodeId, ProposalId, ReadRefused,
//!     ReadId, RecoveredState, Replica, Role, Slot,
//! };
//!
//! /// What a driver keeps next to one replica: its disk and its state machine.
//! #[derive(Default)]
//! struct Node {
//!     hard_state: HardState,
//!     entries: BTreeMap<Slot, Entry>,
//!     applied: Vec<(ProposalId, Bytes)>,
//!     reads_answered: Vec<(ReadId, usize)>,
//! }
//!
//! struct Cluster {
//!     replicas: Vec<Replica>,
//!     nodes: Vec<Node>,
//!     /// Messages in flight: (sender, envelope).
//!     network: VecDeque<(NodeId, Envelope)>,
//!     /// One clock for everyone, for simplicity: each replica only needs its own to be
//!     /// monotonic.
//!     now: Instant,
//! }
//!
//! impl Cluster {
//!     /// Handles every `Ready` replica `i` has, by the ordering rule.
//!     fn drive(&mut self, i: usize) {
//!         let (replica, node) = (&mut self.replicas[i], &mut self.nodes[i]);
//!         while let Some(ready) = replica.poll_ready() {
//!             // 1. Persist. (A real store writes this as one batch and fsyncs it.)
//!             if let Some(hard_state) = ready.persist.hard_state {
//!                 node.hard_state = hard_state;
//!             }
//!             for entry in &ready.persist.entries {
//!                 node.entries.insert(entry.slot, entry.clone());
//!             }
//!             // 2. Send, now that the state the messages report is durable.
//!             let from = replica.id();
//!             self.network.extend(ready.messages.iter().map(|e| (from, e.clone())));
//!             // 3. Apply the chosen commands in log order, then answer the reads.
//!             for committed in &ready.committed {
//!                 for command in committed.value.commands() {
//!                     node.applied.push((command.id, command.payload.clone()));
//!                 }
//!             }
//!             for &read in &ready.reads {
//!                 // A real read queries the state machine; here: how much it applied.
//!                 node.reads_answered.push((read, node.applied.len()));
//!             }
//!             // 4. Hand the batch back.
//!             replica.advance(ready.id);
//!         }
//!     }
//!
//!     /// Delivers the next message, or, with none in flight, moves the clock to the
//!     /// earliest deadline and fires the timers that are due.
//!     fn step(&mut self) {
//!         if let Some((from, Envelope { to, message })) = self.network.pop_front() {
//!             let i = self.index(to);
//!             self.replicas[i].handle_message(self.now, from, message);
//!             self.drive(i);
//!             return;
//!         }
//!         let next = self.replicas.iter().filter_map(Replica::poll_timeout).min();
//!         self.now = self.now.max(next.expect("a voter always has a timer"));
//!         for i in 0..self.replicas.len() {
//!             if self.replicas[i].poll_timeout().is_some_and(|t| t <= self.now) {
//!                 self.replicas[i].handle_timeout(self.now);
//!                 self.drive(i);
//!             }
//!         }
//!     }
//!
//!     /// Steps until `done` returns something; `None` after 10,000 steps.
//!     fn run_until<T>(&mut self, mut done: impl FnMut(&Self) -> Option<T>) -> Option<T> {
//!         for _ in 0..10_000 {
//!             if let Some(out) = done(self) {
//!                 return Some(out);
//!             }
//!             self.step();
//!         }
//!         None
//!     }
//!
//!     /// The replica every replica agrees leads, if any.
//!     fn leader(&self) -> Option<usize> {
//!         let i = self.replicas.iter().position(|r| r.status().role == Role::Leader)?;
//!         let id = self.replicas[i].id();
//!         self.replicas.iter().all(|r| r.leader_id() == Some(id)).then_some(i)
//!     }
//!
//!     fn index(&self, id: NodeId) -> usize {
//!         self.replicas.iter().position(|r| r.id() == id).expect("a member")
//!     }
//! }
//!
//! fn config(id: NodeId, members: &[NodeId]) -> Config {
//!     let mut config = Config::new(id, members.to_vec());
//!     // Seeded election jitter: the same run every time.
//!     config.rng_seed = Some([id.0 as u8; 32]);
//!     config
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let members = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut replicas = Vec::new();
//! for &id in &members {
//!     let fresh = RecoveredState::default();
//!     replicas.push(Replica::new(config(id, &members), fresh, Instant::ZERO)?);
//! }
//! let mut cluster = Cluster {
//!     replicas,
//!     nodes: members.iter().map(|_| Node::default()).collect(),
//!     network: VecDeque::new(),
//!     now: Instant::ZERO,
//! };
//!
//! // Nobody leads at first. Time passes, an election timeout fires, and one replica wins
//! // a pre-vote and phase 1.
//! let leader = cluster.run_until(Cluster::leader).expect("a leader is elected");
//! let follower = (leader + 1) % 3;
//!
//! // A command proposed on the leader, and one proposed on a follower (forwarded to the
//! // leader), are chosen and applied on every replica, in the same order.
//! let now = cluster.now;
//! let first = cluster.replicas[leader].propose(now, Bytes::from_static(b"set x = 1"))?;
//! let second = cluster.replicas[follower].propose(now, Bytes::from_static(b"set y = 2"))?;
//! assert_eq!(first.origin, members[leader]);
//! assert_eq!(second.origin, members[follower]);
//! // The driver must poll after inputs: the proposals leave in the next Ready.
//! cluster.drive(leader);
//! cluster.drive(follower);
//! cluster.run_until(|c| c.nodes.iter().all(|n| n.applied.len() == 2).then_some(()))
//!     .expect("both commands are applied everywhere");
//! let expected = vec![
//!     (first, Bytes::from_static(b"set x = 1")),
//!     (second, Bytes::from_static(b"set y = 2")),
//! ];
//! for node in &cluster.nodes {
//!     assert_eq!(node.applied, expected);
//! }
//!
//! // A linearizable read on the leader: answered after both writes are applied there.
//! let read = cluster.replicas[leader].read(cluster.now)?;
//! cluster.drive(leader);
//! let answered = cluster
//!     .run_until(|c| c.nodes[leader].reads_answered.iter().copied().find(|r| r.0 == read))
//!     .expect("the read is answered");
//! assert_eq!(answered, (read, 2));
//! // A follower serves no reads; it names the leader instead.
//! let refused = cluster.replicas[follower].read(cluster.now);
//! assert_eq!(
//!     refused,
//!     Err(ReadRefused::NotLeader { leader: Some(members[leader]) })
//! );
//!
//! // A follower crashes and restarts from its disk, with an empty state machine. The
//! // replica hands it every chosen command again, from slot 0.
//! let recovered = RecoveredState {
//!     hard_state: cluster.nodes[follower].hard_state,
//!     entries: cluster.nodes[follower].entries.values().cloned().collect(),
//!     snapshot: None, // never compacted: see `compaction`
//! };
//! assert!(recovered.hard_state.promised > Ballot::ZERO, "its promise survived");
//! let id = members[follower];
//! cluster.replicas[follower] = Replica::new(config(id, &members), recovered, cluster.now)?;
//! cluster.nodes[follower].applied.clear();
//! cluster.drive(follower);
//! cluster.run_until(|c| (c.nodes[follower].applied.len() == 2).then_some(()))
//!     .expect("the restarted replica applies the log again");
//! assert_eq!(cluster.nodes[follower].applied, expected);
//! # Ok(())
//! # }
//! ```
//!
//! A real driver differs in three ways: it persists through a [`Storage`] and waits for
//! the fsync before sending; it sends through a [`Transport`], which may lose, duplicate
//! or reorder messages (the replica retransmits on its timers); and it takes `now` from a
//! monotonic clock and sleeps until [`Replica::poll_timeout`] or the next input, whichever
//! comes first. `paxos-node`'s driver is that loop; `paxos-sim` runs this one under
//! seeded faults.
//!
//! # The backend traits
//!
//! [`Storage`], [`Transport`] and [`StateMachine`] are defined here, with a "To ensure
//! correctness" section each, so that backends depend on this crate alone. The core
//! calls none of them. `paxos-storage` implements `Storage` (memory and files, plus a
//! conformance suite for your own), `paxos-net-tcp` implements `Transport`, and you
//! implement `StateMachine`.
//!
//! # Design notes
//!
//! * [`lease_docs`]: leader leases, and what breaks when clocks drift beyond the bound.
//! * [`codec`]: the framed wire format; [`wire`]: byte bounds on what messages carry.
//! * [`Committed`]: how each proposal is applied at most once.
#![forbid(unsafe_code)]

pub mod codec;
pub mod compaction;
pub mod config;
pub mod error;
mod lease;
pub mod message;
pub mod ready;
mod replica;
pub mod state_machine;
pub mod storage;
pub mod transport;
pub mod types;
pub mod wire;

pub use compaction::{CoreSnapshot, CoreSnapshotError};
pub use config::{Config, ConfigError};
pub use error::{ProposeRefused, ReadRefused};
pub use message::{Envelope, Message};
pub use ready::{
    Chosen, Committed, HardState, Metrics, PersistBatch, ReadId, Ready, RecoveredState, Role,
    SnapshotFetch, Status,
};
pub use replica::Replica;
pub use state_machine::{
    FrozenState, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError,
};
pub use storage::{PersistFuture, SnapshotMeta, Storage, StorageError, StoreOwner};
pub use transport::{Inbound, Transport, TransportError};
pub use types::{Ballot, Command, Entry, Instant, NodeId, ProposalId, Slot, Value};

/// Leader leases: the rules, why each is there, and what breaks if clocks drift beyond
/// the configured bound.
#[doc = include_str!("lease_docs.md")]
pub mod lease_docs {}
