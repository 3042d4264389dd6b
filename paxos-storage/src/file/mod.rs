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
//! * `snapshot`: the last saved state-machine snapshot.
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
//! * A new segment: the file (`fsync`), then the directory.
//! * [`save_snapshot`](Storage::save_snapshot): `snapshot.tmp` is written and fsynced,
//!   renamed over `snapshot`, and the directory fsynced.
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
//! # What it does not do
//!
//! It does blocking I/O inside its `async fn`s: run the driver where blocking for one write
//! and one `fdatasync` is acceptable (a dedicated thread, or a runtime's blocking pool). It
//! does not cache entries for reads after `load`, and it does not check that compaction is
//! covered by a snapshot (the caller's contract).

mod faults;
mod owner;
mod record;
mod recovery;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    HardState, PersistBatch, RecoveredState, Slot, Snapshot, Storage, StorageError, StoreOwner,
};

pub use faults::IoFaults;
pub use recovery::{RecoveryReport, TornTail};

use faults::WriteFault;
use record::BodyRef;
use recovery::{Mode, SegmentInfo};

/// File name suffix of log segments.
const SEGMENT_SUFFIX: &str = ".wal";
/// Name of the snapshot file.
const SNAPSHOT_FILE: &str = "snapshot";
/// Name of the lock file.
const LOCK_FILE: &str = "LOCK";
/// Suffix of files being created.
const TMP_SUFFIX: &str = ".tmp";
/// With [`Preallocate::Fallocate`], appends write zeros ahead of the record up to a
/// multiple of this, so reserved blocks are initialized once per window, not per block.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;
/// Snapshot file header: magic, crc32c, `upto`, data length.
const SNAPSHOT_HEADER_BYTES: usize = 24;
/// Identifies a snapshot file and its format version.
const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"PXS1");

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
    faults: Option<IoFaults>,
}

impl Default for FileStorageOptions {
    fn default() -> Self {
        Self {
            initial_segment_bytes: 1 << 20,
            segment_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
            preallocate: Preallocate::default(),
            faults: None,
        }
    }
}

