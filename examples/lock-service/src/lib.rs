//! A replicated lock service on `paxos-node`: an example of what a library user builds.
//!
//! Three parts, each on the public API only:
//!
//! * [`LockMachine`], the [`StateMachine`](paxos_node::StateMachine): named locks, each
//!   held by at most one owner, with a **fencing token** per acquisition that grows with
//!   every acquisition. Commands ([`Command`]) and queries ([`Query`]) are postcard
//!   encoded; bad bytes get [`Response::Invalid`], never an error (an error would stop the
//!   node).
//! * [`LocalCluster`]: nodes `1..=n` in one process, each a [`paxos_node::NodeBuilder`]
//!   with a [`paxos_node::TcpTransport`] on 127.0.0.1 (port 0, so nothing collides), a
//!   [`paxos_node::MemoryStorage`] or [`paxos_node::FileStorage`]
//!   ([`StorageChoice`]), on tokio or smol ([`RuntimeChoice`]).
//! * [`LockClient`]: acquire, release and look up locks through any node, retrying within
//!   a deadline what a node leaves unknown (no leader yet, a leadership change, a
//!   timeout). The commands are built so that a retry is safe.
//!
//! The binary (`cargo run -p paxos-example-lock -- --runtime smol --storage file`) starts
//! three nodes, takes and releases locks, shuts the leader down, and prints what happens.
//!
//! ```
//! use paxos_example_lock::{LocalCluster, LockClient, Response, RuntimeChoice, StorageChoice};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! RuntimeChoice::Smol.block_on(|runtime| async move {
//!     let cluster = LocalCluster::start(runtime.clone(), 3, StorageChoice::Memory).await?;
//!     // Any node takes requests; a follower forwards them to the leader.
//!     let mut alice = LockClient::new(runtime.clone(), cluster.handles());
//!     let mut bob = LockClient::new(runtime.clone(), cluster.handles()).prefer(2);
//!
//!     let Response::Acquired { token } = alice.acquire("printer", "alice").await? else {
//!         panic!("the lock was free");
//!     };
//!     assert!(matches!(bob.acquire("printer", "bob").await?, Response::Held(_)));
//!     assert!(matches!(
//!         bob.release("printer", "bob", token).await?,
//!         Response::NotOwner { .. }
//!     ));
//!     assert_eq!(alice.release("printer", "alice", token).await?, Response::Released);
//!     let Response::Acquired { token: next } = bob.acquire("printer", "bob").await? else {
//!         panic!("the lock was released");
//!     };
//!     assert!(next > token, "fencing tokens grow");
//!
//!     cluster.shutdown().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })??;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod client;
mod cluster;
mod machine;

pub use client::{ClientError, DEFAULT_DEADLINE, LockClient};
pub use cluster::{ClusterError, LocalCluster, RuntimeChoice, StorageChoice};
pub use machine::{Command, Holder, LockMachine, MAX_NAME_BYTES, Query, Response};
