//! The conformance suite on [`MemoryStorage`].

use paxos_core::StorageError;
use paxos_storage::MemoryStorage;
use paxos_storage::testing::{self, StoreFactory};

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
