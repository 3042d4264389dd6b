//! [`FileStorage`]: a write-ahead log in preallocated segment files, plus a snapshot file.
//!
//! # Design
//!
//! **Directory layout.** One directory per replica holds:
//!
//! * `LOCK`: held with an exclusive `flock` while a store is open, so two processes never
//!   append to one log.
//! * `NNNNNNNNNNNNNNNNNNNN.wal`: log segments. The 20-digit name is the sequence number of
//!   the segment's first record; sequence numbers grow by one per record across segments,
//!   so a missing or truncated segment shows up as a gap.
//! * `snapshot`: the last committed snapshot (the node's state machine and core state,
//!   opaque to the store), with a checksummed header; see `snapshot.rs`.
//! * `OWNER`: the node and cluster the store belongs to, written by the first
//!   [`claim`](Storage::claim) (see below).
//! * `*.tmp`: files being created; deleted at open.
//!
//! **Record format** (see `record.rs`): a 24-byte header (magic, payload length, sequence
//! number, crc32c of the payload, crc32c of the header), the payload (postcard), and zero
//! padding to a multiple of 8 bytes. One record holds one whole [`PersistBatch`] (the hard
//! state and all entries), so a batch is applied whole or not at all. [`Storage::compact`]
//! writes a checkpoint record holding the compaction point and the current hard state: the
//! hard state (the promised ballot) lives in the log, so it is updated atomically with the
//! entries and needs no separate metadata file.
//!
//! **Segments** are preallocated (`fallocate`, or by writing zeros where the file system has
//! no `fallocate`), so an append does not grow the file and `fdatasync` has no size change
//! to flush. They start small (1 MiB) and each new one doubles, up to 64 MiB (see
//! [`FileStorageOptions`]), so a store that holds little takes little disk; recovery takes
//! each segment's size from the file. A new segment is created as `*.tmp`, preallocated, fsynced, renamed and the
//! directory fsynced, before any record goes in it. A record that does not fit in the
//! active segment goes to a new one (sized to fit, if it is larger than a segment).
//!
//! **What is fsynced when.**
//! * [`persist`](Storage::persist): one `pwrite` of one record, then one `fdatasync` of the
//!   segment: group commit, whatever the batch holds. With `fallocate`d segments, a write
//!   that crosses a 1 MiB boundary also writes zeros up to the next one (same `pwrite`):
//!   blocks `fallocate` reserved are "unwritten", and the first `fdatasync` over each one
//!   must commit a journal transaction to mark it written; doing that once per MiB instead
//!   of once per 4 KiB block keeps a batch of 64 small entries as fast as the raw floor. It returns only after the `fdatasync`
//!   returned. An empty batch writes nothing.
//! * [`start_persist`](Storage::start_persist) (pipelined persists): the same per batch,
//!   except that the batches queued behind the one being synced are written together when
//!   the I/O thread gets to them, their records in order in one `pwrite`, with one
//!   `fdatasync` for all (at most 64); if it fails, every one of them fails.
//! * A new segment: the file (`fsync`), then the directory.
//! * Snapshots (`snapshot.rs`): [`begin_snapshot`](Storage::begin_snapshot) creates
//!   `snapshot.tmp`, [`append_snapshot`](Storage::append_snapshot) writes to it (no sync),
//!   and [`commit_snapshot`](Storage::commit_snapshot) writes its header, fsyncs it,
//!   renames it over `snapshot` and fsyncs the directory.
//! * [`claim`](Storage::claim), the first time: `OWNER.tmp` is written and fsynced,
//!   renamed over `OWNER`, and the directory fsynced.
//! * [`compact`](Storage::compact): the checkpoint record as in `persist`; then each
//!   deleted segment is unlinked, oldest first, with a directory fsync after each, so a
//!   crash leaves a suffix of the segments and never a gap.
//!
//! **Recovery** (at [`FileStorage::open`]) reads each segment in order through a fixed
//! buffer and replays each record whose header and payload checksums pass and whose
//! sequence number is the next one. At the first record that does not pass:
//! * if only zeros follow to the end of the segment, that is the clean end of the segment
//!   (the preallocated space never written);
//! * else, in the last segment, if no valid record with a later sequence number follows at
//!   any aligned offset, the bad bytes are the last, incomplete write: a **torn tail**. It is
//!   zeroed and synced before the store accepts writes, and never applied. See
//!   [`FileStorage::recovery`];
//! * else it is **corruption**: `open` fails with [`StorageError::Corrupt`] naming the file
//!   and offset. Records after it were acknowledged, and silently dropping them could break
//!   a promise. So are a record that passes its checksums but has the wrong sequence number
//!   or does not decode, a gap between segments, and a promised ballot moving backwards.
//!
//! One limit, shared by every single-copy checksummed log: damage to the very last record
//! looks exactly like a torn write, so it is dropped as one (and reported in
//! [`RecoveryReport::torn_tail`]). Damage anywhere earlier is always an error.
//!
//! A torn tail can only be in the last segment: a new segment is only started after the
//! previous record was fsynced. Recovery never holds more than one record and a 1 MiB buffer
//! beyond the recovered entries, which [`Storage::load`] returns anyway.
//!
//! **Failures poison.** After any failed write or fsync, every later call returns
//! [`StorageError::Poisoned`] without touching the disk. The store never retries an fsync:
//! after a failed `fdatasync`, Linux may have dropped the dirty pages and a retry can report
//! success for data that is gone.
//!
//! **Ownership.** [`claim`](Storage::claim) compares its owner with the one in `OWNER`
//! (28 bytes: magic, format version, cluster id, node id, crc32c) and refuses another with
//! [`StorageError::OwnedByOther`]. Without an `OWNER` file (a fresh directory, or one an
//! older version made, log and all) the first claim writes one. A damaged `OWNER` file is
//! [`StorageError::Corrupt`] and is never rewritten.
//!
//! **Compaction** keeps a low-water mark: entries below it are never returned again. Space
//! is reclaimed lazily: segments are deleted oldest first while every entry in them is
//! below the mark; the active segment is never deleted.
//!
//! **Threads.** [`FileStorage::open`] recovers on the calling thread (it blocks), then
//! starts one I/O thread for the store. After that every file operation runs on that
//! thread, one job at a time, and the `async fn`s only send it a job over a bounded
//! channel and await the reply: they never block an async worker, on any runtime. The
//! thread stops, and is joined, when the store is dropped. See [`FileStorage`].
//!
//! # What it does not do
//!
//! It does not cache entries for reads after `load`, it does not check that compaction is
//! covered by a snapshot (the caller's contract), and it needs no async runtime (the
//! futures it returns are woken by its own thread).

