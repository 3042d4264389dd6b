//! Errors, one small enum per operation, with the fatal ones kept apart in [`FatalError`].

use std::fmt;
use std::sync::Arc;

use paxos_core::{ConfigError, NodeId, StateMachineError, StorageError, TransportError};

/// Why the node stopped for good. Every pending and later call gets this error.
///
/// Each variant that wraps a part's failure keeps that failure as its
/// [`source`](std::error::Error::source): a program can match on it, e.g.
/// `FatalError::Storage(e) if e.io_kind() == Some(io::ErrorKind::StorageFull)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatalError {
    /// Persisting a `Ready` failed. The replica stopped rather than retry: after a failed
    /// fsync it cannot tell what is durable, and it may have reported state it never wrote.
    #[error("storage failed: {0}")]
    Storage(#[source] StorageError),
    /// The state machine failed to apply a chosen command or to answer a query.
    #[error("{0}")]
    StateMachine(#[source] StateMachineError),
    /// The transport stopped delivering inbound messages.
    #[error("{0}")]
    Transport(#[source] TransportError),
    /// The driver task panicked (a safety assertion of the core fired).
    #[error("the driver panicked")]
    Panicked,
    /// The node was shut down.
    #[error("the node is stopped")]
    Stopped,
}

/// Why [`compact`](crate::NodeHandle::compact) failed. The node keeps running after
/// every kind but [`Fatal`](Self::Fatal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The state machine refused to take a snapshot (the trait's default does) or failed
    /// to. Nothing was compacted.
    #[error("the state machine took no snapshot: {0}")]
    StateMachine(#[source] StateMachineError),
    /// This node is fetching a snapshot from a peer (it is far behind); it takes its own
    /// once caught up.
    #[error("a snapshot is being fetched from a peer")]
    Fetching,
    /// Too many compactions are already waiting.
    #[error("too many compactions waiting")]
    Overloaded,
    /// The node stopped, for this reason.
    #[error("the node stopped: {0}")]
    Fatal(#[source] FatalError),
}

/// Why a [`propose`](crate::NodeHandle::propose) failed.
///
/// Only `Ok` means the command was applied. `LeadershipChanged` and `Timeout` mean the
/// outcome is **unknown**: the command may still be chosen and applied later. A client
/// that retries after them should make its commands idempotent (client id and sequence
/// number, deduplicated by the state machine).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// No leader is known to this node (an election is under way). Nothing was proposed.
    #[error("no leader is known")]
    NoLeader,
    /// A queue or the waiter table is full. Nothing was proposed; back off and retry.
    #[error("overloaded")]
    Overloaded,
    /// The command exceeds the batch byte bound. Nothing was proposed.
    #[error("command of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The command's size.
        len: usize,
        /// The largest command accepted.
        max: usize,
    },
    /// The leader this proposal went through lost its leadership before the command was
    /// seen applied here. Outcome unknown.
    #[error("leadership changed; the outcome is unknown")]
    LeadershipChanged,
    /// No outcome within the request timeout. Outcome unknown.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// The command **was applied**, but the state machine pushed no output for it: a bug
    /// in [`StateMachine::apply`](crate::StateMachine::apply), which must push one
    /// output per command. Not retryable: a retry would apply it again.
    #[error("command {id:?} was applied, but the state machine gave no output for it")]
    NoOutput {
        /// The command, as the core numbered it.
        id: paxos_core::ProposalId,
    },
    /// The node stopped.
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

impl ProposeError {
    /// Whether trying again (on this node, or on another after [`Fatal`](Self::Fatal)) may
    /// succeed: `NoLeader`, `Overloaded`, `LeadershipChanged` and `Timeout`. Where
    /// [`outcome_unknown`](Self::outcome_unknown) also holds, a retry may apply the command
    /// twice unless the state machine deduplicates it (a client id and sequence number in
    /// the command).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NoLeader | Self::Overloaded | Self::LeadershipChanged | Self::Timeout
        )
    }

    /// Whether the command may have been applied, or may still be: `LeadershipChanged`,
    /// `Timeout`, and `Fatal` (a command in flight when the node stopped may still be chosen
    /// by the others). `NoLeader`, `Overloaded` and `TooLarge` proposed nothing;
    /// `NoOutput` was applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::LeadershipChanged | Self::Timeout | Self::Fatal(_)
        )
    }
}

/// Why a [`read`](crate::NodeHandle::read) failed. A failed read changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known to this node (an election is under way).
    #[error("no leader is known")]
    NoLeader,
    /// A queue or the waiter table is full; back off and retry.
    #[error("overloaded")]
    Overloaded,
    /// The leader the read went through lost its leadership first.
    #[error("leadership changed")]
    LeadershipChanged,
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The node stopped.
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

impl ReadError {
    /// Whether trying again may succeed: every error but [`Fatal`](Self::Fatal) (which may
    /// succeed on another node). A read changes nothing, so a retry is always safe.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Fatal(_))
    }
}

