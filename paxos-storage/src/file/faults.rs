//! [`IoFaults`]: makes a [`FileStorage`](super::FileStorage)'s own writes and fsyncs fail on
//! command, so tests exercise its real error paths.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A switchboard for I/O faults inside one [`FileStorage`](super::FileStorage), given to it
/// with [`FileStorageOptions::faults`](super::FileStorageOptions::faults).
///
/// Clones share the switchboard, so a test keeps one clone and flips faults while the store
/// runs. It also counts attempts, so a test can check that a failed fsync is never retried.
///
/// * An injected **write** failure writes the first half of the record (or of the piece of
///   a snapshot being staged), then fails, like a crash or `ENOSPC` in the middle of a
///   write: the next open finds a torn tail (or a leftover `snapshot.tmp`).
/// * An injected **fsync** failure skips the real fsync and fails, like `EIO` from
///   `fdatasync`: the data may or may not be durable.
///
/// Either poisons the store, as a real failure does.
#[derive(Clone, Debug, Default)]
pub struct IoFaults {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    fail_writes: AtomicU32,
    fail_syncs: AtomicU32,
    /// Fsyncs to let through before `fail_syncs` applies.
    pass_syncs: AtomicU32,
    write_attempts: AtomicU64,
    sync_attempts: AtomicU64,
    /// Names of the threads each fsync ran on, for the tests that check where I/O runs.
    #[cfg(test)]
    sync_threads: std::sync::Mutex<Vec<Option<String>>>,
}

/// What an injected write fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// Write normally.
    None,
    /// Write the first half, then fail.
    Torn,
}

impl IoFaults {
    /// A switchboard with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `count` writes fail (each after writing half its bytes).
    pub fn fail_next_writes(&self, count: u32) {
        self.inner.fail_writes.store(count, Ordering::SeqCst);
    }

    /// Makes the next `count` fsyncs (of log segments, snapshots or the directory) fail.
    pub fn fail_next_syncs(&self, count: u32) {
        self.fail_syncs_after(0, count);
    }

    /// Lets the next `pass` fsyncs succeed, then makes the `count` after them fail. For
    /// example `fail_syncs_after(1, 1)` before a
    /// [`commit_snapshot`](paxos_core::Storage::commit_snapshot) fails the directory fsync
    /// after the rename (the first fsync is `snapshot.tmp`'s own).
    pub fn fail_syncs_after(&self, pass: u32, count: u32) {
        self.inner.pass_syncs.store(pass, Ordering::SeqCst);
        self.inner.fail_syncs.store(count, Ordering::SeqCst);
    }

    /// Writes attempted so far, failed ones included.
    pub fn write_attempts(&self) -> u64 {
        self.inner.write_attempts.load(Ordering::SeqCst)
    }

    /// Fsyncs attempted so far, failed ones included.
    pub fn sync_attempts(&self) -> u64 {
        self.inner.sync_attempts.load(Ordering::SeqCst)
    }

    /// Called before each write: counts it and says whether to tear it.
    pub(crate) fn on_write(&self) -> WriteFault {
        self.inner.write_attempts.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.inner.fail_writes) {
            WriteFault::Torn
        } else {
            WriteFault::None
        }
    }

    /// Called before each fsync: counts it, and fails instead of syncing if armed.
    pub(crate) fn on_sync(&self) -> io::Result<()> {
        self.inner.sync_attempts.fetch_add(1, Ordering::SeqCst);
        #[cfg(test)]
        self.inner
            .sync_threads
            .lock()
            .expect("not poisoned")
            .push(std::thread::current().name().map(str::to_owned));
        if !take_one(&self.inner.pass_syncs) && take_one(&self.inner.fail_syncs) {
            Err(io::Error::other("injected fsync failure"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
impl IoFaults {
    /// Names of the threads the fsyncs so far ran on, in order.
    pub(crate) fn sync_threads(&self) -> Vec<Option<String>> {
        self.inner
            .sync_threads
            .lock()
            .expect("not poisoned")
            .clone()
    }
}

/// Decrements `counter` if it is positive; true if it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
