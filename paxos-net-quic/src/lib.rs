//! A QUIC [`Transport`](paxos_core::Transport) for `paxos-core`, on quinn 0.11.
//!
//! [`QuicTransport`] moves [`Message`](paxos_core::Message)s between replicas over QUIC
//! with **mutual TLS** from a cluster CA ([`paxos_tls`]), framed with the core codec
//! ([`paxos_core::codec`]) exactly as `paxos-net-tcp` frames them. It runs on quinn's own
//! [`Runtime`] (tokio, smol or async-std through this crate's features of the same names,
//! or your own implementation), which it uses for its socket, its tasks and its timers:
//! it needs no other runtime and does not wrap quinn's again.
//!
//! What it does **not** do: no delivery guarantee (messages are dropped when a queue is
//! full or a connection fails; the core retransmits), no ordering across traffic classes
//! or reconnects, no 0-RTT, no connection migration, no datagrams, and no use of the clock
//! for anything but backoff, timeouts and log rate limiting. Certificates are not reloaded:
//! a new identity means a new transport.
//!
//! Three nodes on loopback, each on a socket bound first to port 0 so that every address
//! is known before any node starts; node 1 sends node 2 a message. The dev CA from
//! [`paxos_tls::dev`] stands in for a real one.
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use std::collections::BTreeMap;
//! use std::net::UdpSocket;
//! use std::time::Duration;
//!
//! use paxos_core::message::Decide;
//! use paxos_core::{Ballot, Envelope, Message, NodeId, Slot, Transport};
//! use paxos_net_quic::{QuicConfig, QuicTransport, tokio_runtime};
//! use paxos_tls::dev::DevCa;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = DevCa::generate("example cluster")?;
//! let sockets: Vec<UdpSocket> = (0..3)
//!     .map(|_| UdpSocket::bind("127.0.0.1:0"))
//!     .collect::<Result<_, _>>()?;
//! let mut peers = BTreeMap::new();
//! for (i, socket) in sockets.iter().enumerate() {
//!     peers.insert(NodeId(i as u64 + 1), socket.local_addr()?);
//! }
//! let tokio = tokio::runtime::Runtime::new()?;
//! tokio.block_on(async {
//!     let mut nodes = Vec::new();
//!     for (i, socket) in sockets.into_iter().enumerate() {
//!         let id = NodeId(i as u64 + 1);
//!         let identity = ca.issue(id)?.identity(&ca.ca_pem())?;
//!         let config = QuicConfig::new(42, id, socket.local_addr()?, peers.clone(), identity);
//!         nodes.push(QuicTransport::start_on(config, socket, tokio_runtime())?);
//!     }
//!     let decide = Message::Decide(Decide { ballot: Ballot::new(1, NodeId(1)), commit: Slot(5) });
//!     nodes[0].send(vec![Envelope { to: NodeId(2), message: decide.clone() }]); // never blocks
//!
//!     let mut inbound = Vec::new();
//!     tokio::time::timeout(Duration::from_secs(10), nodes[1].recv(&mut inbound, 64)).await??;
//!     assert_eq!(inbound[0].from, NodeId(1)); // from the certificate and Hello
//!     assert_eq!(inbound[0].message, decide);
//!     for node in nodes {
//!         node.close().await;
//!     }
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! # main().unwrap();
//! # }
//! ```
//!
//! # Connections and streams
//!
//! As with TCP, each node dials every peer for its **own outbound traffic** and accepts
//! the peers' connections for **inbound traffic**: between two nodes there are two QUIC
//! connections, each carrying messages one way (the acceptor never opens a stream; its
//! transport parameters allow the dialer none either). This keeps TCP's properties: no
//! tie-break when both sides dial at once, each side redials on its own schedule, "who
//! sent this" is answered once per connection, and the two transports behave alike for
//! the node and the benches. The cost, one more handshake per pair, is paid once per
//! connection lifetime; the connections are long-lived.
//!
//! On its connection, the dialer opens **one long-lived unidirectional stream per traffic
//! class** ([`StreamClass`]) and never a stream per message (measured: 12-20x slower):
//!
//! * `control`, highest send priority: Prepare, an empty Promise, Nack, PreVote,
//!   PreVoteReply, Decide, Accepted, CatchUp, SnapshotOffer, SnapshotRequest, and the
//!   heartbeat (an Accept with no values);
//! * `bulk`: Accept with values, a Promise reporting accepted values, CatchUpReply, Forward;
//! * `snapshot`, lowest priority: SnapshotChunk, the bytes of a snapshot transfer.
//!
//! Each class has its own queue and writer task per peer and its own QUIC stream, with
//! quinn's stream priorities set so that control data is sent before bulk data waiting in
//! the same connection: a 16 MiB batch never delays a heartbeat. Order is kept within a
//! class, not across classes (the core tolerates reordering).
//!
//! A dead peer is noticed by QUIC's idle timeout ([`QuicConfig::idle_timeout`]); keep-alive
//! PINGs ([`QuicConfig::keep_alive_interval`]) keep a quiet but live connection open. A
//! failed connection is redialled after an exponential backoff with jitter: the n-th delay
//! is uniform in `[d/2, d]` with `d = min(reconnect_backoff_max, reconnect_backoff_min *
//! 2^n)`, reset once a connection was up. A newer inbound connection from the same peer
//! closes the older one ([`error_code::REPLACED`]).
//!
//! # TLS model
//!
//! Every node holds a [`paxos_tls::TlsIdentity`]: the cluster CA, its own certificate
//! (naming `node-<id>.paxos`) and key. [`QuicTransport::start`] refuses an identity whose
//! certificate does not name [`QuicConfig::node_id`].
//!
//! * The **acceptor** requires a client certificate chaining to the cluster CA
//!   ([`TlsIdentity::server_config`](paxos_tls::TlsIdentity::server_config)): a dialer
//!   with no certificate, or one from another CA, fails the TLS handshake
//!   ([`QuicStats::refused_tls`]). ALPN [`ALPN`] (`paxos/1`) is required both ways.
//! * The **dialer** trusts only the cluster CA and connects with server name
//!   `node-<peer>.paxos`, so rustls checks that the node that answers is the one dialled.
//! * The acceptor learns the dialer's claimed id from the first stream's [`Hello`] (magic,
//!   version, cluster id, from, to, class) and checks with
//!   [`paxos_tls::verify_peer_node`] that the dialer's certificate names that id. A
//!   certificate naming another node, a wrong cluster or addressee, an unknown peer or a
//!   late Hello closes the connection with an [`error_code`], one rate-limited warning and
//!   a counter; the node keeps serving everyone else.
//!
//! # Wire layout
//!
//! Every stream carries core codec frames:
//!
//! ```text
//! len: u32 little endian | WIRE_VERSION: u8 | postcard body      (len counts version + body)
//! ```
//!
//! The first frame of a stream is a [`Hello`] of at most [`HELLO_MAX_BYTES`]; after it,
//! `Message` frames only, each at most [`QuicConfig::max_frame_bytes`]. The length is
//! checked as soon as its four bytes arrive, so a frame declaring 1 GiB is refused
//! without buffering it.
//!
//! # Queueing and drop policy
//!
//! * **Outbound**: [`send`](paxos_core::Transport::send) encodes each message into its
//!   frame at once and queues it for its peer and class. Each such queue holds at most
//!   [`QuicConfig::max_outbound_queue`] messages and
//!   [`QuicConfig::max_outbound_queue_bytes`] bytes, except that a message is always
//!   admitted to an empty queue. `send` never blocks: a message that does not fit is
//!   dropped and counted ([`QuicStats::dropped_queue_full`]); so is one for an unknown
//!   peer ([`QuicStats::dropped_unknown_peer`]) or one too large for a frame
//!   ([`QuicStats::dropped_too_large`]). Messages queue while a peer is unreachable and go
//!   out after it reconnects; a write that fails loses its batch. A write that makes no
//!   progress for [`QuicConfig::write_timeout`] drops the connection.
//! * **Writes** are batched: a class's writer takes every queued frame (up to
//!   [`QuicConfig::max_write_batch_bytes`]) into one stream write.
//! * **Inbound**: every stream reader puts decoded messages into one queue of at most
//!   [`QuicConfig::max_inbound_queue`] messages and
//!   [`QuicConfig::max_inbound_queue_bytes`] bytes (a message is always admitted to an
//!   empty queue). When it is full, the readers stop reading, and QUIC's stream flow
//!   control pushes back on the senders (whose queues then drop).
//!   [`recv`](paxos_core::Transport::recv) is cancel-safe.
//!
//! # Errors
//!
//! A malformed frame, an oversized length, a refused Hello or certificate, a finished or
//! reset stream, or a timeout closes that one connection with an [`error_code`]. Nothing
//! read from the network can panic the transport or stop the endpoint. Warnings are logged
//! with `tracing`, at most one per peer (or remote IP, before the peer is identified) per
//! [`QuicConfig::warn_interval`]; every event is counted in [`QuicStats`].
//!
//! # Shutdown
//!
//! Dropping the [`QuicTransport`] stops all its tasks; [`QuicTransport::close`] also closes
//! every connection with [`error_code::SHUTDOWN`] and waits until they are drained.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod frame;
pub mod hello;
mod inbound;
mod outbound;
mod rt;
mod tls;
mod transport;