impl FileStorageOptions {
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
/// # Panics
///
/// [`persist`](Storage::persist) panics if the batch's promised ballot is below the last
/// one persisted: that is a bug in the caller, and writing it could break a promise.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    /// The directory, opened for fsync.
    dir_file: File,
    /// Holds the `flock` while open.
    _lock: File,
    options: FileStorageOptions,
    /// Oldest first. When `active` is set, it is the last one.
    segments: VecDeque<SegmentInfo>,
    active: Option<Active>,
    next_seq: u64,
    hard_state: HardState,
    compacted_before: Slot,
    /// What `open` recovered, until `load` takes it.
    recovered: Option<RecoveredState>,
    report: RecoveryReport,
    /// Set by the first failed write or fsync.
    poisoned: Option<String>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

/// The segment appends go to.
#[derive(Debug)]
struct Active {
    file: File,
    write_pos: u64,
    size: u64,
    /// Every block below this has been written (data or zeros) and synced.
    initialized_until: u64,
}

impl FileStorage {
    /// Opens (creating if needed) the store in `dir` and recovers it: replays the log,
    /// drops a torn tail, and fails with [`StorageError::Corrupt`] on any other damage.
    ///
    /// Blocks for the recovery reads and, after a torn tail, one write and fsync.
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
        Ok(Self {
            dir,
            dir_file,
            _lock: lock,
            recovered: Some(recovered.state()),
            segments: recovered.segments.into(),
            active,
            next_seq: recovered.next_seq,
            hard_state: recovered.hard_state,
            compacted_before: recovered.compacted_before,
            report: recovered.report,
            options,
            poisoned: None,
            buf: Vec::new(),
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
        self.segments.len()
    }

    /// Fails with [`StorageError::Poisoned`] once a write or fsync has failed.
    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned by a failed `op`, returning the error for this call.
    fn poison(&mut self, error: StorageError) -> StorageError {
        self.poisoned = Some(error.to_string());
        error
    }

    /// Appends one record: one write, one fdatasync. Poisons the store on failure.
    fn append(&mut self, body: &BodyRef<'_>) -> Result<(), StorageError> {
        let mut buf = std::mem::take(&mut self.buf);
        let payload_len = record::encode(&mut buf, self.next_seq, body);
        let result = self.append_encoded(&mut buf, payload_len);
        self.buf = buf;
        result
    }

    /// Writes the encoded record in `buf` (which it may extend with zeros) and syncs it.
    fn append_encoded(
        &mut self,
        buf: &mut Vec<u8>,
        payload_len: usize,
    ) -> Result<(), StorageError> {
        if payload_len > self.options.max_record_bytes as usize {
            // Nothing was written: the store stays usable.
            let message = format!(
                "the encoded batch is {payload_len} bytes, over max_record_bytes {}",
                self.options.max_record_bytes
            );
            return Err(StorageError::io(
                "persist",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
            ));
        }
        let len = buf.len() as u64;
        let fits = self
            .active
            .as_ref()
            .is_some_and(|active| active.write_pos + len <= active.size);
        if !fits {
            self.roll(len).map_err(|e| self.poison(e))?;
        }
        let active = self.active.as_mut().expect("roll made a segment active");
        let at = active.write_pos;
        // Zero ahead: blocks that `fallocate` reserved but nothing wrote yet make each
        // fdatasync commit a journal transaction to mark them written. Writing zeros up
        // to the next ZERO_AHEAD_BYTES boundary in the same write pays that once per
        // window instead of once per block, and keeps one write and one fdatasync.
        if at + len > active.initialized_until {
            let until = (at + len)
                .next_multiple_of(ZERO_AHEAD_BYTES)
                .min(active.size);
            buf.resize((until - at) as usize, 0);
        }
        let write = match self.options.faults.as_ref().map(IoFaults::on_write) {
            Some(WriteFault::Torn) => active
                .file
                .write_all_at(&buf[..len as usize / 2], at)
                .and(Err(std::io::Error::other("injected write failure"))),
            _ => active.file.write_all_at(buf, at),
        };
        let synced = write
            .map_err(|e| (format!("write at offset {at}"), e))
            .and_then(|()| {
                self.options
                    .faults
                    .as_ref()
                    .map_or(Ok(()), IoFaults::on_sync)
                    .and_then(|()| active.file.sync_data())
                    .map_err(|e| ("fdatasync".to_owned(), e))
            });
        if let Err((op, e)) = synced {
            let path = &self
                .segments
                .back()
                .expect("the active segment is listed")
                .path;
            let error = io_error(format!("{op} of {}", path.display()), e);
            return Err(self.poison(error));
        }
        active.initialized_until = active.initialized_until.max(at + buf.len() as u64);
        active.write_pos += len;
        self.next_seq += 1;
        Ok(())
    }

    /// Starts a new active segment that holds at least `record_bytes`: the next size in
    /// the growth sequence (see [`FileStorageOptions`]), or the record's size if larger.
    fn roll(&mut self, record_bytes: u64) -> Result<(), StorageError> {
        let previous = self.active.as_ref().map(|active| active.size);
        let size = self.options.next_segment_bytes(previous).max(record_bytes);
        let name = format!("{:020}{SEGMENT_SUFFIX}", self.next_seq);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_error(format!("create {}", tmp.display()), e))?;
        preallocate(&file, size, self.options.preallocate)
            .map_err(|e| io_error(format!("preallocate {size} bytes for {}", tmp.display()), e))?;
        let faults = self.options.faults.as_ref();
        sync_all(faults, &file, &format!("fsync of {}", tmp.display()))?;
        // If the active segment is empty and too small, this rename replaces it: same name.
        std::fs::rename(&tmp, &path)
            .map_err(|e| io_error(format!("rename {} to {name}", tmp.display()), e))?;
        self.sync_dir()?;
        if self
            .segments
            .back()
            .is_some_and(|last| last.first_seq == self.next_seq)
        {
            self.segments.pop_back();
        }
        self.segments.push_back(SegmentInfo {
            first_seq: self.next_seq,
            path,
            max_slot: None,
        });
        let initialized_until = match self.options.preallocate {
            Preallocate::ZeroFill => size,
            Preallocate::Fallocate => 0,
        };
        self.active = Some(Active {
            file,
            write_pos: 0,
            size,
            initialized_until,
        });
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), StorageError> {
        let what = format!("fsync of directory {}", self.dir.display());
        sync_all(self.options.faults.as_ref(), &self.dir_file, &what)
    }

    /// Records that the active segment now holds entries up to `slot`.
    fn note_slots(&mut self, batch: &PersistBatch) {
        let max = batch.entries.iter().map(|e| e.slot).max();
        if let Some(active) = self.segments.back_mut() {
            active.max_slot = active.max_slot.max(max);
        }
    }

