//! The conformance suite on [`MemoryStorage`].

use paxos_core::StorageError;
use paxos_storage::testing::{self, StoreFactory};
use paxos_storage::{FaultPlan, FaultyStorage, MemoryStorage};

/// Reopens one shared in-memory disk.
struct Reopen(MemoryStorage);

impl StoreFactory for Reopen {
    type Store = MemoryStorage;
    async fn open(&mut self) -> Result<MemoryStorage, StorageError> {
        Ok(self.0.clone())
    }
}

#[test]
fn memory_storage_passes_the_conformance_suite() {
    futures::executor::block_on(testing::suite(|| Reopen(MemoryStorage::new())));
}

/// Reopens a [`FaultyStorage`] with no faults armed over one shared in-memory disk.
struct ReopenFaulty(MemoryStorage);

impl StoreFactory for ReopenFaulty {
    type Store = FaultyStorage<MemoryStorage>;
    async fn open(&mut self) -> Result<Self::Store, StorageError> {
        Ok(FaultyStorage::new(self.0.clone(), FaultPlan::new()))
    }
}

#[test]
fn faulty_storage_without_faults_passes_the_conformance_suite() {
    futures::executor::block_on(testing::suite(|| ReopenFaulty(MemoryStorage::new())));
}
