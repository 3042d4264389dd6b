//! The [`StateMachine`] trait: the user's replicated service.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::ready::Committed;
use crate::types::ProposalId;

/// Why the state machine failed. Fatal for the replica: a deterministic state machine that
/// cannot apply a chosen command cannot stay in step with its peers.
///
/// It keeps the error that caused it, if any, as its [`source`](Error::source), so a
/// program that stops on it can still match on (downcast) the original error.
#[derive(Clone)]
pub struct StateMachineError {
    message: String,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl StateMachineError {
    /// An error with a message and no source.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`, described by `message` (what was being done).
    pub fn with_source(
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// What failed, without the source's text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StateMachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state machine failed: {}", self.message)
    }
}

// Written out rather than derived: thiserror's `#[source]` on an `Arc<dyn Error>` returns
// the `Arc` itself, so `downcast_ref` on the source would fail.
impl Error for StateMachineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl fmt::Debug for StateMachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachineError")
            .field("message", &self.message)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

/// Equal when the messages are equal and both or neither have a source with the same text
/// (a source is an arbitrary error, compared by what it says).
impl PartialEq for StateMachineError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
            && self.source.as_ref().map(|s| s.to_string())
                == other.source.as_ref().map(|s| s.to_string())
    }
}

impl Eq for StateMachineError {}

/// The replicated service: applies chosen commands in log order.
///
/// # To ensure correctness
///
/// * **Deterministic.** Applying the same commands in the same order from the same
///   snapshot must give the same state and outputs on every replica. No clocks, no
///   randomness, no iteration over hash maps with per-process seeds.
/// * **Invalid commands are outputs, not errors.** A command that makes no sense for the
///   state (a bad key, a failed check) must produce an error *output*, identically on
///   every replica. Returning `Err` stops the replica.
/// * **Exactly once is the state machine's business.** A client that retries a write
///   after a timeout may get it into the log twice. To apply it once, put a client id and
///   sequence number in the command and deduplicate in the replicated state.
/// * **Queries read, never write.** [`query`](Self::query) must not change state: it runs
///   on one replica only.
#[async_trait]
pub trait StateMachine: Send {
    /// Applies a batch of chosen values in order, pushing one output per command.
    ///
    /// Every command needs its output: a command that was proposed through a node and
    /// gets none fails its caller with an error naming it (`paxos-node`'s
    /// `ProposeError::NoOutput`), rather than leaving it to time out.
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError>;

    /// Answers a read-only query against the current applied state.
    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError>;

    /// Serializes the applied state.
    ///
    /// **Not called yet**: log compaction, which will call it, is not built, so neither the
    /// core nor `paxos-node` ever asks for a snapshot today. The default refuses with an
    /// error; a state machine that is to be compacted later overrides both this and
    /// [`restore`](Self::restore).
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        Err(StateMachineError::new(
            "this state machine does not take snapshots",
        ))
    }

    /// Replaces the state with a snapshot's. **Not called yet** (see
    /// [`snapshot`](Self::snapshot)); the default refuses with an error.
    async fn restore(&mut self, data: &[u8]) -> Result<(), StateMachineError> {
        let _ = data;
        Err(StateMachineError::new(
            "this state machine does not restore snapshots",
        ))
    }
}
