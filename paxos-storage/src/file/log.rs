//! The I/O thread of a [`FileStorage`](super::FileStorage): the [`Log`] it owns (files,
//! segments, positions), the [`Job`]s the handle sends it, and its loop.
//!
//! Every blocking file operation after `open` runs here, one job at a time in the order
//! sent, so the async side never waits for a disk and the log needs no lock. A job's
//! reply goes back on a `oneshot`; if its caller went away, the job still ran.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use paxos_core::{RecoveredState, Slot, SnapshotMeta, StorageError, StoreOwner};

use super::faults::WriteFault;
use super::recovery::{self, Mode, SegmentInfo};
use super::snapshot::SnapshotFiles;
use super::{
    FileStorageOptions, IoFaults, Preallocate, SEGMENT_SUFFIX, TMP_SUFFIX, ZERO_AHEAD_BYTES,
    io_error, owner, preallocate, record, sync_all,
};

/// Name of the I/O thread.
pub(crate) const THREAD_NAME: &str = "paxos-file-storage";

/// What the handle and the I/O thread both see.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set once, by the first failed write or fsync (or a dead I/O thread); never cleared.
    pub(crate) poisoned: OnceLock<String>,
    /// Segment files the log occupies, for [`FileStorage::segment_count`](super::FileStorage::segment_count).
    pub(crate) segment_count: AtomicUsize,
}

