//! The admin port: `GET /status` (JSON), `GET /metrics` (Prometheus text), `GET /health`.
//!
//! A minimal HTTP/1.0-style responder: one request per connection, the request head bounded
//! to 8 KiB and 5 s, the body ignored, `Connection: close`. `HEAD` gets the headers `GET`
//! would (its `Content-Length` included) and no body; other methods get 405 with `Allow`. Enough for curl, a browser and
//! a Prometheus scraper, without an HTTP stack in the dependency tree.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_core::Role;
use paxos_node::Runtime;
use paxos_runtime::{BoxConn, Listener, timeout_at};
use tracing::{debug, warn};

use crate::server::Ctx;

const MAX_HEAD_BYTES: usize = 8 << 10;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ADMIN_CONNECTIONS: u64 = 64;

/// Serves the admin port until the task is aborted.
pub(crate) async fn serve(listener: Box<dyn Listener>, ctx: Arc<Ctx>) {
    let open = Arc::new(AtomicU64::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("admin accept failed: {e}");
                ctx.runtime.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_ADMIN_CONNECTIONS {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (task_ctx, open) = (ctx.clone(), open.clone());
        ctx.runtime.spawn(Box::pin(async move {
            if let Err(e) = respond(stream, &task_ctx).await {
                debug!("admin connection: {e}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
}

/// One response, before it is written.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    code: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(code: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            code,
            content_type,
            body: body.into(),
        }
    }

    fn text(code: u16, body: &str) -> Self {
        Self::new(code, "text/plain", body)
    }

    /// The bytes to send: the head, then the body unless the request was `HEAD` (whose
    /// head still announces the `Content-Length` a `GET` would get, as RFC 9110 §9.3.2
    /// asks).
    fn render(&self, head_only: bool) -> Vec<u8> {
        let Self {
            code,
            content_type,
            body,
        } = self;
        let reason = match code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let allow = if *code == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }
}

async fn respond(stream: BoxConn, ctx: &Ctx) -> std::io::Result<()> {
    exchange(&*ctx.runtime, stream, |method, path| {
        route(method, path, ctx)
    })
    .await
}

/// The HTTP layer: reads one request head (bounded in bytes and time), answers it with
/// `route(method, path)` and closes the connection.
async fn exchange(
    runtime: &dyn Runtime,
    mut stream: BoxConn,
    route: impl FnOnce(&str, &str) -> Response,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            if head.len() >= MAX_HEAD_BYTES {
                return Ok(false);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(true)
    };
    let complete = matches!(
        timeout_at(runtime, runtime.now() + HEAD_TIMEOUT, read_head).await,
        Some(Ok(true))
    );
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (response, head_only) = match (complete, parts.next(), parts.next()) {
        (true, Some(method), Some(target)) => {
            let path = target.split('?').next().unwrap_or_default();
            (route(method, path), method == "HEAD")
        }
        _ => (Response::text(400, "bad request\n"), false),
    };
    stream.write_all(&response.render(head_only)).await?;
    crate::server::lingering_close(runtime, stream).await;
    Ok(())
}

fn route(method: &str, path: &str, ctx: &Ctx) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    match path {
        "/status" => Response::new(200, "application/json", status_json(ctx)),
        "/metrics" => Response::new(200, "text/plain; version=0.0.4", metrics_text(ctx)),
        "/health" => {
            let status = ctx.node.status();
            if status.stopped.is_some() {
                Response::text(503, "stopped\n")
            } else if status.leader.is_none() {
                Response::text(503, "no leader\n")
            } else {
                Response::text(200, "ok\n")
            }
        }
        _ => Response::text(404, "not found: try /status, /metrics or /health\n"),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
        _ => "unknown",
    }
}

fn status_json(ctx: &Ctx) -> String {
    let s = ctx.node.status();
    let contacts = ctx.node.peer_contacts();
    let now = std::time::Instant::now();
    let peers: Vec<_> = ctx
        .config
        .peers
        .iter()
        .filter(|p| p.id != s.id.0)
        .map(|p| {
            let heard = contacts.iter().find(|c| c.id.0 == p.id).and_then(|c| c.last_heard);
            let ago_ms = heard.map(|t| now.saturating_duration_since(t).as_millis() as u64);
            serde_json::json!({ "id": p.id, "addr": p.addr.to_string(), "last_contact_ms_ago": ago_ms })
        })
        .collect();
    let value = serde_json::json!({
        "id": s.id.0,
        "pid": std::process::id(),
        "role": role_name(s.role),
        "ballot": { "round": s.ballot.round, "node": s.ballot.node.0 },
        "leader": s.leader.map(|l| l.0),
        "commit": s.commit.0,
        "applied": s.applied.0,
        "lease_held": s.lease_held,
        "stopped": s.stopped.map(|e| e.to_string()),
        "peers": peers,
        "resp": ctx.config.resp.to_string(),
        "runtime": ctx.config.runtime,
        "storage": ctx.config.storage,
        "max_command_bytes": ctx.node.max_command_bytes(),
        "max_set_bytes": crate::server::max_set_bytes(ctx.node.max_command_bytes()),
    });
    let mut text = value.to_string();
    text.push('\n');
    text
}

fn metrics_text(ctx: &Ctx) -> String {
    let s = ctx.node.status();
    let m = ctx.node.metrics();
    let st = &ctx.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let id = s.id.0;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP paxos_{name} {help}");
        let _ = writeln!(out, "# TYPE paxos_{name} {kind}");
        let _ = writeln!(out, "paxos_{name}{{node=\"{id}\"}} {value}");
    };
    metric(
        "is_leader",
        "gauge",
        "1 if this node is the leader.",
        u64::from(s.role == Role::Leader),
    );
    metric(
        "leader_known",
        "gauge",
        "1 if this node knows a leader.",
        u64::from(s.leader.is_some()),
    );
    metric(
        "ballot_round",
        "gauge",
        "Round of the highest ballot promised.",
        s.ballot.round,
    );
    metric(
        "commit_slot",
        "gauge",
        "Every slot below this is chosen and known here.",
        s.commit.0,
    );
    metric(
        "applied_slot",
        "gauge",
        "Every slot below this is applied here.",
        s.applied.0,
    );
    metric(
        "stopped",
        "gauge",
        "1 once the node has stopped for good.",
        u64::from(s.stopped.is_some()),
    );
    metric(
        "proposals_total",
        "counter",
        "Proposals taken by the core.",
        m.proposals,
    );
    metric(
        "reads_total",
        "counter",
        "Reads answered on this node.",
        m.reads,
    );
    metric(
        "read_markers_total",
        "counter",
        "Read markers proposed through the log.",
        m.read_markers,
    );
    metric(
        "committed_slots_total",
        "counter",
        "Slots applied.",
        m.committed_slots,
    );
    metric(
        "committed_commands_total",
        "counter",
        "Client commands applied.",
        m.committed_commands,
    );
    metric(
        "largest_batch",
        "gauge",
        "Most commands applied from one slot.",
        m.largest_batch,
    );
    metric(
        "peak_pending_proposals",
        "gauge",
        "Most proposals queued in the core at once.",
        m.peak_pending_proposals,
    );
    metric(
        "peak_waiters",
        "gauge",
        "Most requests waiting for their outcome at once.",
        m.peak_waiters,
    );
    metric(
        "persists_total",
        "counter",
        "Storage persist calls.",
        m.persists,
    );
    metric(
        "persisted_entries_total",
        "counter",
        "Entries persisted.",
        m.persisted_entries,
    );
    metric("driver_cycles_total", "counter", "Driver cycles.", m.cycles);
    metric(
        "resp_connections_total",
        "counter",
        "RESP connections accepted.",
        load(&st.connections_total),
    );
    metric(
        "resp_connections_open",
        "gauge",
        "RESP connections open.",
        load(&st.connections_open),
    );
    metric(
        "resp_connections_refused_total",
        "counter",
        "RESP connections refused (too many).",
        load(&st.connections_refused),
    );
    metric(
        "resp_commands_total",
        "counter",
        "RESP commands received.",
        load(&st.commands),
    );
    metric(
        "resp_writes_total",
        "counter",
        "Write commands (SET, DEL, INCR, CAS).",
        load(&st.writes),
    );
    metric(
        "resp_reads_total",
        "counter",
        "GET commands.",
        load(&st.reads),
    );
    metric(
        "resp_retries_total",
        "counter",
        "Retries of a command with the same request id.",
        load(&st.retries),
    );
    metric(
        "resp_error_replies_total",
        "counter",
        "Error replies sent.",
        load(&st.error_replies),
    );
    metric(
        "resp_protocol_errors_total",
        "counter",
        "Connections closed for a malformed or oversized request.",
        load(&st.protocol_errors),
    );
    metric(
        "resp_sessions_renewed_total",
        "counter",
        "Connections that went on as a new client after their session was evicted.",
        load(&st.sessions_renewed),
    );
    let core = m.core;
    for (name, help, value) in [
        (
            "elections_started_total",
            "Times this node started phase 1.",
            core.elections_started,
        ),
        (
            "elections_won_total",
            "Times this node became leader.",
            core.elections_won,
        ),
        (
            "prepares_sent_total",
            "Prepare messages sent.",
            core.prepares_sent,
        ),
        (
            "lease_reads_total",
            "Reads answered under the leader lease (no message).",
            core.lease_reads,
        ),
        (
            "read_index_reads_total",
            "Reads that needed a read-index round.",
            core.read_index_reads,
        ),
        (
            "read_rounds_total",
            "Heartbeat rounds sent on behalf of reads.",
            core.read_rounds,
        ),
        (
            "lease_refusals_total",
            "Prepares refused because of a granted lease.",
            core.lease_refusals,
        ),
    ] {
        metric(name, "counter", help, value);
    }
    metric(
        "lease_held",
        "gauge",
        "1 if this node holds the leader lease.",
        u64::from(s.lease_held),
    );
    let _ = writeln!(
        out,
        "# HELP paxos_messages_sent_total Protocol messages sent, by kind."
    );
    let _ = writeln!(out, "# TYPE paxos_messages_sent_total counter");
    for (kind, n) in paxos_core::Message::KINDS.iter().zip(m.messages_sent) {
        let _ = writeln!(
            out,
            "paxos_messages_sent_total{{node=\"{id}\",kind=\"{kind}\"}} {n}"
        );
    }
    let h = m.persist_latency;
    let _ = writeln!(
        out,
        "# HELP paxos_persist_seconds Time taken by Storage::persist."
    );
    let _ = writeln!(out, "# TYPE paxos_persist_seconds histogram");
    let mut cumulative = 0;
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        let le = paxos_node::LATENCY_BOUNDS_US
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(
            out,
            "paxos_persist_seconds_bucket{{node=\"{id}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "paxos_persist_seconds_sum{{node=\"{id}\"}} {}",
        h.sum_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "paxos_persist_seconds_count{{node=\"{id}\"}} {cumulative}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `request` to an `exchange` over a real socket on 127.0.0.1 and returns
    /// everything written back before the close.
    async fn over_http(request: &[u8]) -> String {
        let runtime: Arc<dyn Runtime> = Arc::new(paxos_node::TokioRuntime::current().unwrap());
        let listener = runtime.bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server_runtime = runtime.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            exchange(&*server_runtime, stream, |method, path| {
                if method != "GET" && method != "HEAD" {
                    return Response::text(405, "only GET and HEAD\n");
                }
                Response::text(200, &format!("body of {path}\n"))
            })
            .await
            .unwrap();
        });
        let mut client = runtime.connect_tcp(addr).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        let deadline = runtime.now() + Duration::from_secs(10);
        timeout_at(&*runtime, deadline, client.read_to_end(&mut reply))
            .await
            .expect("the server closes the connection")
            .unwrap();
        drop(client);
        server.await.unwrap();
        String::from_utf8(reply).unwrap()
    }

    #[tokio::test]
    async fn head_gets_the_get_headers_and_no_body() {
        let get = over_http(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        assert_eq!(get_body, "body of /status\n");
        assert!(get_head.contains(&format!("Content-Length: {}", get_body.len())));

        let head = over_http(b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            head,
            format!("{get_head}\r\n\r\n"),
            "HEAD must not send a body"
        );
    }

    #[tokio::test]
    async fn other_methods_are_refused_with_allow() {
        let reply = over_http(b"POST /status HTTP/1.1\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply:?}");
        assert!(reply.contains("\r\nAllow: GET, HEAD\r\n"), "{reply:?}");
        let reply = over_http(b"\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    }
}
