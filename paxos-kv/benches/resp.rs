//! The RESP request parser (`paxos_kv::resp::parse_request`): one `SET` of a 64 B value,
//! and a pipeline of 16, as `redis-benchmark` and client libraries send them.
//!
//! `cargo bench -p paxos-kv --bench resp`

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use paxos_kv::resp::{Limits, parse_request};

/// `SET key:NNNNNNNN <64 B>` as an array of bulk strings, `n` times.
fn requests(n: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..n {
        let key = format!("key:{i:08}");
        let value = [b'v'; 64];
        out.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n", key.len()).as_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(format!("\r\n${}\r\n", value.len()).as_bytes());
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn resp(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("resp/parse_request");
    for n in [1, 16] {
        let input = requests(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("set_64B_x{n}"), |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut parsed = 0;
                    while let Some(args) = parse_request(&mut buf, &limits).unwrap() {
                        assert_eq!(args.len(), 3);
                        parsed += 1;
                    }
                    assert_eq!(parsed, n);
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, resp);
criterion_main!(benches);