mod faults;
mod log;
mod owner;
mod record;
mod recovery;
mod snapshot;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::oneshot;
use paxos_core::{
    HardState, PersistBatch, PersistFuture, RecoveredState, Slot, SnapshotMeta, Storage,
    StorageError, StoreOwner,
};

pub use faults::IoFaults;
pub use recovery::{RecoveryReport, TornTail};

use log::{Active, Job, Log, Shared};
use record::BodyRef;
use recovery::Mode;

/// File name suffix of log segments.
const SEGMENT_SUFFIX: &str = ".wal";
/// Name of the snapshot file.
const SNAPSHOT_FILE: &str = "snapshot";
/// Name of the lock file.
const LOCK_FILE: &str = "LOCK";
/// Jobs queued for the I/O thread: the persists in flight ([`Storage::start_persist`],
/// at most [`MAX_PERSISTS_IN_FLIGHT`]) and a few more for the calls that await their reply
/// (the driver makes one at a time; the others hold jobs of calls whose futures were
/// dropped, and a sender then waits, asynchronously, for room).
const JOB_QUEUE: usize = MAX_PERSISTS_IN_FLIGHT + 4;
/// Persists [`Storage::start_persist`] has room for in the queue before it refuses one
/// more: the trait's floor, the largest `Config::max_outstanding_readys`.
const MAX_PERSISTS_IN_FLIGHT: usize = 64;
/// Spare encoding buffers kept for pipelined persists (each may hold up to a MiB of zeros
/// ahead, see [`ZERO_AHEAD_BYTES`], so they are reused rather than allocated each time).
const SPARE_BUFFERS: usize = 4;
/// The largest spare buffer kept: a bigger one (a batch of large values) is freed.
const SPARE_BUFFER_BYTES: usize = 2 * ZERO_AHEAD_BYTES as usize;
/// Suffix of files being created.
const TMP_SUFFIX: &str = ".tmp";
/// With [`Preallocate::Fallocate`], appends write zeros ahead of the record up to a
/// multiple of this, so reserved blocks are initialized once per window, not per block.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// How [`FileStorage`] preallocates segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preallocate {
    /// `fallocate(2)`: reserves blocks without writing them. Falls back to
    /// [`ZeroFill`](Self::ZeroFill) where the file system does not support it.
    #[default]
    Fallocate,
    /// Writes zeros over the whole segment: slower to create, but the blocks are then
    /// fully written and a later overwrite changes no extent metadata.
    ZeroFill,
}

