//! Snapshots on the node's side: the file format the driver writes through
//! [`Storage`]'s snapshot calls, the byte sink and source it hands the state machine, and
//! the transfer state of both ends (see `ARCHITECTURE.md`, "Log compaction and
//! snapshots").
//!
//! # Format (version 1)
//!
//! ```text
//! "PXSN" | version: u8 | core_len: u32 LE | core (CoreSnapshot::encode) |
//!     state machine bytes | sm_len: u64 LE | crc32c of everything before it: u32 LE
//! ```
//!
//! The trailer comes last so that the state machine's part streams without its length
//! being known up front. The checksum covers the whole snapshot, so a restarted node and a
//! node that received one by transfer check every byte before restoring from it.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use paxos_core::message::{SnapshotChunk, SnapshotRequest};
use paxos_core::{
    CoreSnapshot, FrozenState, NodeId, Slot, SnapshotMeta, SnapshotRead, SnapshotWrite,
    StateMachine, StateMachineError, Storage, StorageError,
};
use paxos_runtime::Runtime;

/// What a driver snapshot starts with.
const MAGIC: &[u8; 4] = b"PXSN";
/// The format version written, and the only one read.
const VERSION: u8 = 1;
/// Magic, version, core length.
const HEAD_BYTES: u64 = 9;
/// State machine length and checksum.
const TRAILER_BYTES: u64 = 12;
/// Bytes buffered before one `Storage::append_snapshot` or read by one `read_snapshot`.
pub(crate) const IO_CHUNK: usize = 256 << 10;

/// A snapshot's bytes are not what the format says.
fn corrupt(offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        file: "snapshot".into(),
        offset,
        reason: reason.into(),
    }
}

/// Why taking or restoring a snapshot failed.
#[derive(Debug)]
pub(crate) enum SnapshotFailure {
    /// The store failed: fatal for the node.
    Storage(StorageError),
    /// The state machine refused or failed.
    StateMachine(StateMachineError),
}

/// A snapshot being written: buffers into [`IO_CHUNK`]s, appends them to the staged
/// snapshot, and keeps the checksum and length. Owns no storage, so a snapshot written
/// in the background keeps one between cycles.
pub(crate) struct Sink {
    buf: Vec<u8>,
    crc: u32,
    len: u64,
    /// Where the state machine's part starts.
    sm_start: u64,
    /// The first storage failure: every later write fails with it.
    failed: Option<StorageError>,
}

