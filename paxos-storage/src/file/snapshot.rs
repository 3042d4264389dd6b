//! The snapshot file of a [`FileStorage`](super::FileStorage), streamed: staged in
//! `snapshot.tmp` piece by piece, committed by writing its header, fsync, rename over
//! `snapshot` and a directory fsync. Owned by the I/O thread, like the log.
//!
//! # Format (`PXS2`)
//!
//! A 28-byte header, then the data:
//!
//! ```text
//! magic "PXS2" | crc32c of the data: u32 | upto: u64 | data length: u64 |
//!     crc32c of the 24 bytes before: u32 | data
//! ```
//!
//! The header is written last (its space reserved when staging begins), when the length
//! and the data's checksum are known, so the data streams without ever being held whole.
//! A saved snapshot is checked once per store (header checksum, length against the file's
//! size, data checksum read through a fixed buffer) and then served by positioned reads.
//! (`PXS1`, the whole-file format before streaming, was never written by a node: the driver
//! did not save snapshots then. It is refused as corrupt.)

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use paxos_core::{Slot, SnapshotMeta, StorageError};

use super::faults::WriteFault;
use super::recovery::corrupt;
use super::{IoFaults, SNAPSHOT_FILE, TMP_SUFFIX, io_error, sync_all};

/// Header bytes before the data.
pub(crate) const HEADER_BYTES: u64 = 28;
/// Identifies a snapshot file and its format version.
const MAGIC: [u8; 4] = *b"PXS2";
/// Buffer for checking a saved snapshot's checksum.
const CHECK_BUFFER: usize = 1 << 20;

/// A snapshot being written.
#[derive(Debug)]
struct Staged {
    file: File,
    upto: Slot,
    len: u64,
    crc: u32,
}

/// The saved snapshot, checked, open for reads.
#[derive(Debug)]
struct Saved {
    file: File,
    meta: SnapshotMeta,
}

/// The staged and the saved snapshot of one store directory.
#[derive(Debug, Default)]
pub(crate) struct SnapshotFiles {
    staged: Option<Staged>,
    saved: Option<Saved>,
}

fn tmp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{SNAPSHOT_FILE}{TMP_SUFFIX}"))
}

fn not_staged(call: &str) -> StorageError {
    StorageError::InvalidCall(format!("{call} with no snapshot begun"))
}

