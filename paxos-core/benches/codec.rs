//! The wire codec: encode and decode one frame holding an Accept of 16 commands of 64 B,
//! the shape of a batched write under load.
//!
//! `cargo bench -p paxos-core --bench codec`

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paxos_core::codec::{DEFAULT_MAX_FRAME_BYTES, decode_frame, encode_frame};
use paxos_core::message::Accept;
use paxos_core::{Ballot, Command, Instant, Message, NodeId, ProposalId, Slot, Value};

/// An Accept of one slot holding 16 commands of 64 B each.
fn accept() -> Message {
    let commands: Vec<Command> = (0..16)
        .map(|seq| Command {
            id: ProposalId {
                origin: NodeId(1),
                seq,
                epoch: 1,
            },
            payload: Bytes::from(vec![0xA5; 64]),
        })
        .collect();
    Message::Accept(Accept {
        ballot: Ballot::new(3, NodeId(1)),
        first: Slot(1_000_000),
        values: vec![Value::Batch(commands.into())],
        commit: Slot(999_990),
        stamp: Instant::from_nanos(123_456_789),
    })
}

fn codec(c: &mut Criterion) {
    let message = accept();
    let mut frame = BytesMut::new();
    encode_frame(&message, &mut frame, DEFAULT_MAX_FRAME_BYTES).unwrap();
    let mut group = c.benchmark_group("codec/accept_16x64B");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(frame.len());
        b.iter(|| {
            out.clear();
            encode_frame(
                std::hint::black_box(&message),
                &mut out,
                DEFAULT_MAX_FRAME_BYTES,
            )
            .unwrap();
            out.len()
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let (m, used): (Message, usize) =
                decode_frame(std::hint::black_box(&frame), DEFAULT_MAX_FRAME_BYTES)
                    .unwrap()
                    .unwrap();
            (m, used)
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
