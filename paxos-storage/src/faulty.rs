//! [`FaultyStorage`]: wraps any [`Storage`] and makes its writes fail, on command or by a
//! seeded coin, in the style of FoundationDB's BUGGIFY.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use paxos_core::{
    PersistBatch, PersistFuture, RecoveredState, Slot, SnapshotMeta, Storage, StorageError,
    StoreOwner,
};

/// How an injected failure of a write (`persist`, `commit_snapshot` or `compact`) behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The write never reaches the inner store, then the call fails: a failed fsync whose
    /// data the kernel dropped.
    LoseWrite,
    /// The write reaches the inner store, then the call fails: a failed fsync whose data
    /// made it to disk anyway. The caller must not assume either way.
    KeepWrite,
}

/// The fault switchboard of a [`FaultyStorage`]. Clones share it, so a simulator keeps one
/// and arms faults while the replica owns the store.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    inner: Arc<Mutex<PlanState>>,
}

#[derive(Debug, Default)]
struct PlanState {
    /// Faults for the next writes, in order.
    queued: std::collections::VecDeque<Fault>,
    /// Random faults: (generator state, probability per million writes).
    random: Option<(u64, u32)>,
    injected: u64,
    writes: u64,
}

impl FaultPlan {
    /// A plan that injects nothing until told to.
    pub fn new() -> Self {
        Self::default()
    }

    /// A plan that fails each write with probability `per_million / 1_000_000`, choosing
    /// the fault from `seed`, so a simulation run is reproducible from its seed.
    pub fn seeded(seed: u64, per_million: u32) -> Self {
        let plan = Self::new();
        plan.state().random = Some((seed, per_million.min(1_000_000)));
        plan
    }

    /// Changes the probability of a random fault to `per_million / 1_000_000` per write
    /// (0 switches random faults off), keeping the generator's state: a simulator's calm
    /// spells set it to 0, its storms back up.
    pub fn set_rate(&self, per_million: u32) {
        let mut state = self.state();
        let seed = state.random.map_or(0x5eed, |(rng, _)| rng);
        state.random = Some((seed, per_million.min(1_000_000)));
    }

