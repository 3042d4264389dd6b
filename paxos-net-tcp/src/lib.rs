//! A TCP [`Transport`](paxos_core::Transport) for `paxos-core`.
//!
//! [`TcpTransport`] moves [`Message`](paxos_core::Message)s between replicas over plain
//! TCP, framed with the core codec ([`paxos_core::codec`]). It is written once over the
//! `futures::io` traits and runs on any runtime: it takes the one runtime seam,
//! [`paxos_runtime::Runtime`] (tokio, smol, async-std, or your own), for its sockets,
//! tasks and timers, and has no runtime features of its own.
//!
//! With the `tls` feature and [`TcpConfig::with_tls`], every connection is mutual TLS
//! (rustls, TLS 1.3) and each node proves its id with a certificate from the cluster CA;
//! see [Mutual TLS](#mutual-tls). Without it, connections are plain TCP.
//!
//! What it does **not** do: no authentication on plain TCP (the handshake's cluster id
//! catches misconfiguration, not attackers; run plain TCP on a trusted network only); with
//! TLS, no certificate revocation and no reloading of certificates while running (see
//! [Mutual TLS](#mutual-tls)); no delivery guarantee (messages are dropped when a queue is
//! full or a connection fails; the core retransmits), no ordering across reconnects, and
//! no use of the clock for anything but backoff, timeouts and log rate limiting.
//!
//! Two transports on loopback, each on a port the kernel picks (port 0), each told the
//! other's address; node 1 sends node 2 a message. In a deployment every node gets the
//! same `peers` map of real addresses in [`TcpConfig::new`] (an entry for the node itself
//! is ignored) and listens on a fixed port.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use paxos_core::message::Decide;
//! use paxos_core::{Ballot, Envelope, Message, NodeId, Slot, Transport};
//! use paxos_net_tcp::{Runtime, TcpConfig, TcpTransport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any runtime through the one seam: here async-io under smol; `TokioRuntime` inside a
//! // tokio runtime works the same.
//! let runtime: Arc<dyn Runtime> = Arc::new(paxos_runtime::AsyncIoRuntime::new());
//! smol::block_on(async {
//!     let start = |id| {
//!         let listen = "127.0.0.1:0".parse()?;
//!         let config = TcpConfig::new(42, NodeId(id), listen, BTreeMap::new());
//!         Ok::<_, Box<dyn std::error::Error>>(TcpTransport::start(config, runtime.clone())?)
//!     };
//!     let one = start(1)?;
//!     let mut two = start(2)?;
//!     one.set_peer(NodeId(2), two.local_addr());
//!     two.set_peer(NodeId(1), one.local_addr()); // the only ids `two` accepts
//!
//!     let ballot = Ballot::new(1, NodeId(1));
//!     let decide = Message::Decide(Decide { ballot, commit: Slot(5) });
//!     one.send(vec![Envelope { to: NodeId(2), message: decide.clone() }]); // never blocks
//!
//!     let mut inbound = Vec::new();
//!     let deadline = runtime.now() + Duration::from_secs(10);
//!     paxos_runtime::timeout_at(&*runtime, deadline, two.recv(&mut inbound, 64))
//!         .await
//!         .ok_or("no message within 10 s")??;
//!     assert_eq!(inbound[0].from, NodeId(1)); // from the handshake, not the message
//!     assert_eq!(inbound[0].message, decide);
//!
//!     one.close().await;
//!     two.close().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Connections
//!
//! Each node dials every peer for its **own outbound traffic** and accepts the peers'
//! connections for **inbound traffic**: between two nodes there are two TCP connections,
//! each carrying messages one way. This needs no tie-break when both sides dial at once,
//! lets each side reconnect on its own schedule, and makes "who sent this" the handshake's
//! answer, not the message's. The acceptor never writes after the handshake; the dialer
//! watches its read side, so a peer that closes or restarts is noticed at once even when
//! idle. A newer inbound connection from the same peer closes the older one, so a peer
//! that vanished without closing (power loss) holds at most one reader until it returns.
//!
//! A failed connection is retried after an exponential backoff with jitter: the n-th delay
//! is uniform in `[d/2, d]` with `d = min(reconnect_backoff_max, reconnect_backoff_min *
//! 2^n)`, reset after a successful handshake.
//!
//! # Wire layout
//!
//! Every frame, handshake included, is a core codec frame:
//!
//! ```text
//! len: u32 little endian | WIRE_VERSION: u8 | postcard body      (len counts version + body)
//! ```
//!
//! A connection starts with one [`Hello`] frame each way (dialer first; see
//! [`handshake`]): magic `PXTC`, handshake version, cluster id, sender id, addressee id.
//! The acceptor answers only if all of them check out (same cluster, addressed to it, from
//! a configured peer); otherwise it closes the connection. After that, the dialer sends
//! `Message` frames only. A `Hello` is bounded by [`HELLO_MAX_BYTES`], a message frame by
//! [`TcpConfig::max_frame_bytes`]; the length is checked as soon as its four bytes arrive,
//! so a frame declaring 1 GiB is refused without buffering it.
//!
//! # Queueing and drop policy
//!
//! * **Outbound**: [`send`](paxos_core::Transport::send) encodes each message into its
//!   frame at once and queues the frame for its peer. Each peer's queue holds at most
//!   [`TcpConfig::max_outbound_queue`] messages and
//!   [`TcpConfig::max_outbound_queue_bytes`] bytes, except that a message is always
//!   admitted to an empty queue (so one larger than the byte bound still goes out, alone).
//!   `send` never blocks: a message that does not fit is dropped and counted
//!   ([`TcpStats::dropped_queue_full`]); so is a message for an unknown peer (this node
//!   itself included), or one too large for a frame ([`TcpStats::dropped_too_large`]).
//!   Messages queue while a peer is unreachable and go out after it reconnects; a write
//!   that fails loses its batch. A slow or stuck peer fills only its own queue: other
//!   peers are served by their own tasks. A write that makes no progress for
//!   [`TcpConfig::write_timeout`] drops the connection.
//! * **Writes** are batched: the writer takes every queued frame (up to
//!   [`TcpConfig::max_write_batch_bytes`]) into one buffer and issues one `write_all`;
//!   `TCP_NODELAY` is set on every socket.
//! * **Inbound**: reader tasks put decoded messages in one queue of at most
//!   [`TcpConfig::max_inbound_queue`] messages and
//!   [`TcpConfig::max_inbound_queue_bytes`] bytes (counted as framed; a message is always
//!   admitted to an empty queue). When it is full, readers stop reading and TCP flow
//!   control pushes back on the senders (whose queues then drop).
//!   [`recv`](paxos_core::Transport::recv) is cancel-safe.
//!
//! So the memory the transport holds for messages is bounded in bytes: per peer, the
//! outbound queue bound plus one frame plus one write batch; inbound, the queue bound plus
//! one frame per reader.
//!
//! # Errors
//!
//! A malformed frame, an oversized length, a bad handshake, garbage, or a timeout closes
//! that one connection. Nothing read from the network can panic the transport or stop the
//! listener. Warnings are logged with `tracing`, at most one per peer (or remote IP, before
//! the handshake) per [`TcpConfig::warn_interval`]; every event is counted in [`TcpStats`].
//!
//! # Mutual TLS
//!
//! Behind the cargo feature `tls`, [`TcpConfig::tls`] (set with [`TcpConfig::with_tls`])
//! holds the node's [`paxos_tls::TlsIdentity`]: the cluster CA, the node's certificate and
//! its key (load them with [`paxos_tls::TlsIdentity::from_pem_files`]; `paxos_tls::dev`
//! makes a development CA). A node's certificate names it by the DNS subject-alt-name
//! `node-<id>.paxos` ([`paxos_tls::node_name`]). With an identity set:
//!
//! * at start, the identity's certificate must name [`TcpConfig::node_id`], or
//!   [`TcpTransport::start`] fails with [`StartError::Tls`] before binding;
//! * the **dialer** runs a TLS client handshake with server name `node-<addressee>.paxos`
//!   (so rustls checks the acceptor's certificate chains to the CA *and* names the node
//!   dialled), presents its own certificate, and then runs the [`Hello`] exchange above
//!   inside TLS, unchanged;
//! * the **acceptor** runs the server handshake, which requires a client certificate
//!   chaining to the CA, reads the dialer's `Hello`, checks it as for plain TCP, and then
//!   checks that the dialer's certificate names the id the `Hello` claims
//!   ([`paxos_tls::verify_peer_node`]).
//!
//! The TLS handshake counts against [`TcpConfig::handshake_timeout`] with the `Hello`, and
//! after it a TLS connection is just another [`BoxConn`]: the frame bound, the queues and
//! the handling of bad input are exactly those of plain TCP (rustls's own buffers are
//! bounded: one record, one handshake message of at most 64 KiB, 64 KiB of unsent
//! plaintext). Both sides offer the ALPN protocol [`TLS_ALPN`]. Every connection runs a
//! full handshake (no resumption). A connection refused by TLS (no client certificate, a
//! certificate not from the cluster CA, a certificate naming another node than the `Hello`
//! claims, a peer not speaking TLS) is closed, logged in one rate-limited warning, and
//! counted in [`TcpStats::refused_tls`]; other peers are not affected. A TLS node and a
//! plain node refuse each other.
//!
//! **What is authenticated**: that the peer holds the key of a certificate issued by the
//! cluster CA for the node id it claims, in both directions; the messages on a connection
//! are then confidential and integrity-protected, and "who sent this" (the handshake's
//! answer, see [Connections](#connections)) is the certificate's node id. **What is not**:
//! whether that node should be a peer (that is the `peers` map), revocation (no CRL or
//! OCSP: a leaked key is trusted until the CA is replaced), and anything about the
//! messages' content (a node with a valid certificate can still send nonsense; the core
//! validates it). Certificates are read once, at start: to rotate them, restart the node.
//!
//! # Shutdown
//!
//! Dropping the [`TcpTransport`] stops all its tasks, closing the listener and every
//! connection; [`TcpTransport::close`] also waits for the listener to be closed.
#![forbid(unsafe_code)]
// The "Mutual TLS" section links to items that exist only with the `tls` feature.
#![cfg_attr(not(feature = "tls"), allow(rustdoc::broken_intra_doc_links))]

mod config;
mod frame;
pub mod handshake;
mod inbound;
mod outbound;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use config::{ConfigError, TcpConfig};
pub use handshake::{HELLO_MAX_BYTES, Hello};
pub use paxos_runtime::{BoxConn, Conn, Listener, Runtime};
#[cfg(feature = "tls")]
pub use paxos_tls;
#[cfg(feature = "tls")]
pub use tls::TLS_ALPN;
pub use transport::{StartError, TcpStats, TcpTransport};
