//! The conformance suite on [`FileStorage`], with default and with tiny segments (so that
//! batches roll over, outgrow a segment, and compaction deletes segments).

use paxos_core::StorageError;
use paxos_storage::testing::{self, StoreFactory};
use paxos_storage::{FileStorage, FileStorageOptions};

/// Reopens the store in one temporary directory.
struct Reopen {
    dir: tempfile::TempDir,
    options: FileStorageOptions,
}

impl StoreFactory for Reopen {
    type Store = FileStorage;
    async fn open(&mut self) -> Result<FileStorage, StorageError> {
        FileStorage::open(self.dir.path(), self.options.clone())
    }
}

fn run(options: FileStorageOptions) {
    futures::executor::block_on(testing::suite(|| Reopen {
        dir: tempfile::tempdir().expect("temporary directory"),
        options: options.clone(),
    }));
}

#[test]
fn file_storage_passes_the_conformance_suite() {
    run(FileStorageOptions::default());
}

#[test]
fn file_storage_with_tiny_segments_passes_the_conformance_suite() {
    run(FileStorageOptions::default().segment_bytes(4096));
}
