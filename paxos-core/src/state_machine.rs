//! The [`StateMachine`] trait: the user's replicated service.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::ready::Committed;
use crate::storage::StorageError;
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

    /// Writes a snapshot of the applied state into `out`, as a stream of bytes.
    ///
    /// Called by the node's driver when it compacts the log (by policy or on demand), at
    /// a point where every command handed to [`apply`](Self::apply) has been applied and
    /// nothing else: the snapshot is the state after every slot below the applied point.
    /// Write the state in pieces (say, one record or a few KiB at a time): `out` passes
    /// them on to storage, so a snapshot need not fit in memory. `out` may fail with a
    /// [`StorageError`]; return it (wrapped) and the driver stops the node on it.
    ///
    /// The bytes must be a deterministic function of the state: replicas compare them in
    /// tests, and the transfer resumes a snapshot from another peer holding the same
    /// `upto`. Must not change the state.
    ///
    /// The default refuses with an error: the node then never compacts its log (it logs
    /// a warning and keeps the whole log, as before compaction existed).
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let _ = out;
        Err(StateMachineError::new(
            "this state machine does not take snapshots",
        ))
    }

    /// Freezes the applied state, so that its snapshot can be written on another thread
    /// while the node goes on applying.
    ///
    /// Called instead of [`snapshot`](Self::snapshot), at the same point: every command
    /// handed to [`apply`](Self::apply) is applied and nothing else. Return a cheap,
    /// independent copy of that state (a persistent map's clone, a copy-on-write
    /// handle): the node calls [`FrozenState::write`] on a thread of its own and keeps
    /// calling `apply` and `query` meanwhile, so the copy must not see those changes.
    /// The bytes it writes must be exactly the bytes `snapshot` would have written.
    ///
    /// The default returns `None`: the node then calls `snapshot` on its own task, which
    /// stops it from serving for as long as the snapshot takes to write (about a second
    /// per 300 MB). A state machine with more than a few megabytes of state should
    /// implement this.
    fn freeze(&mut self) -> Option<Box<dyn FrozenState>> {
        None
    }

    /// Replaces the whole state with the one `input` holds: the bytes an earlier
    /// [`snapshot`](Self::snapshot) wrote, on this replica or another (after a transfer).
    ///
    /// Called on restart, before anything is applied, and when a lagging replica installs
    /// a snapshot fetched from a peer. The driver has checked the bytes' checksum before
    /// this is called. An `Err` stops the node (the state may be half replaced); a node
    /// restarted on the same store tries again.
    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let _ = input;
        Err(StateMachineError::new(
            "this state machine does not restore snapshots",
        ))
    }
}

/// A copy of a state machine's state, taken by [`StateMachine::freeze`], that writes its
/// snapshot on a thread of the node's.
pub trait FrozenState: Send + 'static {
    /// Writes the snapshot into `out`, the same bytes [`StateMachine::snapshot`] writes.
    ///
    /// Runs on a thread of its own, so it may block and take its time; `out` blocks while
    /// the node's storage catches up, which bounds the memory the snapshot holds. A write
    /// to `out` fails once the node abandons the snapshot (it stopped, or it began
    /// fetching a newer one from a peer): return the error (wrapped) and end.
    fn write(self: Box<Self>, out: &mut dyn std::io::Write) -> Result<(), StateMachineError>;
}

/// Where [`StateMachine::snapshot`] writes: a byte sink backed by the node's storage (a
/// staged file for `FileStorage`), which the driver appends its own parts to.
#[async_trait]
pub trait SnapshotWrite: Send {
    /// Appends `bytes` to the snapshot.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
}

/// Where [`StateMachine::restore`] reads from: the snapshot's bytes, in order.
#[async_trait]
pub trait SnapshotRead: Send {
    /// Reads up to `buf.len()` bytes into `buf`; `Ok(0)` at the end (and only there,
    /// for a non-empty `buf`).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StorageError>;

    /// Fills `buf` unless the end comes first; returns how many bytes it read (less than
    /// `buf.len()` only at the end).
    async fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, StorageError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read(&mut buf[filled..]).await? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}

/// A snapshot held in memory: for tests, and for state machines that build theirs whole.
#[async_trait]
impl SnapshotWrite for Vec<u8> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Reads a snapshot held in memory, advancing the slice.
#[async_trait]
impl SnapshotRead for &[u8] {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StorageError> {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}