    /// Makes the next write fail with `fault` (after any already queued).
    pub fn fail_next_write(&self, fault: Fault) {
        self.state().queued.push_back(fault);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// Writes attempted so far (through every store sharing this plan, refused ones
    /// excluded).
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    fn state(&self) -> MutexGuard<'_, PlanState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the fate of one write.
    fn next_write(&self) -> Option<Fault> {
        let mut state = self.state();
        state.writes += 1;
        let fault = state.queued.pop_front().or_else(|| {
            let (rng, per_million) = state.random.as_mut()?;
            let roll = splitmix64(rng);
            ((roll % 1_000_000) < u64::from(*per_million)).then_some(if roll >> 63 == 0 {
                Fault::LoseWrite
            } else {
                Fault::KeepWrite
            })
        });
        state.injected += u64::from(fault.is_some());
        fault
    }
}

/// Wraps a [`Storage`] and fails its writes as its [`FaultPlan`] says.
///
/// After the first injected failure it behaves as the trait requires of a real store after a
/// failed fsync: every later call returns [`StorageError::Poisoned`] and the inner store is
/// not called again. Reads and [`claim`](Storage::claim) before that pass through
/// unchanged.
///
/// Use it in simulation over a [`MemoryStorage`](crate::MemoryStorage) handle: after the
/// replica stops, restart it over a fresh `FaultyStorage` on a clone of the same disk.
#[derive(Debug)]
pub struct FaultyStorage<S> {
    inner: S,
    plan: FaultPlan,
    /// Why the store is poisoned, if it is: shared with pipelined persists' futures,
    /// which learn of a failure after `start_persist` returned.
    poisoned: Arc<Mutex<Option<String>>>,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner`, failing writes as `plan` says.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            poisoned: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &*self.poisoned.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Runs one write through the plan; a snapshot commit's outcome comes back.
    async fn write(&mut self, op: Write<'_>) -> Result<Option<SnapshotMeta>, StorageError> {
        self.check_poisoned()?;
        let fault = self.plan.next_write();
        let result = match fault {
            Some(Fault::LoseWrite) => Err(injected_error(op.name())),
            _ => {
                let written = match op {
                    Write::Persist(batch) => self.inner.persist(batch).await.map(|()| None),
                    Write::CommitSnapshot => self.inner.commit_snapshot().await.map(Some),
                    Write::Compact(before) => self.inner.compact(before).await.map(|()| None),
                };
                written.and_then(|meta| match fault {
                    Some(Fault::KeepWrite) => Err(injected_error(op.name())),
                    _ => Ok(meta),
                })
            }
        };
        poison_on_failure(&self.poisoned, &result);
        result
    }
}

/// Poisons the store if `result` failed (but not for a call out of contract: it wrote
/// nothing, so there is no reason to refuse what follows).
fn poison_on_failure<T>(poisoned: &Mutex<Option<String>>, result: &Result<T, StorageError>) {
    if let Err(error) = result
        && !matches!(error, StorageError::InvalidCall(_))
    {
        let mut poisoned = poisoned.lock().unwrap_or_else(PoisonError::into_inner);
        poisoned.get_or_insert_with(|| error.to_string());
    }
}

/// One writing call, as [`FaultyStorage::write`] passes it through.
#[derive(Clone, Copy)]
enum Write<'a> {
    Persist(&'a PersistBatch),
    CommitSnapshot,
    Compact(Slot),
}

impl Write<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::Persist(_) => "persist",
            Self::CommitSnapshot => "commit_snapshot",
            Self::Compact(_) => "compact",
        }
    }
}

/// The error an injected fault returns.
fn injected_error(what: &str) -> StorageError {
    StorageError::io(
        format!("fsync after {what}"),
        std::io::Error::other("injected fault (FaultyStorage)"),
    )
}

#[async_trait]
impl<S: Storage> Storage for FaultyStorage<S> {
    /// Passes through (refused once poisoned). Not a write as far as the [`FaultPlan`] is
    /// concerned: it neither counts nor fails, so a seed's faults land where they did
    /// before stores were claimed.
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.inner.claim(owner).await
    }

    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.check_poisoned()?;
        self.inner.load().await
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.write(Write::Persist(batch)).await.map(drop)
    }

    fn pipelines_persists(&self) -> bool {
        self.inner.pipelines_persists()
    }

    /// A write like [`persist`](Storage::persist) for the [`FaultPlan`]: a lost write
    /// fails at once, writing nothing; a kept one fails once the inner store made it
    /// durable.
    fn start_persist(&mut self, batch: &PersistBatch) -> PersistFuture {
        if let Err(e) = self.check_poisoned() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let fault = self.plan.next_write();
        if fault == Some(Fault::LoseWrite) {
            let result = Err(injected_error("persist"));
            poison_on_failure(&self.poisoned, &result);
            return Box::pin(std::future::ready(result));
        }
        let inner = self.inner.start_persist(batch);
        let poisoned = self.poisoned.clone();
        Box::pin(async move {
            let result = inner.await.and_then(|()| match fault {
                Some(Fault::KeepWrite) => Err(injected_error("persist")),
                _ => Ok(()),
            });
            poison_on_failure(&poisoned, &result);
            result
        })
    }

    /// Passes through: staging is not a write the plan counts (the number of appends
    /// depends on the snapshot's size); [`commit_snapshot`](Storage::commit_snapshot) is.
    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.inner.begin_snapshot(upto).await
    }

    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.inner.append_snapshot(bytes).await
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.check_poisoned()?;
        self.inner.staged_snapshot().await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        let meta = self.write(Write::CommitSnapshot).await?;
        Ok(meta.expect("a commit returns its snapshot"))
    }

    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.check_poisoned()?;
        self.inner.snapshot().await
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.check_poisoned()?;
        self.inner.read_snapshot(offset, buf).await
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.write(Write::Compact(before)).await.map(drop)
    }
}

/// One step of splitmix64.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use paxos_core::{Ballot, HardState, NodeId};

    use super::*;
    use crate::MemoryStorage;

    fn batch(round: u64) -> PersistBatch {
        PersistBatch {
            hard_state: Some(HardState {
                promised: Ballot::new(round, NodeId(1)),
                commit: Slot(0),
                epoch: 0,
                non_voting: false,
            }),
            entries: vec![],
        }
    }

    #[test]
    fn a_lost_write_poisons_and_never_reaches_the_disk() {
        let disk = MemoryStorage::new();
        let plan = FaultPlan::new();
        let mut store = FaultyStorage::new(disk.clone(), plan.clone());
        block_on(store.persist(&batch(1))).unwrap();
        plan.fail_next_write(Fault::LoseWrite);
        assert!(matches!(
            block_on(store.persist(&batch(2))),
            Err(StorageError::Io { .. })
        ));
        assert!(matches!(
            block_on(store.persist(&batch(3))),
            Err(StorageError::Poisoned(_))
        ));
        assert!(matches!(
            block_on(store.load()),
            Err(StorageError::Poisoned(_))
        ));
        assert!(matches!(
            block_on(store.compact(Slot(1))),
            Err(StorageError::Poisoned(_))
        ));
        assert_eq!(disk.persist_calls(), 1);
        let mut restarted = FaultyStorage::new(disk.clone(), plan.clone());
        let promised = block_on(restarted.load()).unwrap().hard_state.promised;
        assert_eq!(promised, Ballot::new(1, NodeId(1)));
        assert_eq!(plan.injected(), 1);
    }

    #[test]
    fn a_kept_write_poisons_but_is_on_disk() {
        let disk = MemoryStorage::new();
        let plan = FaultPlan::new();
        let mut store = FaultyStorage::new(disk.clone(), plan.clone());
        plan.fail_next_write(Fault::KeepWrite);
        assert!(block_on(store.persist(&batch(2))).is_err());
        assert!(matches!(
            block_on(store.persist(&batch(3))),
            Err(StorageError::Poisoned(_))
        ));
        let mut restarted = FaultyStorage::new(disk, FaultPlan::new());
        let promised = block_on(restarted.load()).unwrap().hard_state.promised;
        assert_eq!(promised, Ballot::new(2, NodeId(1)));
    }

    /// The saved snapshot of `store`: its `upto` and bytes.
    fn saved<S: Storage>(store: &mut S) -> Option<(u64, Vec<u8>)> {
        let meta = block_on(store.snapshot()).unwrap()?;
        let mut data = vec![0; meta.len as usize];
        assert_eq!(block_on(store.read_snapshot(0, &mut data)), Ok(data.len()));
        Some((meta.upto.0, data))
    }

    /// Stages `data` for `upto` in pieces of 3 bytes, then commits it.
    fn save<S: Storage>(store: &mut S, upto: u64, data: &[u8]) -> Result<(), StorageError> {
        block_on(store.begin_snapshot(Slot(upto)))?;
        for piece in data.chunks(3) {
            block_on(store.append_snapshot(piece))?;
        }
        block_on(store.commit_snapshot()).map(drop)
    }

    #[test]
    fn a_failed_snapshot_commit_poisons_and_keeps_the_old_or_the_new_whole() {
        for fault in [Fault::LoseWrite, Fault::KeepWrite] {
            let disk = MemoryStorage::new();
            let plan = FaultPlan::new();
            let mut store = FaultyStorage::new(disk.clone(), plan.clone());
            save(&mut store, 1, b"old").unwrap();
            block_on(store.begin_snapshot(Slot(2))).unwrap();
            block_on(store.append_snapshot(b"new data")).unwrap();
            plan.fail_next_write(fault);
            let error = block_on(store.commit_snapshot()).expect_err("the armed commit fails");
            assert!(matches!(error, StorageError::Io { .. }), "{error:?}");
            assert!(error.to_string().contains("commit_snapshot"), "{error}");
            assert_eq!(plan.injected(), 1);
            for _ in 0..2 {
                assert!(matches!(
                    block_on(store.snapshot()),
                    Err(StorageError::Poisoned(_))
                ));
                assert!(matches!(
                    block_on(store.read_snapshot(0, &mut [0; 4])),
                    Err(StorageError::Poisoned(_))
                ));
                assert!(matches!(
                    block_on(store.staged_snapshot()),
                    Err(StorageError::Poisoned(_))
                ));
                assert!(matches!(
                    block_on(store.begin_snapshot(Slot(3))),
                    Err(StorageError::Poisoned(_))
                ));
                assert!(matches!(
                    block_on(store.append_snapshot(b"x")),
                    Err(StorageError::Poisoned(_))
                ));
                assert!(matches!(
                    block_on(store.commit_snapshot()),
                    Err(StorageError::Poisoned(_))
                ));
            }
            // A lost commit never reached the disk; a kept one did, whole.
            let expected = match fault {
                Fault::LoseWrite => (1, b"old".to_vec()),
                _ => (2, b"new data".to_vec()),
            };
            let mut restarted = FaultyStorage::new(disk.clone(), FaultPlan::new());
            assert_eq!(saved(&mut restarted), Some(expected), "{fault:?}");
            assert_eq!(block_on(restarted.staged_snapshot()), Ok(None), "{fault:?}");
        }
    }

    #[test]
    fn snapshot_calls_out_of_contract_do_not_poison() {
        let plan = FaultPlan::new();
        let mut store = FaultyStorage::new(MemoryStorage::new(), plan.clone());
        assert!(matches!(
            block_on(store.append_snapshot(b"x")),
            Err(StorageError::InvalidCall(_))
        ));
        assert!(matches!(
            block_on(store.commit_snapshot()),
            Err(StorageError::InvalidCall(_))
        ));
        assert!(matches!(
            block_on(store.read_snapshot(0, &mut [0; 4])),
            Err(StorageError::InvalidCall(_))
        ));
        // The refused commit went through the plan but injected nothing.
        assert_eq!(plan.injected(), 0);
        save(&mut store, 5, b"fine").unwrap();
        assert_eq!(saved(&mut store), Some((5, b"fine".to_vec())));
        block_on(store.persist(&batch(1))).unwrap();
    }

    #[test]
    fn seeded_faults_are_reproducible() {
        let run = |seed| {
            let plan = FaultPlan::seeded(seed, 100_000);
            let mut outcomes = Vec::new();
            for round in 0..200 {
                let mut store = FaultyStorage::new(MemoryStorage::new(), plan.clone());
                outcomes.push(block_on(store.persist(&batch(round))).is_ok());
            }
            (outcomes, plan.injected())
        };
        let (first, injected) = run(7);
        assert_eq!(run(7).0, first);
        assert!((5..=50).contains(&injected), "{injected}");
        assert_ne!(run(8).0, first);
    }
}
