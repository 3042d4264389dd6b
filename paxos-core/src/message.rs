//! The messages replicas exchange, named as in the paper.
//!
//! Every message carries the sender's ballot where one applies, so a receiver can always
//! tell a stale message from a current one. Messages may be lost, duplicated, reordered or
//! delayed; each handler in the core is idempotent and ignores what is stale.

use serde::{Deserialize, Serialize};

use crate::types::{Ballot, Command, Entry, Instant, NodeId, Slot, Value};

/// A protocol message between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Phase 1a: "promise me `ballot` for every slot from `from` on".
    Prepare(Prepare),
    /// Phase 1b: the acceptor promised, and reports what it accepted.
    Promise(Promise),
    /// Phase 2a: "accept these values for these slots at `ballot`". Also carries the
    /// leader's commit point, and doubles as the heartbeat when `values` is empty.
    Accept(Accept),
    /// Phase 2b: the acceptor accepted (and persisted) a range of slots.
    Accepted(Accepted),
    /// Learning: every slot below `commit` is chosen.
    Decide(Decide),
    /// Rejection: the receiver has promised a higher ballot.
    Nack(Nack),
    /// A follower hands proposals to the leader it knows of.
    Forward(Forward),
    /// A learner asks for chosen values it missed.
    CatchUp(CatchUp),
    /// Chosen values, in answer to [`Message::CatchUp`].
    CatchUpReply(CatchUpReply),
    /// Before phase 1: "would you join an election now?" Changes nothing at the receiver.
    PreVote(PreVote),
    /// The answer to [`Message::PreVote`].
    PreVoteReply(PreVoteReply),
    /// In answer to [`Message::CatchUp`] from below the sender's compaction point: "those
    /// slots are gone from my log; fetch my snapshot instead".
    SnapshotOffer(SnapshotOffer),
    /// Snapshot transfer: "send me your snapshot's bytes from `offset` on". Carried for
    /// the node driver, which moves snapshot bytes; [`Replica`](crate::Replica) ignores it.
    SnapshotRequest(SnapshotRequest),
    /// Snapshot transfer: one chunk of the sender's latest snapshot, in answer to a
    /// [`Message::SnapshotRequest`]. Also the driver's; the `Replica` ignores it.
    SnapshotChunk(SnapshotChunk),
}

impl Message {
    /// Every kind's short name, indexed by [`Message::kind_index`].
    pub const KINDS: [&'static str; 14] = [
        "prepare",
        "promise",
        "accept",
        "accepted",
        "decide",
        "nack",
        "forward",
        "catch_up",
        "catch_up_reply",
        "pre_vote",
        "pre_vote_reply",
        "snapshot_offer",
        "snapshot_request",
        "snapshot_chunk",
    ];

    /// Short name of the message kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// True unless the message is one no correct replica sends: a proposer ballot that
    /// is the reserved [`Ballot::CHOSEN`], or a run of slots whose numbers overflow. The
    /// core drops a malformed message on receipt, so the arithmetic after it never
    /// overflows on peer-supplied numbers.
    pub fn is_well_formed(&self) -> bool {
        let run = |first: Slot, len: usize| first.checked_add(len as u64).is_some();
        match self {
            Self::Prepare(m) => m.ballot.is_proposer_ballot(),
            Self::Promise(m) => m.ballot.is_proposer_ballot(),
            Self::Accept(m) => m.ballot.is_proposer_ballot() && run(m.first, m.values.len()),
            Self::Accepted(m) => {
                m.ballot.is_proposer_ballot() && m.first.checked_add(m.count).is_some()
            }
            Self::Decide(m) => m.ballot.is_proposer_ballot(),
            Self::Nack(m) => m.ballot.is_proposer_ballot() && m.promised.is_proposer_ballot(),
            Self::Forward(_) | Self::CatchUp(_) => true,
            Self::CatchUpReply(m) => run(m.first, m.values.len()),
            Self::PreVote(m) => m.ballot.is_proposer_ballot(),
            Self::PreVoteReply(m) => {
                m.ballot.is_proposer_ballot() && m.promised.is_proposer_ballot()
            }
            Self::SnapshotOffer(m) => m.upto <= m.commit,
            Self::SnapshotRequest(_) => true,
            Self::SnapshotChunk(m) => m
                .offset
                .checked_add(m.bytes.len() as u64)
                .is_some_and(|end| end <= m.total),
        }
    }

    /// Position of this message's kind in [`Message::KINDS`], for per-kind counters.
    pub fn kind_index(&self) -> usize {
        match self {
            Self::Prepare(_) => 0,
            Self::Promise(_) => 1,
            Self::Accept(_) => 2,
            Self::Accepted(_) => 3,
            Self::Decide(_) => 4,
            Self::Nack(_) => 5,
            Self::Forward(_) => 6,
            Self::CatchUp(_) => 7,
            Self::CatchUpReply(_) => 8,
            Self::PreVote(_) => 9,
            Self::PreVoteReply(_) => 10,
            Self::SnapshotOffer(_) => 11,
            Self::SnapshotRequest(_) => 12,
            Self::SnapshotChunk(_) => 13,
        }
    }
}

/// Phase 1a, run once by a new leader for all slots from `from` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The ballot the proposer wants promised.
    pub ballot: Ballot,
    /// First slot the proposer does not know to be chosen. The acceptor reports what it
    /// accepted from here on.
    pub from: Slot,
}

