//! Multi-Paxos as a pure, deterministic state machine.
//!
//! PLACEHOLDER
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod error;
pub mod message;
pub mod ready;
mod replica;
pub mod state_machine;
pub mod storage;
pub mod transport;
pub mod types;

pub use config::{Config, ConfigError};
pub use error::ProposeError;
pub use message::{Envelope, Message};
pub use replica::Replica;
pub use ready::{Committed, HardState, PersistBatch, Ready, RecoveredState, Role, Status};
pub use state_machine::{StateMachine, StateMachineError};
pub use storage::{Snapshot, Storage, StorageError};
pub use transport::{Inbound, Transport, TransportError};
pub use types::{Ballot, Command, Entry, Instant, NodeId, ProposalId, Slot, Value};
