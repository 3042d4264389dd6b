//! Crash tests with real processes: a child process appends to a [`FileStorage`] and
//! acknowledges each batch on stdout only after `persist` returned; the parent kills it
//! with SIGKILL at random moments, reopens the store, and checks that every acknowledged
//! entry is present and intact and that nothing unacknowledged appears corrupted.
//!
//! The child is this same test binary, re-invoked with [`CHILD_DIR_ENV`] set so that
//! [`crash_child_entry_point`] runs the appender instead of returning at once.
//!
//! A SIGKILL tears a write only if it lands inside one `pwrite` (the kernel stops copying
//! at a page boundary), which is rare and depends on the machine. So that every run proves
//! recovery from torn tails, every [`TEAR_EVERY`]-th child also tears its last write on
//! purpose ([`IoFaults`] writes half a record), says so, and waits for the SIGKILL: the
//! disk then holds what a kill in the middle of that `pwrite` leaves. The test asserts
//! that recovery reported each of those torn tails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use paxos_core::{
    Ballot, Entry, HardState, NodeId, PersistBatch, ProposalId, Slot, Storage, Value,
};
use paxos_storage::{FileStorage, FileStorageOptions, IoFaults};

/// Set in the child's environment to the store directory.
const CHILD_DIR_ENV: &str = "PAXOS_STORAGE_CRASH_CHILD_DIR";
/// Set in the child's environment to `n`: the child tears the write of its batch `n`
/// (counted from 0 in this life), prints [`TORN`], and waits to be killed.
const CHILD_TEAR_ENV: &str = "PAXOS_STORAGE_CRASH_CHILD_TEAR_AT";
/// What the child prints after tearing a write.
const TORN: &str = "TORN";
/// Every this many iterations, the child tears a write on purpose (the rest are killed at
/// random moments only). With [`ITERATIONS_MIN`], at least two runs tear.
const TEAR_EVERY: u32 = 5;
/// Bound on the wait for the child's next line (it acknowledges a batch every few
/// milliseconds, after a recovery of at most a few segments).
const CHILD_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// The parent stops starting new iterations after this long.
const TIME_BUDGET: Duration = Duration::from_secs(8);
const ITERATIONS_MAX: u32 = 150;
const ITERATIONS_MIN: u32 = 10;
/// The child saves a snapshot and compacts every this many batches.
const COMPACT_EVERY_BATCHES: u64 = 40;

fn options() -> FileStorageOptions {
    // Small segments, so that the log rolls over and compaction deletes segments often.
    FileStorageOptions::default().segment_bytes(64 << 10)
}

/// The one value the child ever writes for `slot`, so the parent can check it exactly.
fn expected_entry(slot: u64) -> Entry {
    let payload_bytes = if slot % 16 == 0 {
        1024
    } else {
        (slot % 97 + 1) as usize
    };
    Entry {
        slot: Slot(slot),
        ballot: Ballot::new(1, NodeId(1)),
        value: Value::Batch(
            vec![paxos_core::Command {
                id: ProposalId {
                    origin: NodeId(1),
                    seq: slot,
                    epoch: 0,
                },
                payload: Bytes::from(vec![(slot % 251) as u8; payload_bytes]),
            }]
            .into(),
        ),
    }
}