impl Sink {
    async fn flush(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = storage.append_snapshot(&self.buf).await;
        self.buf.clear();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Appends `bytes` to the snapshot.
    pub(crate) async fn write(
        &mut self,
        storage: &mut dyn Storage,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        let whole_pieces = self.buf.is_empty() && bytes.len() >= IO_CHUNK;
        if !whole_pieces && self.buf.len() + bytes.len() <= IO_CHUNK {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        // A background snapshot's full pieces (and large values) skip the buffer.
        self.flush(storage).await?;
        if bytes.len() >= IO_CHUNK {
            // A large piece (a big value) goes straight through, in bounded appends.
            for piece in bytes.chunks(IO_CHUNK) {
                if let Err(e) = storage.append_snapshot(piece).await {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// The byte sink handed to [`StateMachine::snapshot`].
struct StoreWriter<'a> {
    storage: &'a mut dyn Storage,
    sink: &'a mut Sink,
}

#[async_trait]
impl SnapshotWrite for StoreWriter<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.sink.write(self.storage, bytes).await
    }
}

/// Begins a snapshot at `core`'s point: stages a new snapshot in `storage` and writes
/// the driver's head. The state machine's bytes follow, then [`finish`].
pub(crate) async fn begin(
    storage: &mut dyn Storage,
    core: &CoreSnapshot,
) -> Result<Sink, SnapshotFailure> {
    storage
        .begin_snapshot(core.upto())
        .await
        .map_err(SnapshotFailure::Storage)?;
    let core_bytes = core.encode();
    let core_len = u32::try_from(core_bytes.len()).map_err(|_| {
        SnapshotFailure::StateMachine(StateMachineError::new("core snapshot over 4 GiB"))
    })?;
    let mut head = Vec::with_capacity(HEAD_BYTES as usize + core_bytes.len());
    head.extend_from_slice(MAGIC);
    head.push(VERSION);
    head.extend_from_slice(&core_len.to_le_bytes());
    head.extend_from_slice(&core_bytes);
    let mut sink = Sink {
        buf: Vec::with_capacity(IO_CHUNK),
        crc: 0,
        len: 0,
        sm_start: 0,
        failed: None,
    };
    sink.write(storage, &head)
        .await
        .map_err(SnapshotFailure::Storage)?;
    sink.sm_start = sink.len;
    Ok(sink)
}

/// Ends a snapshot whose state machine bytes are all in `sink`: writes the trailer and
/// commits it. Returns what is saved.
pub(crate) async fn finish(
    storage: &mut dyn Storage,
    mut sink: Sink,
) -> Result<SnapshotMeta, SnapshotFailure> {
    let sm_start = sink.sm_start;
    let sm_len = sink.len - sm_start;
    sink.write(storage, &sm_len.to_le_bytes())
        .await
        .map_err(SnapshotFailure::Storage)?;
    let crc = sink.crc;
    sink.buf.extend_from_slice(&crc.to_le_bytes());
    sink.flush(storage)
        .await
        .map_err(SnapshotFailure::Storage)?;
    let meta = storage
        .commit_snapshot()
        .await
        .map_err(SnapshotFailure::Storage)?;
    let expected = out_len(sm_start, sm_len);
    if meta.len != expected {
        return Err(SnapshotFailure::Storage(corrupt(
            meta.len,
            format!(
                "the store saved {} bytes of a {expected}-byte snapshot",
                meta.len
            ),
        )));
    }
    Ok(meta)
}

/// Takes a snapshot at `upto` (the applied point, with `state_machine` applied exactly
/// that far) into `storage` on this task, through [`StateMachine::snapshot`], and
/// commits it. Returns what is saved.
pub(crate) async fn take(
    storage: &mut dyn Storage,
    state_machine: &mut dyn StateMachine,
    core: &CoreSnapshot,
) -> Result<SnapshotMeta, SnapshotFailure> {
    let mut sink = begin(storage, core).await?;
    let result = state_machine
        .snapshot(&mut StoreWriter {
            storage,
            sink: &mut sink,
        })
        .await;
    if let Some(e) = sink.failed.take() {
        // The state machine saw the store fail (and may have wrapped or dropped it).
        return Err(SnapshotFailure::Storage(e));
    }
    result.map_err(SnapshotFailure::StateMachine)?;
    finish(storage, sink).await
}

fn out_len(sm_start: u64, sm_len: u64) -> u64 {
    sm_start + sm_len + TRAILER_BYTES
}

/// Reads the saved snapshot in [`IO_CHUNK`]s, from `pos` to `end`, keeping the checksum
/// of what it hands out.
struct StoreReader<'a> {
    storage: &'a mut dyn Storage,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
    crc: u32,
}

impl StoreReader<'_> {
    /// Reads exactly `buf.len()` bytes, or says the snapshot is cut short.
    async fn exact(&mut self, buf: &mut [u8]) -> Result<(), StorageError> {
        let at = self.pos - (self.buf.len() - self.at) as u64;
        if self.read_full(buf).await? != buf.len() {
            return Err(corrupt(at, "the snapshot ends inside its header"));
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotRead for StoreReader<'_> {
    async fn read(&mut self, out: &mut [u8]) -> Result<usize, StorageError> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.at == self.buf.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            let want = (self.end - self.pos).min(IO_CHUNK as u64) as usize;
            self.buf.resize(want, 0);
            let n = self.storage.read_snapshot(self.pos, &mut self.buf).await?;
            if n == 0 {
                return Err(corrupt(self.pos, "the snapshot is shorter than recorded"));
            }
            self.buf.truncate(n);
            self.pos += n as u64;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.crc = crc32c::crc32c_append(self.crc, &out[..n]);
        self.at += n;
        Ok(n)
    }
}

/// Restores `state_machine` from the saved snapshot `meta`, checking every byte against
/// the checksum; returns the core's part. A snapshot that fails its checks is a
/// [`StorageError::Corrupt`]; the state machine may then be half restored, so the caller
/// stops (a restart tries again).
pub(crate) async fn restore(
    storage: &mut dyn Storage,
    state_machine: &mut dyn StateMachine,
    meta: SnapshotMeta,
) -> Result<CoreSnapshot, SnapshotFailure> {
    let storage_err = SnapshotFailure::Storage;
    if meta.len < HEAD_BYTES + TRAILER_BYTES {
        return Err(storage_err(corrupt(
            0,
            "the snapshot is shorter than its framing",
        )));
    }
    let mut trailer = [0; TRAILER_BYTES as usize];
    let trailer_at = meta.len - TRAILER_BYTES;
    let n = storage
        .read_snapshot(trailer_at, &mut trailer)
        .await
        .map_err(storage_err)?;
    if n != trailer.len() {
        return Err(storage_err(corrupt(
            trailer_at,
            "the snapshot's trailer is cut short",
        )));
    }
    let sm_len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(trailer[8..].try_into().expect("4 bytes"));
    let mut reader = StoreReader {
        storage,
        pos: 0,
        end: trailer_at,
        buf: Vec::new(),
        at: 0,
        crc: 0,
    };
    let mut head = [0; HEAD_BYTES as usize];
    reader.exact(&mut head).await.map_err(storage_err)?;
    if &head[..4] != MAGIC {
        return Err(storage_err(corrupt(
            0,
            "not a paxos-node snapshot (bad magic)",
        )));
    }
    if head[4] != VERSION {
        return Err(storage_err(corrupt(
            4,
            format!(
                "snapshot format version {} (this build reads {VERSION})",
                head[4]
            ),
        )));
    }
    let core_len = u64::from(u32::from_le_bytes(head[5..9].try_into().expect("4 bytes")));
    if HEAD_BYTES + core_len + sm_len + TRAILER_BYTES != meta.len {
        return Err(storage_err(corrupt(
            trailer_at,
            "the snapshot's lengths do not add up to its size",
        )));
    }
    let mut core = vec![0; core_len as usize];
    reader.exact(&mut core).await.map_err(storage_err)?;
    let core = CoreSnapshot::decode(&core)
        .map_err(|e| storage_err(corrupt(HEAD_BYTES, format!("core part: {e}"))))?;
    if core.upto() != meta.upto {
        return Err(storage_err(corrupt(
            HEAD_BYTES,
            format!(
                "the core part covers {}, the store says {}",
                core.upto(),
                meta.upto
            ),
        )));
    }
    let restored = state_machine.restore(&mut reader).await;
    // What the state machine left unread still counts for the checksum.
    let mut rest = vec![0; IO_CHUNK.min(sm_len as usize)];
    let mut unread = 0u64;
    loop {
        match reader.read(&mut rest).await {
            Ok(0) => break,
            Ok(n) => unread += n as u64,
            Err(e) => return Err(storage_err(e)),
        }
    }
    let sum = crc32c::crc32c_append(reader.crc, &trailer[..8]);
    if sum != crc {
        return Err(storage_err(corrupt(
            trailer_at + 8,
            format!("the snapshot fails its checksum ({sum:#010x}, recorded {crc:#010x})"),
        )));
    }
    restored.map_err(SnapshotFailure::StateMachine)?;
    if unread > 0 {
        return Err(SnapshotFailure::StateMachine(StateMachineError::new(
            format!("restore left {unread} bytes of the state machine's snapshot unread"),
        )));
    }
    Ok(core)
}

/// A snapshot being received, staged in the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Staged {
    pub(crate) upto: Slot,
    pub(crate) total: u64,
    /// Bytes staged so far.
    pub(crate) len: u64,
    /// crc32c of the staged bytes that the trailer's checksum covers (all but the last 4).
    crc: u32,
    /// The last four bytes staged (the recorded checksum, once complete).
    last4: [u8; 4],
}

impl Staged {
    fn new(upto: Slot, total: u64) -> Self {
        Self {
            upto,
            total,
            len: 0,
            crc: 0,
            last4: [0; 4],
        }
    }

    fn add(&mut self, bytes: &[u8]) {
        let covered_end = self.total - 4;
        let covered = covered_end.saturating_sub(self.len).min(bytes.len() as u64) as usize;
        self.crc = crc32c::crc32c_append(self.crc, &bytes[..covered]);
        if bytes.len() >= 4 {
            self.last4.copy_from_slice(&bytes[bytes.len() - 4..]);
        } else {
            self.last4.rotate_left(bytes.len());
            self.last4[4 - bytes.len()..].copy_from_slice(bytes);
        }
        self.len += bytes.len() as u64;
    }

    fn complete(&self) -> bool {
        self.len == self.total
    }

    fn checksum_holds(&self) -> bool {
        u32::from_le_bytes(self.last4) == self.crc
    }
}

/// A fetch under way: the core asked for a snapshot covering at least `min_upto`.
#[derive(Debug)]
pub(crate) struct Fetch {
    /// The peer to ask (the last one that offered).
    pub(crate) from: NodeId,
    pub(crate) min_upto: Slot,
    pub(crate) staged: Option<Staged>,
    /// The last request: to whom, when, for which offset.
    pub(crate) asked: Option<(NodeId, Instant, u64)>,
    /// Chunks staged since that request.
    since_ask: u64,
    /// When the last chunk was staged: while chunks come, the source is kept even if the
    /// core names another (two senders' windows would interleave out of order).
    pub(crate) progress_at: Option<Instant>,
}

/// Chunks one request lets the sender send: the transfer's window (2 MiB at the default
/// chunk size). The receiver asks for the next window when the whole of this one has
/// arrived, so the link idles one round trip per window rather than per chunk, and a
/// request always names where the receiver really is: a lost chunk is sent again on the
/// next request, and nothing is sent twice otherwise.
pub(crate) const WINDOW_CHUNKS: u64 = 8;

/// The sender's side of one peer's transfer: the window its last request granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sending {
    pub(crate) to: NodeId,
    /// The snapshot being sent (the saved one when the request came).
    pub(crate) upto: Slot,
    /// The next offset to send.
    pub(crate) next: u64,
    /// Where the window ends.
    end: u64,
}

impl Sending {
    /// Answers `request` from `to` out of `saved`: the window from the asked offset, or
    /// from the start if it asks for another snapshot than the one saved (or for "your
    /// latest").
    pub(crate) fn new(
        to: NodeId,
        request: &SnapshotRequest,
        saved: SnapshotMeta,
        chunk: u64,
    ) -> Self {
        let next = if request.upto == saved.upto {
            request.offset.min(saved.len)
        } else {
            0
        };
        Self {
            to,
            upto: saved.upto,
            next,
            end: next.saturating_add(WINDOW_CHUNKS.saturating_mul(chunk)),
        }
    }