/// Settings for [`FileStorage::open`]. Start from `FileStorageOptions::default()`.
///
/// # Segment sizes
///
/// Segments start small and grow, so that a store holding little takes little disk: the
/// first segment is [`initial_segment_bytes`](Self::initial_segment_bytes) (1 MiB), each
/// new one twice the size of the one before, up to [`segment_bytes`](Self::segment_bytes)
/// (64 MiB). A record larger than the next segment's size gets a segment of its own size.
/// After a restart, growth continues from the size of the last segment on disk. Recovery
/// reads each segment by its own size, so changing either option between runs is safe.
#[derive(Clone, Debug)]
pub struct FileStorageOptions {
    initial_segment_bytes: u64,
    segment_bytes: u64,
    max_record_bytes: u32,
    preallocate: Preallocate,
    idle_spin: Duration,
    faults: Option<IoFaults>,
}

impl Default for FileStorageOptions {
    fn default() -> Self {
        Self {
            initial_segment_bytes: 1 << 20,
            segment_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
            preallocate: Preallocate::default(),
            idle_spin: Self::DEFAULT_IDLE_SPIN,
            faults: None,
        }
    }
}

impl FileStorageOptions {
    /// Default of [`idle_spin`](Self::idle_spin): 250 µs.
    pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(250);

    /// The size segments grow to, and stay at: each new segment doubles the last one's
    /// size up to this. Default 64 MiB; at least 4 KiB. See [Segment sizes](Self#segment-sizes).
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(4096);
        self
    }

    /// Size of a store's first segment. Default 1 MiB; at least 4 KiB; capped by
    /// [`segment_bytes`](Self::segment_bytes). See [Segment sizes](Self#segment-sizes).
    pub fn initial_segment_bytes(mut self, bytes: u64) -> Self {
        self.initial_segment_bytes = bytes.max(4096);
        self
    }

    /// The size of the segment that follows one of `previous` bytes (`None`: the first).
    fn next_segment_bytes(&self, previous: Option<u64>) -> u64 {
        let first = self.initial_segment_bytes.min(self.segment_bytes);
        previous.map_or(first, |previous| {
            previous.saturating_mul(2).clamp(first, self.segment_bytes)
        })
    }

    /// Largest encoded batch one `persist` may write; larger ones fail without writing.
    /// Default 64 MiB. Only checked on write: recovery reads records of any length.
    pub fn max_record_bytes(mut self, bytes: u32) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// How segments are preallocated. Default [`Preallocate::Fallocate`].
    pub fn preallocate(mut self, preallocate: Preallocate) -> Self {
        self.preallocate = preallocate;
        self
    }

    /// How long the I/O thread keeps polling for the next job, yielding its core between
    /// polls, after its queue runs dry, before it sleeps. Default 250 µs; zero sleeps at
    /// once.
    ///
    /// Waking a sleeping thread costs tens of microseconds of latency (about 30 µs on the
    /// machine BENCHMARKS.md was measured on), on every persist that finds the thread
    /// asleep: at one client, that is every persist, on the commit path of every write.
    /// A job that arrives within the spin is taken without that wake-up. The cost is CPU:
    /// at most this long per idle gap, and the thread yields between polls, so other
    /// threads that are ready to run (the node's own, on a busy machine) get the core.
    ///
    /// Longer spins trade CPU, and so throughput on a busy machine, for latency at light
    /// load. On that machine (2 cores for 3 replicas and the clients), 250 µs against
    /// 50 µs, seven alternating rounds of 4 s in two runs: one client's SET p50 went from
    /// a median of 271 µs to 233 µs (−14%; one write's floor there is about 214 µs), and
    /// 64 clients' throughput from a mean of 64.0 K to 63.6 K ops/s (within the noise).
    /// A lone client's persists come about 170 µs apart: past a 50 µs spin, within
    /// 250 µs. 1 ms against 50 µs, three alternating rounds of 4 s: one client's SET p50
    /// went from 275 / 290 / 288 µs to 254 / 271 / 250 µs (median −12%); at 64 clients
    /// the CPU per op went from 23.8 / 22.9 / 22.3 µs to 30.4 / 26.3 / 25.8 µs, and
    /// throughput from 50.8 / 52.5 / 55.3 K to 46.2 / 54.1 / 52.9 K ops/s (two earlier
    /// pairs of rounds: −2% and −9%). A yield gives the core only to threads queued on
    /// that same core, so under full load the spin still takes time from the node's other
    /// threads. Spin longer where cores are to spare and a lone writer's latency is what
    /// counts, shorter (or 0) where the CPU is needed elsewhere
    /// (`paxos-node serve --file-idle-spin-us`).
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = spin;
        self
    }

    /// Routes every write and fsync through `faults`, so tests can make them fail.
    pub fn faults(mut self, faults: IoFaults) -> Self {
        self.faults = Some(faults);
        self
    }
}

