//! The KV state machine's snapshot: its whole replicated state as a stream of records,
//! written and read one record at a time so that neither side holds the snapshot whole.
//!
//! # Format (version 1)
//!
//! `b"PXKV"`, a version byte (1), then records, each a `u32` little-endian length and that
//! many bytes of postcard:
//!
//! 1. one [`Head`]: the counters and how many sessions and keys follow;
//! 2. `sessions` records `(client, Session)`, by client id;
//! 3. `keys` records `(key, value)`, in scan order;
//!
//! and nothing after. The session table goes in whole (its `by_age` index is rebuilt from
//! the stamps), so a restored replica answers a client's retry from its saved output and
//! refuses a stale request exactly as a replica that replayed the log does. The bytes are a
//! function of the state alone (ordered maps, fixed encoding).
//!
//! A record is at most [`MAX_RECORD_BYTES`] (a key and a value at their limits), so
//! restoring holds one record at a time whatever the snapshot's size; anything malformed
//! (bad magic, a record too long or cut short, counts that disagree, trailing bytes) is an
//! error, never a panic.

use paxos_core::{FrozenState, SnapshotRead, SnapshotWrite, StateMachineError};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::store::{Key, Store};
use super::{KvState, MAX_VALUE_BYTES, Session};

/// What a KV snapshot starts with.
const MAGIC: &[u8; 4] = b"PXKV";
/// The format written, and the only one read.
const VERSION: u8 = 1;
/// Bound on one record: a value at [`MAX_VALUE_BYTES`], a key as large, and framing.
pub(super) const MAX_RECORD_BYTES: usize = 2 * MAX_VALUE_BYTES + 64;

/// The first record: the scalar state and the counts of what follows.
#[derive(Serialize, Deserialize)]
struct Head {
    next_stamp: u64,
    evicted_born_max: Option<u64>,
    sessions: u64,
    keys: u64,
}

fn encoding_error(e: postcard::Error) -> StateMachineError {
    StateMachineError::with_source("KV snapshot encoding", e)
}

fn bad(what: &str) -> StateMachineError {
    StateMachineError::new(format!("KV snapshot is malformed: {what}"))
}

fn io(e: paxos_core::StorageError) -> StateMachineError {
    StateMachineError::with_source("KV snapshot I/O", e)
}

/// Appends one framed record (length, then postcard) to `buf`.
fn put<T: Serialize>(buf: &mut Vec<u8>, record: &T) -> Result<(), StateMachineError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    *buf = postcard::to_extend(record, std::mem::take(buf)).map_err(encoding_error)?;
    let len = u32::try_from(buf.len() - at - 4).map_err(|_| bad("a record over 4 GiB"))?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The snapshot's bytes, in pieces of a record or a few (at least [`PIECE_BYTES`] unless
/// it is the last): what [`write`] and [`Frozen`] both send.
fn pieces(state: &KvState) -> impl Iterator<Item = Result<Vec<u8>, StateMachineError>> + '_ {
    let mut start = MAGIC.to_vec();
    start.push(VERSION);
    let head = Head {
        next_stamp: state.next_stamp,
        evicted_born_max: state.evicted_born_max,
        sessions: state.sessions.len() as u64,
        keys: state.map.len() as u64,
    };
    let mut first = Some((start, head));
    let mut sessions = state.sessions.iter();
    let mut keys = state.map.iter();
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        if let Some((start, head)) = first.take() {
            buf = start;
            if let Err(e) = put(&mut buf, &head) {
                return Some(Err(e));
            }
        }
        while buf.len() < PIECE_BYTES {
            let put = if let Some((client, session)) = sessions.next() {
                put(&mut buf, &(client, session))
            } else if let Some(pair) = keys.next() {
                put(&mut buf, &pair)
            } else {
                break;
            };
            if let Err(e) = put {
                return Some(Err(e));
            }
        }
        (!buf.is_empty()).then_some(Ok(buf))
    })
}

/// Pieces are cut at record boundaries once past this size.
const PIECE_BYTES: usize = 64 << 10;

/// Writes `state` to `out`.
pub(super) async fn write(
    state: &KvState,
    out: &mut dyn SnapshotWrite,
) -> Result<(), StateMachineError> {
    for piece in pieces(state) {
        out.write(&piece?).await.map_err(io)?;
    }
    Ok(())
}

/// A frozen copy of the state (O(1): the maps are persistent), written on the node's
/// snapshot thread with the same bytes as [`write`].
pub(super) struct Frozen(pub(super) KvState);

impl FrozenState for Frozen {
    fn write(self: Box<Self>, out: &mut dyn std::io::Write) -> Result<(), StateMachineError> {
        for piece in pieces(&self.0) {
            out.write_all(&piece?)
                .map_err(|e| StateMachineError::with_source("KV snapshot I/O", e))?;
        }
        Ok(())
    }
}

/// Reads one record into `buf` and decodes it.
async fn get<T: for<'de> Deserialize<'de>>(
    input: &mut dyn SnapshotRead,
    buf: &mut Vec<u8>,
) -> Result<T, StateMachineError> {
    let mut len = [0; 4];
    if input.read_full(&mut len).await.map_err(io)? != 4 {
        return Err(bad("cut short before a record"));
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(bad("a record longer than any key and value"));
    }
    buf.resize(len, 0);
    if input.read_full(buf).await.map_err(io)? != len {
        return Err(bad("cut short inside a record"));
    }
    postcard::from_bytes(buf).map_err(|e| StateMachineError::with_source("KV snapshot decoding", e))
}

/// Reads a state written by [`write`].
pub(super) async fn read(input: &mut dyn SnapshotRead) -> Result<KvState, StateMachineError> {
    let mut start = [0; 5];
    if input.read_full(&mut start).await.map_err(io)? != 5 || &start[..4] != MAGIC {
        return Err(bad("it does not start with the KV snapshot magic"));
    }
    if start[4] != VERSION {
        return Err(bad(&format!(
            "format version {} (this build reads {VERSION})",
            start[4]
        )));
    }
    let mut buf = Vec::new();
    let head: Head = get(input, &mut buf).await?;
    let mut sessions = imbl::OrdMap::new();
    let mut by_age = imbl::OrdMap::new();
    for _ in 0..head.sessions {
        let (client, session): (u64, Session) = get(input, &mut buf).await?;
        if by_age.insert(session.stamp, client).is_some() {
            return Err(bad("two sessions with one stamp"));
        }
        if sessions.insert(client, session).is_some() {
            return Err(bad("a client's session twice"));
        }
    }
    let mut map = Store::default();
    for _ in 0..head.keys {
        let (key, value): (ByteBuf, ByteBuf) = get(input, &mut buf).await?;
        let (key, value) = (key.into_vec(), value.into_vec());
        if value.len() > MAX_VALUE_BYTES {
            return Err(bad("a value over the size limit"));
        }
        map.insert(Key::new(key), value);
    }
    if map.len() as u64 != head.keys {
        return Err(bad("a key twice"));
    }
    if input.read(&mut [0; 1]).await.map_err(io)? != 0 {
        return Err(bad("bytes after the last record"));
    }
    Ok(KvState {
        map,
        sessions,
        by_age,
        next_stamp: head.next_stamp,
        evicted_born_max: head.evicted_born_max,
    })
}
