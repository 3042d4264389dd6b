//! The stream header: one [`Hello`] frame at the start of every stream, and the traffic
//! classes ([`StreamClass`]) that streams are opened for.
//!
//! The dialer opens one unidirectional stream per traffic class and writes a `Hello` as its
//! first frame: magic, version, cluster id, its own id (`from`), the id it dialled (`to`),
//! and the stream's class. The acceptor reads it before any message on that stream and
//! checks magic, version, cluster and addressee ([`Hello::check`]), that `from` is a
//! configured peer, and that the dialer's TLS certificate names `from`
//! ([`paxos_tls::verify_peer_node`]). Every stream of one connection must name the same
//! `from`, and a class at most once. Nothing is answered: TLS already told the dialer
//! whom it reached (it dialled with server name `node-<to>.paxos`), and a refusal arrives
//! as the connection's close with one of the [`error_code`](crate::error_code)s.
//!
//! On the wire a `Hello` is an ordinary core codec frame ([`paxos_core::codec`]):
//! `len: u32 LE | WIRE_VERSION: u8 | postcard(Hello)`, at most [`HELLO_MAX_BYTES`] long.

use paxos_core::message::Message;
use paxos_core::{NodeId, message};
use serde::{Deserialize, Serialize};

/// First field of every [`Hello`]: ASCII `PXQC` ("Paxos QUIC").
pub const MAGIC: [u8; 4] = *b"PXQC";

/// The stream header version this build speaks (independent of the codec's wire version).
pub const HELLO_VERSION: u8 = 1;

/// Bound on a `Hello` frame, length prefix excluded: 4 + 1 + 3 * 10 bytes of postcard at
/// most, one for the class, plus the codec's version byte.
pub const HELLO_MAX_BYTES: usize = 64;

/// A traffic class: each has its own stream per connection, its own outbound queue and
/// writer per peer, and its own QUIC send priority, so a backlog in one never delays
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StreamClass {
    /// Small, latency-critical messages: Prepare, an empty Promise, Nack, PreVote,
    /// PreVoteReply, Decide, Accepted, CatchUp, SnapshotOffer, SnapshotRequest, and the
    /// heartbeat (an Accept with no values). Highest send priority.
    Control,
    /// Messages that carry values: Accept with values, a Promise reporting accepted
    /// values, CatchUpReply, Forward.
    Bulk,
    /// Snapshot transfer: [`SnapshotChunk`](paxos_core::message::SnapshotChunk)s, each
    /// up to a few hundred KiB, on a stream of their own with the lowest send priority, so
    /// a large snapshot moving never holds up a heartbeat or an Accept behind it.
    Snapshot,
}

impl StreamClass {
    /// The classes that get a stream and a queue, in stream-opening order.
    pub const ACTIVE: [Self; 3] = [Self::Control, Self::Bulk, Self::Snapshot];

    /// Every class an acceptor admits on one connection (each at most once).
    pub const ALL: [Self; 3] = [Self::Control, Self::Bulk, Self::Snapshot];

    /// The class `message` travels in.
    pub fn of(message: &Message) -> Self {
        match message {
            Message::Accept(message::Accept { values, .. }) if values.is_empty() => Self::Control,
            Message::Promise(message::Promise { accepted, .. }) if accepted.is_empty() => {
                Self::Control
            }
            Message::Prepare(_)
            | Message::Accepted(_)
            | Message::Decide(_)
            | Message::Nack(_)
            | Message::CatchUp(_)
            | Message::PreVote(_)
            | Message::PreVoteReply(_)
            | Message::SnapshotOffer(_)
            | Message::SnapshotRequest(_) => Self::Control,
            Message::SnapshotChunk(_) => Self::Snapshot,
            // Values, and any kind added later until it is classified: bulk is the safe
            // default, since only bulk may be large.
            _ => Self::Bulk,
        }
    }

    /// Index into per-class arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Control => 0,
            Self::Bulk => 1,
            Self::Snapshot => 2,
        }
    }

    /// QUIC send priority of the class's stream: higher is sent first.
    pub(crate) fn priority(self) -> i32 {
        match self {
            Self::Control => 2,
            Self::Bulk => 1,
            Self::Snapshot => 0,
        }
    }

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Bulk => "bulk",
            Self::Snapshot => "snapshot",
        }
    }
}

