//! The wire format, pinned: every [`Message`] kind round-trips, and encodes to fixed
//! reference bytes, so that an accidental change to the format (a field reordered, added
//! or retyped, an enum variant moved, the framing changed) fails here rather than between
//! two builds of a cluster.
//!
//! # Changing the format deliberately
//!
//! Raise [`WIRE_VERSION`] if a peer of the old build could misread the new bytes, then run
//! `cargo test -p paxos-core wire_format` and paste the lines its failure message prints
//! (one per changed kind, with the old bytes after `was`) into [`REFERENCE`]. The samples are fixed values with
//! no randomness, so the bytes only change when the format does.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::message::{
    Accept, Accepted, CatchUp, CatchUpReply, Decide, Forward, Message, Nack, PreVote, PreVoteReply,
    Prepare, Promise, SnapshotChunk, SnapshotOffer, SnapshotRequest,
};
use crate::types::{Ballot, Command, Entry, Instant, NodeId, ProposalId, Slot, Value};

/// The full frame (length prefix, version byte, postcard body) of [`samples`], by kind.
const REFERENCE: [(&str, &str); 14] = [
    ("prepare", "080000000200ac0202f0a204"),
    (
        "promise",
        "390000000201ac0202050205ab020101020301f0a20407736574207820310302f0a2040006ffffffffffffffffff01ffffffffffffffffff0100010704",
    ),
    (
        "accept",
        "230000000202ac020207020001020301f0a20407736574207820310302f0a2040006d285d8cc04",
    ),
    ("accepted", "0c0000000203ac02020702d285d8cc04"),
    ("decide", "060000000204ac020209"),
    ("nack", "0800000002050103ac020201"),
    (
        "forward",
        "190000000206020303f0a2040567657420780304f0a2040564656c2078",
    ),
    ("catch_up", "0400000002078001"),
    (
        "catch_up_reply",
        "3200000002080502ab020101020301f0a20407736574207820310302f0a20400ffffffffffffffffff01ffffffffffffffffff010007",
    ),
    ("pre_vote", "070000000209ac02021109"),
    ("pre_vote_reply", "0b000000020aac02021101ab020109"),
    ("snapshot_offer", "06000000020bac02ad02"),
    ("snapshot_request", "07000000020cac02808010"),
    (
        "snapshot_chunk",
        "13000000020dac02838010808010b7ffacb20303616263",
    ),
];

/// A ballot whose round takes a two-byte varint.
fn leader() -> Ballot {
    Ballot::new(300, NodeId(2))
}

fn command(seq: u64, payload: &'static [u8]) -> Command {
    Command {
        id: ProposalId {
            origin: NodeId(3),
            seq,
            epoch: 70_000,
        },
        payload: Bytes::from_static(payload),
    }
}

fn batch() -> Value {
    Value::Batch(vec![command(1, b"set x 1"), command(2, b"")].into())
}

/// One message of every kind, each field set to a value that is not its default, with
/// varints of more than one byte, both [`Value`] variants and `Some`/`true` where a field
/// is optional or a flag.
fn samples() -> Vec<Message> {
    let stamp = Instant::from_nanos(1_234_567_890);
    vec![
        Message::Prepare(Prepare {
            ballot: leader(),
            from: Slot(70_000),
        }),
        Message::Promise(Promise {
            ballot: leader(),
            from: Slot(5),
            accepted: vec![
                Entry {
                    slot: Slot(5),
                    ballot: Ballot::new(299, NodeId(1)),
                    value: batch(),
                },
                Entry {
                    slot: Slot(6),
                    ballot: Ballot::CHOSEN,
                    value: Value::Noop,
                },
            ],
            next: Some(Slot(7)),
            commit: Slot(4),
        }),
        Message::Accept(Accept {
            ballot: leader(),
            first: Slot(7),
            values: vec![Value::Noop, batch()],
            commit: Slot(6),
            stamp,
        }),
        Message::Accepted(Accepted {
            ballot: leader(),
            first: Slot(7),
            count: 2,
            stamp,
        }),
        Message::Decide(Decide {
            ballot: leader(),
            commit: Slot(9),
        }),
        Message::Nack(Nack {
            ballot: Ballot::new(1, NodeId(3)),
            promised: leader(),
            leased: true,
        }),
        Message::Forward(Forward {
            commands: vec![command(3, b"get x"), command(4, b"del x")],
        }),
        Message::CatchUp(CatchUp { from: Slot(128) }),
        Message::CatchUpReply(CatchUpReply {
            first: Slot(5),
            values: vec![
                (Ballot::new(299, NodeId(1)), batch()),
                (Ballot::CHOSEN, Value::Noop),
            ],
            commit: Slot(7),
        }),
        Message::PreVote(PreVote {
            ballot: leader(),
            round: 17,
            commit: Slot(9),
        }),
        Message::PreVoteReply(PreVoteReply {
            ballot: leader(),
            round: 17,
            granted: true,
            promised: Ballot::new(299, NodeId(1)),
            commit: Slot(9),
        }),
        Message::SnapshotOffer(SnapshotOffer {
            upto: Slot(300),
            commit: Slot(301),
        }),
        Message::SnapshotRequest(SnapshotRequest {
            upto: Slot(300),
            offset: 262_144,
        }),
        Message::SnapshotChunk(SnapshotChunk {
            upto: Slot(300),
            total: 262_147,
            offset: 262_144,
            crc: 0x364b_3fb7, // crc32c of "abc"
            bytes: Bytes::from_static(b"abc"),
        }),
    ]
}