/// A [`Storage`] on local files: a checksummed, preallocated write-ahead log with group
/// commit, and a snapshot file. See the [module docs](self) for the design.
///
/// ```
/// # use paxos_core::{Ballot, HardState, NodeId, PersistBatch, Storage};
/// # use paxos_storage::{FileStorage, FileStorageOptions};
/// # futures::executor::block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// let mut store = FileStorage::open(dir.path(), FileStorageOptions::default()).unwrap();
/// let recovered = store.load().await.unwrap();
/// assert!(recovered.entries.is_empty());
/// let hard_state = HardState { promised: Ballot::new(1, NodeId(1)), ..HardState::default() };
/// store.persist(&PersistBatch { hard_state: Some(hard_state), entries: vec![] }).await.unwrap();
/// drop(store);
///
/// let mut store = FileStorage::open(dir.path(), FileStorageOptions::default()).unwrap();
/// assert_eq!(store.load().await.unwrap().hard_state, hard_state);
/// # });
/// ```
///
/// # Threads
///
/// Each open store has one I/O thread, named `paxos-file-storage`, started by
/// [`open`](Self::open). Every file operation after `open` runs there: an `async fn`
/// encodes its record (CPU work, on the caller's task), sends a job over a bounded
/// channel, and awaits the reply, so no async worker thread ever waits for a write or an
/// `fdatasync`, on any runtime. The thread does one job at a time, in order, so a
/// `persist` is still one write and one `fdatasync`.
///
/// Dropping the store stops the thread and joins it: if a job is under way (only when a
/// call's future was dropped before it finished), the drop waits for that one job. When
/// the drop returns, every file is closed and the directory lock released, so the store
/// can be opened again at once.
///
/// # Panics
///
/// [`persist`](Storage::persist) panics if the batch's promised ballot is below the last
/// one persisted: that is a bug in the caller, and writing it could break a promise.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    max_record_bytes: u32,
    /// The last hard state written: checked by `persist`, written by `compact`.
    hard_state: HardState,
    compacted_before: Slot,
    /// What `open` recovered, until `load` takes it.
    recovered: Option<RecoveredState>,
    report: RecoveryReport,
    /// Reused encoding buffer (it travels to the I/O thread and back).
    buf: Vec<u8>,
    /// Encoding buffers of pipelined persists, back from the I/O thread, for reuse.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    shared: Arc<Shared>,
    jobs: async_channel::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Holds the `flock` while open; released after the thread is joined.
    _lock: File,
}

