//! [`TcpConfig`] and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use paxos_core::NodeId;
use paxos_core::codec::DEFAULT_MAX_FRAME_BYTES;

use crate::handshake::HELLO_MAX_BYTES;

/// Default of [`TcpConfig::max_outbound_queue_bytes`] and
/// [`TcpConfig::max_inbound_queue_bytes`]: 64 MiB, four default frames.
const DEFAULT_MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Settings for one [`TcpTransport`](crate::TcpTransport). Build with [`TcpConfig::new`],
/// adjust fields, then [`TcpTransport::start`](crate::TcpTransport::start) validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Identifies the cluster. A peer whose handshake names another cluster is refused.
    /// This catches misconfiguration (a node pointed at the wrong cluster); it is not
    /// authentication.
    pub cluster_id: u64,
    /// This node's id, announced in every handshake.
    pub node_id: NodeId,
    /// Where to listen for inbound connections (port 0 picks a free port; see
    /// [`TcpTransport::local_addr`](crate::TcpTransport::local_addr)).
    pub listen: SocketAddr,
    /// The peers to send to, and the only ids accepted from inbound handshakes. An entry
    /// for `node_id` itself is ignored, so every node may be given the same map.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Bound on one frame, length prefix excluded. Larger outbound messages are dropped
    /// (counted); an inbound frame declaring more closes its connection.
    pub max_frame_bytes: usize,
    /// Messages queued for one peer. [`send`](paxos_core::Transport::send) drops what does
    /// not fit (counted).
    pub max_outbound_queue: usize,
    /// Bytes (encoded frames) queued for one peer. A message that would take the queue
    /// past it is dropped like one that finds the queue full, except that a message is
    /// always admitted to an empty queue, so one larger than the bound still goes out
    /// (alone). The writer's current batch is not counted: per peer, at most this plus one
    /// frame plus one write batch is held.
    pub max_outbound_queue_bytes: usize,
    /// Messages received but not yet taken by [`recv`](paxos_core::Transport::recv). When
    /// full, reader tasks stop reading, and TCP flow control pushes back on the senders.
    pub max_inbound_queue: usize,
    /// Bytes (as framed on the wire) received but not yet taken by
    /// [`recv`](paxos_core::Transport::recv), over all peers. Like
    /// [`max_inbound_queue`](Self::max_inbound_queue), a full queue stops the readers
    /// (nothing is dropped); a message is always admitted to an empty queue. Each reader
    /// may hold one more decoded message while it waits.
    pub max_inbound_queue_bytes: usize,
    /// Bytes encoded into one write before it is issued (one frame may exceed it).
    pub max_write_batch_bytes: usize,
    /// Inbound connections open at once, including those still in the handshake. More are
    /// closed on accept.
    pub max_inbound_connections: usize,
    /// First delay before reconnecting to a peer; doubles per failed attempt.
    pub reconnect_backoff_min: Duration,
    /// Cap on the reconnect delay. Each delay is jittered down to half its value.
    pub reconnect_backoff_max: Duration,
    /// Bound on connect plus handshake, in both directions.
    pub handshake_timeout: Duration,
    /// Bound on one batched write. A peer that accepts no bytes for this long is
    /// disconnected (its queue keeps filling and dropping meanwhile).
    pub write_timeout: Duration,
    /// At most one warning per peer (or remote IP address, for inbound connections not yet
    /// identified) per interval; the rest are counted and reported with the next one.
    pub warn_interval: Duration,
    /// Mutual TLS (feature `tls`): `None` (the default) speaks plain TCP. With an identity,
    /// every connection runs a TLS 1.3 handshake before the [`Hello`](crate::Hello), both
    /// sides present certificates from the cluster CA, and each side checks that the other's
    /// certificate names the node id it claims (see the [crate docs](crate#mutual-tls)). A
    /// TLS node and a plain node refuse each other. Set with [`with_tls`](Self::with_tls).
    #[cfg(feature = "tls")]
    pub tls: Option<paxos_tls::TlsIdentity>,
}

/// Why a [`TcpConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is outside its valid range, or two fields contradict each other.
    #[error("invalid TCP transport config: {0}")]
    Invalid(String),
}

impl TcpConfig {
    /// A config with defaults suited to a LAN cluster: 16 MiB frames; per peer, 1024 queued
    /// messages and 64 MiB queued outbound; 4096 messages and 64 MiB queued inbound;
    /// reconnect backoff 50 ms to 2 s.
    pub fn new(
        cluster_id: u64,
        node_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        Self {
            cluster_id,
            node_id,
            listen,
            peers,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_outbound_queue: 1024,
            max_outbound_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_inbound_queue: 4096,
            max_inbound_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_write_batch_bytes: 256 * 1024,
            max_inbound_connections: 256,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            warn_interval: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// This config with mutual TLS on, as `identity` (feature `tls`): sets
    /// [`tls`](Self::tls). The identity's certificate must name
    /// [`node_id`](Self::node_id), or [`TcpTransport::start`](crate::TcpTransport::start)
    /// refuses with [`StartError::Tls`](crate::StartError::Tls).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, identity: paxos_tls::TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Checks every bound and timing relation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_frame_bytes < HELLO_MAX_BYTES || self.max_frame_bytes > u32::MAX as usize {
            return bad(format!(
                "max_frame_bytes must be in {HELLO_MAX_BYTES}..={}, got {}",
                u32::MAX,
                self.max_frame_bytes
            ));
        }
        if self.max_outbound_queue == 0
            || self.max_outbound_queue_bytes == 0
            || self.max_inbound_queue == 0
            || self.max_inbound_queue_bytes == 0
            || self.max_write_batch_bytes == 0
            || self.max_inbound_connections == 0
        {
            return bad("every max_* bound must be at least 1".into());
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return bad(format!(
                "need 0 < reconnect_backoff_min ({:?}) <= reconnect_backoff_max ({:?})",
                self.reconnect_backoff_min, self.reconnect_backoff_max
            ));
        }
        if self.handshake_timeout.is_zero() || self.write_timeout.is_zero() {
            return bad("handshake_timeout and write_timeout must be non-zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TcpConfig {
        TcpConfig::new(
            7,
            NodeId(1),
            "127.0.0.1:0".parse().unwrap(),
            BTreeMap::new(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn refuses_each_bad_bound() {
        let cases: Vec<fn(&mut TcpConfig)> = vec![
            |c| c.max_frame_bytes = 1,
            |c| c.max_frame_bytes = u32::MAX as usize + 1,
            |c| c.max_outbound_queue = 0,
            |c| c.max_outbound_queue_bytes = 0,
            |c| c.max_inbound_queue = 0,
            |c| c.max_inbound_queue_bytes = 0,
            |c| c.max_write_batch_bytes = 0,
            |c| c.max_inbound_connections = 0,
            |c| c.reconnect_backoff_min = Duration::ZERO,
            |c| c.reconnect_backoff_min = c.reconnect_backoff_max * 2,
            |c| c.handshake_timeout = Duration::ZERO,
            |c| c.write_timeout = Duration::ZERO,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let mut c = config();
            case(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted: {c:?}");
        }
    }
}