/// Why [`NodeBuilder::start`](crate::NodeBuilder::start) refused to start a node.
///
/// Each variant names one mistake, so a program can match on it; those that wrap a
/// part's failure keep it as their [`source`](std::error::Error::source) (a storage
/// error's [`io_kind`](StorageError::io_kind), say, or a transport's bind error). Nothing
/// was started when this is returned: no task runs, and the parts given were dropped.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A required part (transport, storage, state machine) was not given.
    Missing(&'static str),
    /// No runtime was given and [`default_runtime`](crate::default_runtime) found none.
    NoRuntime,
    /// The core's [`Config`](crate::Config) was refused.
    Config(ConfigError),
    /// The [`NodeOptions`](crate::NodeOptions) were refused.
    Options(OptionsError),
    /// The transport speaks for another node than the one being started: its peers would
    /// refuse it, or take its messages for another node's.
    IdMismatch {
        /// The node being started (`Config::id`).
        node: NodeId,
        /// The id the transport announces.
        transport: NodeId,
    },
    /// A member of the cluster has no address, so every message to it would be dropped.
    NoAddress {
        /// The member without an address.
        member: NodeId,
    },
    /// An address was given for a node that is not a member (`Config::members`): most
    /// likely a typo in one of the two lists.
    NotAMember {
        /// The node with an address but no membership.
        peer: NodeId,
    },
    /// The core's largest message does not fit the transport's largest frame: such a
    /// message would be dropped, every time.
    FrameTooSmall {
        /// `Config::max_message_bytes`.
        max_message_bytes: usize,
        /// The transport's [`max_frame_bytes`](paxos_core::Transport::max_frame_bytes).
        frame_limit: usize,
    },
    /// `Config::max_batch_bytes` leaves no room for a command after the driver's tag.
    BatchTooSmall {
        /// `Config::max_batch_bytes`.
        max_batch_bytes: usize,
        /// The tag the driver adds to every command.
        tag_bytes: usize,
    },
    /// The storage refused: it belongs to another node or cluster
    /// ([`StorageError::OwnedByOther`]), its directory is locked by another process
    /// ([`StorageError::Locked`]), or loading it failed.
    Storage(StorageError),
    /// The state machine could not be restored from the store's snapshot (a corrupt
    /// snapshot is a [`Storage`](Self::Storage) error instead).
    StateMachine(StateMachineError),
    /// The transport could not start (its listener could not be bound, say). The source
    /// is the transport's own error (for TCP, `paxos_net_tcp::StartError`).
    Transport(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

// Display and Error are written out rather than derived: thiserror's `#[source]` on an
// `Arc<dyn Error>` returns the `Arc` itself, so `downcast_ref` on the source would fail.
impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(part) => write!(f, "no {part} given to the builder"),
            Self::NoRuntime => f.write_str("no async runtime available"),
            Self::Config(e) => e.fmt(f),
            Self::Options(e) => e.fmt(f),
            Self::IdMismatch { node, transport } => {
                write!(
                    f,
                    "the transport speaks for node {transport}, but this is node {node}"
                )
            }
            Self::NoAddress { member } => write!(f, "member {member} has no address"),
            Self::NotAMember { peer } => {
                write!(
                    f,
                    "an address was given for node {peer}, which is not a member"
                )
            }
            Self::FrameTooSmall {
                max_message_bytes,
                frame_limit,
            } => write!(
                f,
                "max_message_bytes ({max_message_bytes}) does not fit the transport's frame \
                 limit ({frame_limit} bytes, one of them the version byte)"
            ),
            Self::BatchTooSmall {
                max_batch_bytes,
                tag_bytes,
            } => write!(
                f,
                "max_batch_bytes ({max_batch_bytes}) must exceed the node's {tag_bytes}-byte \
                 command tag"
            ),
            Self::Storage(e) => write!(f, "storage: {e}"),
            Self::StateMachine(e) => write!(f, "restoring the snapshot: {e}"),
            Self::Transport(e) => write!(f, "the transport could not start: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Options(e) => Some(e),
            Self::Storage(e) => Some(e),
            Self::StateMachine(e) => Some(e),
            Self::Transport(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<OptionsError> for StartError {
    fn from(e: OptionsError) -> Self {
        Self::Options(e)
    }
}

/// Why [`NodeOptions::validate`](crate::NodeOptions::validate) refused the options.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid node options: {field} {reason}")]
pub struct OptionsError {
    /// The field refused.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a caller may do after each error: retry, and whether the command may have
    /// applied. One row per variant, so a new variant must be placed.
    #[test]
    fn every_propose_error_says_whether_to_retry_and_whether_it_applied() {
        let id = paxos_core::ProposalId {
            origin: NodeId(1),
            seq: 0,
            epoch: 1,
        };
        let rows = [
            (ProposeError::NoLeader, true, false),
            (ProposeError::Overloaded, true, false),
            (ProposeError::TooLarge { len: 2, max: 1 }, false, false),
            (ProposeError::LeadershipChanged, true, true),
            (ProposeError::Timeout, true, true),
            (ProposeError::NoOutput { id }, false, false),
            (ProposeError::Fatal(FatalError::Stopped), false, true),
        ];
        for (error, retryable, unknown) in rows {
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
            assert_eq!(error.outcome_unknown(), unknown, "{error:?}");
            // Exhaustive: a new variant fails to compile here until it has a row.
            match error {
                ProposeError::NoLeader
                | ProposeError::Overloaded
                | ProposeError::TooLarge { .. }
                | ProposeError::LeadershipChanged
                | ProposeError::Timeout
                | ProposeError::NoOutput { .. }
                | ProposeError::Fatal(_) => {}
            }
        }
        for error in [
            ReadError::NoLeader,
            ReadError::Overloaded,
            ReadError::LeadershipChanged,
            ReadError::Timeout,
        ] {
            assert!(error.is_retryable(), "{error:?}");
        }
        assert!(!ReadError::Fatal(FatalError::Stopped).is_retryable());
    }
}