    /// The next chunk to send from `saved`, as (offset, length), if the window allows.
    pub(crate) fn next_chunk(&self, saved: SnapshotMeta, chunk: u64) -> Option<(u64, u64)> {
        if self.upto != saved.upto {
            // Compacted again since the request: the peer asks again and gets the new one.
            return None;
        }
        let end = self.end.min(saved.len);
        (self.next < end).then(|| (self.next, (end - self.next).min(chunk)))
    }
}

/// What to do with a chunk that arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkFate {
    /// Not wanted (no fetch, already applied, out of order, bad checksum): dropped.
    Drop(&'static str),
    /// Start staging a new snapshot with it.
    Begin,
    /// Append it to what is staged.
    Append,
}

impl Fetch {
    pub(crate) fn new(from: NodeId, min_upto: Slot) -> Self {
        Self {
            from,
            min_upto,
            staged: None,
            asked: None,
            since_ask: 0,
            progress_at: None,
        }
    }

    /// The request to send now, if one is due: none outstanding, another source, the
    /// whole window received, the staged offset gone back (a new start), or the last one
    /// older than `patience`.
    pub(crate) fn due_request(
        &mut self,
        now: Instant,
        patience: Duration,
    ) -> Option<SnapshotRequest> {
        let offset = self.staged.map_or(0, |s| s.len);
        let due = match self.asked {
            None => true,
            Some((to, at, asked_offset)) => {
                to != self.from
                    || offset < asked_offset
                    || self.since_ask >= WINDOW_CHUNKS
                    || now.saturating_duration_since(at) >= patience
            }
        };
        if !due {
            return None;
        }
        self.asked = Some((self.from, now, offset));
        self.since_ask = 0;
        Some(SnapshotRequest {
            upto: self.staged.map_or(Slot(0), |s| s.upto),
            offset,
        })
    }

