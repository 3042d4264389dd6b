//! The [`StateMachine`] trait: the user's replicated service.

use async_trait::async_trait;
use bytes::Bytes;

use crate::ready::Committed;
use crate::types::ProposalId;

/// Why the state machine failed. Fatal for the replica: a deterministic state machine that
/// cannot apply a chosen command cannot stay in step with its peers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state machine failed: {0}")]
pub struct StateMachineError(pub String);

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
        Err(StateMachineError(
            "this state machine does not take snapshots".to_owned(),
        ))
    }

    /// Replaces the state with a snapshot's. **Not called yet** (see
    /// [`snapshot`](Self::snapshot)); the default refuses with an error.
    async fn restore(&mut self, data: &[u8]) -> Result<(), StateMachineError> {
        let _ = data;
        Err(StateMachineError(
            "this state machine does not restore snapshots".to_owned(),
        ))
    }
}
