//! The log's record format: a fixed header, a postcard payload, zero padding.
//!
//! ```text
//! offset  size  field
//!      0     4  magic        "PXL1" as a little-endian u32 (never zero)
//!      4     4  len          payload length in bytes
//!      8     8  seq          record sequence number, +1 per record across all segments
//!     16     4  payload_crc  crc32c of the payload
//!     20     4  header_crc   crc32c of bytes 0..20
//!     24   len  payload      postcard encoding of a `Body`
//!      …     …  padding      zeros up to the next multiple of 8
//! ```
//!
//! The header checksum lets recovery test a candidate position cheaply (no payload read)
//! when it searches for valid records after a bad one.

use paxos_core::{Entry, HardState, Slot};
use serde::{Deserialize, Serialize};

/// Bytes in a record header.
pub(crate) const HEADER_BYTES: usize = 24;
/// Records start at multiples of this.
pub(crate) const ALIGN: u64 = 8;
/// Identifies a record header and the format version.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"PXL1");

/// What one record holds, as written (borrows the entries, so encoding does not clone).
#[derive(Serialize)]
pub(crate) enum BodyRef<'a> {
    /// One `persist` call: the whole batch, so it is applied whole or not at all.
    Batch {
        hard_state: Option<HardState>,
        entries: &'a [Entry],
    },
    /// Written by `compact`: the compaction point and the current hard state, so that
    /// older segments (holding older hard states) can be deleted.
    Checkpoint {
        hard_state: HardState,
        compacted_before: Slot,
    },
}

/// What one record holds, as read. Must stay field-for-field identical to [`BodyRef`].
#[derive(Deserialize)]
pub(crate) enum Body {
    /// See [`BodyRef::Batch`].
    Batch {
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
    },
    /// See [`BodyRef::Checkpoint`].
    Checkpoint {
        hard_state: HardState,
        compacted_before: Slot,
    },
}

/// A parsed and checksum-verified header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) seq: u64,
    pub(crate) payload_crc: u32,
}

/// Why a header did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadHeader {
    /// All 24 bytes are zero: the preallocated space after the last record.
    Zeros,
    /// Not a record header: wrong magic or checksum.
    Invalid,
}

impl Header {
    /// Parses and verifies a header.
    pub(crate) fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<Self, BadHeader> {
        if bytes.iter().all(|&b| b == 0) {
            return Err(BadHeader::Zeros);
        }
        let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let header_crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
        if magic != MAGIC || crc32c::crc32c(&bytes[0..20]) != header_crc {
            return Err(BadHeader::Invalid);
        }
        Ok(Self {
            len: u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            payload_crc: u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")),
        })
    }

    /// Bytes the whole record takes, padding included.
    pub(crate) fn record_bytes(&self) -> u64 {
        padded(HEADER_BYTES as u64 + u64::from(self.len))
    }
}

/// Rounds up to the record alignment.
pub(crate) fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGN) * ALIGN
}

/// Encodes one record into `buf` (cleared first): header, payload, padding. Returns the
/// payload length, which the caller checks against its limit. The header's sequence number
/// and checksum are left for [`seal`], so that a record can be encoded before it is known
/// where in the log it goes.
pub(crate) fn encode(buf: &mut Vec<u8>, body: &BodyRef<'_>) -> usize {
    buf.clear();
    buf.resize(HEADER_BYTES, 0);
    let mut out =
        postcard::to_extend(body, std::mem::take(buf)).expect("encoding into a Vec cannot fail");
    let len = out.len() - HEADER_BYTES;
    let payload_crc = crc32c::crc32c(&out[HEADER_BYTES..]);
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    out[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let total = padded(out.len() as u64) as usize;
    out.resize(total, 0);
    *buf = out;
    len
}

/// Completes the header of a record [`encode`] made: its sequence number and checksum.
pub(crate) fn seal(record: &mut [u8], seq: u64) {
    record[8..16].copy_from_slice(&seq.to_le_bytes());
    let header_crc = crc32c::crc32c(&record[0..20]);
    record[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

/// Decodes a payload whose checksum already matched.
pub(crate) fn decode(payload: &[u8]) -> Result<Body, postcard::Error> {
    postcard::from_bytes(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxos_core::{Ballot, NodeId, Value};

    #[test]
    fn encode_then_parse_round_trips() {
        let entries = vec![Entry {
            slot: Slot(3),
            ballot: Ballot::new(2, NodeId(1)),
            value: Value::Noop,
        }];
        let hard_state = HardState {
            promised: Ballot::new(2, NodeId(1)),
            commit: Slot(1),
            epoch: 3,
            non_voting: false,
        };
        let mut buf = Vec::new();
        let body = BodyRef::Batch {
            hard_state: Some(hard_state),
            entries: &entries,
        };
        let len = encode(&mut buf, &body);
        seal(&mut buf, 42);
        assert_eq!(buf.len() as u64 % ALIGN, 0);
        let header = Header::parse(buf[..HEADER_BYTES].try_into().unwrap()).unwrap();
        assert_eq!(header.seq, 42);
        assert_eq!(header.len as usize, len);
        assert_eq!(header.record_bytes(), buf.len() as u64);
        let payload = &buf[HEADER_BYTES..HEADER_BYTES + len];
        assert_eq!(crc32c::crc32c(payload), header.payload_crc);
        match decode(payload).unwrap() {
            Body::Batch {
                hard_state: h,
                entries: e,
            } => {
                assert_eq!(h, Some(hard_state));
                assert_eq!(e, entries);
            }
            Body::Checkpoint { .. } => panic!("decoded the wrong variant"),
        }
    }

    #[test]
    fn zero_and_damaged_headers_are_told_apart() {
        assert_eq!(Header::parse(&[0; HEADER_BYTES]), Err(BadHeader::Zeros));
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &BodyRef::Checkpoint {
                hard_state: HardState::default(),
                compacted_before: Slot(9),
            },
        );
        seal(&mut buf, 1);
        for i in 0..HEADER_BYTES {
            let mut header: [u8; HEADER_BYTES] = buf[..HEADER_BYTES].try_into().unwrap();
            header[i] ^= 0x10;
            assert_eq!(Header::parse(&header), Err(BadHeader::Invalid), "byte {i}");
        }
    }
}
