//! The dialing side: one task per peer that keeps one connection to it, opens one stream
//! per active traffic class, and runs one writer per class that writes that class's queue
//! in batches; redials with backoff when the connection fails.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures::future::{Either, select, select_all};
use paxos_core::NodeId;
use paxos_core::codec::encode_frame;
use quinn::{Connection, SendStream};

use crate::frame::ConnError;
use crate::hello::{HELLO_MAX_BYTES, Hello};
use crate::rt::{sleep, timeout};
use crate::transport::{ClassQueue, Shared};
use paxos_net_common::{Backoff, WarnKey};

/// Keeps a connection to `peer` at `addr` and writes `queues` (one per active class) to
/// it, until the queues are closed (peer removed or moved) or the transport stops.
pub(crate) async fn dial_loop(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    queues: Vec<ClassQueue>,
) {
    let config = &shared.config;
    let mut backoff = Backoff::new(
        config.reconnect_backoff_min,
        config.reconnect_backoff_max,
        fastrand::Rng::new(),
    );
    while !queues.iter().all(ClassQueue::is_closed) {
        let error = match dial(&shared, peer, addr).await {
            Ok(conn) => {
                let error = run(&shared, peer, &conn, &queues).await;
                let (code, reason) = error.close_code();
                conn.close(code, reason);
                // A connection that was up resets the backoff (it failed, not the dial),
                // unless the peer refused this node: then the backoff keeps growing, so a
                // misconfigured node does not redial a refusing peer in a tight loop.
                if !error.is_refusal() {
                    backoff.reset();
                }
                error
            }
            Err(error) => error,
        };
        if matches!(error, ConnError::Stopped) {
            tracing::debug!(%peer, %addr, "peer removed or moved; dialer ends");
            return;
        }
        shared.count(&shared.counters.connections_failed);
        shared.warn(WarnKey::Peer(peer), |suppressed| {
            tracing::warn!(%peer, %addr, %error, suppressed, "connection to peer failed; redialling");
        });
        sleep(&*shared.runtime, backoff.next_delay()).await;
    }
}

/// Dials `peer` with mutual TLS (server name `node-<peer>.paxos`, so rustls checks that
/// the node answering is the one dialled) within the handshake timeout.
async fn dial(shared: &Shared, peer: NodeId, addr: SocketAddr) -> Result<Connection, ConnError> {
    let name = paxos_tls::node_name(peer);
    let connecting = shared
        .endpoint
        .connect_with(shared.client.clone(), addr, &name)?;
    timeout(
        &*shared.runtime,
        shared.config.handshake_timeout,
        connecting,
    )
    .await
    .ok_or(ConnError::Timeout("QUIC handshake"))?
    .map_err(ConnError::from)
}

type Writer<'a> = Pin<Box<dyn Future<Output = ConnError> + Send + 'a>>;

/// Opens the class streams, then writes until the connection fails or a queue closes.
async fn run(shared: &Shared, peer: NodeId, conn: &Connection, queues: &[ClassQueue]) -> ConnError {
    let mut writers: Vec<Writer<'_>> = Vec::with_capacity(queues.len());
    for queue in queues {
        let stream = match open(shared, peer, conn, queue).await {
            Ok(stream) => stream,
            Err(error) => return error,
        };
        writers.push(Box::pin(write_loop(shared, stream, queue)));
    }
    shared.count(&shared.counters.connections_opened);
    tracing::debug!(%peer, addr = %conn.remote_address(), "connected");
    // The acceptor never opens a stream; `closed` is how a close, a refusal (with its
    // error code) or an idle timeout reaches the dialer even while nothing is written.
    match select(pin!(conn.closed()), select_all(writers)).await {
        Either::Left((error, _)) => error.into(),
        Either::Right(((error, _, _), _)) => error,
    }
}

/// Opens `queue`'s stream at its class's priority and writes the [`Hello`] into it.
async fn open(
    shared: &Shared,
    peer: NodeId,
    conn: &Connection,
    queue: &ClassQueue,
) -> Result<SendStream, ConnError> {
    let config = &shared.config;
    let mut stream = conn.open_uni().await?;
    // Only fails on a stream already closed, which the write below reports.
    let _ = stream.set_priority(queue.class.priority());
    let hello = Hello::new(config.cluster_id, config.node_id, peer, queue.class);
    let mut frame = BytesMut::new();
    encode_frame(&hello, &mut frame, HELLO_MAX_BYTES)?;
    stream.write_all(&frame).await?;
    Ok(stream)
}

/// Writes one class's queue to its stream: every queued frame up to the batch bound goes
/// in one write.
async fn write_loop(shared: &Shared, mut stream: SendStream, queue: &ClassQueue) -> ConnError {
    let config = &shared.config;
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        let Some(first) = queue.next().await else {
            return ConnError::Stopped;
        };
        let mut bytes = first.len();
        batch.push(first);
        while bytes < config.max_write_batch_bytes {
            let Some(next) = queue.try_next() else { break };
            bytes += next.len();
            batch.push(next);
        }
        let frames = batch.len() as u64;
        let written = {
            let mut write = pin!(stream.write_all_chunks(&mut batch));
            // Arm the write timer only if flow control does not take the batch at once.
            match futures::poll!(write.as_mut()) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => timeout(&*shared.runtime, config.write_timeout, write).await,
            }
        };
        match written {
            Some(Ok(())) => {}
            Some(Err(error)) => return error.into(),
            None => return ConnError::Timeout("write"),
        }
        shared
            .counters
            .sent_frames
            .fetch_add(frames, Ordering::Relaxed);
        batch.clear();
    }
}
