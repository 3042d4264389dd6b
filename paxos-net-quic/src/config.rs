//! [`QuicConfig`] and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use paxos_core::NodeId;
use paxos_core::codec::DEFAULT_MAX_FRAME_BYTES;
use paxos_tls::TlsIdentity;

use crate::hello::HELLO_MAX_BYTES;

/// Default of the queue byte bounds: 64 MiB, four default frames (as for TCP).
const DEFAULT_MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Largest idle timeout QUIC can announce: 2^62 - 1 milliseconds, far beyond any use;
/// the bound enforced is a day, which is already useless as a failure detector.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Settings for one [`QuicTransport`](crate::QuicTransport). Build with [`QuicConfig::new`],
/// adjust fields, then [`QuicTransport::start`](crate::QuicTransport::start) validates it.
///
/// The bounds and timings that TCP also has keep the names and defaults of
/// `paxos_net_tcp::TcpConfig`. `Debug` never prints the private key ([`TlsIdentity`]'s
/// own `Debug` leaves it out).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicConfig {
    /// Identifies the cluster. A peer whose [`Hello`](crate::Hello) names another cluster
    /// is refused. With mutual TLS from one cluster CA this mostly catches two clusters
    /// sharing a CA by mistake.
    pub cluster_id: u64,
    /// This node's id: its certificate must name it (`node-<id>.paxos`).
    pub node_id: NodeId,
    /// The UDP address to bind (port 0 picks a free port; see
    /// [`QuicTransport::local_addr`](crate::QuicTransport::local_addr)). Ignored by
    /// [`QuicTransport::start_on`](crate::QuicTransport::start_on).
    pub listen: SocketAddr,
    /// The peers to dial, and the only ids admitted from inbound streams. An entry for
    /// `node_id` itself is ignored, so every node may be given the same map.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The cluster CA, this node's certificate chain and key.
    pub identity: TlsIdentity,
    /// Bound on one frame, length prefix excluded. Larger outbound messages are dropped
    /// (counted); an inbound frame declaring more closes its connection.
    pub max_frame_bytes: usize,
    /// Messages queued for one peer, in each traffic class
    /// ([`StreamClass`](crate::StreamClass)). [`send`](paxos_core::Transport::send) drops
    /// what does not fit (counted).
    pub max_outbound_queue: usize,
    /// Bytes (encoded frames) queued for one peer, in each traffic class. A message is
    /// always admitted to an empty queue, so one larger than the bound still goes out
    /// (alone). The writer's current batch is not counted.
    pub max_outbound_queue_bytes: usize,
    /// Messages received but not yet taken by [`recv`](paxos_core::Transport::recv), over
    /// all peers and classes. When full, stream readers stop reading and QUIC flow control
    /// pushes back on the senders.
    pub max_inbound_queue: usize,
    /// Bytes (as framed) received but not yet taken by
    /// [`recv`](paxos_core::Transport::recv). A full queue stops the readers like
    /// [`max_inbound_queue`](Self::max_inbound_queue); a message is always admitted to an
    /// empty queue.
    pub max_inbound_queue_bytes: usize,
    /// Bytes taken from one class queue into one stream write (one frame may exceed it).
    pub max_write_batch_bytes: usize,
    /// Inbound connections open at once, including those in the handshake. More are
    /// refused.
    pub max_inbound_connections: usize,
    /// First delay before redialling a peer; doubles per failed attempt.
    pub reconnect_backoff_min: Duration,
    /// Cap on the redial delay. Each delay is jittered down to half its value.
    pub reconnect_backoff_max: Duration,
    /// Bound on the QUIC/TLS handshake, and on an inbound stream's [`Hello`](crate::Hello).
    pub handshake_timeout: Duration,
    /// Bound on one batched stream write. A peer whose flow control admits nothing for
    /// this long is disconnected (its queues keep filling and dropping meanwhile).
    pub write_timeout: Duration,
    /// A connection that hears nothing from its peer for this long is closed (QUIC's
    /// `max_idle_timeout`; the smaller of the two sides' values applies).
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive (PING) frames on an otherwise quiet connection, so an
    /// idle but live peer is never timed out and a dead one is noticed within
    /// [`idle_timeout`](Self::idle_timeout). Must be shorter than it.
    pub keep_alive_interval: Duration,
    /// The round-trip time QUIC assumes before it has measured one: it paces handshake
    /// retransmissions and the drain of a connection closed before its first RTT sample
    /// (which [`close`](crate::QuicTransport::close) waits for). quinn's default, RFC
    /// 9002's 333 ms, suits unknown Internet paths; a cluster's links are known to be
    /// shorter.
    pub initial_rtt: Duration,
    /// At most one warning per peer (or remote IP address, before the peer is identified)
    /// per interval; the rest are counted and reported with the next one.
    pub warn_interval: Duration,
}

