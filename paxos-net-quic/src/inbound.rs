//! The accepting side: the accept loop, and one task per inbound connection that admits
//! each stream by its [`Hello`] and the peer's certificate, then decodes the stream's
//! frames into the inbound queue.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_channel::Sender;
use futures::StreamExt;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use paxos_core::{Inbound, Message, NodeId};
use quinn::{Connection, ConnectionError, RecvStream};
use rustls::pki_types::CertificateDer;

use crate::frame::{ConnError, FrameReader};
use crate::hello::{HELLO_MAX_BYTES, Hello, HelloError, StreamClass};
use crate::rt::timeout;
use crate::transport::Shared;
use paxos_net_common::Held;
use paxos_net_common::WarnKey;

/// Counts an open inbound connection for as long as it lives.
struct OpenSlot(Arc<Shared>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.inbound_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until the endpoint is closed.
pub(crate) async fn accept_loop(shared: Arc<Shared>, inbound: Sender<(Inbound, usize)>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let addr = incoming.remote_address();
        let open = shared.inbound_open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenSlot(shared.clone());
        if open >= shared.config.max_inbound_connections {
            shared.count(&shared.counters.refused_limit);
            shared.warn(WarnKey::Addr(addr.ip()), |suppressed| {
                tracing::warn!(%addr, open, suppressed, "too many inbound connections; refusing");
            });
            incoming.refuse();
            continue;
        }
        match incoming.accept() {
            Ok(connecting) => {
                let serving = serve(shared.clone(), connecting, addr, inbound.clone(), slot);
                shared.spawn(serving);
            }
            Err(error) => {
                shared.warn(WarnKey::Addr(addr.ip()), |suppressed| {
                    tracing::warn!(%addr, %error, suppressed, "cannot accept inbound connection");
                });
            }
        }
    }
    tracing::debug!("endpoint closed; accept loop ends");
}

/// What one connection has admitted so far.
#[derive(Default)]
struct Admitted {
    /// The peer, once the first stream's Hello and the certificate agreed on it; with the
    /// generation it was registered under.
    peer: Option<(NodeId, u64)>,
    classes: Vec<StreamClass>,
}

/// Runs one inbound connection to its end: the TLS handshake, then its streams. Counts and
/// logs why it ended, then closes it with the matching error code.
async fn serve(
    shared: Arc<Shared>,
    connecting: quinn::Connecting,
    addr: SocketAddr,
    inbound: Sender<(Inbound, usize)>,
    _slot: OpenSlot,
) {
    let handshake = timeout(
        &*shared.runtime,
        shared.config.handshake_timeout,
        connecting,
    );
    let conn = match handshake.await {
        Some(Ok(conn)) => conn,
        failed => {
            let error = match failed {
                Some(Err(error)) => ConnError::from(error),
                _ => ConnError::Timeout("TLS handshake"),
            };
            shared.count(&shared.counters.refused_tls);
            shared.warn(WarnKey::Addr(addr.ip()), |suppressed| {
                tracing::warn!(%addr, %error, suppressed, "refused inbound connection: TLS handshake failed");
            });
            return;
        }
    };
    let admitted = Mutex::new(Admitted::default());
    let error = read_streams(&shared, &conn, &admitted, &inbound).await;
    let peer = admitted.lock().unwrap_or_else(|e| e.into_inner()).peer;
    report(&shared, addr, peer.map(|(id, _)| id), &error);
    let (code, reason) = error.close_code();
    conn.close(code, reason);
    if let Some((id, generation)) = peer {
        shared.forget_reader(id, generation);
    }
}

/// Counts and logs why an inbound connection ended.
fn report(shared: &Shared, addr: SocketAddr, peer: Option<NodeId>, error: &ConnError) {
    let counters = &shared.counters;
    let (counter, what) = match error {
        ConnError::Identity(_) => (Some(&counters.refused_tls), "refused inbound connection"),
        ConnError::Hello(_) | ConnError::Timeout(_) if peer.is_none() => {
            (Some(&counters.refused_hello), "refused inbound connection")
        }
        ConnError::Hello(_) | ConnError::Timeout(_) => {
            (Some(&counters.refused_hello), "refused inbound stream")
        }
        ConnError::Codec(_) | ConnError::StreamEnded => {
            (Some(&counters.bad_frames), "closed inbound connection")
        }
        ConnError::Connection(
            ConnectionError::ApplicationClosed(_) | ConnectionError::LocallyClosed,
        )
        | ConnError::Stopped => {
            tracing::debug!(?peer, %addr, %error, "inbound connection closed");
            return;
        }
        _ => (None, "inbound connection failed"),
    };
    if let Some(counter) = counter {
        shared.count(counter);
    }
    let key = peer.map_or(WarnKey::Addr(addr.ip()), WarnKey::Peer);
    shared.warn(key, |suppressed| {
        tracing::warn!(?peer, %addr, %error, suppressed, "{what}");
    });
}

