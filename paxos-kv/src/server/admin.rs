//! The admin port: `GET /status` (JSON), `GET /metrics` (Prometheus text), `GET /health`,
//! and `POST /compact` (take a snapshot and compact the log now; answers
//! `{"upto": N}`, or 503 with the reason).
//!
//! # HTTP
//!
//! hyper's HTTP/1 server, on the sockets of the runtime seam: the listener and the
//! connections come from [`Runtime`] (futures-io streams, handed to hyper through
//! `smol-hyper`'s adapter), tasks and timeouts go through it too, so the port runs
//! unchanged on tokio and on smol. hyper's HTTP/1 needs no executor of its own.
//!
//! One request per connection (keep-alive off, `Connection: close`). `HEAD` gets the
//! headers `GET` would, its `Content-Length` included (RFC 9110 §9.3.2), and no body;
//! `POST` is for `/compact` alone, other methods and other `POST`s get 405 with
//! `Allow: GET, HEAD`; unknown paths 404; a malformed request
//! head 400, one over 8 KiB 431 (hyper's answers). A connection that sends only empty
//! lines is closed without a reply, as RFC 9112 §2.2 lets a server ignore them. Header
//! names go out in title case (`Content-Length`), as before.
//!
//! # Bounds
//!
//! * The request head: 8 KiB (hyper's `max_buf_size`, its smallest).
//! * Connections: 64 open at once; more are closed on accept.
//! * Time: 5 s per connection in all, request, reply and lingering close included
//!   ([`timeout_at`] on the runtime's timer). One bound on the whole connection covers a
//!   slow head and a slow reader alike, and needs no hyper `Timer` (hyper's own header
//!   timeout is off).
//!
//! After the reply the connection is closed in the lingering way (shut down the write side,
//! discard what the client still sends, within the time left), so that the reply is not
//! lost to a reset caused by closing with unread data.
//!
//! # What the pages show
//!
//! `/status` is [`Status`], serialized with serde: its fields are an interface (the tests,
//! the README and scripts read them). `/metrics` is [`crate::server::metrics`]. `/health` is 200
//! while the node runs and knows a leader, else 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Either};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use paxos_core::Role;
use paxos_runtime::{BoxConn, Listener, Runtime, timeout_at};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use serde::Serialize;
use smol_hyper::rt::FuturesIo;
use tracing::{debug, warn};

use crate::server::Ctx;

/// Largest request head, bytes.
const MAX_HEAD_BYTES: usize = 8 << 10;
/// Most of a connection's time the lingering close may take.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most bytes the lingering close discards.
const LINGER_BYTES: usize = 1 << 20;

/// How many connections, and for how long each.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// Connections open at once; more are closed on accept.
    max_connections: usize,
    /// Time for one connection in all.
    connection_time: Duration,
}

impl Bounds {
    const DEFAULT: Self = Self {
        max_connections: 64,
        connection_time: Duration::from_secs(5),
    };
}

type Reply = Response<Full<Bytes>>;

/// Answers a `GET` (or `HEAD`) of a path.
type Route = dyn Fn(&str) -> Reply + Send + Sync;

/// Runs the `POST` of a path, if it is an action.
type Action = dyn Fn(&str) -> Option<BoxFuture<'static, Reply>> + Send + Sync;

/// Serves the admin port until the task is dropped.
pub(crate) async fn serve(listener: Box<dyn Listener>, rt: Arc<dyn Runtime>, ctx: Arc<Ctx>) {
    let registry = crate::server::metrics::registry(&ctx.node, &ctx.stats);
    let node = ctx.node.clone();
    let route = move |path: &str| route(path, &ctx, &registry);
    let action = move |path: &str| action(path, &node);
    serve_http(
        listener,
        rt,
        Bounds::DEFAULT,
        Arc::new(route),
        Arc::new(action),
    )
    .await;
}

/// `POST /compact`: a snapshot now. Bounded by the connection's time like any request;
/// a compaction that takes longer goes on after the connection is closed.
fn action(path: &str, node: &paxos_node::NodeHandle) -> Option<BoxFuture<'static, Reply>> {
    if path != "/compact" {
        return None;
    }
    let node = node.clone();
    Some(Box::pin(async move {
        match node.compact().await {
            Ok(upto) => reply(
                StatusCode::OK,
                "application/json",
                format!("{{\"upto\":{}}}\n", upto.0),
            ),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("compaction failed: {e}\n"),
            ),
        }
    }))
}