/// Why a [`QuicConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is outside its valid range, or two fields contradict each other.
    #[error("invalid QUIC transport config: {0}")]
    Invalid(String),
}

impl QuicConfig {
    /// A config with defaults suited to a LAN cluster, the same as TCP's where TCP has the
    /// setting: 16 MiB frames; per peer and class, 1024 queued messages and 64 MiB queued
    /// outbound; 4096 messages and 64 MiB queued inbound; reconnect backoff 50 ms to 2 s;
    /// 5 s handshake, 10 s write timeout. QUIC only: 10 s idle timeout, keep-alive every
    /// 2 s, 100 ms initial RTT estimate.
    pub fn new(
        cluster_id: u64,
        node_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        identity: TlsIdentity,
    ) -> Self {
        Self {
            cluster_id,
            node_id,
            listen,
            peers,
            identity,
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
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            initial_rtt: Duration::from_millis(100),
            warn_interval: Duration::from_secs(10),
        }
    }

    /// Checks every bound and timing relation. The identity is checked by
    /// [`QuicTransport::start`](crate::QuicTransport::start) (its certificate must name
    /// [`node_id`](Self::node_id)).
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
        if self.idle_timeout.is_zero() || self.idle_timeout > MAX_IDLE_TIMEOUT {
            return bad(format!(
                "idle_timeout must be in (0, {MAX_IDLE_TIMEOUT:?}], got {:?}",
                self.idle_timeout
            ));
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.idle_timeout {
            return bad(format!(
                "need 0 < keep_alive_interval ({:?}) < idle_timeout ({:?})",
                self.keep_alive_interval, self.idle_timeout
            ));
        }
        if self.initial_rtt.is_zero() || self.initial_rtt > self.handshake_timeout {
            return bad(format!(
                "need 0 < initial_rtt ({:?}) <= handshake_timeout ({:?})",
                self.initial_rtt, self.handshake_timeout
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use paxos_tls::dev::DevCa;

    use super::*;

    fn config() -> QuicConfig {
        let ca = DevCa::generate("config test").unwrap();
        let identity = ca.issue(NodeId(1)).unwrap().identity(&ca.ca_pem()).unwrap();
        let listen = "127.0.0.1:0".parse().unwrap();
        QuicConfig::new(7, NodeId(1), listen, BTreeMap::new(), identity)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn refuses_each_bad_bound() {
        let cases: Vec<fn(&mut QuicConfig)> = vec![
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
            |c| c.idle_timeout = Duration::ZERO,
            |c| c.idle_timeout = MAX_IDLE_TIMEOUT * 2,
            |c| c.keep_alive_interval = Duration::ZERO,
            |c| c.keep_alive_interval = c.idle_timeout,
            |c| c.initial_rtt = Duration::ZERO,
            |c| c.initial_rtt = c.handshake_timeout * 2,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let mut c = config();
            case(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted: {c:?}");
        }
    }
}
