//! The connection handshake: one [`Hello`] frame each way before any message.
//!
//! The dialer sends a `Hello` naming itself (`from`) and the node it meant to reach (`to`).
//! The acceptor checks magic, version, cluster and both ids; if all match it answers with
//! its own `Hello` (`from` and `to` swapped) and starts reading messages. Otherwise it
//! closes the connection without answering and logs why (rate-limited). The dialer checks
//! the answer the same way, so a node listening at a stale address is noticed on both sides.
//!
//! On the wire a `Hello` is an ordinary frame of the core codec
//! ([`paxos_core::codec`]): `len: u32 LE | WIRE_VERSION: u8 | postcard(Hello)`, at most
//! [`HELLO_MAX_BYTES`] long, so garbage that happens to start with a large length is
//! refused after four bytes.

use paxos_core::NodeId;
use serde::{Deserialize, Serialize};

/// First field of every [`Hello`]: ASCII `PXTC` ("Paxos TCP").
pub const MAGIC: [u8; 4] = *b"PXTC";

/// The handshake version this build speaks (independent of the codec's wire version).
pub const HANDSHAKE_VERSION: u8 = 1;

/// Bound on a `Hello` frame, length prefix excluded. An encoded `Hello` takes at most
/// 4 + 1 + 3 * 10 bytes of postcard plus the codec's version byte.
pub const HELLO_MAX_BYTES: usize = 64;

/// The handshake frame. Fields are postcard-encoded in declaration order (the magic as 4 raw
/// bytes, the version as 1 raw byte, the integers as varints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`HANDSHAKE_VERSION`].
    pub version: u8,
    /// The sender's [`TcpConfig::cluster_id`](crate::TcpConfig::cluster_id).
    pub cluster_id: u64,
    /// The sender.
    pub from: NodeId,
    /// The node the sender means to talk to.
    pub to: NodeId,
}

/// Why a [`Hello`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The magic bytes are wrong: not this protocol.
    #[error("bad magic {0:02x?}")]
    Magic([u8; 4]),
    /// A handshake version this build does not speak.
    #[error("unsupported handshake version {0} (this build speaks {HANDSHAKE_VERSION})")]
    Version(u8),
    /// The peer belongs to another cluster.
    #[error("peer is in cluster {theirs}, this node is in cluster {ours}")]
    Cluster {
        /// This node's cluster.
        ours: u64,
        /// The peer's cluster.
        theirs: u64,
    },
    /// The peer meant to reach another node.
    #[error("peer addressed {to}, this node is {me}")]
    NotMe {
        /// Whom the peer addressed.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The peer is not the node expected (dialer side), or not a configured peer
    /// (acceptor side).
    #[error("unexpected peer {0}")]
    UnexpectedPeer(NodeId),
}

impl Hello {
    /// A `Hello` from `from` to `to` in cluster `cluster_id`.
    pub fn new(cluster_id: u64, from: NodeId, to: NodeId) -> Self {
        Self {
            magic: MAGIC,
            version: HANDSHAKE_VERSION,
            cluster_id,
            from,
            to,
        }
    }

    /// Checks magic, version, cluster, and that the hello is addressed to `me`.
    /// Which senders are acceptable is the caller's check.
    pub fn check(&self, cluster_id: u64, me: NodeId) -> Result<(), HandshakeError> {
        if self.magic != MAGIC {
            return Err(HandshakeError::Magic(self.magic));
        }
        if self.version != HANDSHAKE_VERSION {
            return Err(HandshakeError::Version(self.version));
        }
        if self.cluster_id != cluster_id {
            return Err(HandshakeError::Cluster {
                ours: cluster_id,
                theirs: self.cluster_id,
            });
        }
        if self.to != me {
            return Err(HandshakeError::NotMe { to: self.to, me });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use paxos_core::codec::{decode_frame, encode_frame};

    #[test]
    fn largest_hello_fits_the_bound() {
        let hello = Hello::new(u64::MAX, NodeId(u64::MAX), NodeId(u64::MAX));
        let mut buf = BytesMut::new();
        encode_frame(&hello, &mut buf, HELLO_MAX_BYTES).unwrap();
        let (back, used): (Hello, usize) = decode_frame(&buf, HELLO_MAX_BYTES).unwrap().unwrap();
        assert_eq!((back, used), (hello, buf.len()));
    }

    #[test]
    fn check_table() {
        let me = NodeId(2);
        let ok = Hello::new(9, NodeId(1), me);
        assert_eq!(ok.check(9, me), Ok(()));
        let mut h = ok.clone();
        h.magic = *b"HTTP";
        assert_eq!(h.check(9, me), Err(HandshakeError::Magic(*b"HTTP")));
        let mut h = ok.clone();
        h.version = 2;
        assert_eq!(h.check(9, me), Err(HandshakeError::Version(2)));
        assert_eq!(
            ok.check(8, me),
            Err(HandshakeError::Cluster { ours: 8, theirs: 9 })
        );
        assert_eq!(
            ok.check(9, NodeId(3)),
            Err(HandshakeError::NotMe {
                to: me,
                me: NodeId(3)
            })
        );
    }
}