impl FileStorage {
    /// Opens (creating if needed) the store in `dir` and recovers it: replays the log,
    /// drops a torn tail, and fails with [`StorageError::Corrupt`] on any other damage.
    /// Fails with [`StorageError::Locked`] if another store has the directory open.
    ///
    /// Blocks the calling thread for the recovery reads and, after a torn tail, one write
    /// and fsync; then starts the store's I/O thread.
    pub fn open(dir: impl AsRef<Path>, options: FileStorageOptions) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error(format!("create directory {}", dir.display()), e))?;
        let lock = lock_dir(&dir)?;
        let dir_file = File::open(&dir)
            .map_err(|e| io_error(format!("open directory {}", dir.display()), e))?;
        let removed_tmp = remove_tmp_files(&dir)?;
        let faults = options.faults.clone();
        let mut sync = |file: &File, what: &str| sync_data(faults.as_ref(), file, what);
        if removed_tmp {
            sync(&dir_file, &format!("fsync of directory {}", dir.display()))?;
        }
        let recovered = recovery::recover(&dir, Mode::Repair, &mut sync)?;
        let active = match recovered.segments.last() {
            Some(last) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(|e| io_error(format!("open {}", last.path.display()), e))?;
                let size = file
                    .metadata()
                    .map_err(|e| io_error(format!("stat {}", last.path.display()), e))?
                    .len();
                Some(Active {
                    file,
                    write_pos: recovered.write_pos,
                    size,
                    // Unknown past the last record: zero ahead from there.
                    initialized_until: recovered.write_pos,
                })
            }
            None => None,
        };
        let shared = Arc::new(Shared::default());
        shared
            .segment_count
            .store(recovered.segments.len(), Ordering::SeqCst);
        let max_record_bytes = options.max_record_bytes;
        let log = Log {
            dir: dir.clone(),
            dir_file,
            options,
            segments: recovered.segments.iter().cloned().collect(),
            snapshots: Default::default(),
            active,
            next_seq: recovered.next_seq,
            shared: shared.clone(),
        };
        let (jobs, inbox) = async_channel::bounded(JOB_QUEUE);
        let idle_spin = log.options.idle_spin;
        let thread = std::thread::Builder::new()
            .name(log::THREAD_NAME.into())
            .spawn(move || log::run(log, inbox, idle_spin))
            .map_err(|e| io_error(format!("start the I/O thread for {}", dir.display()), e))?;
        Ok(Self {
            dir,
            max_record_bytes,
            hard_state: recovered.hard_state,
            compacted_before: recovered.compacted_before,
            recovered: Some(recovered.state()),
            report: recovered.report,
            buf: Vec::new(),
            spare: Arc::default(),
            shared,
            jobs,
            thread: Some(thread),
            _lock: lock,
        })
    }

    /// What recovery found at open: segments and records read, and any torn tail dropped.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files the log occupies now.
    pub fn segment_count(&self) -> usize {
        self.shared.segment_count.load(Ordering::SeqCst)
    }

    /// Sends the job `make(reply)` to the I/O thread and awaits its reply.
    async fn call<T>(
        &mut self,
        make: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<T, StorageError> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(make(reply)).await;
        match sent {
            Ok(()) => answer.await.map_err(|_| self.thread_gone()),
            Err(_) => Err(self.thread_gone()),
        }
    }

    /// The error for a call the I/O thread did not answer: it only stops early by
    /// panicking (a bug), and after that nothing it did can be trusted.
    fn thread_gone(&self) -> StorageError {
        self.thread_gone_error().poison()
    }

    /// What [`thread_gone`](Self::thread_gone) reports, to report later (from a pipelined
    /// persist's future).
    fn thread_gone_error(&self) -> ThreadGone {
        ThreadGone {
            shared: self.shared.clone(),
            reason: format!(
                "the I/O thread of the file store in {} stopped",
                self.dir.display()
            ),
        }
    }

    /// What `batch` is written as, and the highest slot it holds, after checking that its
    /// promise does not move backwards (a safety invariant: panics if it does).
    fn batch_record<'a>(&self, batch: &'a PersistBatch) -> (BodyRef<'a>, Option<Slot>) {
        crate::assert_promise_moves_forward(batch, &self.hard_state);
        let body = BodyRef::Batch {
            hard_state: batch.hard_state,
            entries: &batch.entries,
        };
        (body, batch.entries.iter().map(|e| e.slot).max())
    }

    /// Queues `batch` for the I/O thread without waiting ([`Storage::start_persist`]):
    /// `None` for an empty batch (nothing to write), else a future of its outcome.
    fn start_append(
        &mut self,
        batch: &PersistBatch,
    ) -> Result<Option<impl Future<Output = Result<(), StorageError>> + Send + 'static>, StorageError>
    {
        self.shared.check_poisoned()?;
        if batch.is_empty() {
            return Ok(None);
        }
        let (body, max_slot) = self.batch_record(batch);
        let mut record = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        let payload_len = record::encode(&mut record, &body);
        self.check_record_size(payload_len)?;
        let (reply, answer) = oneshot::channel();
        let job = Job::Append {
            record,
            max_slot,
            reply,
        };
        // The queue is the bound: room for MAX_PERSISTS_IN_FLIGHT appends beside the few
        // jobs of awaited (or dropped) calls.
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(async_channel::TrySendError::Full(_)) => {
                return Err(StorageError::InvalidCall(format!(
                    "the I/O thread's queue of {JOB_QUEUE} jobs is full"
                )));
            }
            Err(async_channel::TrySendError::Closed(_)) => return Err(self.thread_gone()),
        }
        // Checked against the next batch as soon as this one is queued (they are written in
        // order, and a failure poisons the store for every later one).
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
        let spare = self.spare.clone();
        let gone = self.thread_gone_error();
        Ok(Some(async move {
            match answer.await {
                Ok((result, buf)) => {
                    let mut spare = spare.lock().unwrap_or_else(PoisonError::into_inner);
                    if spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_BUFFER_BYTES {
                        spare.push(buf);
                    }
                    result
                }
                Err(oneshot::Canceled) => Err(gone.poison()),
            }
        }))
    }

    /// Refuses a record whose payload is over `max_record_bytes`. Nothing was written then:
    /// the store stays usable.
    fn check_record_size(&self, payload_len: usize) -> Result<(), StorageError> {
        if payload_len <= self.max_record_bytes as usize {
            return Ok(());
        }
        let message = format!(
            "the encoded batch is {payload_len} bytes, over max_record_bytes {}",
            self.max_record_bytes
        );
        Err(StorageError::io(
            "persist",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        ))
    }

    /// Appends one encoded record through the I/O thread, keeping the buffer for reuse.
    async fn append(
        &mut self,
        body: &BodyRef<'_>,
        make: impl FnOnce(Vec<u8>, log::RecordReply) -> Job,
    ) -> Result<(), StorageError> {
        let mut buf = std::mem::take(&mut self.buf);
        let payload_len = record::encode(&mut buf, body);
        if let Err(e) = self.check_record_size(payload_len) {
            self.buf = buf;
            return Err(e);
        }
        let (result, buf) = self.call(|reply| make(buf, reply)).await?;
        self.buf = buf;
        result
    }

    /// Runs `look` on the I/O thread's log and returns what it returns.
    #[cfg(test)]
    fn inspect<R: Send + 'static>(&self, look: impl FnOnce(&Log) -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job = Job::Inspect(Box::new(move |log| {
            let _ = tx.send(look(log));
        }));
        self.jobs.send_blocking(job).expect("the I/O thread runs");
        rx.recv().expect("the I/O thread answers")
    }
}

