//! The [`Storage`] trait: where a replica keeps its promises and accepted values.

use async_trait::async_trait;
use bytes::Bytes;

use crate::ready::{PersistBatch, RecoveredState};
use crate::types::Slot;

/// A state-machine snapshot: the applied state after every slot below `upto`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot covers every slot below this one.
    pub upto: Slot,
    /// The state machine's encoding of its state.
    pub data: Bytes,
}

/// TEMP (replaced by the storage branch): who owns a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreOwner {
    /// The cluster.
    pub cluster_id: u64,
    /// The node.
    pub node_id: crate::types::NodeId,
}

impl StoreOwner {
    /// An owner.
    pub fn new(cluster_id: u64, node_id: crate::types::NodeId) -> Self {
        Self { cluster_id, node_id }
    }
}

/// Why a storage operation failed.
///
/// Every error from [`Storage::persist`] is fatal for the replica: the driver stops it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("storage I/O error during {op}: {message}")]
    Io {
        /// What was being done, e.g. "fdatasync of segment 00000003.log".
        op: String,
        /// The operating system's message.
        message: String,
    },
    /// Stored data failed validation somewhere other than a torn tail.
    #[error("corrupt storage in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The file holding the bad record.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// An earlier write or fsync failed; the store refuses all further writes because it
    /// can no longer tell what is durable.
    #[error("storage is poisoned by an earlier failure and refuses writes: {0}")]
    Poisoned(String),
    /// The store is closed.
    #[error("storage is closed")]
    Closed,
}

/// Durable storage for one replica's acceptor state.
///
/// The core never calls this trait: the driver does, once per [`Ready`](crate::Ready).
/// Methods take `&mut self` because one driver task owns the store.
///
/// # To ensure correctness
///
/// * **Durable when it returns.** [`persist`](Self::persist) returns `Ok` only after the
///   whole batch is on stable storage (fsync/fdatasync returned). The replica sends Promise
///   and Accepted messages right after; if a crash can lose what they report, an acceptor
///   can break a promise and two values can be chosen for one slot. Choose the sync level
///   explicitly; never inherit a library default.
/// * **Atomic.** A batch is applied whole or not at all, as seen by a later
///   [`load`](Self::load). A torn write must be detected (checksums) and discarded on load,
///   never half applied.
/// * **Faithful.** [`load`](Self::load) returns exactly the last durable hard state and,
///   for every slot, the last durable entry written for it (above any compaction point).
///   The promised ballot must never move backwards across a restart.
/// * **Poison on failure.** After any failed write or sync, every later call returns
///   [`StorageError::Poisoned`]. Retrying an fsync after a failure can report success
///   for data the kernel already dropped.
/// * **Cancel safety.** The driver does not cancel these futures; an implementation may
///   assume each call runs to completion.
/// * **Blocking.** An implementation may block inside these futures (a file store's
///   `fdatasync` does); a driver that shares its thread with latency-sensitive work should
///   run the store where blocking is acceptable.
///
/// `paxos_storage::testing::suite` checks these properties for any implementation.
#[async_trait]
pub trait Storage: Send {
    /// Reads back everything durable, on start-up. Called once, before any other method.
    async fn load(&mut self) -> Result<RecoveredState, StorageError>;

    /// TEMP: claims the store.
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        let _ = owner;
        Ok(())
    }

    /// Durably and atomically writes `batch`. See the trait docs.
    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError>;

    /// Durably saves a snapshot, replacing any older one. Atomic: after a crash, either the
    /// old or the new snapshot loads, never a mix.
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// The last saved snapshot, if any.
    async fn load_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError>;

    /// Drops entries for slots below `before`. Only called for slots covered by a saved
    /// snapshot; may reclaim space lazily, but later loads must not return them. The mark
    /// only moves up: an entry persisted below it later is dropped too (its value is
    /// covered by the snapshot).
    async fn compact(&mut self, before: Slot) -> Result<(), StorageError>;
}