    /// Decides a chunk's fate against what is staged and `applied`.
    pub(crate) fn judge(&self, chunk: &SnapshotChunk, applied: Slot) -> ChunkFate {
        if chunk.upto <= applied {
            return ChunkFate::Drop("already applied past it");
        }
        if chunk.total < HEAD_BYTES + TRAILER_BYTES {
            return ChunkFate::Drop("shorter than any snapshot");
        }
        if crc32c::crc32c(&chunk.bytes) != chunk.crc {
            return ChunkFate::Drop("bad checksum");
        }
        match self.staged {
            Some(s) if s.upto == chunk.upto && s.total == chunk.total && chunk.offset == s.len => {
                ChunkFate::Append
            }
            // Another sender's (or a stale window's) start of what is being staged.
            Some(s) if s.upto == chunk.upto && s.total == chunk.total => {
                ChunkFate::Drop("out of order")
            }
            _ if chunk.offset == 0 && chunk.upto >= self.min_upto => ChunkFate::Begin,
            _ => ChunkFate::Drop("out of order"),
        }
    }

    /// Whether chunks came within `patience` of `now`.
    pub(crate) fn progressing(&self, now: Instant, patience: Duration) -> bool {
        self.progress_at
            .is_some_and(|at| now.saturating_duration_since(at) < patience)
    }

