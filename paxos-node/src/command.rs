//! How client requests are encoded in the log: a one-byte tag before each command.
//!
//! The core replicates opaque payloads; the node puts a tag in front of each so that every
//! replica can tell a client write from a read marker (a read through the log) when it is
//! applied. The tag is stripped before the state machine sees the command, and read markers
//! are removed altogether, identically on every replica: the state machine never sees
//! either.
//!
//! Every member of a cluster must run this driver (or one that speaks the same tags).

use bytes::{BufMut, Bytes, BytesMut};
use paxos_core::{Command, Committed, ProposalId, Value};

/// A client write: the state machine's command follows.
const TAG_WRITE: u8 = 0;
/// A read marker: no body. Reads waiting on it are answered once it is applied.
const TAG_READ: u8 = 1;

/// Bytes the tag adds to every command.
pub(crate) const TAG_BYTES: usize = 1;

/// Encodes a client write for the log.
pub(crate) fn write(command: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(TAG_BYTES + command.len());
    out.put_u8(TAG_WRITE);
    out.put_slice(command);
    out.freeze()
}

/// The read marker.
pub(crate) fn read_marker() -> Bytes {
    Bytes::from_static(&[TAG_READ])
}

/// Rewrites `committed` for the state machine, in place: strips the tag from writes,
/// removes read markers (pushing their ids to `markers`), and drops commands with an
/// unknown tag (from a newer or foreign driver) with a warning. Deterministic, so every
/// replica hands its state machine the same commands.
pub(crate) fn strip(committed: &mut [Committed], markers: &mut Vec<ProposalId>) {
    for c in committed {
        let Value::Batch(commands) = &c.value else {
            continue;
        };
        // The batch is shared with the replica's log, so the stripped copy is a new one.
        let stripped: Vec<Command> = commands
            .iter()
            .filter_map(|cmd| match cmd.payload.first() {
                Some(&TAG_WRITE) => Some(Command {
                    id: cmd.id,
                    payload: cmd.payload.slice(TAG_BYTES..),
                }),
                Some(&TAG_READ) => {
                    markers.push(cmd.id);
                    None
                }
                _ => {
                    tracing::warn!(slot = %c.slot, origin = %cmd.id.origin, "dropping a command with an unknown tag");
                    None
                }
            })
            .collect();
        c.value = Value::Batch(stripped.into());
    }
}

#[cfg(test)]
mod tests {
    use paxos_core::{Command, NodeId, Slot};

    use super::*;

    fn id(seq: u64) -> ProposalId {
        ProposalId {
            origin: NodeId(1),
            seq,
            epoch: 7,
        }
    }

    #[test]
    fn strips_writes_and_removes_markers() {
        let cmd = |seq, payload| Command {
            id: id(seq),
            payload,
        };
        let mut committed = vec![
            Committed {
                slot: Slot(0),
                value: Value::Noop,
            },
            Committed {
                slot: Slot(1),
                value: Value::Batch(
                    vec![
                        cmd(0, write(b"a")),
                        cmd(1, read_marker()),
                        cmd(2, Bytes::from_static(&[9, 9])),
                        cmd(3, Bytes::new()),
                        cmd(4, write(b"")),
                    ]
                    .into(),
                ),
            },
        ];
        let mut markers = Vec::new();
        strip(&mut committed, &mut markers);
        assert_eq!(markers, vec![id(1)]);
        assert_eq!(committed[0].value, Value::Noop);
        assert_eq!(
            committed[1].value,
            Value::Batch(vec![cmd(0, Bytes::from_static(b"a")), cmd(4, Bytes::new())].into())
        );
    }
}