/// The HTTP layer: accepts connections within `bounds` and answers each with `route`.
async fn serve_http(
    listener: Box<dyn Listener>,
    rt: Arc<dyn Runtime>,
    bounds: Bounds,
    route: Arc<Route>,
    action: Arc<Action>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin.
                warn!("admin accept failed: {e}");
                rt.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&open, bounds.max_connections) else {
            debug!(
                "admin: {} connections open, closing a new one",
                bounds.max_connections
            );
            continue;
        };
        let (task_rt, route, action) = (rt.clone(), route.clone(), action.clone());
        rt.spawn(Box::pin(async move {
            let time = bounds.connection_time;
            connection(conn, &*task_rt, time, &*route, &*action).await;
            drop(slot);
        }));
    }
}

/// One of the bounded connection slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one request on `conn`, then closes it; all within `time`.
async fn connection(
    conn: BoxConn,
    rt: &dyn Runtime,
    time: Duration,
    route: &Route,
    action: &Action,
) {
    let deadline = rt.now() + time;
    let service = hyper::service::service_fn(|request: Request<Incoming>| {
        let path = request.uri().path();
        let reply = match *request.method() {
            Method::GET | Method::HEAD => Either::Left(route(path)),
            Method::POST => match action(path) {
                Some(running) => Either::Right(running),
                None => Either::Left(not_allowed()),
            },
            _ => Either::Left(not_allowed()),
        };
        let reply: BoxFuture<'static, Reply> = match reply {
            Either::Left(now) => Box::pin(std::future::ready(now)),
            Either::Right(running) => running,
        };
        reply.map(Ok::<_, Infallible>)
    });
    let mut http = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .title_case_headers(true)
        .header_read_timeout(None)
        .serve_connection(FuturesIo::new(conn), service);
    // Without shutdown, to take the connection back for the lingering close.
    let served = futures::future::poll_fn(|cx| http.poll_without_shutdown(cx));
    match timeout_at(rt, deadline, served).await {
        None => return debug!("admin connection: out of time"),
        Some(Err(e)) => debug!("admin connection: {e}"),
        Some(Ok(())) => {}
    }
    let conn = http.into_parts().io.into_inner();
    let linger_until = deadline.min(rt.now() + LINGER_TIME);
    crate::server::lingering_close(rt, conn, linger_until, LINGER_BYTES).await;
}

fn not_allowed() -> Reply {
    let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    let allow = HeaderValue::from_static("GET, HEAD");
    reply.headers_mut().insert(ALLOW, allow);
    reply
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    reply
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    reply(status, "text/plain", body)
}