    /// Records `chunk` as staged (after the store took it).
    pub(crate) fn staged_chunk(&mut self, fate: &ChunkFate, chunk: &SnapshotChunk) {
        if *fate == ChunkFate::Begin {
            self.staged = Some(Staged::new(chunk.upto, chunk.total));
        }
        if let Some(s) = &mut self.staged {
            s.add(&chunk.bytes);
        }
        self.since_ask += 1;
    }

    /// The staged snapshot, if it is whole; `Err` if whole but its checksum fails.
    pub(crate) fn finished(&self) -> Option<Result<Staged, Staged>> {
        let s = self.staged?;
        if !s.complete() {
            return None;
        }
        Some(if s.checksum_holds() { Ok(s) } else { Err(s) })
    }
}

/// The sender's token bucket: `rate` bytes a second, up to one chunk of burst.
#[derive(Debug)]
pub(crate) struct RateLimit {
    rate: u64,
    burst: u64,
    tokens: u64,
    at: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate.max(1),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.at = now;
        }
    }

    /// Takes `bytes` if the bucket holds them; otherwise says when it will.
    pub(crate) fn take(&mut self, bytes: u64, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        let bytes = bytes.min(self.burst);
        if self.tokens >= bytes {
            self.tokens -= bytes;
            return Ok(());
        }
        let missing = bytes - self.tokens;
        let wait_ns = (u128::from(missing) * 1_000_000_000).div_ceil(u128::from(self.rate));
        Err(now + Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX)))
    }
}

/// What the snapshot thread hands the driver.
pub(crate) enum Piece {
    /// The state machine's next bytes (at most [`IO_CHUNK`]).
    Bytes(Vec<u8>),
    /// The state machine's part is complete, or failed.
    Done(Result<(), StateMachineError>),
}

/// Pieces the snapshot thread may have written ahead of the driver's appends: the
/// memory a background snapshot holds, whatever its size.
const PIECES_AHEAD: usize = 2;

