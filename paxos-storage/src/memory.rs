//! [`MemoryStorage`]: a [`Storage`] that keeps its "disk" in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    HardState, PersistBatch, PersistFuture, RecoveredState, Slot, SnapshotMeta, Storage,
    StorageError, StoreOwner,
};

/// A [`Storage`] whose "disk" lives in memory, for tests, simulation and benchmarks.
///
/// Every call is durable the moment it returns, because the disk is the process's memory:
/// nothing is lost unless the whole `MemoryStorage` (every handle) is dropped.
///
/// Handles are cheap to clone and all clones share one disk. A simulator keeps one handle
/// as "the disk" of a replica, drops the replica's handle to simulate a crash, and gives the
/// restarted replica a fresh clone: it then recovers exactly what was persisted.
///
/// ```
/// # use paxos_core::{HardState, PersistBatch, Storage, Ballot, NodeId};
/// # use paxos_storage::MemoryStorage;
/// # futures::executor::block_on(async {
/// let disk = MemoryStorage::new();
/// let mut replica_store = disk.clone();
/// replica_store.load().await.unwrap();
/// let hard_state = HardState { promised: Ballot::new(1, NodeId(1)), ..HardState::default() };
/// let batch = PersistBatch { hard_state: Some(hard_state), entries: vec![] };
/// replica_store.persist(&batch).await.unwrap();
/// drop(replica_store); // the replica crashes
///
/// let mut restarted = disk.clone();
/// assert_eq!(restarted.load().await.unwrap().hard_state, hard_state);
/// # });
/// ```
///
/// It checks the same invariants as the file store: the promised ballot never moves
/// backwards (a panic, since it is a caller bug), entries below the compaction point are
/// never returned again, and once [`claim`](Storage::claim)ed by one owner the disk
/// refuses every other (the owner is part of the shared disk, so it survives a simulated
/// crash). A snapshot being staged belongs to the handle, not the disk: like a temporary
/// file, it is gone after a simulated crash; a committed one is on the disk.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    disk: Arc<Mutex<Disk>>,
    staged: Option<(Slot, Vec<u8>)>,
}

/// Another handle on the same disk, with nothing staged. (A derived `Clone` copied the
/// staged snapshot into the clone: a replica restarted on a clone of its crashed handle
/// found it still staged, and two handles could each commit their own copy.)
impl Clone for MemoryStorage {
    fn clone(&self) -> Self {
        Self {
            disk: self.disk.clone(),
            staged: None,
        }
    }
}

/// What a [`MemoryStorage`] keeps.
#[derive(Debug, Default)]
struct Disk {
    hard_state: HardState,
    entries: BTreeMap<Slot, paxos_core::Entry>,
    /// Entries for slots below this are dropped and never returned again.
    compacted_before: Slot,
    /// The committed snapshot: its `upto` and bytes.
    snapshot: Option<(Slot, Bytes)>,
    /// Recorded by the first `claim`.
    owner: Option<StoreOwner>,
    persist_calls: u64,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many `persist` calls this disk has completed, across all handles.
    pub fn persist_calls(&self) -> u64 {
        self.disk().persist_calls
    }

    /// Writes `batch` (durable at once: memory is this store's disk).
    fn write(&self, batch: &PersistBatch) {
        let mut disk = self.disk();
        crate::assert_promise_moves_forward(batch, &disk.hard_state);
        if let Some(hard_state) = batch.hard_state {
            disk.hard_state = hard_state;
        }
        let compacted_before = disk.compacted_before;
        for entry in &batch.entries {
            if entry.slot >= compacted_before {
                disk.entries.insert(entry.slot, entry.clone());
            }
        }
        disk.persist_calls += 1;
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock can only come from an assertion below, which fired
        // before the disk was changed; the data is still consistent.
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        let mut disk = self.disk();
        match disk.owner {
            None => {
                disk.owner = Some(owner);
                Ok(())
            }
            Some(found) if found == owner => Ok(()),
            Some(found) => Err(StorageError::OwnedByOther {
                expected: owner,
                found,
            }),
        }
    }

    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        let disk = self.disk();
        Ok(RecoveredState {
            hard_state: disk.hard_state,
            entries: disk.entries.values().cloned().collect(),
            // Filled in by the driver from the saved snapshot (see `RecoveredState::snapshot`).
            snapshot: None,
        })
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.write(batch);
        Ok(())
    }

    fn pipelines_persists(&self) -> bool {
        true
    }

    /// Written at once, in the call: the future is ready.
    fn start_persist(&mut self, batch: &PersistBatch) -> PersistFuture {
        self.write(batch);
        Box::pin(std::future::ready(Ok(())))
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.staged = Some((upto, Vec::new()));
        Ok(())
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        match &mut self.staged {
            Some((_, staged)) => {
                staged.extend_from_slice(bytes);
                Ok(())
            }
            None => Err(StorageError::InvalidCall(
                "append_snapshot with no snapshot begun".into(),
            )),
        }
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        Ok(self.staged.as_ref().map(|(upto, bytes)| SnapshotMeta {
            upto: *upto,
            len: bytes.len() as u64,
        }))
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        let (upto, bytes) = self.staged.take().ok_or_else(|| {
            StorageError::InvalidCall("commit_snapshot with no snapshot begun".into())
        })?;
        let meta = SnapshotMeta {
            upto,
            len: bytes.len() as u64,
        };
        self.disk().snapshot = Some((upto, Bytes::from(bytes)));
        Ok(meta)
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        Ok(self
            .disk()
            .snapshot
            .as_ref()
            .map(|(upto, bytes)| SnapshotMeta {
                upto: *upto,
                len: bytes.len() as u64,
            }))
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let disk = self.disk();
        let Some((_, bytes)) = &disk.snapshot else {
            return Err(StorageError::InvalidCall(
                "read_snapshot with no snapshot saved".into(),
            ));
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        let mut disk = self.disk();
        if before > disk.compacted_before {
            disk.compacted_before = before;
            disk.entries = disk.entries.split_off(&before);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn a_clone_shares_the_saved_snapshot_but_not_the_staged_one() {
        let mut store = MemoryStorage::new();
        block_on(store.begin_snapshot(Slot(1))).unwrap();
        block_on(store.append_snapshot(b"one")).unwrap();
        block_on(store.commit_snapshot()).unwrap();
        block_on(store.begin_snapshot(Slot(2))).unwrap();
        block_on(store.append_snapshot(b"two")).unwrap();

        // A restart on a clone of the handle that was staging: nothing staged.
        let mut restarted = store.clone();
        assert_eq!(block_on(restarted.staged_snapshot()), Ok(None));
        assert!(matches!(
            block_on(restarted.commit_snapshot()),
            Err(StorageError::InvalidCall(_))
        ));
        let saved = SnapshotMeta {
            upto: Slot(1),
            len: 3,
        };
        assert_eq!(block_on(restarted.snapshot()), Ok(Some(saved)));
        let mut buf = [0; 8];
        assert_eq!(block_on(restarted.read_snapshot(1, &mut buf)), Ok(2));
        assert_eq!(&buf[..2], b"ne");

        // The original handle still commits what it staged, for every handle to see.
        assert_eq!(
            block_on(store.commit_snapshot()),
            Ok(SnapshotMeta {
                upto: Slot(2),
                len: 3
            })
        );
        assert_eq!(block_on(restarted.read_snapshot(0, &mut buf)), Ok(3));
        assert_eq!(&buf[..3], b"two");
    }
}