/// The I/O thread stopped early: it only does by panicking (a bug), and after that
/// nothing it did can be trusted, so the store is poisoned.
struct ThreadGone {
    shared: Arc<Shared>,
    reason: String,
}

impl ThreadGone {
    fn poison(self) -> StorageError {
        let _ = self.shared.poisoned.set(self.reason.clone());
        StorageError::Poisoned(self.reason)
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        // The thread ends once the queue is closed and drained; joining it means its files
        // are closed before the lock is released (after this, as `_lock` drops).
        self.jobs.close();
        if let Some(thread) = self.thread.take() {
            // A panic on the thread was already reported to the call it failed.
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Storage for FileStorage {
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        self.call(|reply| Job::Claim { owner, reply }).await?
    }

    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.shared.check_poisoned()?;
        if let Some(recovered) = self.recovered.take() {
            return Ok(recovered);
        }
        // A second load: read the log again.
        self.call(|reply| Job::Reload { reply }).await?
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        if batch.is_empty() {
            return Ok(());
        }
        let (body, max_slot) = self.batch_record(batch);
        self.append(&body, |record, reply| Job::Append {
            record,
            max_slot,
            reply,
        })
        .await?;
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
        Ok(())
    }

    fn pipelines_persists(&self) -> bool {
        true
    }

    /// Encodes the batch, queues it for the I/O thread and returns: the thread writes and
    /// syncs the queued batches one after another, in order, so a later one is never
    /// durable before an earlier one (one segment file; a new segment starts only after
    /// the last record of the one before is synced).
    fn start_persist(&mut self, batch: &PersistBatch) -> PersistFuture {
        match self.start_append(batch) {
            Ok(None) => Box::pin(std::future::ready(Ok(()))),
            Ok(Some(done)) => Box::pin(done),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    async fn begin_snapshot(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        self.call(|reply| Job::BeginSnapshot { upto, reply })
            .await?
    }

    /// Copies `bytes` into the job (the I/O thread writes them): callers append in
    /// bounded pieces (the node's driver, 256 KiB), so this copy is bounded too.
    async fn append_snapshot(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        let bytes = bytes.to_vec();
        self.call(|reply| Job::AppendSnapshot { bytes, reply })
            .await?
    }

    async fn staged_snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.shared.check_poisoned()?;
        self.call(|reply| Job::StagedSnapshot { reply }).await
    }

    async fn commit_snapshot(&mut self) -> Result<SnapshotMeta, StorageError> {
        self.shared.check_poisoned()?;
        self.call(|reply| Job::CommitSnapshot { reply }).await?
    }

    /// The first call after open checks the whole file's checksum (one pass through a
    /// 1 MiB buffer); later calls answer from what it found.
    async fn snapshot(&mut self) -> Result<Option<SnapshotMeta>, StorageError> {
        self.shared.check_poisoned()?;
        self.call(|reply| Job::SavedSnapshot { reply }).await?
    }

    async fn read_snapshot(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.shared.check_poisoned()?;
        let len = buf.len();
        let bytes = self
            .call(|reply| Job::ReadSnapshot { offset, len, reply })
            .await??;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        if before <= self.compacted_before {
            return Ok(());
        }
        let body = BodyRef::Checkpoint {
            hard_state: self.hard_state,
            compacted_before: before,
        };
        self.append(&body, |record, reply| Job::Compact {
            record,
            before,
            reply,
        })
        .await?;
        self.compacted_before = before;
        Ok(())
    }
}

/// A [`StorageError::Io`] for `op`.
pub(crate) fn io_error(op: String, error: std::io::Error) -> StorageError {
    StorageError::io(op, error)
}

/// `fdatasync`, through the fault switchboard if there is one.
fn sync_data(faults: Option<&IoFaults>, file: &File, what: &str) -> Result<(), StorageError> {
    faults
        .map_or(Ok(()), IoFaults::on_sync)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error(what.to_owned(), e))
}

/// `fsync` (data and metadata), through the fault switchboard if there is one.
fn sync_all(faults: Option<&IoFaults>, file: &File, what: &str) -> Result<(), StorageError> {
    faults
        .map_or(Ok(()), IoFaults::on_sync)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(what.to_owned(), e))
}