/// Writes `frozen` through [`Runtime::spawn_blocking`] (a thread of its own). The driver receives its bytes in pieces and
/// appends them to storage between cycles; dropping the receiver abandons the snapshot
/// (the thread's next write fails and it ends).
pub(crate) fn spawn_frozen(
    runtime: &dyn Runtime,
    frozen: Box<dyn FrozenState>,
) -> Result<async_channel::Receiver<Piece>, StateMachineError> {
    let (tx, rx) = async_channel::bounded(PIECES_AHEAD);
    runtime
        .spawn_blocking(Box::new(move || {
            let mut out = PieceWriter {
                tx,
                buf: Vec::with_capacity(IO_CHUNK),
            };
            let result = frozen.write(&mut out).and_then(|()| {
                out.send_buf()
                    .map_err(|e| StateMachineError::with_source("snapshot", e))
            });
            // The driver may be gone: nothing to tell then.
            let _ = out.tx.send_blocking(Piece::Done(result));
        }))
        .map_err(|e| StateMachineError::with_source("starting the snapshot thread", e))?;
    Ok(rx)
}

/// The `io::Write` a [`FrozenState`] writes into: cuts the bytes into [`IO_CHUNK`]
/// pieces and blocks while [`PIECES_AHEAD`] of them wait for the driver.
struct PieceWriter {
    tx: async_channel::Sender<Piece>,
    buf: Vec<u8>,
}

impl PieceWriter {
    fn send(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.tx.send_blocking(Piece::Bytes(bytes)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the node abandoned this snapshot",
            )
        })
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(IO_CHUNK));
        self.send(full)
    }
}

