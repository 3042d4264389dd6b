//! Errors, one small enum per operation, with the fatal ones kept apart in [`FatalError`].

/// Why the node stopped for good. Every pending and later call gets this error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatalError {
    /// Persisting a `Ready` failed. The replica stopped rather than retry: after a failed
    /// fsync it cannot tell what is durable, and it may have reported state it never wrote.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The state machine failed to apply a chosen command or to answer a query.
    #[error("state machine failed: {0}")]
    StateMachine(String),
    /// The transport stopped delivering inbound messages.
    #[error("transport failed: {0}")]
    Transport(String),
    /// The driver task panicked (a safety assertion of the core fired).
    #[error("the driver panicked")]
    Panicked,
    /// The node was shut down.
    #[error("the node is stopped")]
    Stopped,
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
    /// The node stopped.
    #[error(transparent)]
    Fatal(#[from] FatalError),
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

/// Why [`NodeBuilder::start`](crate::NodeBuilder::start) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A required part (transport, storage, state machine) was not given.
    #[error("no {0} given to the builder")]
    Missing(&'static str),
    /// The core or node config was refused.
    #[error("invalid config: {0}")]
    Config(String),
    /// Loading the durable state failed.
    #[error("loading storage failed: {0}")]
    Storage(String),
    /// No runtime was given and [`default_runtime`](crate::default_runtime) found none.
    #[error("no async runtime available")]
    NoRuntime,
}