/// Replaces `dir/name` atomically and durably with `parts` (written one after another):
/// write a temporary file, fsync it, rename it over `name`, fsync the directory
/// (`dir_file`). A crash leaves either the old file or the new one, never a mix.
fn replace_file(
    dir: &Path,
    dir_file: &File,
    name: &str,
    parts: &[&[u8]],
    faults: Option<&IoFaults>,
) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_error(format!("create {}", tmp.display()), e))?;
    let mut at = 0_u64;
    for part in parts {
        file.write_all_at(part, at)
            .map_err(|e| io_error(format!("write {}", tmp.display()), e))?;
        at += part.len() as u64;
    }
    sync_all(faults, &file, &format!("fsync of {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name))
        .map_err(|e| io_error(format!("rename {} to {name}", tmp.display()), e))?;
    sync_all(
        faults,
        dir_file,
        &format!("fsync of directory {}", dir.display()),
    )
}

/// Reserves `size` bytes of blocks for `file`.
fn preallocate(file: &File, size: u64, how: Preallocate) -> std::io::Result<()> {
    if how == Preallocate::Fallocate {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    let zeros = vec![0; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = usize::try_from(size - offset).map_or(zeros.len(), |left| left.min(zeros.len()));
        file.write_all_at(&zeros[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Takes the directory's exclusive lock, failing at once with [`StorageError::Locked`] if
/// another store holds it.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(format!("open {}", path.display()), e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            return Err(StorageError::Locked {
                path: path.display().to_string(),
            });
        }
        Err(e) => return Err(io_error(format!("lock {}", path.display()), e.into())),
    }
    Ok(file)
}

/// Deletes leftover `*.tmp` files from an interrupted segment or snapshot creation.
fn remove_tmp_files(dir: &Path) -> Result<bool, StorageError> {
    let mut removed = false;
    let read_dir =
        std::fs::read_dir(dir).map_err(|e| io_error(format!("list {}", dir.display()), e))?;
    for item in read_dir {
        let item = item.map_err(|e| io_error(format!("list {}", dir.display()), e))?;
        if item
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TMP_SUFFIX))
        {
            std::fs::remove_file(item.path())
                .map_err(|e| io_error(format!("delete {}", item.path().display()), e))?;
            removed = true;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
