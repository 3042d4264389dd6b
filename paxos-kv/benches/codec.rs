//! The state machine's command codec (`KvRequest::encode` and `KvRequest::decode`): what
//! the leader does once per `SET` it proposes and every replica once per `SET` it applies.
//! A 64 B value, as the benches harness sends, and one near the node's default 1 MiB proposal limit.
//!
//! `cargo bench -p paxos-kv --bench codec`

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paxos_kv::kv::{KvCommand, KvRequest, RequestId};

fn set(value_bytes: usize) -> KvRequest {
    KvRequest {
        id: RequestId {
            client: 0x1234_5678_9abc_def0,
            born_slot: 1_000,
            seq: 42,
        },
        command: KvCommand::Set {
            key: b"key:00000042".to_vec(),
            value: vec![b'v'; value_bytes],
        },
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("kv/request");
    for (name, bytes) in [("64B", 64), ("1MiB", (1 << 20) - 100)] {
        let request = set(bytes);
        let encoded = request.encode();
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(format!("encode_set_{name}"), |b| {
            b.iter(|| std::hint::black_box(&request).encode());
        });
        group.bench_function(format!("decode_set_{name}"), |b| {
            b.iter(|| {
                let decoded = KvRequest::decode(std::hint::black_box(&encoded));
                assert!(decoded.is_some());
                decoded
            });
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
