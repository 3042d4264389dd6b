//! The accepting side: the accept loop, and one reader task per inbound connection that
//! runs the acceptor's half of the handshake, then decodes frames into the inbound queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_channel::Sender;
use bytes::BytesMut;
use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable};
use futures::io::AsyncWriteExt;
use paxos_core::codec::encode_frame;
use paxos_core::{Inbound, Message, NodeId};

use crate::frame::{ConnError, FrameReader, timeout};
use crate::handshake::{HELLO_MAX_BYTES, HandshakeError, Hello};
use crate::transport::Shared;
use paxos_net_common::ByteBudget;
use paxos_net_common::WarnKey;
use paxos_runtime::{BoxConn, Listener};

/// Owns the listening socket. Dropping it closes the socket first, then signals
/// [`TcpTransport::close`](crate::TcpTransport::close).
pub(crate) struct ListenerGuard {
    listener: Option<Box<dyn Listener>>,
    closed: Option<oneshot::Sender<()>>,
}

impl ListenerGuard {
    pub(crate) fn new(listener: Box<dyn Listener>, closed: oneshot::Sender<()>) -> Self {
        Self {
            listener: Some(listener),
            closed: Some(closed),
        }
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        drop(self.listener.take());
        drop(self.closed.take());
    }
}

/// Counts an open inbound connection for as long as it lives.
struct OpenSlot(Arc<Shared>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.inbound_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until the transport stops. Accept errors (e.g. out of file
/// descriptors) are logged and retried after a pause; they never end the loop.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    guard: ListenerGuard,
    inbound: Sender<(Inbound, usize)>,
) {
    let Some(listener) = guard.listener.as_deref() else {
        return;
    };
    loop {
        let (conn, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                shared.warn(WarnKey::Listener, |suppressed| {
                    tracing::warn!(%error, suppressed, "accept failed; retrying");
                });
                shared.net.sleep(shared.config.reconnect_backoff_min).await;
                continue;
            }
        };
        let open = shared.inbound_open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenSlot(shared.clone());
        if open >= shared.config.max_inbound_connections {
            shared.count(&shared.counters.connections_refused);
            shared.warn(WarnKey::Addr(addr.ip()), |suppressed| {
                tracing::warn!(%addr, open, suppressed, "too many inbound connections; closing");
            });
            continue;
        }
        shared.spawn(serve(shared.clone(), conn, addr, inbound.clone(), slot));
    }
}

/// Runs one inbound connection to its end, and logs why it ended. The connection is
/// closed only after the outcome is counted, so a peer that sees the close also sees the
/// counters.
async fn serve(
    shared: Arc<Shared>,
    conn: BoxConn,
    addr: SocketAddr,
    inbound: Sender<(Inbound, usize)>,
    _slot: OpenSlot,
) {
    let (from, mut reader) = match handshake(&shared, conn).await {
        Ok(accepted) => accepted,
        Err(error) => {
            shared.count(&shared.counters.connections_refused);
            if error.is_tls() {
                shared.count(&shared.counters.refused_tls);
            }
            shared.warn(WarnKey::Addr(addr.ip()), |suppressed| {
                tracing::warn!(%addr, %error, suppressed, "refused inbound connection");
            });
            return;
        }
    };
    shared.count(&shared.counters.connections_accepted);
    tracing::debug!(peer = %from, %addr, "accepted");
    let (handle, registration) = AbortHandle::new_pair();
    let generation = shared.register_reader(from, handle);
    let read = read_loop(&shared, from, &mut reader, &inbound);
    let ended = Abortable::new(read, registration).await;
    shared.forget_reader(from, generation);
    match ended {
        Err(_) => {
            tracing::debug!(peer = %from, %addr, "inbound connection replaced or peer removed");
        }
        Ok(ConnError::Eof | ConnError::Stopped) => {
            tracing::debug!(peer = %from, %addr, "inbound connection closed");
        }
        Ok(error) => {
            if error.is_protocol() {
                shared.count(&shared.counters.connections_bad_frame);
            }
            shared.warn(WarnKey::Peer(from), |suppressed| {
                tracing::warn!(peer = %from, %addr, %error, suppressed, "closed inbound connection");
            });
        }
    }
}

/// The acceptor's half of the handshake (see [`crate::handshake`]), after the TLS server
/// handshake if TLS is on, all within the handshake timeout; returns the peer and the
/// connection.
async fn handshake(
    shared: &Shared,
    conn: BoxConn,
) -> Result<(NodeId, FrameReader<BoxConn>), ConnError> {
    let config = &shared.config;
    let exchange = async {
        #[cfg(feature = "tls")]
        let (conn, chain) = match &shared.tls {
            Some(tls) => {
                let (conn, chain) = tls.accept(conn).await?;
                (conn, Some(chain))
            }
            None => (conn, None),
        };
        let mut reader = FrameReader::new(conn);
        let theirs: Hello = reader.next(HELLO_MAX_BYTES).await?;
        theirs.check(config.cluster_id, config.node_id)?;
        if theirs.from == config.node_id || !shared.is_peer(theirs.from) {
            return Err(HandshakeError::UnexpectedPeer(theirs.from).into());
        }
        #[cfg(feature = "tls")]
        if let Some(chain) = &chain {
            crate::tls::check_peer(chain, theirs.from)?;
        }
        let mut hello = BytesMut::new();
        let ours = Hello::new(config.cluster_id, config.node_id, theirs.from);
        encode_frame(&ours, &mut hello, HELLO_MAX_BYTES)?;
        reader.get_mut().write_all(&hello).await?;
        reader.get_mut().flush().await?;
        Ok((theirs.from, reader))
    };
    timeout(&*shared.net, config.handshake_timeout, exchange)
        .await
        .unwrap_or(Err(ConnError::Timeout("handshake")))
}

/// Decodes frames into the inbound queue until the connection fails. A full queue (in
/// messages or in bytes) stops the reading (TCP pushes back on the sender) rather than
/// dropping.
async fn read_loop(
    shared: &Shared,
    from: NodeId,
    reader: &mut FrameReader<BoxConn>,
    inbound: &Sender<(Inbound, usize)>,
) -> ConnError {
    loop {
        let (message, bytes): (Message, usize) =
            match reader.next_sized(shared.config.max_frame_bytes).await {
                Ok(frame) => frame,
                Err(error) => return error,
            };
        shared.inbound_bytes.acquire(bytes).await;
        // Gives the bytes back if this task is dropped (aborted) before the message is
        // queued; `recv` gives them back once it is taken.
        let held = Held {
            budget: &shared.inbound_bytes,
            bytes,
        };
        shared.count(&shared.counters.received_frames);
        if inbound
            .send((Inbound { from, message }, bytes))
            .await
            .is_err()
        {
            return ConnError::Stopped;
        }
        std::mem::forget(held);
    }
}

/// Bytes taken from a budget, given back on drop.
struct Held<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}