/// Accepts the connection's streams and reads them all, until the first error.
async fn read_streams(
    shared: &Shared,
    conn: &Connection,
    admitted: &Mutex<Admitted>,
    inbound: &Sender<(Inbound, usize)>,
) -> ConnError {
    // The first stream must arrive and be admitted within the handshake timeout: a
    // connection that never identifies itself does not hold a slot for long.
    let first = timeout(&*shared.runtime, shared.config.handshake_timeout, async {
        let stream = conn.accept_uni().await?;
        admit(shared, conn, admitted, stream).await
    });
    let (reader, from) = match first.await {
        Some(Ok(admitted)) => admitted,
        Some(Err(error)) => return error,
        None => return ConnError::Timeout("hello"),
    };
    shared.count(&shared.counters.connections_accepted);
    tracing::debug!(peer = %from, addr = %conn.remote_address(), "accepted");
    let mut streams = FuturesUnordered::new();
    streams.push(Either::Left(read_loop(shared, from, reader, inbound)));
    loop {
        // Only errors come out of `streams`; it is never empty here.
        match select(pin!(conn.accept_uni()), streams.next()).await {
            Either::Left((Ok(stream), _)) => {
                streams.push(Either::Right(async move {
                    let limit = shared.config.handshake_timeout;
                    let next = timeout(
                        &*shared.runtime,
                        limit,
                        admit(shared, conn, admitted, stream),
                    );
                    match next.await {
                        Some(Ok((reader, from))) => read_loop(shared, from, reader, inbound).await,
                        Some(Err(error)) => error,
                        None => ConnError::Timeout("hello"),
                    }
                }));
            }
            Either::Left((Err(error), _)) => return error.into(),
            Either::Right((error, _)) => return error.unwrap_or(ConnError::Stopped),
        }
    }
}

/// Reads a stream's [`Hello`] and admits the stream: the header checks out, the sender is
/// a configured peer, its certificate names it (checked once per connection), every
/// stream names the same sender, and no class comes twice.
async fn admit(
    shared: &Shared,
    conn: &Connection,
    admitted: &Mutex<Admitted>,
    stream: RecvStream,
) -> Result<(FrameReader, NodeId), ConnError> {
    let config = &shared.config;
    let mut reader = FrameReader::new(stream);
    let (hello, _): (Hello, usize) = reader.next(HELLO_MAX_BYTES).await?;
    hello.check(config.cluster_id, config.node_id)?;
    let from = hello.from;
    if from == config.node_id || !shared.is_peer(from) {
        return Err(HelloError::UnexpectedPeer(from).into());
    }
    let mut admitted = admitted.lock().unwrap_or_else(|e| e.into_inner());
    match admitted.peer {
        Some((known, _)) if known != from => {
            return Err(HelloError::UnexpectedPeer(from).into());
        }
        Some(_) => {}
        None => {
            verify_identity(conn, from)?;
            let generation = shared.register_reader(from, conn.clone());
            admitted.peer = Some((from, generation));
        }
    }
    if admitted.classes.contains(&hello.class) {
        return Err(HelloError::DuplicateClass(hello.class.name()).into());
    }
    admitted.classes.push(hello.class);
    Ok((reader, from))
}

/// Checks that the certificate the peer presented in the handshake names `claimed`. The
/// chain was verified against the cluster CA during the handshake.
fn verify_identity(conn: &Connection, claimed: NodeId) -> Result<(), ConnError> {
    let identity = conn
        .peer_identity()
        .ok_or_else(|| ConnError::Identity("no peer certificate".into()))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| ConnError::Identity("peer identity is not a certificate chain".into()))?;
    paxos_tls::verify_peer_node(&chain, claimed).map_err(|e| ConnError::Identity(e.to_string()))
}

/// Decodes frames into the inbound queue until the stream fails. A full queue (in messages
/// or in bytes) stops the reading, so QUIC flow control pushes back on the sender.
async fn read_loop(
    shared: &Shared,
    from: NodeId,
    mut reader: FrameReader,
    inbound: &Sender<(Inbound, usize)>,
) -> ConnError {
    loop {
        let (message, bytes): (Message, usize) =
            match reader.next(shared.config.max_frame_bytes).await {
                Ok(frame) => frame,
                Err(error) => return error,
            };
        shared.inbound_bytes.acquire(bytes).await;
        // Given back if this future is dropped before the message is queued; `recv`
        // gives them back once it is taken.
        let held = Held::new(&shared.inbound_bytes, bytes);
        shared.count(&shared.counters.received_frames);
        if inbound
            .send((Inbound { from, message }, bytes))
            .await
            .is_err()
        {
            return ConnError::Stopped;
        }
        held.kept();
    }
}