impl SnapshotFiles {
    /// Starts `snapshot.tmp` afresh, its header space reserved.
    pub(crate) fn begin(&mut self, dir: &Path, upto: Slot) -> Result<(), StorageError> {
        self.staged = None;
        let path = tmp_path(dir);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error(format!("create {}", path.display()), e))?;
        self.staged = Some(Staged {
            file,
            upto,
            len: 0,
            crc: 0,
        });
        Ok(())
    }

    pub(crate) fn append(
        &mut self,
        dir: &Path,
        bytes: &[u8],
        faults: Option<&IoFaults>,
    ) -> Result<(), StorageError> {
        let staged = self
            .staged
            .as_mut()
            .ok_or_else(|| not_staged("append_snapshot"))?;
        let at = HEADER_BYTES + staged.len;
        let write = match faults.map(IoFaults::on_write) {
            Some(WriteFault::Torn) => staged
                .file
                .write_all_at(&bytes[..bytes.len() / 2], at)
                .and(Err(std::io::Error::other("injected write failure"))),
            _ => staged.file.write_all_at(bytes, at),
        };
        write.map_err(|e| io_error(format!("write {}", tmp_path(dir).display()), e))?;
        staged.len += bytes.len() as u64;
        staged.crc = crc32c::crc32c_append(staged.crc, bytes);
        Ok(())
    }

    pub(crate) fn staged(&self) -> Option<SnapshotMeta> {
        self.staged.as_ref().map(|s| SnapshotMeta {
            upto: s.upto,
            len: s.len,
        })
    }

    /// Writes the header, fsyncs, renames over `snapshot`, fsyncs the directory.
    pub(crate) fn commit(
        &mut self,
        dir: &Path,
        dir_file: &File,
        faults: Option<&IoFaults>,
    ) -> Result<SnapshotMeta, StorageError> {
        let staged = self
            .staged
            .take()
            .ok_or_else(|| not_staged("commit_snapshot"))?;
        let tmp = tmp_path(dir);
        let header = header(staged.crc, staged.upto, staged.len);
        staged
            .file
            .write_all_at(&header, 0)
            .map_err(|e| io_error(format!("write {}", tmp.display()), e))?;
        sync_all(faults, &staged.file, &format!("fsync of {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
            .map_err(|e| io_error(format!("rename {} to {SNAPSHOT_FILE}", tmp.display()), e))?;
        // The old snapshot's handle would read the replaced file: drop it first.
        self.saved = None;
        sync_all(
            faults,
            dir_file,
            &format!("fsync of directory {}", dir.display()),
        )?;
        let meta = SnapshotMeta {
            upto: staged.upto,
            len: staged.len,
        };
        self.saved = Some(Saved {
            file: staged.file,
            meta,
        });
        Ok(meta)
    }

    /// The saved snapshot, checked on first use.
    pub(crate) fn saved(&mut self, dir: &Path) -> Result<Option<SnapshotMeta>, StorageError> {
        if self.saved.is_none() {
            self.saved = open_saved(dir)?;
        }
        Ok(self.saved.as_ref().map(|s| s.meta))
    }

    /// Reads up to `len` bytes of the saved snapshot from `offset`.
    pub(crate) fn read(
        &mut self,
        dir: &Path,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        self.saved(dir)?;
        let saved = self.saved.as_ref().ok_or_else(|| {
            StorageError::InvalidCall("read_snapshot with no snapshot saved".into())
        })?;
        let left = saved.meta.len.saturating_sub(offset);
        let n = usize::try_from(left).map_or(len, |left| left.min(len));
        if n == 0 {
            // At or past the end: nothing to read. Returning here also keeps
            // `HEADER_BYTES + offset` below from overflowing for an offset near u64::MAX
            // (a panic on the I/O thread in debug builds, which poisoned the store).
            return Ok(Vec::new());
        }
        let mut buf = vec![0; n];
        let path = dir.join(SNAPSHOT_FILE);
        saved
            .file
            .read_exact_at(&mut buf, HEADER_BYTES + offset)
            .map_err(|e| io_error(format!("read {}", path.display()), e))?;
        Ok(buf)
    }
}

fn header(crc: u32, upto: Slot, len: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header[8..16].copy_from_slice(&upto.0.to_le_bytes());
    header[16..24].copy_from_slice(&len.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..24]);
    header[24..28].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Opens and checks `dir/snapshot`, if there is one.
fn open_saved(dir: &Path) -> Result<Option<Saved>, StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("open {}", path.display()), e)),
    };
    let read_err = |e| io_error(format!("read {}", path.display()), e);
    let size = file.metadata().map_err(read_err)?.len();
    let bad = |offset, reason: &str| corrupt(&path, offset, reason.into());
    let mut header = [0; HEADER_BYTES as usize];
    if size < HEADER_BYTES {
        return Err(bad(0, "the snapshot file is shorter than its header"));
    }
    file.read_exact_at(&mut header, 0).map_err(read_err)?;
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if header[0..4] != MAGIC {
        return Err(bad(0, "the snapshot file has a bad magic number"));
    }
    if half(24) != crc32c::crc32c(&header[..24]) {
        return Err(bad(0, "the snapshot file's header fails its checksum"));
    }
    let len = word(16);
    if size != HEADER_BYTES + len {
        return Err(bad(
            16,
            "the snapshot file's length does not match its header",
        ));
    }
    let mut buf = vec![0; CHECK_BUFFER.min(usize::try_from(len).unwrap_or(CHECK_BUFFER))];
    let mut crc = 0;
    let mut at = 0;
    while at < len {
        let n = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], HEADER_BYTES + at)
            .map_err(read_err)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
    }
    if crc != half(4) {
        return Err(bad(HEADER_BYTES, "the snapshot file fails its checksum"));
    }
    Ok(Some(Saved {
        file,
        meta: SnapshotMeta {
            upto: Slot(word(8)),
            len,
        },
    }))
}