use std::sync::Arc;

pub use config::{ConfigError, QuicConfig};
pub use frame::error_code;
pub use hello::{HELLO_MAX_BYTES, Hello, StreamClass};
pub use quinn::Runtime;
pub use tls::ALPN;
pub use transport::{QuicStats, QuicTransport, StartError};

/// quinn's tokio runtime, to pass to [`QuicTransport::start`]. Start the transport inside
/// the tokio runtime.
#[cfg(feature = "tokio")]
pub fn tokio_runtime() -> Arc<dyn Runtime> {
    Arc::new(quinn::TokioRuntime)
}

/// quinn's smol runtime (async-io timers and sockets, smol's global executor), to pass to
/// [`QuicTransport::start`].
#[cfg(feature = "smol")]
pub fn smol_runtime() -> Arc<dyn Runtime> {
    Arc::new(quinn::SmolRuntime)
}

/// quinn's async-std runtime, to pass to [`QuicTransport::start`].
#[cfg(feature = "async-std")]
pub fn async_std_runtime() -> Arc<dyn Runtime> {
    Arc::new(quinn::AsyncStdRuntime)
}

/// quinn's pick among the enabled runtimes: tokio if called inside a tokio runtime, else
/// async-std, else smol; `None` if no runtime feature is enabled.
pub fn default_runtime() -> Option<Arc<dyn Runtime>> {
    quinn::default_runtime()
}
