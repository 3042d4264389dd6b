//! Reading the log back at open: replay every record, verify checksums and sequence
//! numbers, and tell a torn tail (dropped) from corruption (a hard error).
//!
//! Reads stream through a fixed-size buffer; the only memory that grows is the recovered
//! entries themselves (which `load` returns) and one record at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use paxos_core::{Entry, HardState, RecoveredState, Slot, StorageError};

use super::record::{self, ALIGN, BadHeader, Body, HEADER_BYTES, Header, MAGIC};
use super::{SEGMENT_SUFFIX, io_error};

/// Size of the streaming read buffer.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// One segment file, as the store tracks it.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    /// Sequence number of its first record (also its name).
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    /// Highest slot of any entry record in it; `None` if it holds no entries.
    pub(crate) max_slot: Option<Slot>,
}

/// A torn tail found and dropped at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first byte dropped: the start of the incomplete record.
    pub offset: u64,
    /// Number of non-zero bytes that were zeroed.
    pub bytes: u64,
}

/// What recovery found, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Valid records replayed.
    pub records: u64,
    /// The torn tail dropped, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// Everything recovery hands to the store.
pub(crate) struct Recovered {
    pub(crate) hard_state: HardState,
    pub(crate) entries: BTreeMap<Slot, Entry>,
    pub(crate) compacted_before: Slot,
    /// Oldest first; the last one is where appends go.
    pub(crate) segments: Vec<SegmentInfo>,
    /// Sequence number of the next record.
    pub(crate) next_seq: u64,
    /// End of the last valid record in the last segment.
    pub(crate) write_pos: u64,
    pub(crate) report: RecoveryReport,
}

impl Recovered {
    /// The state `load` returns.
    pub(crate) fn state(&self) -> RecoveredState {
        RecoveredState {
            hard_state: self.hard_state,
            entries: self.entries.values().cloned().collect(),
            // The core's part of a snapshot travels inside the snapshot's data; the
            // driver fills this in from `load_snapshot`.
            snapshot: None,
        }
    }
}

/// Whether recovery may write (zero a torn tail) or must only read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Repair,
    ReadOnly,
}