/// Runs the appender when this binary was started as the child; does nothing otherwise.
#[test]
fn crash_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let tear_at: Option<u64> = std::env::var(CHILD_TEAR_ENV)
        .ok()
        .map(|n| n.parse().expect("child: tear batch number"));
    let faults = IoFaults::new();
    let mut store = FileStorage::open(&dir, options().faults(faults.clone())).expect("child: open");
    let recovered = block_on(store.load()).expect("child: load");
    let snapshot = block_on(store.snapshot()).expect("child: snapshot");
    let mut next_slot = recovered
        .entries
        .last()
        .map_or(0, |e| e.slot.0 + 1)
        .max(snapshot.map_or(0, |s| s.upto.0));
    let mut round = recovered.hard_state.promised.round;
    let mut stdout = std::io::stdout().lock();
    // libtest has printed `test crash_child_entry_point ... ` without a newline: end that
    // line, or the first ACK would be part of it and go unseen.
    if writeln!(stdout).is_err() {
        return;
    }
    for batch_number in 0_u64.. {
        round += 1;
        let count = if batch_number % 10 == 9 {
            64
        } else {
            1 + next_slot % 8
        };
        let batch = PersistBatch {
            hard_state: Some(HardState {
                promised: Ballot::new(round, NodeId(1)),
                commit: Slot(next_slot),
                epoch: round,
                non_voting: false,
            }),
            entries: (next_slot..next_slot + count).map(expected_entry).collect(),
        };
        if tear_at == Some(batch_number) {
            // Half of this batch's record is written, then the write fails.
            faults.fail_next_writes(1);
            assert!(
                block_on(store.persist(&batch)).is_err(),
                "child: torn persist"
            );
            // Nothing more is written; wait for the SIGKILL (or the parent's death, which
            // closes stdin).
            if writeln!(stdout, "{TORN}")
                .and_then(|()| stdout.flush())
                .is_ok()
            {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
            }
            return;
        }
        block_on(store.persist(&batch)).expect("child: persist");
        next_slot += count;
        // Acknowledge only now that persist returned; a dead parent ends the child.
        if writeln!(stdout, "ACK {} {round}", next_slot - 1)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
        if batch_number % COMPACT_EVERY_BATCHES == COMPACT_EVERY_BATCHES - 1 {
            let upto = Slot(next_slot.saturating_sub(50));
            // Streamed in pieces, so a kill can land halfway through the staging too.
            let data = format!("applied below {upto}").repeat(4096);
            block_on(store.begin_snapshot(upto)).expect("child: begin_snapshot");
            for piece in data.as_bytes().chunks(16 << 10) {
                block_on(store.append_snapshot(piece)).expect("child: append_snapshot");
            }
            block_on(store.commit_snapshot()).expect("child: commit_snapshot");
            block_on(store.compact(upto)).expect("child: compact");
        }
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be reproduced.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The child process, with its stdout read line by line on a thread, so that every wait
/// for a line is bounded.
struct ChildProcess {
    child: Child,
    lines: Receiver<String>,
}

impl ChildProcess {
    fn spawn(exe: &std::path::Path, dir: &std::path::Path, tear_at: Option<u64>) -> Self {
        let mut command = Command::new(exe);
        command
            .args([
                "--exact",
                "crash_child_entry_point",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            // Held open until the child is killed: a torn child waits on it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = tear_at {
            command.env(CHILD_TEAR_ENV, n.to_string());
        }
        let mut child = command.spawn().expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The child's next line, waiting at most [`CHILD_LINE_TIMEOUT`]. Panics with the
    /// child's stderr if it exited or stalled.
    fn next_line(&mut self, context: &str) -> String {
        let why = match self.lines.recv_timeout(CHILD_LINE_TIMEOUT) {
            Ok(line) => return line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                format!("the child wrote no line for {CHILD_LINE_TIMEOUT:?}; killed it")
            }
            Err(RecvTimeoutError::Disconnected) => "the child exited by itself".to_owned(),
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = self.child.wait().expect("reap the child");
        panic!("{context}: {why}: {status}\n{stderr}");
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("reap the child");
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_or_corrupts_acknowledged_entries() {
    let seed = 0x5EED_C4A5_u64;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let exe = std::env::current_exe().expect("path of this test binary");
    let started = Instant::now();
    // Everything ever acknowledged, across all child lifetimes.
    let mut acked_slot_max: Option<u64> = None;
    let mut acked_round_max = 0;
    let mut iterations = 0;
    // Torn tails recovery reported, and the children that tore a write on purpose.
    let mut torn_tails = 0;
    let mut tears = 0;
    while iterations < ITERATIONS_MAX
        && (iterations < ITERATIONS_MIN || started.elapsed() < TIME_BUDGET)
    {
        iterations += 1;
        let context = format!("iteration {iterations} (seed {seed:#x})");
        // 0 kills the child before it acknowledged anything (often while it recovers).
        let kill_after_acks = rng.below(100);
        // A tearing child tears its batch `kill_after_acks` and is killed after that.
        let tear = iterations % TEAR_EVERY == TEAR_EVERY - 2;
        let mut child = ChildProcess::spawn(&exe, dir.path(), tear.then_some(kill_after_acks));
        let mut acks = 0;
        loop {
            if acks == kill_after_acks && !tear {
                break;
            }
            let line = child.next_line(&context);
            let mut words = line.split_whitespace();
            match words.next() {
                Some(TORN) if tear && acks == kill_after_acks => break,
                Some(TORN) => panic!("{context}: the child tore a write after {acks} acks"),
                Some("ACK") if acks < kill_after_acks => {}
                Some("ACK") => panic!("{context}: the child acknowledged its torn batch"),
                _ => continue, // libtest's own output
            }
            let slot: u64 = words.next().and_then(|w| w.parse().ok()).expect("ACK slot");
            let round: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .expect("ACK round");
            acked_slot_max = acked_slot_max.max(Some(slot));
            acked_round_max = acked_round_max.max(round);
            acks += 1;
        }
        child.kill();

        let mut store = FileStorage::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("{context}: reopen after SIGKILL failed: {e}"));
        let torn = store.recovery().torn_tail.is_some();
        torn_tails += u32::from(torn);
        if tear {
            tears += 1;
            assert!(
                torn,
                "{context}: the child tore its last write, but recovery reported no torn tail: \
                 {:?}",
                store.recovery()
            );
        }
        let recovered = block_on(store.load()).expect("load");
        let snapshot = block_on(store.snapshot()).expect("snapshot");
        check_recovered(
            &recovered.entries,
            recovered.hard_state,
            snapshot.map_or(0, |s| s.upto.0),
            acked_slot_max,
            acked_round_max,
            iterations,
        );
    }
    eprintln!(
        "crash test: {iterations} SIGKILLs in {:.1?}, {} entries acknowledged, {torn_tails} torn \
         tails ({tears} torn on purpose)",
        started.elapsed(),
        acked_slot_max.map_or(0, |s| s + 1),
    );
    // The kill loop must really have recovered from torn tails, or it proved nothing
    // about them.
    assert!(
        tears >= 2 && torn_tails >= tears,
        "{torn_tails} torn tails recovered ({tears} torn on purpose) in {iterations} SIGKILLs: \
         the test did not exercise torn-tail recovery"
    );
}

/// Every acknowledged entry at or above the snapshot is present and exact, entries are
/// contiguous, and every entry present (acknowledged or not) is exactly what was written.
fn check_recovered(
    entries: &[Entry],
    hard_state: HardState,
    snapshot_upto: u64,
    acked_slot_max: Option<u64>,
    acked_round_max: u64,
    iteration: u32,
) {
    assert!(
        hard_state.promised.round >= acked_round_max,
        "iteration {iteration}: promised ballot {} is below the acknowledged round {acked_round_max}",
        hard_state.promised
    );
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry,
            &expected_entry(entry.slot.0),
            "iteration {iteration}: entry {i} is not what was written"
        );
        if i > 0 {
            assert_eq!(
                entry.slot.0,
                entries[i - 1].slot.0 + 1,
                "iteration {iteration}: entries are not contiguous"
            );
        }
    }
    let Some(acked) = acked_slot_max else {
        return;
    };
    if acked < snapshot_upto {
        return; // everything acknowledged is covered by the snapshot
    }
    let first = entries.first().map(|e| e.slot.0);
    let last = entries.last().map(|e| e.slot.0);
    assert!(
        first.is_some_and(|f| f <= snapshot_upto) && last.is_some_and(|l| l >= acked),
        "iteration {iteration}: acknowledged slots {snapshot_upto}..={acked} are not all present \
         (recovered {first:?}..={last:?})"
    );
}