/// The stream header. Fields are postcard-encoded in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`HELLO_VERSION`].
    pub version: u8,
    /// The sender's [`QuicConfig::cluster_id`](crate::QuicConfig::cluster_id).
    pub cluster_id: u64,
    /// The sender; its certificate must name it.
    pub from: NodeId,
    /// The node the sender dialled.
    pub to: NodeId,
    /// What the stream carries.
    pub class: StreamClass,
}

/// Why a [`Hello`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// Not this protocol.
    #[error("bad magic {0:02x?}")]
    Magic([u8; 4]),
    /// A header version this build does not speak.
    #[error("unsupported hello version {0} (this build speaks {HELLO_VERSION})")]
    Version(u8),
    /// The peer belongs to another cluster.
    #[error("peer is in cluster {theirs}, this node is in cluster {ours}")]
    Cluster {
        /// This node's cluster.
        ours: u64,
        /// The peer's cluster.
        theirs: u64,
    },
    /// The peer dialled another node.
    #[error("peer addressed {to}, this node is {me}")]
    NotMe {
        /// Whom the peer addressed.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The sender is not a configured peer, or not the one that opened the connection's
    /// first stream.
    #[error("unexpected peer {0}")]
    UnexpectedPeer(NodeId),
    /// A second stream of a class on one connection.
    #[error("second {0} stream on one connection")]
    DuplicateClass(&'static str),
}

impl Hello {
    /// A header for a `class` stream from `from` to `to` in cluster `cluster_id`.
    pub fn new(cluster_id: u64, from: NodeId, to: NodeId, class: StreamClass) -> Self {
        Self {
            magic: MAGIC,
            version: HELLO_VERSION,
            cluster_id,
            from,
            to,
            class,
        }
    }

    /// Checks magic, version, cluster, and that the header is addressed to `me`. Which
    /// senders are acceptable is the caller's check.
    pub fn check(&self, cluster_id: u64, me: NodeId) -> Result<(), HelloError> {
        if self.magic != MAGIC {
            return Err(HelloError::Magic(self.magic));
        }
        if self.version != HELLO_VERSION {
            return Err(HelloError::Version(self.version));
        }
        if self.cluster_id != cluster_id {
            return Err(HelloError::Cluster {
                ours: cluster_id,
                theirs: self.cluster_id,
            });
        }
        if self.to != me {
            return Err(HelloError::NotMe { to: self.to, me });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use paxos_core::codec::{decode_frame, encode_frame};
    use paxos_core::message::{Accept, Decide};
    use paxos_core::{Ballot, Slot, Value};

    use super::*;

    #[test]
    fn the_largest_hello_fits_its_bound() {
        let max = NodeId(u64::MAX);
        let hello = Hello::new(u64::MAX, max, max, StreamClass::Snapshot);
        let mut buf = BytesMut::new();
        encode_frame(&hello, &mut buf, HELLO_MAX_BYTES).unwrap();
        let decoded = decode_frame::<Hello>(&buf, HELLO_MAX_BYTES).unwrap();
        assert_eq!(decoded, Some((hello, buf.len())));
    }

    #[test]
    fn check_refuses_each_field() {
        let me = NodeId(2);
        let ok = Hello::new(7, NodeId(1), me, StreamClass::Control);
        assert_eq!(ok.check(7, me), Ok(()));
        let mut bad = ok.clone();
        bad.magic = *b"PXTC";
        assert_eq!(bad.check(7, me), Err(HelloError::Magic(*b"PXTC")));
        let mut bad = ok.clone();
        bad.version = 9;
        assert_eq!(bad.check(7, me), Err(HelloError::Version(9)));
        assert_eq!(
            ok.check(8, me),
            Err(HelloError::Cluster { ours: 8, theirs: 7 })
        );
        assert_eq!(
            ok.check(7, NodeId(3)),
            Err(HelloError::NotMe {
                to: me,
                me: NodeId(3)
            })
        );
    }

    #[test]
    fn heartbeats_are_control_and_values_are_bulk() {
        let ballot = Ballot::new(1, NodeId(1));
        let accept = |values: Vec<Value>| {
            Message::Accept(Accept {
                ballot,
                first: Slot(1),
                values,
                commit: Slot(0),
                stamp: Default::default(),
            })
        };
        assert_eq!(StreamClass::of(&accept(vec![])), StreamClass::Control);
        assert_eq!(
            StreamClass::of(&accept(vec![Value::Noop])),
            StreamClass::Bulk
        );
        let decide = Message::Decide(Decide {
            ballot,
            commit: Slot(3),
        });
        assert_eq!(StreamClass::of(&decide), StreamClass::Control);
    }
}
