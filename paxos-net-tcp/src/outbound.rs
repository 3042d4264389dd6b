//! The dialing side: one task per peer that connects, handshakes, and writes the peer's
//! queue in batches; reconnects with backoff when the connection fails.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use async_channel::Receiver;
use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::NodeId;
use paxos_core::codec::encode_frame;

use crate::frame::{ConnError, FrameReader, timeout};
use crate::handshake::{HELLO_MAX_BYTES, HandshakeError, Hello};
use crate::transport::Shared;
use paxos_net_common::ByteBudget;
use paxos_net_common::{Backoff, WarnKey};
use paxos_runtime::BoxConn;

/// Keeps a connection to `peer` and writes `queue` (encoded frames, whose bytes
/// `queued_bytes` counts) to it, until the queue is closed (peer removed) or the transport
/// stops.
pub(crate) async fn dial_loop(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    queue: Receiver<Bytes>,
    queued_bytes: Arc<ByteBudget>,
) {
    let queue = Queue {
        frames: queue,
        bytes: queued_bytes,
    };
    let config = &shared.config;
    let mut backoff = Backoff::new(
        config.reconnect_backoff_min,
        config.reconnect_backoff_max,
        fastrand::Rng::new(),
    );
    while !queue.frames.is_closed() {
        let error = match dial(&shared, peer, addr).await {
            Ok(conn) => {
                shared.count(&shared.counters.connections_opened);
                tracing::debug!(%peer, %addr, "connected");
                backoff.reset();
                pump(&shared, conn, &queue).await
            }
            Err(error) => error,
        };
        if matches!(error, ConnError::Stopped) {
            return;
        }
        shared.warn(WarnKey::Peer(peer), |suppressed| {
            tracing::warn!(%peer, %addr, %error, suppressed, "connection to peer failed; reconnecting");
        });
        shared.net.sleep(backoff.next_delay()).await;
    }
}

/// One peer's outbound queue: frames, and their bytes.
struct Queue {
    frames: Receiver<Bytes>,
    bytes: Arc<ByteBudget>,
}

impl Queue {
    /// Waits for the next frame; `None` once the queue is closed.
    async fn next(&self) -> Option<Bytes> {
        let frame = self.frames.recv().await.ok()?;
        self.bytes.release(frame.len());
        Some(frame)
    }

    /// The next frame if one is queued.
    fn try_next(&self) -> Option<Bytes> {
        let frame = self.frames.try_recv().ok()?;
        self.bytes.release(frame.len());
        Some(frame)
    }
}

/// Connects and runs the dialer's half of the handshake.
async fn dial(shared: &Shared, peer: NodeId, addr: SocketAddr) -> Result<BoxConn, ConnError> {
    let config = &shared.config;
    let handshake = async {
        let mut conn = shared.net.connect_tcp(addr).await?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &shared.tls {
            conn = tls.connect(peer, conn).await?;
        }
        let mut hello = BytesMut::new();
        let ours = Hello::new(config.cluster_id, config.node_id, peer);
        encode_frame(&ours, &mut hello, HELLO_MAX_BYTES)?;
        conn.write_all(&hello).await?;
        conn.flush().await?;
        let mut reader = FrameReader::new(conn);
        let theirs: Hello = reader.next(HELLO_MAX_BYTES).await?;
        theirs.check(config.cluster_id, config.node_id)?;
        if theirs.from != peer {
            return Err(HandshakeError::UnexpectedPeer(theirs.from).into());
        }
        if reader.buffered() > 0 {
            return Err(ConnError::UnexpectedData);
        }
        Ok(reader.into_inner())
    };
    timeout(&*shared.net, config.handshake_timeout, handshake)
        .await
        .unwrap_or(Err(ConnError::Timeout("connect and handshake")))
}

/// Writes the queue to `conn` until the connection fails or the queue closes. Watches the
/// read side too: the acceptor never writes after the handshake, so any read completing
/// means the connection is closed or the peer misbehaves.
async fn pump(shared: &Shared, conn: BoxConn, queue: &Queue) -> ConnError {
    let (mut rd, mut wr) = conn.split();
    let watch = async move {
        let mut byte = [0u8; 1];
        match rd.read(&mut byte).await {
            Ok(0) => ConnError::Eof,
            Ok(_) => ConnError::UnexpectedData,
            Err(e) => ConnError::read(e),
        }
    };
    let write = async move {
        let config = &shared.config;
        let mut buf = BytesMut::new();
        loop {
            let Some(first) = queue.next().await else {
                return ConnError::Stopped;
            };
            buf.extend_from_slice(&first);
            let mut frames = 1u64;
            while buf.len() < config.max_write_batch_bytes {
                let Some(next) = queue.try_next() else { break };
                buf.extend_from_slice(&next);
                frames += 1;
            }
            let mut io = pin!(async {
                wr.write_all(&buf).await?;
                wr.flush().await
            });
            // Arm the write timer only if the socket cannot take the batch at once.
            let written = match futures::poll!(io.as_mut()) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => timeout(&*shared.net, config.write_timeout, io).await,
            };
            match written {
                Some(Ok(())) => {}
                Some(Err(e)) => return e.into(),
                None => return ConnError::Timeout("write"),
            }
            shared
                .counters
                .sent_frames
                .fetch_add(frames, Ordering::Relaxed);
            buf.clear();
            if buf.capacity() > 4 * config.max_write_batch_bytes {
                buf = BytesMut::new();
            }
        }
    };
    match select(pin!(watch), pin!(write)).await {
        Either::Left((error, _)) | Either::Right((error, _)) => error,
    }
}