impl Shared {
    /// Fails with [`StorageError::Poisoned`] once a write or fsync has failed.
    pub(crate) fn check_poisoned(&self) -> Result<(), StorageError> {
        match self.poisoned.get() {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned by `error` (the first reason stays), returning it.
    pub(crate) fn poison(&self, error: StorageError) -> StorageError {
        let _ = self.poisoned.set(error.to_string());
        error
    }
}

/// A record, encoded and checked by the handle, and its buffer coming back for reuse.
pub(crate) type RecordReply = oneshot::Sender<(Result<(), StorageError>, Vec<u8>)>;

/// One request to the I/O thread.
pub(crate) enum Job {
    /// Appends one record ([`record::encode`]d, not sealed): one write, one fdatasync.
    Append {
        record: Vec<u8>,
        /// Highest slot of the entries in it.
        max_slot: Option<Slot>,
        reply: RecordReply,
    },
    /// Appends a checkpoint record, then deletes the segments wholly below `before`.
    Compact {
        record: Vec<u8>,
        before: Slot,
        reply: RecordReply,
    },
    /// Reads the whole log again (a second `load`).
    Reload {
        reply: oneshot::Sender<Result<RecoveredState, StorageError>>,
    },
    BeginSnapshot {
        upto: Slot,
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    AppendSnapshot {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    StagedSnapshot {
        reply: oneshot::Sender<Option<SnapshotMeta>>,
    },
    CommitSnapshot {
        reply: oneshot::Sender<Result<SnapshotMeta, StorageError>>,
    },
    SavedSnapshot {
        reply: oneshot::Sender<Result<Option<SnapshotMeta>, StorageError>>,
    },
    ReadSnapshot {
        offset: u64,
        len: usize,
        reply: oneshot::Sender<Result<Vec<u8>, StorageError>>,
    },
    Claim {
        owner: StoreOwner,
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    /// Runs a closure on the log, for tests that look at its internals.
    #[cfg(test)]
    Inspect(Box<dyn FnOnce(&Log) + Send>),
}

/// Runs jobs until every sender is gone (the handle dropped), then drops the log (closing
/// its files).
/// Runs the I/O thread: does each job in turn until the queue is closed and drained.
/// Between jobs it polls the queue for up to `idle_spin` before it sleeps (see
/// [`FileStorageOptions::idle_spin`](super::FileStorageOptions::idle_spin)).
///
/// Appends queued one behind another (pipelined persists) are written together: one write
/// of their records, in order, and one fdatasync for all of them (group commit across
/// batches), at most [`MAX_GROUP`] at a time.
pub(crate) fn run(mut log: Log, jobs: async_channel::Receiver<Job>, idle_spin: Duration) {
    let mut next = None;
    let mut group = Vec::new();
    loop {
        let job = match next.take().or_else(|| next_within(&jobs, idle_spin)) {
            Some(job) => job,
            None => match jobs.recv_blocking() {
                Ok(job) => job,
                Err(async_channel::RecvError) => return,
            },
        };
        let Job::Append {
            record,
            max_slot,
            reply,
        } = job
        else {
            log.handle(job);
            continue;
        };
        group.push((record, max_slot, reply));
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(Job::Append {
                    record,
                    max_slot,
                    reply,
                }) => group.push((record, max_slot, reply)),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        log.append_group(&mut group);
    }
}

/// Appends written with one fdatasync by [`run`].
const MAX_GROUP: usize = 64;

/// The next job if one arrives within `spin`, yielding the core between polls; `None` if
/// none did (or the queue is closed: the blocking receive then reports it).
fn next_within(jobs: &async_channel::Receiver<Job>, spin: Duration) -> Option<Job> {
    let start = Instant::now();
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(async_channel::TryRecvError::Closed) => return None,
            Err(async_channel::TryRecvError::Empty) if start.elapsed() >= spin => return None,
            Err(async_channel::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// The log's files and positions, owned by the I/O thread.
#[derive(Debug)]
pub(crate) struct Log {
    pub(super) dir: PathBuf,
    /// The directory, opened for fsync.
    pub(super) dir_file: File,
    pub(super) options: FileStorageOptions,
    /// Oldest first. When `active` is set, it is the last one.
    pub(super) segments: VecDeque<SegmentInfo>,
    pub(super) active: Option<Active>,
    pub(super) next_seq: u64,
    pub(super) shared: Arc<Shared>,
    /// The staged and saved snapshot files.
    pub(super) snapshots: SnapshotFiles,
}

/// The segment appends go to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(super) file: File,
    pub(super) write_pos: u64,
    pub(super) size: u64,
    /// Every block below this has been written (data or zeros) and synced.
    pub(super) initialized_until: u64,
}

impl Log {
    /// Does one job and sends its reply (dropped if the caller is gone).
    fn handle(&mut self, job: Job) {
        match job {
            Job::Append {
                mut record,
                max_slot,
                reply,
            } => {
                let result = self.append(&mut record, max_slot);
                let _ = reply.send((result, record));
            }
            Job::Compact {
                mut record,
                before,
                reply,
            } => {
                let result = self.append(&mut record, None).and_then(|()| {
                    self.delete_compacted_segments(before)
                        .map_err(|e| self.shared.poison(e))
                });
                let _ = reply.send((result, record));
            }
            Job::Reload { reply } => {
                let _ = reply.send(self.reload());
            }
            Job::BeginSnapshot { upto, reply } => {
                let result = self.snapshot_write(|log| log.snapshots.begin(&log.dir, upto));
                let _ = reply.send(result);
            }
            Job::AppendSnapshot { bytes, reply } => {
                let result = self.snapshot_write(|log| {
                    let faults = log.options.faults.as_ref();
                    log.snapshots.append(&log.dir, &bytes, faults)
                });
                let _ = reply.send(result);
            }
            Job::StagedSnapshot { reply } => {
                let _ = reply.send(self.snapshots.staged());
            }
            Job::CommitSnapshot { reply } => {
                let result = self.snapshot_write(|log| {
                    let faults = log.options.faults.as_ref();
                    log.snapshots.commit(&log.dir, &log.dir_file, faults)
                });
                let _ = reply.send(result);
            }
            Job::SavedSnapshot { reply } => {
                let result = self
                    .shared
                    .check_poisoned()
                    .and_then(|()| self.snapshots.saved(&self.dir));
                let _ = reply.send(result);
            }
            Job::ReadSnapshot { offset, len, reply } => {
                let result = self
                    .shared
                    .check_poisoned()
                    .and_then(|()| self.snapshots.read(&self.dir, offset, len));
                let _ = reply.send(result);
            }
            Job::Claim { owner, reply } => {
                let _ = reply.send(self.claim(owner));
            }
            #[cfg(test)]
            Job::Inspect(look) => look(self),
        }
    }

    /// Writes and syncs the appends in `group` (taking them all) as one: the records in
    /// order, with one fdatasync, then answers each with the outcome. A single append is
    /// written from its own buffer; more are copied behind the first.
    fn append_group(&mut self, group: &mut Vec<(Vec<u8>, Option<Slot>, RecordReply)>) {
        if group.len() == 1 {
            let (mut record, max_slot, reply) = group.pop().expect("one append");
            let result = self.append(&mut record, max_slot);
            let _ = reply.send((result, record));
            return;
        }
        let result = self.shared.check_poisoned().and_then(|()| {
            for (seq, (record, _, _)) in (self.next_seq..).zip(group.iter_mut()) {
                record::seal(record, seq);
            }
            let max_slot = group.iter().filter_map(|(_, slot, _)| *slot).max();
            let count = group.len() as u64;
            let (first, rest) = group.split_first_mut().expect("several appends");
            for (record, _, _) in rest.iter() {
                first.0.extend_from_slice(record);
            }
            self.append_sealed(&mut first.0, count, max_slot)
        });
        for (record, _, reply) in group.drain(..) {
            let _ = reply.send((result.clone(), record));
        }
    }

    fn faults(&self) -> Option<&IoFaults> {
        self.options.faults.as_ref()
    }

    /// Publishes the segment count to the handle.
    fn publish_segments(&self) {
        self.shared
            .segment_count
            .store(self.segments.len(), Ordering::SeqCst);
    }

    /// Seals and writes the record in `buf` (which it may extend with zeros) and syncs it:
    /// one write, one fdatasync. Poisons the store on failure.
    fn append(&mut self, buf: &mut Vec<u8>, max_slot: Option<Slot>) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        record::seal(buf, self.next_seq);
        self.append_sealed(buf, 1, max_slot)
    }

    /// Writes the `count` records in `buf`, sealed with the next sequence numbers in
    /// order (which it may extend with zeros), and syncs them: one write, one fdatasync.
    /// Poisons the store on failure.
    fn append_sealed(
        &mut self,
        buf: &mut Vec<u8>,
        count: u64,
        max_slot: Option<Slot>,
    ) -> Result<(), StorageError> {
        let len = buf.len() as u64;
        let fits = self
            .active
            .as_ref()
            .is_some_and(|active| active.write_pos + len <= active.size);
        if !fits {
            self.roll(len).map_err(|e| self.shared.poison(e))?;
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
        let faults = self.options.faults.as_ref();
        let write = match faults.map(IoFaults::on_write) {
            Some(WriteFault::Torn) => active
                .file
                .write_all_at(&buf[..len as usize / 2], at)
                .and(Err(std::io::Error::other("injected write failure"))),
            _ => active.file.write_all_at(buf, at),
        };
        let synced = write
            .map_err(|e| (format!("write at offset {at}"), e))
            .and_then(|()| {
                faults
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
            return Err(self.shared.poison(error));
        }
        active.initialized_until = active.initialized_until.max(at + buf.len() as u64);
        active.write_pos += len;
        self.next_seq += count;
        if let Some(segment) = self.segments.back_mut() {
            segment.max_slot = segment.max_slot.max(max_slot);
        }
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
        sync_all(self.faults(), &file, &format!("fsync of {}", tmp.display()))?;
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
        self.publish_segments();
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
        sync_all(self.faults(), &self.dir_file, &what)
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
            self.publish_segments();
        }
        Ok(())
    }

    /// Reads the log again (it is consistent now: nothing to repair).
    fn reload(&self) -> Result<RecoveredState, StorageError> {
        self.shared.check_poisoned()?;
        let mut no_sync = |_: &File, _: &str| Ok(());
        let recovered = recovery::recover(&self.dir, Mode::ReadOnly, &mut no_sync)?;
        Ok(recovered.state())
    }

    /// Runs a snapshot write unless poisoned; an I/O failure poisons the store (a
    /// contract error does not: nothing was written).
    fn snapshot_write<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.shared.check_poisoned()?;
        match write(self) {
            Err(e @ StorageError::InvalidCall(_)) => Err(e),
            Err(e) => Err(self.shared.poison(e)),
            ok => ok,
        }
    }

    /// Checks `owner` against the `OWNER` file, writing it on the first claim.
    fn claim(&self, owner: StoreOwner) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        match owner::read(&self.dir)? {
            Some(found) if found == owner => Ok(()),
            Some(found) => Err(StorageError::OwnedByOther {
                expected: owner,
                found,
            }),
            // A fresh directory, or one an older version made: the first claim adopts it.
            None => owner::write(&self.dir, &self.dir_file, owner, self.faults())
                .map_err(|e| self.shared.poison(e)),
        }
    }
}
