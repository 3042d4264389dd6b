//! [`MemoryStorage`]: a [`Storage`] that keeps its "disk" in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use paxos_core::{
    HardState, PersistBatch, RecoveredState, Slot, Snapshot, Storage, StorageError, StoreOwner,
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
/// crash).
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    disk: Arc<Mutex<Disk>>,
}

/// What a [`MemoryStorage`] keeps.
#[derive(Debug, Default)]
struct Disk {
    hard_state: HardState,
    entries: BTreeMap<Slot, paxos_core::Entry>,
    /// Entries for slots below this are dropped and never returned again.
    compacted_before: Slot,
    snapshot: Option<Snapshot>,
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
            // Filled in by the driver from `load_snapshot` (see `RecoveredState::snapshot`).
            snapshot: None,
        })
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        let mut disk = self.disk();
        if let Some(hard_state) = batch.hard_state {
            assert!(
                hard_state.promised >= disk.hard_state.promised,
                "promised ballot moves backwards: {} after {}",
                hard_state.promised,
                disk.hard_state.promised
            );
            disk.hard_state = hard_state;
        }
        let compacted_before = disk.compacted_before;
        for entry in &batch.entries {
            if entry.slot >= compacted_before {
                disk.entries.insert(entry.slot, entry.clone());
            }
        }
        disk.persist_calls += 1;
        Ok(())
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.disk().snapshot = Some(snapshot.clone());
        Ok(())
    }

    async fn load_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.disk().snapshot.clone())
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
