//! The state machine's apply path (`StateMachine::apply` of `KvStateMachine`): what every
//! replica does once per committed batch. Batches of 20 `SET`s of 64 B values from 64
//! clients over 10,000 keys, as the benches harness's 64-client load makes them, into a
//! store already holding those keys and sessions.
//!
//! `cargo bench -p paxos-kv --bench apply`

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use paxos_core::{Command, Committed, NodeId, ProposalId, Slot, StateMachine, Value};
use paxos_kv::kv::{KvCommand, KvRequest, KvStateMachine, RequestId};

const CLIENTS: u64 = 64;
const KEYS: u64 = 10_000;
const BATCH: u64 = 20;

/// Command `i` of the load: client `i % 64`, its `i / 64 + 1`th request, a `SET` of a
/// key spread over the keyspace.
fn set(i: u64) -> Command {
    let payload = KvRequest {
        id: RequestId {
            client: i % CLIENTS + 1,
            born_slot: 0,
            seq: i / CLIENTS + 1,
        },
        command: KvCommand::Set {
            key: format!("key:{:06}", (i * 7919) % KEYS).into_bytes(),
            value: vec![b'v'; 64],
        },
    }
    .encode();
    Command {
        id: ProposalId {
            origin: NodeId(1),
            seq: i,
            epoch: 1,
        },
        payload,
    }
}

fn batches(from: u64, n: u64) -> Vec<Committed> {
    (0..n)
        .map(|b| Committed {
            slot: Slot(from / BATCH + b),
            value: Value::Batch(
                (from + b * BATCH..from + (b + 1) * BATCH)
                    .map(set)
                    .collect(),
            ),
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("kv/apply");
    group.throughput(Throughput::Elements(BATCH));
    let mut sm = KvStateMachine::default();
    let mut outputs = Vec::new();
    // Every key written and every client known before measuring.
    let warm = 4 * KEYS;
    futures::executor::block_on(sm.apply(&batches(0, warm / BATCH), &mut outputs)).unwrap();
    let mut next = warm;
    group.bench_function("set_64B_batch_of_20", |b| {
        b.iter_batched(
            || {
                let batch = batches(next, 1);
                next += BATCH;
                batch
            },
            |batch| {
                outputs.clear();
                futures::executor::block_on(sm.apply(&batch, &mut outputs)).unwrap();
                assert_eq!(outputs.len(), BATCH as usize);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
