//! The [`Storage`] trait: where a replica keeps its promises and accepted values.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;

use crate::ready::{PersistBatch, RecoveredState};
use crate::types::{NodeId, Slot};

/// Which snapshot a store holds, or is staging: its `upto` and its length.
///
/// The bytes are opaque to the store (the node's driver writes the state machine's
/// snapshot and the core's part, with its own checksum; see `paxos_node`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The snapshot covers every slot below this one.
    pub upto: Slot,
    /// Its length in bytes (for a staged snapshot, the bytes appended so far).
    pub len: u64,
}

/// Who a store belongs to: one node of one cluster.
///
/// A node [`claim`](Storage::claim)s its store with its owner before it loads it, so that a
/// store directory given to the wrong node (a copy-paste in a config, a restored backup)
/// is refused instead of silently replaying another acceptor's promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StoreOwner {
    /// The cluster the node belongs to (the id its transport checks on every connection).
    pub cluster_id: u64,
    /// The node, within that cluster.
    pub node_id: NodeId,
}

impl StoreOwner {
    /// Node `node_id` of cluster `cluster_id`.
    pub fn new(cluster_id: u64, node_id: NodeId) -> Self {
        Self {
            cluster_id,
            node_id,
        }
    }
}

impl fmt::Display for StoreOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {:#x}", self.node_id, self.cluster_id)
    }
}

/// Why a storage operation failed.
///
/// Every error from [`Storage::persist`] is fatal for the replica: the driver stops it.
///
/// It is `Clone` (a driver hands one failure to every waiting caller), so the operating
/// system's error is shared behind an [`Arc`]. [`Error::source`] of an
/// [`Io`](Self::Io) error is that error itself, so a program can walk the chain down to
/// the [`std::io::Error`] and `downcast_ref` it; [`io_kind`](Self::io_kind) is the short
/// way to its kind.
///
/// Equality compares the variant and its fields; for [`Io`](Self::Io), the `op`, the
/// `kind` and the source's message (two distinct `io::Error`s with the same text are
/// equal).
///
/// ```
/// use std::error::Error as _;
/// use paxos_core::StorageError;
///
/// let error = StorageError::io(
///     "fdatasync of 00000000000000000001.wal",
///     std::io::Error::from(std::io::ErrorKind::StorageFull),
/// );
/// assert_eq!(error.io_kind(), Some(std::io::ErrorKind::StorageFull));
/// let source = error.source().and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert_eq!(source.map(|e| e.kind()), Some(std::io::ErrorKind::StorageFull));
/// ```
//
// Display and Error are written out rather than derived with thiserror: thiserror's
// `#[source]` on an `Arc<dyn Error>` returns the `Arc` itself (which implements `Error` by
// forwarding), so `downcast_ref::<io::Error>()` on the source would fail.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation failed.
    Io {
        /// What was being done, e.g. "fdatasync of segment 00000003.log".
        op: String,
        /// The kind of the operating system's error, to match on.
        kind: io::ErrorKind,
        /// The error itself (a [`std::io::Error`] for the stores in this workspace).
        source: Arc<dyn Error + Send + Sync>,
    },
    /// Stored data failed validation somewhere other than a torn tail.
    Corrupt {
        /// The file holding the bad record.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// Another process holds the store's lock (for a file store: its `flock` on the
    /// directory's `LOCK` file). Nothing was read or written.
    Locked {
        /// The lock file, or whatever names the store.
        path: String,
    },
    /// The store belongs to another node or another cluster; see [`Storage::claim`].
    OwnedByOther {
        /// The owner the caller claimed the store for.
        expected: StoreOwner,
        /// The owner recorded in the store.
        found: StoreOwner,
    },
    /// An earlier write or fsync failed; the store refuses all further writes because it
    /// can no longer tell what is durable.
    Poisoned(String),
    /// The store is closed.
    Closed,
    /// The caller broke the trait's contract (for example, appended to a snapshot it
    /// never began, or read a snapshot when none is saved). Nothing was written, and the
    /// store is not poisoned.
    InvalidCall(String),
}

impl StorageError {
    /// A [`StorageError::Io`] for `op` that keeps `err` as its source and its kind.
    pub fn io(op: impl Into<String>, err: io::Error) -> Self {
        Self::Io {
            op: op.into(),
            kind: err.kind(),
            source: Arc::new(err),
        }
    }

    /// The kind of the I/O error, for [`Io`](Self::Io); `None` for every other variant.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, source, .. } => write!(f, "storage I/O error during {op}: {source}"),
            Self::Corrupt {
                file,
                offset,
                reason,
            } => write!(f, "corrupt storage in {file} at offset {offset}: {reason}"),
            Self::Locked { path } => write!(
                f,
                "storage is locked by another process: {path} is held (is another node \
                 running on this store?)"
            ),
            Self::OwnedByOther { expected, found } => write!(
                f,
                "storage belongs to {found}, not to {expected}: refusing another node's store"
            ),
            Self::Poisoned(reason) => write!(
                f,
                "storage is poisoned by an earlier failure and refuses writes: {reason}"
            ),
            Self::Closed => f.write_str("storage is closed"),
            Self::InvalidCall(what) => write!(f, "storage called out of contract: {what}"),
        }
    }
}

