//! Upper bounds on the encoded size of what messages carry, so that the core can bound
//! every message in bytes without encoding it.
//!
//! The codec is postcard: integers are varints (at most 10 bytes for a `u64`), byte strings
//! and sequences are a varint length and their items, enums a varint tag. The bounds below
//! take every varint at its widest, so they never underestimate; a test checks them
//! against the real encoding.

use crate::types::{Command, Value};

/// Bytes a command adds to its payload: three `u64` varints of its
/// [`ProposalId`](crate::ProposalId) and the payload's length.
pub const COMMAND_OVERHEAD_BYTES: usize = 40;

/// Bytes a value adds to its commands: the variant tag and the command count.
pub const VALUE_OVERHEAD_BYTES: usize = 11;

/// Bytes an entry adds to its value where a message carries a slot or a ballot with it
/// (a Promise's [`Entry`](crate::Entry), a CatchUpReply's `(Ballot, Value)`): a slot and a
/// ballot, three varints.
pub const ENTRY_OVERHEAD_BYTES: usize = 30;

/// Bytes of every field of a message other than its values, commands or entries: the
/// variant tag, ballots, slots, stamps, counts and options.
pub const MESSAGE_OVERHEAD_BYTES: usize = 128;

/// Upper bound on the encoding of `command`.
pub fn command_bytes(command: &Command) -> usize {
    COMMAND_OVERHEAD_BYTES + command.payload.len()
}

/// Upper bound on the encoding of `value`, as an Accept carries it.
pub fn value_bytes(value: &Value) -> usize {
    VALUE_OVERHEAD_BYTES + value.commands().iter().map(command_bytes).sum::<usize>()
}

/// How many of the items whose encoded sizes `sizes` yields fit in one message: at most
/// `max_items`, at most `max_message_bytes` in all with [`MESSAGE_OVERHEAD_BYTES`], and
/// **at least one** (if there is one), so that a message always makes progress.
pub(crate) fn fit(
    sizes: impl IntoIterator<Item = usize>,
    max_items: usize,
    max_message_bytes: usize,
) -> usize {
    let budget = max_message_bytes.saturating_sub(MESSAGE_OVERHEAD_BYTES);
    let mut used = 0usize;
    let mut n = 0;
    for size in sizes.into_iter().take(max_items) {
        used = used.saturating_add(size);
        if n > 0 && used > budget {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::*;
    use crate::codec::encode_frame;
    use crate::message::{Accept, CatchUpReply, Forward, Message, Promise};
    use crate::types::{Ballot, Entry, Instant, NodeId, ProposalId, Slot};

    fn encoded_len(m: &Message) -> usize {
        let mut buf = BytesMut::new();
        encode_frame(m, &mut buf, usize::MAX).unwrap();
        // The length prefix and the version byte are the frame's, not the message's.
        buf.len() - crate::codec::LEN_PREFIX_BYTES - 1
    }

    fn command(origin: u64, seq: u64, epoch: u64, len: usize) -> Command {
        Command {
            id: ProposalId {
                origin: NodeId(origin),
                seq,
                epoch,
            },
            payload: Bytes::from(vec![7u8; len]),
        }
    }

    #[test]
    fn fit_takes_at_least_one_and_stops_at_either_bound() {
        let big = MESSAGE_OVERHEAD_BYTES + 100;
        assert_eq!(fit([1000, 1, 1], 10, big), 1, "one item always fits");
        assert_eq!(fit([40, 40, 40], 10, big), 2);
        assert_eq!(fit([1, 1, 1], 2, big), 2);
        assert_eq!(fit([], 2, big), 0);
    }

    proptest! {
        #[test]
        fn bounds_never_underestimate_the_encoding(
            cmds in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), any::<u64>(), 0usize..300), 0..20),
            slot in any::<u64>(),
            round in any::<u64>(),
            node in any::<u64>(),
            stamp in any::<u64>(),
        ) {
            let value = Value::Batch(cmds.iter().map(|&(o, s, e, l)| command(o, s, e, l)).collect());
            let ballot = Ballot::new(round, NodeId(node));
            let vb = value_bytes(&value);
            let accept = Message::Accept(Accept {
                ballot,
                first: Slot(slot),
                values: vec![value.clone(), Value::Noop],
                commit: Slot(slot),
                stamp: Instant::from_nanos(stamp),
            });
            prop_assert!(encoded_len(&accept) <= MESSAGE_OVERHEAD_BYTES + vb + VALUE_OVERHEAD_BYTES);
            let entry = Entry { slot: Slot(slot), ballot, value: value.clone() };
            let promise = Message::Promise(Promise {
                ballot,
                from: Slot(slot),
                accepted: vec![entry],
                next: Some(Slot(slot)),
                commit: Slot(slot),
            });
            prop_assert!(encoded_len(&promise) <= MESSAGE_OVERHEAD_BYTES + ENTRY_OVERHEAD_BYTES + vb);
            let reply = Message::CatchUpReply(CatchUpReply {
                first: Slot(slot),
                values: vec![(ballot, value.clone())],
                commit: Slot(slot),
            });
            prop_assert!(encoded_len(&reply) <= MESSAGE_OVERHEAD_BYTES + ENTRY_OVERHEAD_BYTES + vb);
            let forward = Message::Forward(Forward { commands: value.commands().to_vec() });
            let cb: usize = value.commands().iter().map(command_bytes).sum();
            prop_assert!(encoded_len(&forward) <= MESSAGE_OVERHEAD_BYTES + cb);
        }
    }
}