fn route(path: &str, ctx: &Ctx, registry: &Registry) -> Reply {
    match path {
        "/status" => {
            let mut json = serde_json::to_string(&Status::of(ctx)).unwrap_or_default();
            json.push('\n');
            reply(StatusCode::OK, "application/json", json)
        }
        "/metrics" => {
            let mut metrics = String::new();
            match prometheus_text::encode(&mut metrics, registry) {
                Ok(()) => reply(StatusCode::OK, prometheus_text::CONTENT_TYPE, metrics),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
            }
        }
        "/health" => {
            let status = ctx.node.status();
            if status.stopped.is_some() {
                text(StatusCode::SERVICE_UNAVAILABLE, "stopped\n")
            } else if status.leader.is_none() {
                text(StatusCode::SERVICE_UNAVAILABLE, "no leader\n")
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /status, /metrics or /health\n",
        ),
    }
}

/// The body of `GET /status`.
#[derive(Debug, Serialize)]
struct Status {
    /// This node's id.
    id: u64,
    /// Its process id.
    pid: u32,
    /// `leader`, `candidate` or `follower`.
    role: &'static str,
    /// The highest ballot it promised.
    ballot: BallotStatus,
    /// The leader it believes in, if any.
    leader: Option<u64>,
    /// Every slot below this is chosen and known here.
    commit: u64,
    /// Every slot below this is applied here.
    applied: u64,
    /// It is the leader and holds the leader lease.
    lease_held: bool,
    /// Why the node stopped, once it has.
    stopped: Option<String>,
    /// The other members.
    peers: Vec<PeerStatus>,
    /// The RESP address.
    resp: String,
    /// The async runtime it runs on (`serve --runtime`).
    runtime: super::RuntimeKind,
    /// Threads of that runtime (`serve --threads`).
    threads: usize,
    /// Its storage backend.
    storage: super::StorageKind,
    /// Its transport between replicas (`serve --transport`).
    transport: super::TransportKind,
    /// The largest command accepted, bytes (see `server`'s module docs).
    max_command_bytes: usize,
    /// The largest key + value of a `SET`, bytes.
    max_set_bytes: usize,
    /// The first slot still in the log (everything below is in the snapshot).
    log_start: u64,
    /// Size of the saved snapshot, bytes (0 if none).
    snapshot_bytes: u64,
    /// Snapshots this node took of its own state.
    snapshots_taken: u64,
    /// Snapshots it fetched from a peer and installed.
    snapshots_installed: u64,
}

#[derive(Debug, Serialize)]
struct BallotStatus {
    round: u64,
    node: u64,
}

#[derive(Debug, Serialize)]
struct PeerStatus {
    id: u64,
    addr: String,
    /// Since its last message, if one arrived since this node started.
    last_contact_ms_ago: Option<u64>,
}

impl Status {
    fn of(ctx: &Ctx) -> Self {
        let s = ctx.node.status();
        let contacts = ctx.node.peer_contacts();
        let now = std::time::Instant::now();
        let peers = ctx.config.peers.iter().filter(|p| p.id != s.id.0);
        let peers = peers.map(|p| {
            let heard = contacts
                .iter()
                .find(|c| c.id.0 == p.id)
                .and_then(|c| c.last_heard);
            PeerStatus {
                id: p.id,
                addr: p.addr.to_string(),
                last_contact_ms_ago: heard
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            }
        });
        let max_command_bytes = ctx.node.max_command_bytes();
        let metrics = ctx.node.metrics();
        Self {
            id: s.id.0,
            pid: std::process::id(),
            role: match s.role {
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
                _ => "unknown",
            },
            ballot: BallotStatus {
                round: s.ballot.round,
                node: s.ballot.node.0,
            },
            leader: s.leader.map(|l| l.0),
            commit: s.commit.0,
            applied: s.applied.0,
            lease_held: s.lease_held,
            stopped: s.stopped.map(|e| e.to_string()),
            peers: peers.collect(),
            resp: ctx.config.resp.to_string(),
            runtime: ctx.config.runtime,
            threads: ctx.config.threads,
            storage: ctx.config.storage,
            transport: ctx.config.transport,
            max_command_bytes,
            max_set_bytes: crate::server::max_set_bytes(max_command_bytes),
            log_start: metrics.log_start,
            snapshot_bytes: metrics.snapshot_bytes,
            snapshots_taken: metrics.snapshots_taken,
            snapshots_installed: metrics.snapshots_installed,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::pin::pin;
    use std::time::Instant;

    use futures::future::{BoxFuture, Either, select};
    use paxos_runtime::{AsyncIoRuntime, TokioRuntime};

    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    /// Runs `test` on tokio, then on smol (through the async-io runtime).
    fn on_both_runtimes(test: impl Fn(Arc<dyn Runtime>) -> BoxFuture<'static, ()>) {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rt = Arc::new(TokioRuntime::new(tokio.handle().clone()));
        tokio.block_on(test(rt));
        smol::block_on(test(Arc::new(AsyncIoRuntime::new())));
    }

    /// Runs `client` against an admin port on 127.0.0.1 that answers every path with
    /// `body of <path>`; the port closes when `client` returns.
    async fn with_server<F: Future<Output = ()>>(
        rt: Arc<dyn Runtime>,
        bounds: Bounds,
        client: impl FnOnce(SocketAddr) -> F,
    ) {
        let listener = rt.bind_tcp(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let route = |path: &str| reply(StatusCode::OK, "text/plain", format!("body of {path}\n"));
        let action = |_: &str| None;
        let server = pin!(serve_http(
            listener,
            rt,
            bounds,
            Arc::new(route),
            Arc::new(action)
        ));
        match select(server, pin!(client(addr))).await {
            Either::Left(_) => unreachable!("the server returned"),
            Either::Right(((), _)) => {}
        }
    }

    /// Sends `request` and returns everything written back before the close, with how long
    /// the close took.
    async fn exchange(rt: &dyn Runtime, addr: SocketAddr, request: &[u8]) -> (String, Duration) {
        let start = Instant::now();
        let mut conn = rt.connect_tcp(addr).await.unwrap();
        // The server may close before reading everything: ignore a failed write.
        let _ = conn.write_all(request).await;
        let mut reply = Vec::new();
        let read = conn.read_to_end(&mut reply);
        let deadline = rt.now() + Duration::from_secs(10);
        // A reset after the reply counts as the close.
        let _ = timeout_at(rt, deadline, read)
            .await
            .expect("the server closes the connection");
        (String::from_utf8(reply).unwrap(), start.elapsed())
    }

    #[test]
    fn answers_over_loopback_on_tokio_and_smol() {
        on_both_runtimes(|rt| {
            Box::pin(with_server(
                rt.clone(),
                Bounds::DEFAULT,
                move |addr| async move {
                    let rt = &*rt;
                    let request = b"GET /status?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
                    let (get, took) = exchange(rt, addr, request).await;
                    // The close follows the reply, not the end of the lingering.
                    assert!(took < LINGER_TIME, "{took:?}");
                    let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
                    assert!(get_head.starts_with("HTTP/1.1 200 OK\r\n"), "{get:?}");
                    assert_eq!(get_body, "body of /status\n");
                    assert!(get_head.contains("\r\nContent-Length: 16"), "{get:?}");
                    assert!(get_head.contains("\r\nConnection: close"), "{get:?}");

                    // HEAD: the headers of GET, no body.
                    let head = exchange(rt, addr, b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .0;
                    let without_date = |h: &str| -> Vec<String> {
                        h.lines()
                            .filter(|l| !l.starts_with("Date:"))
                            .map(String::from)
                            .collect()
                    };
                    assert!(head.ends_with("\r\n\r\n"), "HEAD sent a body: {head:?}");
                    assert_eq!(
                        without_date(head.trim_end()),
                        without_date(get_head),
                        "{head:?}"
                    );

                    let (reply, _) = exchange(rt, addr, b"POST /status HTTP/1.1\r\n\r\n").await;
                    assert!(reply.starts_with("HTTP/1.1 405"), "{reply:?}");
                    assert!(reply.contains("\r\nAllow: GET, HEAD\r\n"), "{reply:?}");
                    // A body the server never reads does not cost the client its reply.
                    let mut post = b"POST / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n".to_vec();
                    post.resize(post.len() + 200_000, b'x');
                    let (reply, _) = exchange(rt, addr, &post).await;
                    assert!(reply.starts_with("HTTP/1.1 405"), "{reply:?}");

                    let (reply, _) = exchange(rt, addr, b"GET\r\n\r\n").await;
                    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
                    let (reply, _) = exchange(rt, addr, &[b'G'; 20_000]).await;
                    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
                    let (reply, _) = exchange(rt, addr, &[0xff; 100]).await;
                    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
                    // Empty lines only, then the client's close: no request, no reply.
                    let mut conn = rt.connect_tcp(addr).await.unwrap();
                    conn.write_all(b"\r\n\r\n").await.unwrap();
                    conn.close().await.unwrap();
                    let mut rest = Vec::new();
                    let _ = conn.read_to_end(&mut rest).await;
                    assert!(rest.is_empty(), "{rest:?}");
                },
            ))
        });
    }

    #[test]
    fn a_slow_client_is_cut_off_within_the_bound() {
        let bounds = Bounds {
            connection_time: Duration::from_millis(300),
            ..Bounds::DEFAULT
        };
        on_both_runtimes(move |rt| {
            Box::pin(with_server(rt.clone(), bounds, move |addr| async move {
                for unfinished in [&b"GET /status HTTP/1.1\r\nHost: x\r\n"[..], b""] {
                    let (reply, took) = exchange(&*rt, addr, unfinished).await;
                    assert_eq!(reply, "", "{unfinished:?}");
                    assert!(took >= Duration::from_millis(250), "{took:?}");
                    assert!(took < Duration::from_secs(3), "{took:?}");
                }
            }))
        });
    }

    #[test]
    fn connections_beyond_the_bound_are_closed_at_once() {
        let bounds = Bounds {
            max_connections: 2,
            ..Bounds::DEFAULT
        };
        on_both_runtimes(move |rt| {
            Box::pin(with_server(rt.clone(), bounds, move |addr| async move {
                let rt = &*rt;
                let mut idle = Vec::new();
                for _ in 0..bounds.max_connections {
                    let mut conn = rt.connect_tcp(addr).await.unwrap();
                    conn.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
                    idle.push(conn);
                }
                let (reply, took) = exchange(rt, addr, b"GET / HTTP/1.1\r\n\r\n").await;
                assert_eq!(reply, "");
                assert!(took < Duration::from_secs(2), "{took:?}");
                // Closing the idle ones gives their slots back.
                drop(idle);
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let (reply, _) = exchange(rt, addr, b"GET /x HTTP/1.1\r\n\r\n").await;
                    if reply.starts_with("HTTP/1.1 200") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "no slot was given back");
                    rt.sleep(Duration::from_millis(20)).await;
                }
            }))
        });
    }
}
