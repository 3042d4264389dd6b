//! Storage backends for [`paxos_core`]: where a replica keeps its promised ballot, its
//! accepted entries and its state-machine snapshot.
//!
//! * [`MemoryStorage`]: the "disk" is process memory, shared by cloned handles so a
//!   simulator can keep it across a simulated crash. For tests, simulation and benchmarks.
//! * [`FileStorage`]: a checksummed write-ahead log in preallocated segment files (1 MiB
//!   at first, doubling up to 64 MiB) with group commit (one write and one `fdatasync` per
//!   batch), torn-tail recovery, atomically replaced snapshots, and an `OWNER` file that
//!   refuses another node's directory, all on an I/O thread of its own. Its
//!   [module docs](mod@file) hold the design: record format, segment naming, recovery
//!   rules, and what is fsynced when.
//! * [`FaultyStorage`]: wraps any store and fails its writes on command or by a seeded coin,
//!   then stays poisoned, for simulation.
//! * [`testing`]: a conformance suite that any [`Storage`](paxos_core::Storage)
//!   implementation, including your own, can run.
//!
//! What this crate does not do: it never decides what to persist (the core does, through
//! each `Ready`), it does not replicate, it does not interpret commands or snapshots, and it
//! needs no async runtime (no tokio, smol or async-std). `FileStorage` starts one thread
//! per open store and does all its file I/O there (one write and one `fdatasync` per
//! `persist`), so its `async fn`s never block the executor they are polled on; the thread
//! is stopped and joined when the store is dropped. `MemoryStorage` and `FaultyStorage`
//! start no threads. `FileStorage` is Linux/Unix only (`pwrite`, `fdatasync`, `fallocate`,
//! `flock`).
//!
//! # Choosing the sync level
//!
//! There is one, and it is not configurable: a call that writes returns only after
//! `fdatasync` (log records) or `fsync` (new files, the directory) returned. Nothing is
//! inherited from a library or OS default.
//!
//! # Compaction semantics
//!
//! [`Storage::compact(before)`](paxos_core::Storage::compact) sets a low-water mark that
//! only moves up: entries for slots below it are dropped and never returned by a later
//! `load`, including entries for such slots persisted after the call (they are covered by
//! a snapshot, so the value they carry is already applied).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod faulty;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub mod file;
pub mod memory;
pub mod testing;

pub use faulty::{Fault, FaultPlan, FaultyStorage};
#[cfg(feature = "file")]
pub use file::{FileStorage, FileStorageOptions, IoFaults, Preallocate, RecoveryReport, TornTail};
pub use memory::MemoryStorage;

/// The safety invariant every store checks before it writes `batch`: the promise never
/// moves backwards from `current`, the one it holds. Panics, in release builds too, if it
/// does.
pub(crate) fn assert_promise_moves_forward(
    batch: &paxos_core::PersistBatch,
    current: &paxos_core::HardState,
) {
    if let Some(hard_state) = batch.hard_state {
        assert!(
            hard_state.promised >= current.promised,
            "promised ballot moves backwards: {} after {}",
            hard_state.promised,
            current.promised
        );
    }
}
