//! Log compaction: what the core keeps of a snapshot, and the driver's part in it.
//!
//! Every replica's log would otherwise grow forever. Compaction replaces the chosen,
//! applied prefix of the log by a snapshot:
//!
//! 1. **Take.** When the state machine has applied everything handed out so far (its
//!    state is the state after every slot below [`Replica::status`]`().applied`), the
//!    driver takes the state machine's snapshot and [`Replica::core_snapshot`], which is
//!    the core's own state at that point: the duplicate filter that decides which
//!    commands are applied (see [`Committed`](crate::Committed)). Both go into one durable
//!    snapshot.
//! 2. **Compact.** Once that snapshot is durable, [`Replica::compact`] drops the log below
//!    its `upto` from the core's memory, and the driver drops it from storage
//!    ([`Storage::compact`](crate::Storage::compact)).
//! 3. **Transfer.** A peer that asks for slots below the compaction point
//!    ([`CatchUp`](crate::message::CatchUp)) is answered with a
//!    [`SnapshotOffer`](crate::message::SnapshotOffer) instead. Its core then asks its
//!    driver, in [`Ready::fetch_snapshot`](crate::Ready::fetch_snapshot), to fetch the
//!    snapshot from that peer. The transfer itself is the driver's (chunks, checksums,
//!    resuming): the core never sees snapshot bytes.
//! 4. **Install.** Once the fetched snapshot is durable and the state machine restored
//!    from it, [`Replica::install_snapshot`] moves the core past it: commit and applied
//!    points to its `upto`, the duplicate filter to the snapshot's. Catch-up continues
//!    from there through the log.
//! 5. **Restart.** A restarted replica restores its state machine from its latest
//!    snapshot and passes the core's part in [`RecoveredState::snapshot`]; only the log
//!    after it is replayed.
//!
//! Why this is safe: only chosen slots are compacted (`upto` never exceeds the applied
//! point), so no acceptor's compacted slot can hold a value phase 1 must still consider.
//! An acceptor's Promise reports its commit point, which is at least its compaction
//! point, and a candidate collects values only from the highest commit point it hears of
//! (below it, every value is chosen and learned by catch-up). An acceptor never accepts
//! a value for a compacted slot, since it cannot compare it with the chosen one.
//!
//! [`Replica::status`]: crate::Replica::status
//! [`Replica::core_snapshot`]: crate::Replica::core_snapshot
//! [`Replica::compact`]: crate::Replica::compact
//! [`Replica::install_snapshot`]: crate::Replica::install_snapshot
//! [`RecoveredState::snapshot`]: crate::RecoveredState::snapshot

use serde::{Deserialize, Serialize};

use crate::replica::Dedup;
use crate::types::{NodeId, Slot};

/// The core's part of a snapshot: the state after every slot below
/// [`upto`](Self::upto) that lives in the core rather than in the state machine.
///
/// It is a deterministic function of the chosen log below `upto`, so every replica's is
/// the same at the same `upto`. Store it with the state machine's snapshot, as
/// [`encode`](Self::encode)d bytes; its contents are private.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreSnapshot {
    /// Format version of the encoding.
    version: u8,
    upto: Slot,
    dedup: Dedup,
}

/// Why [`CoreSnapshot::decode`] refused its bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreSnapshotError {
    /// The bytes are not an encoded `CoreSnapshot` (truncated, or corrupt).
    #[error("not a core snapshot: {0}")]
    Malformed(String),
    /// Encoded by a version of this crate whose format this one does not read.
    #[error("core snapshot format {0} is not supported (this build reads {FORMAT})")]
    Version(u8),
}

/// The encoding's format version.
const FORMAT: u8 = 1;

impl CoreSnapshot {
    pub(crate) fn new(upto: Slot, dedup: Dedup) -> Self {
        Self {
            version: FORMAT,
            upto,
            dedup,
        }
    }

    /// The snapshot covers every slot below this one.
    pub fn upto(&self) -> Slot {
        self.upto
    }

    /// The highest incarnation (epoch) of `node` whose commands the snapshot's prefix
    /// holds, if any.
    pub fn max_epoch(&self, node: NodeId) -> Option<u64> {
        self.dedup.max_epoch(node)
    }

    pub(crate) fn into_dedup(self) -> Dedup {
        self.dedup
    }

    /// The bytes to store (postcard). At most about 8 KiB per proposer incarnation
    /// remembered: 8 per member.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a CoreSnapshot always serializes")
    }

    /// Reads bytes written by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Result<Self, CoreSnapshotError> {
        if let Some(&version) = bytes.first() {
            if version != FORMAT {
                return Err(CoreSnapshotError::Version(version));
            }
        }
        let (snapshot, rest): (Self, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| CoreSnapshotError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CoreSnapshotError::Malformed(format!(
                "{} bytes after the end",
                rest.len()
            )));
        }
        snapshot
            .dedup
            .validate()
            .map_err(CoreSnapshotError::Malformed)?;
        Ok(snapshot)
    }
}