/// Phase 1b. The promise covers every slot; the report of accepted values is paginated so
/// that no message exceeds the configured bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// The promised ballot (equal to the Prepare's).
    pub ballot: Ballot,
    /// The `from` of the Prepare this answers.
    pub from: Slot,
    /// Values accepted for slots `>= from`, each with the ballot it was accepted at, in
    /// slot order.
    pub accepted: Vec<Entry>,
    /// `Some(slot)` when the report was cut short: ask again from `slot`.
    pub next: Option<Slot>,
    /// The acceptor's own commit point (every slot below it is chosen).
    pub commit: Slot,
}

/// Phase 2a: values for the contiguous slots `first..first + values.len()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The leader's ballot.
    pub ballot: Ballot,
    /// Slot of `values[0]`.
    pub first: Slot,
    /// Values to accept. Empty for a heartbeat.
    pub values: Vec<Value>,
    /// The leader's commit point: every slot below it is chosen.
    pub commit: Slot,
    /// The leader's clock when it sent this, echoed back in [`Accepted::stamp`]. The
    /// leader counts its lease from here: from the send, never from the reply.
    pub stamp: Instant,
}

/// Phase 2b: the acceptor durably accepted slots `first..first + count` at `ballot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The ballot accepted at.
    pub ballot: Ballot,
    /// First slot accepted.
    pub first: Slot,
    /// Number of slots accepted.
    pub count: u64,
    /// The [`Accept::stamp`] this answers: the acceptor granted the leader a lease from
    /// when it received that Accept.
    pub stamp: Instant,
}

/// Every slot below `commit` is chosen. An acceptor that accepted a slot at `ballot` knows
/// its own value for that slot is the chosen one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decide {
    /// The leader's ballot.
    pub ballot: Ballot,
    /// The leader's commit point.
    pub commit: Slot,
}

/// The receiver refused `ballot`: it promised `promised`, which is higher, or it holds a
/// lease granted to `promised`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The refused ballot.
    pub ballot: Ballot,
    /// The ballot the sender promised (or, when `leased`, granted a lease to).
    pub promised: Ballot,
    /// The refusal is because the sender granted a lease to another leader that has not
    /// yet expired: back off rather than raise the ballot.
    pub leased: bool,
}

/// Proposals forwarded from a follower to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// The commands, in the order they were proposed.
    pub commands: Vec<Command>,
}

/// A learner asks for the chosen values from `from` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUp {
    /// First slot the learner is missing.
    pub from: Slot,
}

/// Chosen values for `first..first + values.len()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpReply {
    /// Slot of `values[0]`.
    pub first: Slot,
    /// The chosen values, each with the ballot the sender holds it at.
    pub values: Vec<(Ballot, Value)>,
    /// The sender's commit point.
    pub commit: Slot,
}

/// The sender compacted its log below `upto`: every slot below it is chosen and applied
/// there, and is in its latest snapshot, not in its log. A learner missing slots below
/// `upto` fetches that snapshot ([`Ready::fetch_snapshot`](crate::Ready::fetch_snapshot)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOffer {
    /// The sender's compaction point: its snapshot covers every slot below it.
    pub upto: Slot,
    /// The sender's commit point (at least `upto`).
    pub commit: Slot,
}

/// Asks a peer for its latest snapshot's bytes from `offset` on (snapshot transfer, which
/// the node driver runs; see `paxos_core::compaction`). The answer is one
/// [`SnapshotChunk`]: the receiver keeps one request in flight, so memory is bounded on
/// both sides whatever the snapshot's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The snapshot being fetched, by its `upto`; `Slot(0)` for "your latest". A sender
    /// whose latest snapshot has another `upto` answers from offset 0 of its latest.
    pub upto: Slot,
    /// First byte wanted: how much the asker already holds (so a transfer resumes after a
    /// reconnect, or from another peer holding the same snapshot).
    pub offset: u64,
}

/// One chunk of the sender's latest snapshot: bytes `offset..offset + bytes.len()` of
/// `total`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The snapshot's `upto` (it covers every slot below it).
    pub upto: Slot,
    /// The snapshot's whole length in bytes.
    pub total: u64,
    /// Where `bytes` start in the snapshot.
    pub offset: u64,
    /// crc32c of `bytes`: a chunk that fails it is dropped and asked for again.
    pub crc: u32,
    /// The bytes; empty when the sender has no snapshot (then `total` is 0).
    pub bytes: bytes::Bytes,
}

/// Pre-vote, asked before phase 1 so that a replica that cannot win never raises any
/// acceptor's promise (its own included), and so never deposes a healthy leader when it
/// comes back from a partition. See the election rules in `election.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    /// The ballot the asker would use.
    pub ballot: Ballot,
    /// Identifies this round of pre-voting among the asker's rounds (a retry may reuse the
    /// ballot): only replies to this round count, never a late grant from an older one.
    pub round: u64,
    /// The asker's commit point: a voter refuses an asker that knows less of the chosen
    /// log than it does, so the replica that leads next has the chosen prefix.
    pub commit: Slot,
}

/// The answer to a [`PreVote`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteReply {
    /// The [`PreVote::ballot`] this answers.
    pub ballot: Ballot,
    /// The [`PreVote::round`] this answers.
    pub round: u64,
    /// The voter would join: it heard from no leader for an election timeout, holds no
    /// lease for another ballot, and the asker's commit point is at least its own.
    pub granted: bool,
    /// The voter's promised ballot, so the asker's Prepare can beat it.
    pub promised: Ballot,
    /// The voter's commit point; an asker refused for being behind catches up from here.
    pub commit: Slot,
}

/// A message with its destination, as found in a [`Ready`](crate::Ready).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The replica to deliver to.
    pub to: NodeId,
    /// The message.
    pub message: Message,
}