impl std::io::Write for PieceWriter {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len();
        while !bytes.is_empty() {
            let room = IO_CHUNK - self.buf.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = rest;
            if self.buf.len() == IO_CHUNK {
                self.send_buf()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Pieces go out as they fill; the rest goes with the end of the snapshot.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(upto: u64, total: u64, offset: u64, bytes: &'static [u8]) -> SnapshotChunk {
        SnapshotChunk {
            upto: Slot(upto),
            total,
            offset,
            crc: crc32c::crc32c(bytes),
            bytes: bytes::Bytes::from_static(bytes),
        }
    }

    #[test]
    fn a_fetch_takes_chunks_in_order_and_checks_the_whole() {
        let mut f = Fetch::new(NodeId(1), Slot(10));
        // 30 bytes, the last four the checksum of the first 26.
        let mut body = b"0123456789abcdefghijklmnop".to_vec();
        body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        let body: &'static [u8] = body.leak();
        let c0 = chunk(12, 30, 0, &body[..14]);
        let c1 = chunk(12, 30, 14, &body[14..28]);
        let c2 = chunk(12, 30, 28, &body[28..]);
        assert_eq!(f.judge(&c1, Slot(0)), ChunkFate::Drop("out of order"));
        assert_eq!(
            f.judge(&c0, Slot(12)),
            ChunkFate::Drop("already applied past it")
        );
        let mut bad = c0.clone();
        bad.crc ^= 1;
        assert_eq!(f.judge(&bad, Slot(0)), ChunkFate::Drop("bad checksum"));
        let fate = f.judge(&c0, Slot(0));
        assert_eq!(fate, ChunkFate::Begin);
        f.staged_chunk(&fate, &c0);
        assert!(f.finished().is_none());
        assert_eq!(
            f.judge(&c0, Slot(0)),
            ChunkFate::Drop("out of order"),
            "a second start of the snapshot being staged"
        );
        let newer = chunk(14, 30, 0, &body[..14]);
        assert_eq!(
            f.judge(&newer, Slot(0)),
            ChunkFate::Begin,
            "a newer one restarts"
        );
        let fate = f.judge(&c1, Slot(0));
        assert_eq!(fate, ChunkFate::Append);
        f.staged_chunk(&fate, &c1);
        // The checksum is split across the last two chunks.
        let fate = f.judge(&c2, Slot(0));
        f.staged_chunk(&fate, &c2);
        assert!(matches!(f.finished(), Some(Ok(s)) if s.upto == Slot(12)));

        // A corrupted body (each chunk's own checksum fine) fails the whole.
        let mut g = Fetch::new(NodeId(1), Slot(10));
        let mut wrong = body.to_vec();
        wrong[3] ^= 1;
        let wrong: &'static [u8] = wrong.leak();
        for (at, piece) in [(0, &wrong[..20]), (20, &wrong[20..])] {
            let c = chunk(12, 30, at, piece);
            let fate = g.judge(&c, Slot(0));
            g.staged_chunk(&fate, &c);
        }
        assert!(matches!(g.finished(), Some(Err(_))));
    }

    #[test]
    fn requests_repeat_only_when_due() {
        let t0 = Instant::now();
        let patience = Duration::from_secs(1);
        let mut f = Fetch::new(NodeId(1), Slot(10));
        let first = f.due_request(t0, patience).unwrap();
        assert_eq!((first.upto, first.offset), (Slot(0), 0));
        assert!(f.due_request(t0 + patience / 2, patience).is_none());
        assert!(f.due_request(t0 + patience, patience).is_some());
        f.from = NodeId(2);
        assert!(
            f.due_request(t0 + patience, patience).is_some(),
            "new source"
        );
    }

    #[test]
    fn the_next_request_goes_out_once_the_window_arrived() {
        let t0 = Instant::now();
        let patience = Duration::from_secs(1);
        let mut f = Fetch::new(NodeId(1), Slot(10));
        assert!(f.due_request(t0, patience).is_some());
        let mut offset = 0;
        for i in 0..WINDOW_CHUNKS {
            let c = chunk(12, 1000, offset, b"0123456789");
            let fate = f.judge(&c, Slot(0));
            assert_ne!(fate, ChunkFate::Drop("out of order"), "chunk {i}");
            f.staged_chunk(&fate, &c);
            offset += 10;
            let due = f.due_request(t0, patience);
            if i + 1 < WINDOW_CHUNKS {
                assert!(due.is_none(), "chunk {i}: the window is still arriving");
            } else {
                let next = due.expect("the window is in: ask for the next");
                assert_eq!((next.upto, next.offset), (Slot(12), offset));
            }
        }
        // A new start (the staged snapshot failed its checksum) asks at once.
        f.staged = None;
        assert_eq!(f.due_request(t0, patience).map(|r| r.offset), Some(0));
    }

    #[test]
    fn a_window_covers_the_chunks_a_request_grants() {
        let saved = SnapshotMeta {
            upto: Slot(12),
            len: 10 * 100 + 30,
        };
        let ask = |upto, offset| SnapshotRequest {
            upto: Slot(upto),
            offset,
        };
        // From the asked offset, in chunks of 100, for the window.
        let mut t = Sending::new(NodeId(2), &ask(12, 300), saved, 100);
        let mut sent = Vec::new();
        while let Some((offset, len)) = t.next_chunk(saved, 100) {
            sent.push((offset, len));
            t.next = offset + len;
        }
        let expected: Vec<(u64, u64)> = (0..WINDOW_CHUNKS)
            .map(|i| (300 + i * 100, 100))
            .filter(|&(o, _)| o < saved.len)
            .map(|(o, l)| (o, l.min(saved.len - o)))
            .collect();
        assert_eq!(sent, expected);
        assert_eq!(
            sent.last(),
            Some(&(1000, 30)),
            "the last chunk is cut to the end"
        );
        // Another snapshot (or "your latest") is sent from its start.
        let t = Sending::new(NodeId(2), &ask(0, 500), saved, 100);
        assert_eq!(t.next_chunk(saved, 100), Some((0, 100)));
        // Compacted again since: nothing more from the old one.
        let newer = SnapshotMeta {
            upto: Slot(20),
            len: 5000,
        };
        assert_eq!(t.next_chunk(newer, 100), None);
    }

    #[test]
    fn the_rate_limit_spaces_chunks() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(1000, 100, t0);
        assert_eq!(r.take(100, t0), Ok(()));
        let next = r.take(100, t0).unwrap_err();
        assert_eq!(next, t0 + Duration::from_millis(100));
        assert!(r.take(100, t0 + Duration::from_millis(50)).is_err());
        assert_eq!(r.take(100, t0 + Duration::from_millis(100)), Ok(()));
    }
}
