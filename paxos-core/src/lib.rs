//! Multi-Paxos as a pure, deterministic state machine.
//!
//! PLACEHOLDER
#![forbid(unsafe_code)]

pub mod codec;
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

pub use config::{Config, ConfigError};
pub use error::{ProposeError, ReadError};
pub use message::{Envelope, Message};
pub use ready::{
    Committed, HardState, Metrics, PersistBatch, ReadId, Ready, RecoveredState, Role, Status,
};
pub use replica::Replica;
pub use state_machine::{StateMachine, StateMachineError};
pub use storage::{Snapshot, Storage, StorageError};
pub use transport::{Inbound, Transport, TransportError};
pub use types::{Ballot, Command, Entry, Instant, NodeId, ProposalId, Slot, Value};

/// Leader leases: the rules, why each is there, and what breaks if clocks drift beyond
/// the configured bound.
#[doc = include_str!("lease_docs.md")]
pub mod lease_docs {}