fn frame(m: &Message) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(m, &mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap();
    buf
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex length");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_samples_cover_every_kind_once() {
    let kinds: Vec<&str> = samples().iter().map(Message::kind).collect();
    assert_eq!(kinds, Message::KINDS);
    let pinned: Vec<&str> = REFERENCE.iter().map(|&(kind, _)| kind).collect();
    assert_eq!(pinned, Message::KINDS);
}

#[test]
fn every_kind_round_trips() {
    let mut stream = BytesMut::new();
    for m in samples() {
        let buf = frame(&m);
        let decoded = decode_frame::<Message>(&buf, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(decoded, Ok(Some((m.clone(), buf.len()))), "{}", m.kind());
        stream.extend_from_slice(&buf);
    }
    // Back to back in one stream, as a transport reads them.
    let mut at = 0;
    for m in samples() {
        let (decoded, used) = decode_frame::<Message>(&stream[at..], DEFAULT_MAX_FRAME_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(decoded, m);
        at += used;
    }
    assert_eq!(at, stream.len());
}

#[test]
fn every_kind_encodes_to_its_reference_bytes() {
    let mut changed = Vec::new();
    for (m, (kind, hex)) in samples().iter().zip(REFERENCE) {
        assert_eq!(m.kind(), kind);
        let actual = to_hex(&frame(m));
        if actual != hex {
            changed.push(format!("    (\"{kind}\", \"{actual}\"), // was \"{hex}\""));
            continue;
        }
        // And the pinned bytes still decode to the same value.
        let bytes = from_hex(hex);
        let decoded = decode_frame::<Message>(&bytes, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(decoded, Ok(Some((m.clone(), bytes.len()))), "{kind}");
    }
    assert!(
        changed.is_empty(),
        "the wire format changed (see the module doc to change it deliberately); now:\n{}",
        changed.join("\n")
    );
}

/// Hand-built frames: a peer of another version may send a body this build cannot parse
/// at all, so the version must be checked before the body is read.
#[test]
fn a_frame_of_another_version_is_refused_before_its_body_is_read() {
    let future = WIRE_VERSION + 1;
    for version in [future, u8::MAX, WIRE_VERSION - 1, 0] {
        // A body that is no message this build knows: variant tag 200.
        let body = [200u8, 1, 2, 3];
        let mut buf = Vec::new();
        buf.extend_from_slice(&(1 + body.len() as u32).to_le_bytes());
        buf.push(version);
        buf.extend_from_slice(&body);
        let r = decode_frame::<Message>(&buf, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(r, Err(CodecError::Version(version)), "version {version}");
        // A well-formed body of this build, sent under the future version byte.
        let mut good = frame(&samples()[0]);
        good[LEN_PREFIX_BYTES] = version;
        let r = decode_frame::<Message>(&good, DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(r, Err(CodecError::Version(version)), "version {version}");
    }
    assert_eq!(
        CodecError::Version(future).to_string(),
        format!("unsupported wire version {future} (this build speaks {WIRE_VERSION})")
    );
}
