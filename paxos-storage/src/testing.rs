//! A conformance suite for any [`Storage`] implementation, including your own.
//!
//! The suite needs to *reopen* a store on the same underlying location, to check that what
//! was persisted survives a restart. You describe how with a [`StoreFactory`], and give
//! [`suite`] a closure that makes a factory for a **fresh, empty** location; each check
//! gets its own.
//!
//! ```
//! use paxos_storage::testing::{self, StoreFactory};
//! use paxos_storage::MemoryStorage;
//! use paxos_core::StorageError;
//!
//! /// Reopens the same in-memory disk.
//! struct Reopen(MemoryStorage);
//!
//! impl StoreFactory for Reopen {
//!     type Store = MemoryStorage;
//!     async fn open(&mut self) -> Result<MemoryStorage, StorageError> {
//!         Ok(self.0.clone())
//!     }
//! }
//!
//! futures::executor::block_on(testing::suite(|| Reopen(MemoryStorage::new())));
//! ```
//!
//! A failed check panics with the name of the check and what differed, like `assert_eq!`,
//! so the suite runs inside a normal `#[test]`. Every check is also public on its own.
//!
//! What the checks cover, per the "To ensure correctness" section of [`Storage`]:
//! a fresh store loads the default; what is persisted reloads exactly after a reopen; a
//! later entry for a slot replaces an earlier one (across and within batches); the hard
//! state is last-write-wins and unchanged by batches without one; an empty batch is fine;
//! snapshots stream in, stay staged apart until committed, replace the old one and read
//! back whole at any offset (0 bytes at or past the end, up to `u64::MAX`); compaction drops entries below the slot and
//! they stay gone after a reopen; `load` returns entries in slot order, one per slot;
//! many reopen-append cycles in a row keep everything; and [`claim`](Storage::claim)
//! records the first owner and refuses another node or cluster, also after a reopen and on
//! a store that held data before its first claim.
//!
//! A store that keeps the trait's default `claim` (which checks nothing) fails the two
//! claim checks; it can run the other checks one by one.
//!
//! What it cannot cover: durability across a power loss or a killed process, torn writes,
//! and failing syncs. Those need the backend's own crash tests (see the file store's) and a
//! fault-injecting wrapper such as [`FaultyStorage`](crate::FaultyStorage).

use std::future::Future;

use bytes::Bytes;
use paxos_core::{
    Ballot, Command, Entry, HardState, NodeId, PersistBatch, ProposalId, RecoveredState, Slot,
    SnapshotMeta, Storage, StorageError, StoreOwner, Value,
};

/// Opens a store on one fixed underlying location (a directory, a database, a shared
/// in-memory disk), again and again.
///
/// # Contract
///
/// * Every call to [`open`](Self::open) opens the **same** location, so a store opened later
///   sees what earlier stores persisted.
/// * The suite drops the previous store before it opens the next one, so a backend may hold
///   an exclusive lock on the location while open.
/// * The location starts empty: the suite asks for a new factory for every check.
pub trait StoreFactory {
    /// The store this factory opens.
    type Store: Storage;

    /// Opens the store on this factory's location. Implement it with `async fn`.
    fn open(&mut self) -> impl Future<Output = Result<Self::Store, StorageError>>;
}

/// Runs every check on stores from `fresh`, which must return a factory for a new, empty
/// location each time it is called. Panics on the first failed check.
pub async fn suite<F: StoreFactory>(mut fresh: impl FnMut() -> F) {
    fresh_store_is_empty(&mut fresh()).await;
    persist_then_reopen_round_trips(&mut fresh()).await;
    later_entry_replaces_earlier(&mut fresh()).await;
    hard_state_is_last_write_wins(&mut fresh()).await;
    empty_batch_is_ok(&mut fresh()).await;
    snapshots_save_replace_and_reload(&mut fresh()).await;
    staged_snapshots_stay_apart_until_committed(&mut fresh()).await;
    snapshot_reads_back_at_any_offset(&mut fresh()).await;
    compact_drops_entries_for_good(&mut fresh()).await;
    load_returns_slot_order_one_per_slot(&mut fresh()).await;
    many_reopen_append_cycles(&mut fresh()).await;
    claim_records_the_owner_and_refuses_others(&mut fresh()).await;
    first_claim_adopts_a_store_with_data(&mut fresh()).await;
    pipelined_persists_are_durable_in_order(&mut fresh()).await;
}

