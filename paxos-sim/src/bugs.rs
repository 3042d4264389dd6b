//! Protocol bugs injected from outside the core, to prove the checkers have teeth.
//!
//! None of these touch production code: they live in the simulated network and in a
//! storage wrapper.

use async_trait::async_trait;
use paxos_core::SnapshotMeta;
use paxos_core::{Ballot, HardState, PersistBatch, RecoveredState, Slot, Storage, StorageError};

/// A bug to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The network strips the accepted values out of every Promise, so a new leader never
    /// learns what was accepted before it.
    StripPromiseValues,
    /// Storage forgets the promised ballot on restart.
    ForgetPromiseOnRestart,
    /// The leader counts its lease from when a reply *arrives* instead of from when it
    /// sent the request: the network rewrites each Accepted's echoed stamp to the
    /// leader's clock at delivery. The classic lease bug.
    LeaseFromReply,
    /// A replica that installs a fetched snapshot keeps its own stale registers instead
    /// of restoring the snapshot's (the core part is installed): a driver that forgets
    /// to restore its state machine.
    InstallKeepsStaleState,
}

/// Storage that never makes the promised ballot durable: after a restart the acceptor
/// has forgotten every promise it made (its accepted entries and the rest of its hard
/// state survive).
#[derive(Debug)]
pub struct ForgetfulStorage<S> {
    inner: S,
}

impl<S> ForgetfulStorage<S> {
    /// Wraps a store.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl<S: Storage> Storage for ForgetfulStorage<S> {
    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        let state = self.inner.load().await?;
        assert_eq!(state.hard_state.promised, Ballot::ZERO);
        Ok(state)
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        // Everything but the promise is kept (the epoch, the commit point), so that the
        // bug breaks exactly one thing.
        let forgetful = PersistBatch {
            hard_state: batch.hard_state.map(|h| HardState {
                promised: Ballot::ZERO,
                ..h
            }),
            entries: batch.entries.clone(),
        };
        self.inner.persist(&forgetful).await
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.inner.begin_snapshot(upto).await
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.append_snapshot(bytes).await
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.inner.staged_snapshot().await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        self.inner.commit_snapshot().await
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.inner.snapshot().await
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.inner.read_snapshot(offset, buf).await
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.inner.compact(before).await
    }
}