    /// Deletes the oldest segments while all their entries are below `before`.
    fn delete_compacted_segments(&mut self, before: Slot) -> Result<(), StorageError> {
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if oldest.max_slot.is_some_and(|max| max >= before) {
                break;
            }
            std::fs::remove_file(&oldest.path)
                .map_err(|e| io_error(format!("delete {}", oldest.path.display()), e))?;
            self.sync_dir()?;
            self.segments.pop_front();
        }
        Ok(())
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}{TMP_SUFFIX}"));
        let mut header = [0_u8; SNAPSHOT_HEADER_BYTES];
        header[0..4].copy_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
        header[8..16].copy_from_slice(&snapshot.upto.0.to_le_bytes());
        header[16..24].copy_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[8..]), &snapshot.data);
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_error(format!("create {}", tmp.display()), e))?;
        file.write_all_at(&header, 0)
            .and_then(|()| file.write_all_at(&snapshot.data, SNAPSHOT_HEADER_BYTES as u64))
            .map_err(|e| io_error(format!("write {}", tmp.display()), e))?;
        let faults = self.options.faults.as_ref();
        sync_all(faults, &file, &format!("fsync of {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| io_error(format!("rename {} to {SNAPSHOT_FILE}", tmp.display()), e))?;
        self.sync_dir()
    }

    fn read_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(format!("read {}", path.display()), e)),
        };
        let bad = |reason: &str| recovery::corrupt(&path, 0, reason.into());
        let Some((header, data)) = bytes.split_first_chunk::<SNAPSHOT_HEADER_BYTES>() else {
            return Err(bad("the snapshot file is shorter than its header"));
        };
        let field = |range: std::ops::Range<usize>| {
            let mut word = [0; 8];
            word[..range.len()].copy_from_slice(&header[range]);
            u64::from_le_bytes(word)
        };
        if field(0..4) != u64::from(SNAPSHOT_MAGIC) {
            return Err(bad("the snapshot file has a bad magic number"));
        }
        if field(16..24) != data.len() as u64 {
            return Err(bad("the snapshot file's length does not match its header"));
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[8..]), data);
        if u64::from(crc) != field(4..8) {
            return Err(bad("the snapshot file fails its checksum"));
        }
        Ok(Some(Snapshot {
            upto: Slot(field(8..16)),
            data: Bytes::copy_from_slice(data),
        }))
    }
}

#[async_trait]
impl Storage for FileStorage {
    async fn claim(&mut self, owner: StoreOwner) -> Result<(), StorageError> {
        self.check_poisoned()?;
        match owner::read(&self.dir)? {
            Some(found) if found == owner => Ok(()),
            Some(found) => Err(StorageError::OwnedByOther {
                expected: owner,
                found,
            }),
            // A fresh directory, or one an older version made: the first claim adopts it.
            None => owner::write(
                &self.dir,
                &self.dir_file,
                owner,
                self.options.faults.as_ref(),
            )
            .map_err(|e| self.poison(e)),
        }
    }

    async fn load(&mut self) -> Result<RecoveredState, StorageError> {
        self.check_poisoned()?;
        if let Some(recovered) = self.recovered.take() {
            return Ok(recovered);
        }
        // A second load: read the log again (it is consistent now, nothing to repair).
        let mut no_sync = |_: &File, _: &str| Ok(());
        let recovered = recovery::recover(&self.dir, Mode::ReadOnly, &mut no_sync)?;
        Ok(recovered.state())
    }

    async fn persist(&mut self, batch: &PersistBatch) -> Result<(), StorageError> {
        self.check_poisoned()?;
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(hard_state) = batch.hard_state {
            assert!(
                hard_state.promised >= self.hard_state.promised,
                "promised ballot moves backwards: {} after {}",
                hard_state.promised,
                self.hard_state.promised
            );
        }
        self.append(&BodyRef::Batch {
            hard_state: batch.hard_state,
            entries: &batch.entries,
        })?;
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
        self.note_slots(batch);
        Ok(())
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.write_snapshot(snapshot).map_err(|e| self.poison(e))
    }

    async fn load_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.check_poisoned()?;
        self.read_snapshot()
    }

    async fn compact(&mut self, before: Slot) -> Result<(), StorageError> {
        self.check_poisoned()?;
        if before <= self.compacted_before {
            return Ok(());
        }
        self.append(&BodyRef::Checkpoint {
            hard_state: self.hard_state,
            compacted_before: before,
        })?;
        self.compacted_before = before;
        self.delete_compacted_segments(before)
            .map_err(|e| self.poison(e))
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
