//! Appends per second against batch size, next to the raw `fdatasync` floor.
//!
//! ```text
//! cargo bench -p paxos-storage --bench append [-- DIR [SECONDS]]
//! ```
//!
//! `DIR` (default: the workspace's `target`) must be on the disk to measure: the bench makes
//! a temporary directory inside it. For each preallocation mode and batch size it measures
//! the raw floor (a preallocated file, a loop of one 64-byte `pwrite` and one `fdatasync`)
//! and `FileStorage::persist` with batches of 64-byte payloads, in alternating short
//! rounds, so that both see the same disk load (shared disks drift by 10x within minutes).
//! It prints medians over the rounds: raw syncs per second, persists and entries per second,
//! and the ratio of persists to raw syncs, i.e. entries/s to `raw syncs/s × batch`, taken
//! round by round so that a change in disk load between rounds cancels out. With group commit
//! every batch costs one write and one `fdatasync`, so the ratio should stay near 100%
//! until the write itself gets large.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use paxos_core::{Ballot, Command, Entry, NodeId, PersistBatch, ProposalId, Slot, Storage, Value};
use paxos_storage::{FileStorage, FileStorageOptions, Preallocate};

const BATCH_SIZES: [u64; 4] = [1, 16, 64, 1024];
const PAYLOAD_BYTES: usize = 64;
const SEGMENT_BYTES: u64 = 64 << 20;
/// Alternating raw/store rounds per measurement.
const ROUNDS: u32 = 10;

fn main() {
    // `cargo bench` passes `--bench`; skip flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let default_base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
    let base = args.first().map_or(default_base, String::as_str);
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let round = Duration::from_secs_f64(seconds / f64::from(ROUNDS) / 2.0);
    std::fs::create_dir_all(base).expect("create the bench directory");
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    println!(
        "dir {}, {seconds} s per row in {ROUNDS} alternating rounds, {PAYLOAD_BYTES} B payloads",
        dir.path().display()
    );

    for mode in [Preallocate::Fallocate, Preallocate::ZeroFill] {
        println!("\n{mode:?}");
        println!(
            "{:>6} {:>12} {:>12} {:>14} {:>13}",
            "batch", "raw syncs/s", "persists/s", "entries/s", "vs raw×batch"
        );
        for batch in BATCH_SIZES {
            let mut raw = RawLog::new(dir.path(), mode);
            let mut store = Appender::new(dir.path(), mode, batch);
            let mut raw_rates = Vec::new();
            let mut store_rates = Vec::new();
            let mut ratios = Vec::new();
            for _ in 0..ROUNDS {
                let raw_rate = rate(measure(round, || raw.append()));
                let persists = rate(measure(round, || store.append()));
                raw_rates.push(raw_rate);
                store_rates.push(persists);
                ratios.push(persists / raw_rate);
            }
            let raw_rate = median(&mut raw_rates);
            let persists = median(&mut store_rates);
            println!(
                "{batch:>6} {raw_rate:>12.0} {persists:>12.0} {:>14.0} {:>12.0}%",
                persists * batch as f64,
                median(&mut ratios) * 100.0
            );
        }
    }
}

/// Operations per second.
fn rate((ops, time): (u64, Duration)) -> f64 {
    ops as f64 / time.as_secs_f64()
}

/// The median (upper median for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `op` until `run_for` has passed; returns how many times it ran and how long it took.
fn measure(run_for: Duration, mut op: impl FnMut()) -> (u64, Duration) {
    let started = Instant::now();
    let mut ops = 0;
    while started.elapsed() < run_for {
        op();
        ops += 1;
    }
    (ops, started.elapsed())
}

/// The floor: a preallocated file, one 64-byte `pwrite` and one `fdatasync` per append.
struct RawLog {
    file: File,
    offset: u64,
}

impl RawLog {
    fn new(dir: &Path, mode: Preallocate) -> Self {
        let path = dir.join("raw");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create the raw file");
        if mode == Preallocate::ZeroFill {
            let zeros = vec![0; 1 << 20];
            for i in 0..SEGMENT_BYTES >> 20 {
                file.write_all_at(&zeros, i << 20).expect("zero fill");
            }
        } else {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, SEGMENT_BYTES)
                .expect("fallocate");
        }
        file.sync_all().expect("fsync");
        std::fs::remove_file(&path).expect("unlink the raw file (it stays open)");
        Self { file, offset: 0 }
    }

    fn append(&mut self) {
        assert!(
            self.offset + PAYLOAD_BYTES as u64 <= SEGMENT_BYTES,
            "raw file full"
        );
        let record = [0xA5_u8; PAYLOAD_BYTES];
        self.file.write_all_at(&record, self.offset).expect("write");
        self.file.sync_data().expect("fdatasync");
        self.offset += PAYLOAD_BYTES as u64;
    }
}

/// A fresh `FileStorage` that persists `batch` entries per call.
struct Appender {
    store: FileStorage,
    _dir: tempfile::TempDir,
    batch: u64,
    next_slot: u64,
    payload: Bytes,
}

impl Appender {
    fn new(dir: &Path, mode: Preallocate, batch: u64) -> Self {
        let store_dir = tempfile::tempdir_in(dir).expect("store directory");
        let options = FileStorageOptions::default()
            .segment_bytes(SEGMENT_BYTES)
            .initial_segment_bytes(SEGMENT_BYTES)
            .preallocate(mode);
        let mut store = FileStorage::open(store_dir.path(), options).expect("open the store");
        block_on(store.load()).expect("load");
        let mut appender = Self {
            store,
            _dir: store_dir,
            batch,
            next_slot: 0,
            payload: Bytes::from(vec![0x5A_u8; PAYLOAD_BYTES]),
        };
        // The first persist creates the first segment; keep that out of the measurement.
        appender.append();
        appender
    }

    fn append(&mut self) {
        let entries = (self.next_slot..self.next_slot + self.batch)
            .map(|slot| Entry {
                slot: Slot(slot),
                ballot: Ballot::new(1, NodeId(1)),
                value: Value::Batch(
                    vec![Command {
                        id: ProposalId {
                            origin: NodeId(1),
                            seq: slot,
                            epoch: 0,
                        },
                        payload: self.payload.clone(),
                    }]
                    .into(),
                ),
            })
            .collect();
        self.next_slot += self.batch;
        let batch = PersistBatch {
            hard_state: None,
            entries,
        };
        block_on(self.store.persist(&batch)).expect("persist");
    }
}