/// A fresh store loads the default hard state, no entries and no snapshot.
pub async fn fresh_store_is_empty<F: StoreFactory>(factory: &mut F) {
    let mut store = reopen(factory, "fresh_store_is_empty").await;
    let recovered = load(&mut store, "fresh_store_is_empty").await;
    assert_eq!(
        recovered,
        RecoveredState::default(),
        "fresh_store_is_empty: a fresh store must load the default state"
    );
    let snapshot = store.snapshot().await;
    assert_eq!(
        snapshot,
        Ok(None),
        "fresh_store_is_empty: a fresh store has no snapshot"
    );
    let staged = store.staged_snapshot().await;
    assert_eq!(
        staged,
        Ok(None),
        "fresh_store_is_empty: a fresh store has no staged snapshot"
    );
}

/// Batches of various sizes, including a large value and a batch of many entries, reload
/// exactly after a reopen, and appending after a reopen works too.
pub async fn persist_then_reopen_round_trips<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "persist_then_reopen_round_trips";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;

    let hard_state = HardState {
        promised: Ballot::new(3, NodeId(2)),
        commit: Slot(0),
        epoch: 7,
        non_voting: true,
    };
    let batches = vec![
        PersistBatch {
            hard_state: Some(hard_state),
            entries: (0..3).map(|s| entry(s, 3, b"first")).collect(),
        },
        PersistBatch {
            hard_state: None,
            entries: (3..10).map(|s| entry(s, 3, b"")).collect(),
        },
        PersistBatch {
            hard_state: None,
            entries: vec![Entry {
                slot: Slot(10),
                ballot: Ballot::new(3, NodeId(2)),
                value: Value::Noop,
            }],
        },
        // A value larger than a typical page or buffer.
        PersistBatch {
            hard_state: None,
            entries: vec![entry(11, 3, &vec![0xA5; 300 * 1024])],
        },
        // Many small entries in one batch.
        PersistBatch {
            hard_state: Some(HardState {
                commit: Slot(5),
                ..hard_state
            }),
            entries: (12..1_012).map(|s| entry(s, 3, &s.to_le_bytes())).collect(),
        },
    ];
    for batch in &batches {
        persist(&mut store, batch, CHECK).await;
        model.apply(batch);
    }
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;

    let more = PersistBatch {
        hard_state: Some(HardState {
            promised: Ballot::new(4, NodeId(1)),
            commit: Slot(20),
            epoch: 8,
            non_voting: false,
        }),
        entries: vec![
            entry(2, 4, b"replaced after reopen"),
            entry(1_012, 4, b"new"),
        ],
    };
    persist(&mut store, &more, CHECK).await;
    model.apply(&more);
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// A later entry for a slot replaces the earlier one, whether it comes in a later batch,
/// after a reopen, or later in the same batch.
pub async fn later_entry_replaces_earlier<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "later_entry_replaces_earlier";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let batches = [
        PersistBatch {
            hard_state: None,
            entries: vec![entry(5, 1, b"a"), entry(6, 1, b"keep")],
        },
        PersistBatch {
            hard_state: None,
            entries: vec![entry(5, 2, b"b")],
        },
        // Within one batch the last entry for a slot wins.
        PersistBatch {
            hard_state: None,
            entries: vec![entry(7, 2, b"x"), entry(7, 3, b"y"), entry(8, 3, b"z")],
        },
    ];
    for batch in &batches {
        persist(&mut store, batch, CHECK).await;
        model.apply(batch);
    }
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let expected_slot_5 = entry(5, 2, b"b");
    assert_eq!(
        model.entries.get(&Slot(5)),
        Some(&expected_slot_5),
        "{CHECK}: suite model is wrong"
    );

    let batch = PersistBatch {
        hard_state: None,
        entries: vec![entry(5, 4, b"c")],
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// The hard state reloads as last written; batches without a hard state leave it alone.
pub async fn hard_state_is_last_write_wins<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "hard_state_is_last_write_wins";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    for round in 1..=5_u64 {
        let hard_state = HardState {
            promised: Ballot::new(round, NodeId(round % 3)),
            commit: Slot(round * 2),
            epoch: round,
            non_voting: false,
        };
        let with_hard_state = PersistBatch {
            hard_state: Some(hard_state),
            entries: vec![],
        };
        persist(&mut store, &with_hard_state, CHECK).await;
        model.apply(&with_hard_state);
        let without = PersistBatch {
            hard_state: None,
            entries: vec![entry(round, round, b"v")],
        };
        persist(&mut store, &without, CHECK).await;
        model.apply(&without);
        drop(store);
        store = reopen(factory, CHECK).await;
        model.assert_loads(&mut store, CHECK).await;
    }
    // Same promise, commit moving: still last write wins.
    let same_promise = PersistBatch {
        hard_state: Some(HardState {
            promised: model.hard_state.promised,
            commit: Slot(100),
            epoch: model.hard_state.epoch,
            non_voting: false,
        }),
        entries: vec![],
    };
    persist(&mut store, &same_promise, CHECK).await;
    model.apply(&same_promise);
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// A store that [pipelines persists](Storage::pipelines_persists): batches started before
/// the earlier ones ended all become durable, in order (a later entry for a slot wins, the
/// last hard state wins), including an empty batch among them and one serial `persist`
/// after them; each future resolves `Ok`. Nothing to check for a store that does not.
pub async fn pipelined_persists_are_durable_in_order<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "pipelined_persists_are_durable_in_order";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    if !store.pipelines_persists() {
        return;
    }
    model.assert_loads(&mut store, CHECK).await;
    let batches: Vec<PersistBatch> = (1..=12_u64)
        .map(|i| PersistBatch {
            hard_state: (i % 3 == 0).then_some(HardState {
                promised: Ballot::new(i, NodeId(1)),
                commit: Slot(i / 2),
                epoch: 1,
                non_voting: false,
            }),
            entries: match i {
                5 => vec![],
                // Slot 4 again, at a higher ballot: the later write wins.
                9 => vec![entry(4, i, b"again")],
                _ => (i * 2..i * 2 + 2)
                    .map(|s| entry(s, i, b"pipelined"))
                    .collect(),
            },
        })
        .collect();
    let mut started = Vec::new();
    for batch in &batches {
        started.push(store.start_persist(batch));
        model.apply(batch);
    }
    for (i, done) in started.into_iter().enumerate() {
        assert_eq!(done.await, Ok(()), "{CHECK}: pipelined batch {i} failed");
    }
    let serial = PersistBatch {
        hard_state: None,
        entries: vec![entry(100, 12, b"serial")],
    };
    persist(&mut store, &serial, CHECK).await;
    model.apply(&serial);
    model.assert_loads(&mut store, CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// Persisting an empty batch succeeds and changes nothing, on a fresh store and a used one.
pub async fn empty_batch_is_ok<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "empty_batch_is_ok";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    persist(&mut store, &PersistBatch::default(), CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let batch = PersistBatch {
        hard_state: Some(HardState {
            promised: Ballot::new(1, NodeId(1)),
            commit: Slot(0),
            epoch: 0,
            non_voting: false,
        }),
        entries: vec![entry(0, 1, b"a")],
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    persist(&mut store, &PersistBatch::default(), CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// Snapshots save, replace the previous one, and reload whole after a reopen; they do not
/// disturb the log.
pub async fn snapshots_save_replace_and_reload<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "snapshots_save_replace_and_reload";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let batch = PersistBatch {
        hard_state: None,
        entries: (0..20).map(|s| entry(s, 1, b"v")).collect(),
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);

    // Empty, small, and a megabyte appended in 64 KiB pieces (and one odd-sized one).
    let big: Vec<u8> = (0..1_000_000_u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let snapshots: [(u64, Vec<u8>); 3] = [
        (5, b"state after slot 4".to_vec()),
        (10, Vec::new()),
        (15, big),
    ];
    for (upto, data) in &snapshots {
        stage(&mut store, *upto, data, 64 << 10, CHECK).await;
        let meta = SnapshotMeta {
            upto: Slot(*upto),
            len: data.len() as u64,
        };
        assert_eq!(
            store.commit_snapshot().await,
            Ok(meta),
            "{CHECK}: commit_snapshot (upto {upto})"
        );
        assert_eq!(
            store.staged_snapshot().await,
            Ok(None),
            "{CHECK}: staged after commit"
        );
        assert_snapshot(&mut store, *upto, data, CHECK).await;
        drop(store);
        store = reopen(factory, CHECK).await;
        model.assert_loads(&mut store, CHECK).await;
        assert_snapshot(&mut store, *upto, data, CHECK).await;
    }
}

/// A staged snapshot is invisible until committed, a new `begin_snapshot` discards it,
/// staging does not survive a reopen (the saved one does), and the calls out of contract
/// are refused with `InvalidCall`.
pub async fn staged_snapshots_stay_apart_until_committed<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "staged_snapshots_stay_apart_until_committed";
    let mut store = reopen(factory, CHECK).await;
    load(&mut store, CHECK).await;
    let invalid = |r: Result<(), StorageError>, what: &str| {
        assert!(
            matches!(r, Err(StorageError::InvalidCall(_))),
            "{CHECK}: {what} must be refused with InvalidCall, got {r:?}"
        );
    };
    invalid(
        store.append_snapshot(b"x").await,
        "append with nothing begun",
    );
    invalid(
        store.commit_snapshot().await.map(drop),
        "commit with nothing begun",
    );
    invalid(
        store.read_snapshot(0, &mut [0; 4]).await.map(drop),
        "read with nothing saved",
    );
    stage(&mut store, 3, b"old state", 4, CHECK).await;
    assert_eq!(
        store.snapshot().await,
        Ok(None),
        "{CHECK}: staged is not saved"
    );
    assert!(store.commit_snapshot().await.is_ok(), "{CHECK}: commit");
    // A commit leaves nothing staged: the same snapshot cannot be committed or extended.
    invalid(
        store.commit_snapshot().await.map(drop),
        "a second commit of one snapshot",
    );
    invalid(store.append_snapshot(b"x").await, "append after a commit");
    assert_snapshot(&mut store, 3, b"old state", CHECK).await;
    // Staged, then discarded by a second begin, then a third one committed.
    stage(&mut store, 7, b"discarded", 3, CHECK).await;
    assert_eq!(
        store.staged_snapshot().await,
        Ok(Some(SnapshotMeta {
            upto: Slot(7),
            len: 9
        })),
        "{CHECK}: staged_snapshot"
    );
    assert_snapshot(&mut store, 3, b"old state", CHECK).await;
    stage(&mut store, 8, b"new", 1, CHECK).await;
    drop(store);
    // Staging is gone with the store; the committed one stays.
    let mut store = reopen(factory, CHECK).await;
    load(&mut store, CHECK).await;
    assert_eq!(
        store.staged_snapshot().await,
        Ok(None),
        "{CHECK}: staged after reopen"
    );
    assert_snapshot(&mut store, 3, b"old state", CHECK).await;
    invalid(store.append_snapshot(b"x").await, "append after a reopen");
    stage(&mut store, 9, b"newest", 2, CHECK).await;
    assert!(store.commit_snapshot().await.is_ok(), "{CHECK}: commit");
    assert_snapshot(&mut store, 9, b"newest", CHECK).await;
}

/// A snapshot of 1 MiB and an odd tail, appended in 64 KiB pieces (`staged_snapshot`
/// counting each), reads back exactly at offsets around the pieces' boundaries with
/// buffers of many sizes, short only at its end; a read at or past the end, up to
/// `u64::MAX`, returns 0 and breaks nothing. Before and after a reopen.
pub async fn snapshot_reads_back_at_any_offset<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "snapshot_reads_back_at_any_offset";
    let data: Vec<u8> = (0..(1 << 20) + 1234_u32)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect();
    let len = data.len() as u64;
    let mut store = reopen(factory, CHECK).await;
    load(&mut store, CHECK).await;
    if let Err(e) = store.begin_snapshot(Slot(77)).await {
        panic!("{CHECK}: begin_snapshot failed: {e}");
    }
    let mut appended = 0;
    for piece in data.chunks(64 << 10) {
        if let Err(e) = store.append_snapshot(piece).await {
            panic!("{CHECK}: append_snapshot failed: {e}");
        }
        appended += piece.len() as u64;
        assert_eq!(
            store.staged_snapshot().await,
            Ok(Some(SnapshotMeta {
                upto: Slot(77),
                len: appended
            })),
            "{CHECK}: staged_snapshot must count the bytes appended so far"
        );
    }
    let meta = SnapshotMeta {
        upto: Slot(77),
        len,
    };
    assert_eq!(store.commit_snapshot().await, Ok(meta), "{CHECK}: commit");
    for when in ["after the commit", "after a reopen"] {
        assert_eq!(
            store.snapshot().await,
            Ok(Some(meta)),
            "{CHECK} ({when}): snapshot()"
        );
        let offsets = [0, 1, 65_535, 65_536, 65_537, 300_001, len - 10, len - 1];
        for offset in offsets {
            for size in [1, 7, 4096, 65_536 + 13, 2 << 20] {
                let mut buf = vec![0xEE; size];
                let n = match store.read_snapshot(offset, &mut buf).await {
                    Ok(n) => n,
                    Err(e) => panic!("{CHECK} ({when}): read_snapshot({offset}, {size}): {e}"),
                };
                let start = offset as usize;
                let expected = &data[start..(start + size).min(data.len())];
                assert!(
                    n == expected.len() && buf[..n] == *expected,
                    "{CHECK} ({when}): read_snapshot({offset}, {size} bytes) returned {n} \
                     bytes, other than the snapshot's {} from there",
                    expected.len()
                );
            }
        }
        for offset in [len, len + 1, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                store.read_snapshot(offset, &mut [0; 16]).await,
                Ok(0),
                "{CHECK} ({when}): read_snapshot at {offset}, at or past the end of {len} bytes"
            );
        }
        assert_eq!(
            store.snapshot().await,
            Ok(Some(meta)),
            "{CHECK} ({when}): snapshot() after reads past the end"
        );
        drop(store);
        store = reopen(factory, CHECK).await;
        load(&mut store, CHECK).await;
    }
}

/// Compaction drops entries below the slot, keeps the rest and the hard state, never moves
/// back, and stays in force after a reopen.
pub async fn compact_drops_entries_for_good<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "compact_drops_entries_for_good";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let hard_state = HardState {
        promised: Ballot::new(7, NodeId(1)),
        commit: Slot(30),
        epoch: 1,
        non_voting: false,
    };
    let batch = PersistBatch {
        hard_state: Some(hard_state),
        entries: (0..30).map(|s| entry(s, 7, b"before compaction")).collect(),
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    save_snapshot(&mut store, 10, CHECK).await;
    compact(&mut store, &mut model, 10, CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;

    let batch = PersistBatch {
        hard_state: None,
        entries: (30..40).map(|s| entry(s, 7, b"after compaction")).collect(),
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    // A lower compaction point is a no-op.
    compact(&mut store, &mut model, 5, CHECK).await;
    save_snapshot(&mut store, 25, CHECK).await;
    compact(&mut store, &mut model, 25, CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let first = model.entries.keys().next().copied();
    assert_eq!(first, Some(Slot(25)), "{CHECK}: suite model is wrong");

    // Compacting everything leaves the hard state in place.
    save_snapshot(&mut store, 40, CHECK).await;
    compact(&mut store, &mut model, 40, CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// `load` returns entries in slot order with one entry per slot, whatever order they were
/// written in.
pub async fn load_returns_slot_order_one_per_slot<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "load_returns_slot_order_one_per_slot";
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    let orders: [&[u64]; 4] = [&[9, 2, 5], &[1, 9], &[7, 3, 3], &[100, 0]];
    for (round, slots) in orders.iter().enumerate() {
        let batch = PersistBatch {
            hard_state: None,
            entries: slots
                .iter()
                .map(|&s| entry(s, round as u64 + 1, &s.to_be_bytes()))
                .collect(),
        };
        persist(&mut store, &batch, CHECK).await;
        model.apply(&batch);
    }
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    let recovered = load(&mut store, CHECK).await;
    let slots: Vec<u64> = recovered.entries.iter().map(|e| e.slot.0).collect();
    assert_eq!(
        slots,
        vec![0, 1, 2, 3, 5, 7, 9, 100],
        "{CHECK}: load must return entries sorted by slot, one per slot"
    );
    model.assert_equals(&recovered, CHECK);
}

/// Many reopen-then-append cycles in a row lose nothing.
pub async fn many_reopen_append_cycles<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "many_reopen_append_cycles";
    let mut model = Model::default();
    for cycle in 0..20_u64 {
        let mut store = reopen(factory, CHECK).await;
        model.assert_loads(&mut store, CHECK).await;
        let batch = PersistBatch {
            hard_state: Some(HardState {
                promised: Ballot::new(cycle, NodeId(1)),
                commit: Slot(cycle),
                epoch: 1,
                non_voting: false,
            }),
            entries: (cycle * 3..cycle * 3 + 3)
                .map(|s| entry(s, cycle, &cycle.to_le_bytes()))
                .collect(),
        };
        persist(&mut store, &batch, CHECK).await;
        model.apply(&batch);
    }
    let mut store = reopen(factory, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
}

/// The first claim records the owner; the same owner is accepted again, on the same store
/// and after a reopen; another node of the same cluster and the same node of another
/// cluster are refused with [`StorageError::OwnedByOther`] naming both, also after a
/// reopen; claims change nothing that loads.
pub async fn claim_records_the_owner_and_refuses_others<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "claim_records_the_owner_and_refuses_others";
    let owner = StoreOwner::new(0xC1, NodeId(2));
    let others = [
        StoreOwner::new(0xC1, NodeId(3)),
        StoreOwner::new(0xC2, NodeId(2)),
    ];
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    claim(&mut store, owner, CHECK, "the first claim of a fresh store").await;
    model.assert_loads(&mut store, CHECK).await;
    let batch = PersistBatch {
        hard_state: Some(HardState {
            promised: Ballot::new(2, NodeId(2)),
            commit: Slot(0),
            epoch: 1,
            non_voting: false,
        }),
        entries: (0..5).map(|s| entry(s, 2, b"owned")).collect(),
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    claim(&mut store, owner, CHECK, "the same owner again, same store").await;
    drop(store);

    let mut store = reopen(factory, CHECK).await;
    claim(&mut store, owner, CHECK, "the same owner after a reopen").await;
    assert_refused(&mut store, &others, owner, CHECK).await;
    model.assert_loads(&mut store, CHECK).await;
    drop(store);

    let mut store = reopen(factory, CHECK).await;
    assert_refused(&mut store, &others, owner, CHECK).await;
    claim(&mut store, owner, CHECK, "the owner after refused claims").await;
    model.assert_loads(&mut store, CHECK).await;
}

/// A store that holds data but was never claimed (made before owners were recorded) is
/// adopted by its first claim, keeps its data, and then refuses other owners.
pub async fn first_claim_adopts_a_store_with_data<F: StoreFactory>(factory: &mut F) {
    const CHECK: &str = "first_claim_adopts_a_store_with_data";
    let owner = StoreOwner::new(7, NodeId(1));
    let mut model = Model::default();
    let mut store = reopen(factory, CHECK).await;
    let batch = PersistBatch {
        hard_state: Some(HardState {
            promised: Ballot::new(4, NodeId(1)),
            commit: Slot(2),
            epoch: 1,
            non_voting: false,
        }),
        entries: (0..3).map(|s| entry(s, 4, b"unclaimed")).collect(),
    };
    persist(&mut store, &batch, CHECK).await;
    model.apply(&batch);
    drop(store);

    let mut store = reopen(factory, CHECK).await;
    claim(
        &mut store,
        owner,
        CHECK,
        "the first claim of a store with data",
    )
    .await;
    model.assert_loads(&mut store, CHECK).await;
    drop(store);
    let mut store = reopen(factory, CHECK).await;
    assert_refused(&mut store, &[StoreOwner::new(7, NodeId(2))], owner, CHECK).await;
    claim(
        &mut store,
        owner,
        CHECK,
        "the adopting owner after a reopen",
    )
    .await;
    model.assert_loads(&mut store, CHECK).await;
}

async fn claim<S: Storage>(store: &mut S, owner: StoreOwner, check: &str, what: &str) {
    if let Err(e) = store.claim(owner).await {
        panic!("{check}: claim({owner}) failed ({what}): {e}");
    }
}

/// Each of `others` is refused by a store that `owner` owns.
async fn assert_refused<S: Storage>(
    store: &mut S,
    others: &[StoreOwner],
    owner: StoreOwner,
    check: &str,
) {
    for &other in others {
        let refused = store.claim(other).await;
        let expected = StorageError::OwnedByOther {
            expected: other,
            found: owner,
        };
        assert!(
            refused.as_ref() == Err(&expected),
            "{check}: claim({other}) of a store owned by {owner} must fail with {expected:?}, \
             got {refused:?}"
        );
    }
}

/// What a correct store must return, built from the same calls.
#[derive(Default)]
struct Model {
    hard_state: HardState,
    entries: std::collections::BTreeMap<Slot, Entry>,
    compacted_before: Slot,
}

impl Model {
    fn apply(&mut self, batch: &PersistBatch) {
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
        for entry in &batch.entries {
            if entry.slot >= self.compacted_before {
                self.entries.insert(entry.slot, entry.clone());
            }
        }
    }

    fn compact(&mut self, before: Slot) {
        if before > self.compacted_before {
            self.compacted_before = before;
            self.entries = self.entries.split_off(&before);
        }
    }

    async fn assert_loads<S: Storage>(&self, store: &mut S, check: &str) {
        let recovered = load(store, check).await;
        self.assert_equals(&recovered, check);
    }

    fn assert_equals(&self, recovered: &RecoveredState, check: &str) {
        assert_eq!(
            recovered.hard_state, self.hard_state,
            "{check}: loaded hard state differs from the last one written"
        );
        let expected: Vec<&Entry> = self.entries.values().collect();
        let got: Vec<&Entry> = recovered.entries.iter().collect();
        if expected != got {
            let slots = |v: &[&Entry]| v.iter().map(|e| e.slot.0).collect::<Vec<_>>();
            let first_diff = expected
                .iter()
                .zip(&got)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(got.len()));
            panic!(
                "{check}: loaded entries differ from those written: expected {} entries, got {}; \
                 first difference at index {first_diff}: expected {:?}, got {:?}; \
                 expected slots {:?}, got slots {:?}",
                expected.len(),
                got.len(),
                expected.get(first_diff),
                got.get(first_diff),
                slots(&expected),
                slots(&got),
            );
        }
    }
}

async fn reopen<F: StoreFactory>(factory: &mut F, check: &str) -> F::Store {
    match factory.open().await {
        Ok(store) => store,
        Err(e) => panic!("{check}: opening the store failed: {e}"),
    }
}

async fn load<S: Storage>(store: &mut S, check: &str) -> RecoveredState {
    match store.load().await {
        Ok(recovered) => recovered,
        Err(e) => panic!("{check}: load failed: {e}"),
    }
}

async fn persist<S: Storage>(store: &mut S, batch: &PersistBatch, check: &str) {
    if let Err(e) = store.persist(batch).await {
        panic!("{check}: persist failed: {e}");
    }
}

async fn save_snapshot<S: Storage>(store: &mut S, upto: u64, check: &str) {
    let data = format!("snapshot up to {upto}");
    stage(store, upto, data.as_bytes(), 8, check).await;
    if let Err(e) = store.commit_snapshot().await {
        panic!("{check}: commit_snapshot failed: {e}");
    }
}

/// Begins a snapshot at `upto` and appends `data` in pieces of `piece` bytes.
async fn stage<S: Storage>(store: &mut S, upto: u64, data: &[u8], piece: usize, check: &str) {
    if let Err(e) = store.begin_snapshot(Slot(upto)).await {
        panic!("{check}: begin_snapshot failed: {e}");
    }
    for part in data.chunks(piece.max(1)) {
        if let Err(e) = store.append_snapshot(part).await {
            panic!("{check}: append_snapshot failed: {e}");
        }
    }
}

/// The saved snapshot is `upto` and `data`: read whole with several buffer sizes and
/// offsets, short only at its end, empty past it.
async fn assert_snapshot<S: Storage>(store: &mut S, upto: u64, data: &[u8], check: &str) {
    let meta = SnapshotMeta {
        upto: Slot(upto),
        len: data.len() as u64,
    };
    assert_eq!(
        store.snapshot().await,
        Ok(Some(meta)),
        "{check}: snapshot()"
    );
    for size in [1, 7, 4096, 100_000] {
        let mut read = Vec::new();
        let mut buf = vec![0; size];
        loop {
            let n = match store.read_snapshot(read.len() as u64, &mut buf).await {
                Ok(n) => n,
                Err(e) => panic!("{check}: read_snapshot failed: {e}"),
            };
            if n == 0 {
                break;
            }
            assert!(
                n == size || read.len() + n == data.len(),
                "{check}: a short read ({n} of {size}) before the end"
            );
            read.extend_from_slice(&buf[..n]);
            if size == 1 && read.len() > 64 {
                // Byte by byte is slow for the big one: the rest in one go below.
                break;
            }
        }
        let mut rest = vec![0; data.len() - read.len()];
        let n = store.read_snapshot(read.len() as u64, &mut rest).await;
        assert_eq!(n, Ok(rest.len()), "{check}: read of the rest");
        read.extend_from_slice(&rest);
        assert!(
            read == data,
            "{check}: read back different bytes (buffer {size})"
        );
    }
    let past = store
        .read_snapshot(data.len() as u64 + 10, &mut [0; 8])
        .await;
    assert_eq!(past, Ok(0), "{check}: a read past the end");
}

async fn compact<S: Storage>(store: &mut S, model: &mut Model, before: u64, check: &str) {
    if let Err(e) = store.compact(Slot(before)).await {
        panic!("{check}: compact({before}) failed: {e}");
    }
    model.compact(Slot(before));
}

/// An entry for `slot` accepted at a ballot of `round`, holding one command with `payload`.
fn entry(slot: u64, round: u64, payload: &[u8]) -> Entry {
    Entry {
        slot: Slot(slot),
        ballot: Ballot::new(round, NodeId(1)),
        value: Value::Batch(
            vec![Command {
                id: ProposalId {
                    origin: NodeId(1),
                    seq: slot,
                    epoch: round,
                },
                payload: Bytes::copy_from_slice(payload),
            }]
            .into(),
        ),
    }
}
