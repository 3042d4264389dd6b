//! The [`Transport`] trait: how replicas reach each other.

use async_trait::async_trait;

use crate::message::{Envelope, Message};
use crate::types::NodeId;

/// Why the transport cannot deliver inbound messages any more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport was shut down.
    #[error("transport is closed")]
    Closed,
    /// The transport failed in a way it cannot recover from (e.g. the listener died).
    #[error("transport failed: {0}")]
    Failed(String),
}

/// A message received from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The authenticated sender (from the connection handshake, not from the message).
    pub from: NodeId,
    /// The message.
    pub message: Message,
}

/// Moves messages between replicas.
///
/// # To ensure correctness
///
/// * **Fire and forget.** [`send`](Self::send) never blocks and never waits for a slow
///   peer. Each peer has a bounded outbound queue; when it is full, messages are dropped.
///   This is safe: the protocol tolerates loss and retransmits on timers. It is not safe to
///   block the driver, because that stops heartbeats to every other peer.
/// * **No invention.** A message is delivered at most as sent (it may be lost, duplicated
///   or reordered, never altered), and [`Inbound::from`] names the peer that really sent it.
///   Frames that fail to decode close the connection; they are never passed on.
/// * **Bounded.** Frame sizes and queue lengths are bounded; garbage from the network
///   produces an error and a closed connection, never a panic.
/// * **Cancel safety.** The driver polls [`recv`](Self::recv) inside a `select`; dropping
///   the future before it completes must not lose a message.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Queues a batch of messages for delivery. Never blocks.
    fn send(&self, batch: Vec<Envelope>);

    /// Waits until at least one message has arrived, then moves up to `max` of them into
    /// `out`. Cancel-safe.
    async fn recv(&mut self, out: &mut Vec<Inbound>, max: usize) -> Result<(), TransportError>;

    /// The largest frame this transport carries, length prefix excluded: a message whose
    /// encoding is larger is dropped by [`send`](Self::send), never delivered. The node
    /// checks the core's message byte bound against it when it is built, so the core never
    /// produces such a message.
    fn max_frame_bytes(&self) -> usize {
        crate::codec::DEFAULT_MAX_FRAME_BYTES
    }

    /// The node this transport speaks for (the id it announces to its peers), if it has
    /// one. The node refuses to start with a transport whose id differs from its own.
    /// `None` (the default) means the transport cannot tell, and nothing is checked.
    fn local_node(&self) -> Option<NodeId> {
        None
    }

    /// Whether the transport knows how to reach `peer`, if it can tell. The node refuses
    /// to start when a member of its cluster is unreachable by construction
    /// (`Some(false)`): every message to it would be dropped. `None` (the default) means
    /// the transport cannot tell, and nothing is checked.
    fn knows_peer(&self, peer: NodeId) -> Option<bool> {
        let _ = peer;
        None
    }
}