/// Lists the segment files in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let read_dir =
        std::fs::read_dir(dir).map_err(|e| io_error(format!("list {}", dir.display()), e))?;
    let mut segments = Vec::new();
    for item in read_dir {
        let item = item.map_err(|e| io_error(format!("list {}", dir.display()), e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            let first_seq = stem
                .parse()
                .expect("20 ASCII digits fit in a u64 or fail to parse");
            segments.push((first_seq, item.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Replays every segment in `dir`. With [`Mode::Repair`], zeroes a torn tail in the last
/// segment and syncs it before returning.
pub(crate) fn recover(
    dir: &Path,
    mode: Mode,
    sync: &mut dyn FnMut(&File, &str) -> Result<(), StorageError>,
) -> Result<Recovered, StorageError> {
    let listed = list_segments(dir)?;
    let mut replay = Replay {
        hard_state: HardState::default(),
        entries: BTreeMap::new(),
        compacted_before: Slot(0),
        records: 0,
    };
    let mut segments = Vec::with_capacity(listed.len());
    let mut next_seq = listed.first().map_or(1, |(first, _)| *first);
    let mut write_pos = 0;
    let mut torn_tail = None;
    for (i, (first_seq, path)) in listed.iter().enumerate() {
        let is_last = i + 1 == listed.len();
        if *first_seq != next_seq {
            return Err(corrupt(
                path,
                0,
                format!(
                    "segment starts at record {first_seq}, but the previous segment ends \
                     before record {next_seq}: a segment is missing or was truncated"
                ),
            ));
        }
        let scan = scan_segment(path, *first_seq, is_last, &mut replay)?;
        next_seq = scan.next_seq;
        write_pos = scan.end;
        if let Some(nonzero_end) = scan.torn_until {
            let bytes = nonzero_end - scan.end;
            if mode == Mode::Repair {
                zero_range(path, scan.end, nonzero_end, sync)?;
            }
            torn_tail = Some(TornTail {
                file: path.clone(),
                offset: scan.end,
                bytes,
            });
        }
        segments.push(SegmentInfo {
            first_seq: *first_seq,
            path: path.clone(),
            max_slot: scan.max_slot,
        });
    }
    Ok(Recovered {
        hard_state: replay.hard_state,
        entries: replay.entries,
        compacted_before: replay.compacted_before,
        report: RecoveryReport {
            segments: segments.len(),
            records: replay.records,
            torn_tail,
        },
        segments,
        next_seq,
        write_pos,
    })
}

/// The state rebuilt from records so far.
struct Replay {
    hard_state: HardState,
    entries: BTreeMap<Slot, Entry>,
    compacted_before: Slot,
    records: u64,
}

impl Replay {
    /// Applies one record; `max_slot` tracks the segment's highest entry slot.
    fn apply(
        &mut self,
        body: Body,
        path: &Path,
        offset: u64,
        max_slot: &mut Option<Slot>,
    ) -> Result<(), StorageError> {
        let mut set_hard_state = |hard_state: HardState| {
            if hard_state.promised < self.hard_state.promised {
                return Err(corrupt(
                    path,
                    offset,
                    format!(
                        "promised ballot moves backwards, from {} to {}",
                        self.hard_state.promised, hard_state.promised
                    ),
                ));
            }
            self.hard_state = hard_state;
            Ok(())
        };
        match body {
            Body::Batch {
                hard_state,
                entries,
            } => {
                if let Some(hard_state) = hard_state {
                    set_hard_state(hard_state)?;
                }
                for entry in entries {
                    *max_slot = (*max_slot).max(Some(entry.slot));
                    if entry.slot >= self.compacted_before {
                        self.entries.insert(entry.slot, entry);
                    }
                }
            }
            Body::Checkpoint {
                hard_state,
                compacted_before,
            } => {
                set_hard_state(hard_state)?;
                if compacted_before > self.compacted_before {
                    self.compacted_before = compacted_before;
                    self.entries = self.entries.split_off(&compacted_before);
                }
            }
        }
        self.records += 1;
        Ok(())
    }
}

/// What scanning one segment found.
struct SegmentScan {
    /// End of the last valid record.
    end: u64,
    /// Sequence number the next record must have.
    next_seq: u64,
    max_slot: Option<Slot>,
    /// For a torn tail: the end of the non-zero bytes after `end`, which must be zeroed.
    torn_until: Option<u64>,
}

/// Replays one segment's records into `replay`, then classifies whatever follows the last
/// valid record: zeros (a clean end), a torn tail (last segment only: dropped), or
/// corruption (a hard error naming the file and offset).
fn scan_segment(
    path: &Path,
    first_seq: u64,
    is_last: bool,
    replay: &mut Replay,
) -> Result<SegmentScan, StorageError> {
    let file = File::open(path).map_err(|e| io_error(format!("open {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error(format!("stat {}", path.display()), e))?
        .len();
    let read_err = |e: std::io::Error| io_error(format!("read {}", path.display()), e);
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, &file);
    let mut pos = 0_u64;
    let mut seq = first_seq;
    let mut max_slot = None;
    let mut payload = Vec::new();
    let why_stopped = loop {
        if pos + HEADER_BYTES as u64 > size {
            break "the segment ends inside a record header";
        }
        let mut header = [0; HEADER_BYTES];
        reader.read_exact(&mut header).map_err(read_err)?;
        let header = match Header::parse(&header) {
            Ok(header) => header,
            Err(BadHeader::Zeros) => {
                break "zeros where a record header should be, followed by non-zero bytes";
            }
            Err(BadHeader::Invalid) => break "the record header has a bad magic number or checksum",
        };
        // The header checksum vouches for `len`; the file size bounds the memory it takes.
        // (Not `max_record_bytes`: lowering that option must not turn old records into damage.)
        if pos + header.record_bytes() > size {
            break "the record length in the header runs past the end of the segment";
        }
        let padded = (header.record_bytes() - HEADER_BYTES as u64) as usize;
        payload.resize(padded, 0);
        reader.read_exact(&mut payload).map_err(read_err)?;
        let body = &payload[..header.len as usize];
        if crc32c::crc32c(body) != header.payload_crc {
            break "the record payload fails its checksum";
        }
        if header.seq != seq {
            return Err(corrupt(
                path,
                pos,
                format!("record has sequence number {}, expected {seq}", header.seq),
            ));
        }
        let decoded = record::decode(body).map_err(|e| {
            corrupt(
                path,
                pos,
                format!("record passes its checksum but does not decode: {e}"),
            )
        })?;
        replay.apply(decoded, path, pos, &mut max_slot)?;
        pos += header.record_bytes();
        seq += 1;
    };
    drop(reader);

    let end = pos;
    let Some(last_nonzero) = last_nonzero_byte(&file, end, size).map_err(read_err)? else {
        return Ok(SegmentScan {
            end,
            next_seq: seq,
            max_slot,
            torn_until: None,
        });
    };
    if is_last {
        if let Some(valid_at) = valid_record_after(&file, end, size, seq).map_err(read_err)? {
            return Err(corrupt(
                path,
                end,
                format!(
                    "{why_stopped}, but a valid later record follows at offset {valid_at}: \
                     acknowledged records would be lost"
                ),
            ));
        }
        return Ok(SegmentScan {
            end,
            next_seq: seq,
            max_slot,
            torn_until: Some(last_nonzero + 1),
        });
    }
    Err(corrupt(
        path,
        end,
        format!("{why_stopped}, in a segment that is not the last one"),
    ))
}

/// Calls `each(offset, chunk)` over `[from, to)` of `file`, one buffer at a time, until it
/// returns `Some`.
fn find_in_chunks<T>(
    file: &File,
    from: u64,
    to: u64,
    mut each: impl FnMut(u64, &[u8]) -> std::io::Result<Option<T>>,
) -> std::io::Result<Option<T>> {
    let mut buf = vec![0; READ_BUFFER_BYTES];
    let mut offset = from;
    while offset < to {
        let n = usize::try_from(to - offset).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], offset)?;
        if let Some(found) = each(offset, &buf[..n])? {
            return Ok(Some(found));
        }
        offset += n as u64;
    }
    Ok(None)
}

/// Offset of the last non-zero byte in `[from, to)`, if any.
fn last_nonzero_byte(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    let mut last = None;
    find_in_chunks::<()>(file, from, to, |offset, chunk| {
        if !is_all_zeros(chunk) {
            let i = chunk.iter().rposition(|&b| b != 0).expect("not all zeros");
            last = Some(offset + i as u64);
        }
        Ok(None)
    })?;
    Ok(last)
}

/// True if every byte is zero; word at a time, as this runs over whole preallocated tails.
fn is_all_zeros(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(16);
    let rest = words.remainder();
    words.fold(0_u128, |acc, w| {
        acc | u128::from_ne_bytes(w.try_into().expect("16 bytes"))
    }) == 0
        && rest.iter().all(|&b| b == 0)
}

/// Looks for a complete, checksum-valid record with sequence number at least `min_seq` at
/// any aligned offset after `from`. One found means the bad bytes at `from` are not the
/// last write, so they are corruption rather than a torn tail.
fn valid_record_after(
    file: &File,
    from: u64,
    size: u64,
    min_seq: u64,
) -> std::io::Result<Option<u64>> {
    let start = from + ALIGN;
    let magic = MAGIC.to_le_bytes();
    find_in_chunks(file, start, size, |offset, chunk| {
        // `from` and the chunk size are multiples of ALIGN, so every chunk starts aligned.
        for (i, word) in chunk.chunks_exact(ALIGN as usize).enumerate() {
            if word[0..4] != magic {
                continue;
            }
            let at = offset + (i as u64) * ALIGN;
            if is_valid_record_at(file, at, size, min_seq)? {
                return Ok(Some(at));
            }
        }
        Ok(None)
    })
}

fn is_valid_record_at(file: &File, at: u64, size: u64, min_seq: u64) -> std::io::Result<bool> {
    if at + HEADER_BYTES as u64 > size {
        return Ok(false);
    }
    let mut header = [0; HEADER_BYTES];
    file.read_exact_at(&mut header, at)?;
    let Ok(header) = Header::parse(&header) else {
        return Ok(false);
    };
    if header.seq < min_seq || at + header.record_bytes() > size {
        return Ok(false);
    }
    let mut payload = vec![0; header.len as usize];
    file.read_exact_at(&mut payload, at + HEADER_BYTES as u64)?;
    Ok(crc32c::crc32c(&payload) == header.payload_crc)
}

/// Overwrites `[from, to)` of the segment with zeros and syncs it.
fn zero_range(
    path: &Path,
    from: u64,
    to: u64,
    sync: &mut dyn FnMut(&File, &str) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error(format!("open {} to drop its torn tail", path.display()), e))?;
    let zeros = vec![0; READ_BUFFER_BYTES];
    let mut offset = from;
    while offset < to {
        let n = usize::try_from(to - offset).map_or(zeros.len(), |left| left.min(zeros.len()));
        file.write_all_at(&zeros[..n], offset)
            .map_err(|e| io_error(format!("zero the torn tail of {}", path.display()), e))?;
        offset += n as u64;
    }
    sync(
        &file,
        &format!(
            "fdatasync of {} after dropping its torn tail",
            path.display()
        ),
    )
}

/// A [`StorageError::Corrupt`] for `path` at `offset`.
pub(crate) fn corrupt(path: &Path, offset: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        file: path.display().to_string(),
        offset,
        reason,
    }
}