impl Error for StorageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // The error itself, not the `Arc` (see the note on the type).
            Self::Io { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Io { op, kind, source },
                Self::Io {
                    op: other_op,
                    kind: other_kind,
                    source: other_source,
                },
            ) => {
                op == other_op
                    && kind == other_kind
                    && (Arc::ptr_eq(source, other_source)
                        || source.to_string() == other_source.to_string())
            }
            (
                Self::Corrupt {
                    file,
                    offset,
                    reason,
                },
                Self::Corrupt {
                    file: other_file,
                    offset: other_offset,
                    reason: other_reason,
                },
            ) => file == other_file && offset == other_offset && reason == other_reason,
            (Self::Locked { path }, Self::Locked { path: other }) => path == other,
            (
                Self::OwnedByOther { expected, found },
                Self::OwnedByOther {
                    expected: other_expected,
                    found: other_found,
                },
            ) => expected == other_expected && found == other_found,
            (Self::Poisoned(reason), Self::Poisoned(other)) => reason == other,
            (Self::Closed, Self::Closed) => true,
            (Self::InvalidCall(what), Self::InvalidCall(other)) => what == other,
            _ => false,
        }
    }
}

impl Eq for StorageError {}

/// A persist under way, from [`Storage::start_persist`]: resolves once its batch (and
/// every one started before it) is durable.
pub type PersistFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + 'static>>;

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
/// * **Blocking.** These futures run on the driver's async runtime, next to the node's
///   other tasks, so an implementation should not block inside them for a disk: a write
///   and an `fdatasync` can take milliseconds, and on a one-thread executor every other
///   task waits that long. `paxos_storage::FileStorage` runs all its file I/O on a thread
///   of its own per store and only awaits the answer; a store that does block (for
///   example, a synchronous embedded database called inline) should do the same or hand
///   its work to a blocking pool.
///
/// `paxos_storage::testing::suite` checks these properties for any implementation.
#[async_trait]
pub trait Storage: Send {
    /// Checks that this store belongs to `owner`, recording it as the owner on first use.
    ///
    /// Called once by the node, before [`load`](Self::load). A store records the first
    /// owner it is claimed by (durably, for a persistent store) and from then on refuses
    /// any other node or cluster with [`StorageError::OwnedByOther`]: replaying another
    /// acceptor's promises and votes under this node's id could break them. A store that
    /// already holds data but no owner (made before owners were recorded) is adopted by
    /// the first claim.
    ///
    /// The default accepts any owner and records nothing: a custom store that does not
    /// check. Both stores of `paxos-storage` check.
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        let _ = owner;
        Ok(())
    }

    /// Reads back everything durable, on start-up. Called once, before any other method
    /// except [`claim`](Self::claim).
    async fn load(&mut self) -> Result<RecoveredState, StorageError>;

    /// Durably and atomically writes `batch`. See the trait docs.
    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError>;

    /// Whether this store can [`start_persist`](Self::start_persist): pipelined persists.
    /// The default is `false`, and the driver then calls [`persist`](Self::persist), one
    /// batch at a time.
    fn pipelines_persists(&self) -> bool {
        false
    }

    /// Starts durably and atomically writing `batch`, and returns at once with a future
    /// that resolves when it is durable. The future borrows nothing of the store, so the
    /// driver may start the next batch while this one is being synced (with
    /// [`Config::max_outstanding_readys`](crate::Config::max_outstanding_readys) above 1):
    /// a store that syncs on a thread of its own can then begin the next sync as soon as
    /// one ends, instead of after a round trip through the driver.
    ///
    /// Called only if [`pipelines_persists`](Self::pipelines_persists). Every rule of
    /// `persist` holds for each batch, and one more: **in order**. Batches become
    /// durable in the order they were started: after a crash, a later batch never loads
    /// without every earlier one, and a future resolves `Ok` only once its batch and every
    /// earlier one are durable. A failure poisons the store, as for `persist`. A store may
    /// bound the batches in flight and refuse one more with [`StorageError::InvalidCall`]
    /// (nothing written, not poisoned); it must take at least 64, the largest
    /// `max_outstanding_readys`. The default refuses every call that way.
    fn start_persist(&mut self, batch: &PersistBatch) -> PersistFuture {
        let _ = batch;
        Box::pin(std::future::ready(Err(StorageError::InvalidCall(
            "this store does not pipeline persists".into(),
        ))))
    }

    /// Starts staging a new snapshot covering every slot below `upto`, discarding any
    /// snapshot staged before and not committed. The saved snapshot (if any) stays what
    /// [`snapshot`](Self::snapshot) reports until [`commit_snapshot`](Self::commit_snapshot).
    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError>;

    /// Appends `bytes` to the staged snapshot. Need not be durable before
    /// [`commit_snapshot`](Self::commit_snapshot). [`StorageError::InvalidCall`] if no
    /// snapshot is staged.
    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// The staged snapshot's `upto` and the bytes appended to it so far, if one is
    /// staged (since this store was opened: staging does not survive a restart).
    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError>;

    /// Makes the staged snapshot durable and the saved one, replacing the old one
    /// atomically: after a crash, either the old or the new snapshot loads, never a mix.
    /// Returns what is now saved. [`StorageError::InvalidCall`] if none is staged.
    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError>;

    /// The saved snapshot, if any. A store detects a snapshot that is not whole (its
    /// length differs from the one recorded) and reports it as
    /// [`StorageError::Corrupt`].
    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError>;

    /// Reads bytes of the saved snapshot from `offset` into `buf`; returns how many (less
    /// than `buf.len()` only at its end, 0 at or past it). [`StorageError::InvalidCall`]
    /// if there is no saved snapshot.
    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError>;

    /// Drops entries for slots below `before`. Only called for slots covered by a saved
    /// snapshot; may reclaim space lazily, but later loads must not return them. The mark
    /// only moves up: an entry persisted below it later is dropped too (its value is
    /// covered by the snapshot).
    async fn compact(&mut self, before: Slot) -> Result<(), StorageError>;
}
