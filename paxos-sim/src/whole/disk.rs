//! Simulated disks.
//!
//! [`SimDisk`] is a [`Storage`] over a [`MemoryStorage`] "platter" that takes simulated
//! time to sync. A batch is durable only once its `persist` returns; a crash while it is
//! in flight (the node's tasks dropped mid-await) either loses the batch or keeps it
//! whole, by a seeded coin: an unsynced write is lost, and a torn last record is detected
//! and dropped as the file store drops it, never half applied. In the simulator a
//! `SimDisk` is wrapped in [`FaultyStorage`](paxos_storage::FaultyStorage), whose seeded
//! fsync errors poison the store and stop the node.
//!
//! [`AckBeforeSync`] is a deliberately broken store for the checker's teeth: it answers
//! before it syncs.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use paxos_core::{
    PersistBatch, PersistFuture, RecoveredState, Slot, SnapshotMeta, Storage, StorageError,
};
use paxos_runtime::Runtime;
use paxos_storage::MemoryStorage;

/// A coin shared by a run's disks (seeded).
pub(crate) type Coin = Arc<Mutex<rand_chacha::ChaCha8Rng>>;

fn flip(coin: &Coin) -> bool {
    use rand_chacha::rand_core::RngCore;
    coin.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .next_u32()
        % 2
        == 0
}

/// A disk that takes `sync` of simulated time per batch.
///
/// With `pipelined`, it also takes batches with `start_persist`: each is durable `sync`
/// after it started or once the batch before it is, whichever is later, so one syncs
/// while the next waits, as on a file store's I/O thread. A crash drops the batches in
/// flight oldest first, and keeps a prefix of them: each is kept by the coin only if every
/// one before it was.
pub(crate) struct SimDisk {
    pub(crate) platter: MemoryStorage,
    pub(crate) rt: Arc<dyn Runtime>,
    pub(crate) sync: std::time::Duration,
    pub(crate) coin: Coin,
    pub(crate) pipelined: bool,
    /// When the last pipelined batch is durable, and whether a crash lost one.
    pub(crate) chain: Arc<Mutex<Chain>>,
}

/// The order of a [`SimDisk`]'s pipelined batches.
#[derive(Default)]
pub(crate) struct Chain {
    last_done: Option<std::time::Instant>,
    lost: bool,
}

/// A pipelined batch in flight: if dropped before it completes (a crash), it reaches the
/// platter by the coin, and only if every batch before it did.
struct Pipelined {
    platter: MemoryStorage,
    batch: Option<PersistBatch>,
    coin: Coin,
    chain: Arc<Mutex<Chain>>,
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
            if !chain.lost && flip(&self.coin) {
                let _ = futures::executor::block_on(self.platter.persist(&batch));
            } else {
                chain.lost = true;
            }
        }
    }
}

/// A batch being synced: if dropped before it completes (a crash), the coin says whether
/// it reached the platter.
struct InFlight<'a> {
    platter: &'a MemoryStorage,
    batch: Option<&'a PersistBatch>,
    coin: &'a Coin,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            if flip(self.coin) {
                let mut platter = self.platter.clone();
                let _ = futures::executor::block_on(platter.persist(batch));
            }
        }
    }
}

#[async_trait]
impl Storage for SimDisk {
    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.platter.load().await
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        let mut guard = InFlight {
            platter: &self.platter,
            batch: Some(batch),
            coin: &self.coin,
        };
        self.rt.sleep(self.sync).await;
        guard.batch = None;
        drop(guard);
        self.platter.persist(batch).await
    }

    fn pipelines_persists(&self) -> bool {
        self.pipelined
    }

    fn start_persist(&mut self, batch: &PersistBatch) -> PersistFuture {
        let now = self.rt.now();
        let done = {
            let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
            let done = chain
                .last_done
                .map_or(now + self.sync, |last| last.max(now + self.sync));
            chain.last_done = Some(done);
            done
        };
        let mut guard = Pipelined {
            platter: self.platter.clone(),
            batch: Some(batch.clone()),
            coin: self.coin.clone(),
            chain: self.chain.clone(),
        };
        let rt = self.rt.clone();
        Box::pin(async move {
            let now = rt.now();
            if done > now {
                rt.sleep(done - now).await;
            }
            let batch = guard.batch.take().expect("taken once");
            let mut platter = guard.platter.clone();
            drop(guard);
            platter.persist(&batch).await
        })
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.platter.begin_snapshot(upto).await
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.platter.append_snapshot(bytes).await
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.platter.staged_snapshot().await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        // The fsync and rename take a sync's time; a crash during it keeps the old one.
        self.rt.sleep(self.sync).await;
        self.platter.commit_snapshot().await
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.platter.snapshot().await
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.platter.read_snapshot(offset, buf).await
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.platter.compact(before).await
    }
}

/// A broken store: `persist` returns at once and a background task writes the batches to
/// the platter, in order, each after the sync time. A crash drops the task and whatever it
/// had not written yet: batches the core was told are durable.
pub(crate) struct AckBeforeSync {
    pub(crate) disk: SimDisk,
    queue: Arc<Mutex<std::collections::VecDeque<PersistBatch>>>,
    flushing: bool,
}

impl AckBeforeSync {
    pub(crate) fn new(disk: SimDisk) -> Self {
        Self {
            disk,
            queue: Arc::default(),
            flushing: false,
        }
    }
}

#[async_trait]
impl Storage for AckBeforeSync {
    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.disk.load().await
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(batch.clone());
        if !self.flushing {
            self.flushing = true;
            let (queue, rt, sync) = (self.queue.clone(), self.disk.rt.clone(), self.disk.sync);
            let mut platter = self.disk.platter.clone();
            // Spawned on the node, so a crash drops it with what it had not written.
            self.disk.rt.spawn(Box::pin(async move {
                loop {
                    rt.sleep(sync).await;
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    if let Some(batch) = next {
                        let _ = platter.persist(&batch).await;
                    }
                }
            }));
        }
        Ok(())
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.disk.begin_snapshot(upto).await
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.disk.append_snapshot(bytes).await
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.disk.staged_snapshot().await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        self.disk.commit_snapshot().await
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.disk.snapshot().await
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.disk.read_snapshot(offset, buf).await
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.disk.compact(before).await
    }
}
