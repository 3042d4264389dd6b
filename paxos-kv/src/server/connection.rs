//! One RESP connection: the request loop, pipelining, and the writes and reads it makes on
//! the client's behalf (retried, at most once).
//!
//! # Pipelining
//!
//! A client may send many requests without waiting for replies. The connection takes every
//! complete request already buffered, at most [`MAX_PIPELINE`] at a time (each within the
//! parser's byte bounds), and executes them **in order, as groups**:
//!
//! * consecutive writes become one [`KvCommand::Batch`]: one log entry, one request id,
//!   one commit for all of them. A group is cut where the next write would take the
//!   batch's size bound ([`KvCommand::max_request_bytes`]) over the node's
//!   [`max_command_bytes`](paxos_node::NodeHandle::max_command_bytes); a write alone is
//!   proposed as itself, not as a batch of one;
//! * consecutive reads become one [`KvQuery::Batch`], answered at one point of the state
//!   (a read alone is sent as itself), at most [`MAX_READ_GROUP`] of them, since their
//!   answers are held whole until the batch is answered;
//! * any other command (`PING`, `HELLO`, `CLIENT`, `INFO`...) and any request refused
//!   before reaching the state machine (unknown command, wrong arity, syntax, too large) is
//!   answered in place, between the groups around it.
//!
//! Each group starts after the one before it has finished, and its replies are appended in
//! the order of its requests. So replies come back in request order, writes are applied in
//! request order, and a client reads its own writes: a read group starts only after the
//! write group before it was applied on this node, which is what `propose` waits for. A
//! pipeline of 100 `SET`s costs one commit instead of 100.
//!
//! A batch keeps the rules of a single write: it is retried with the same request id after
//! a timeout or a leadership change (so it applies at most once), and a session found
//! expired starts a new client and is retried once if no earlier attempt can have been
//! applied. When a group fails as a whole (`-TIMEOUT`, `-NOLEADER`, `-OVERLOADED`,
//! `-ERR session expired`), each of its requests gets that error, so the client still
//! gets one reply per request. Within a batch, one command failing (`INCR` of a
//! non-integer) does not stop the others, as in a Redis pipeline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::kv::{KvAnswer, KvCommand, KvOutput, KvQuery, KvRequest, RequestId};
use crate::resp::{self, Encoder};
use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use paxos_node::{ProposeError, ReadError};
use paxos_runtime::BoxConn;

use crate::server::clients::Registration;
use crate::server::dispatch::{self, ReadShape, Step, WriteShape};
use crate::server::transaction::{self, Transaction};
use crate::server::{Ctx, bump, lingering_close};

/// Closes the connection after a reply that ends it (a protocol error): discards at most
/// 4 MiB of what the client still sends, for at most 1 s.
async fn close_after_error(ctx: &Ctx, stream: BoxConn) {
    let until = ctx.runtime.now() + Duration::from_secs(1);
    lingering_close(&*ctx.runtime, stream, until, 4 << 20).await;
}

/// Attempts of one client command (all with the same request id) before giving up.
const MAX_ATTEMPTS: u32 = 32;
/// Replies buffered before they are written even if more pipelined requests are queued.
const MAX_OUT_BYTES: usize = 64 << 10;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 << 10;
/// Requests taken off the buffer and executed as one pipeline (see the module docs).
pub(crate) const MAX_PIPELINE: usize = 1024;
/// Reads in one read group: their answers are buffered whole before they are written, so
/// this bounds that buffer at this many values (writes are bounded by the batch's bytes).
pub(crate) const MAX_READ_GROUP: usize = 128;

/// One client: its id, its birth, and the sequence number of its last write.
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) born_slot: u64,
    pub(crate) seq: u64,
}

impl Client {
    /// The id of its next request.
    fn next_request(&mut self) -> RequestId {
        self.seq += 1;
        RequestId {
            client: self.id,
            born_slot: self.born_slot,
            seq: self.seq,
        }
    }
}

/// A connection's state.
pub(crate) struct Conn<'a> {
    /// The writer identity its writes carry (renewed when its session expired).
    pub(crate) client: Client,
    /// Its replies not yet written, in its protocol.
    pub(crate) out: Encoder,
    /// Its entry among the open connections (id, name, protocol...).
    pub(crate) registration: Registration<'a>,
    /// Its open `MULTI` transaction, if any.
    pub(crate) tx: Option<Transaction>,
}

/// What to do after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Write the replies and close (`QUIT`, a fatal node error).
    Close,
}

/// Serves one connection until the client leaves, sends `QUIT`, or sends a request that
/// cannot be parsed.
pub(crate) async fn connection(
    mut stream: BoxConn,
    peer: SocketAddr,
    ctx: &Ctx,
) -> std::io::Result<()> {
    // The runtime's sockets are accepted with TCP_NODELAY set.
    let mut conn = Conn {
        client: ctx.new_client(),
        out: Encoder::default(),
        registration: ctx
            .clients
            .register(peer, ctx.config.resp, ctx.runtime.now()),
        tx: None,
    };
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let mut requests = Vec::new();
        let mut refused = None;
        while requests.len() < MAX_PIPELINE {
            match resp::parse_request(&mut buf, &ctx.limits) {
                Ok(Some(words)) if words.is_empty() => {}
                Ok(Some(words)) => requests.push(words),
                Ok(None) => break,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let full = requests.len() == MAX_PIPELINE;
        let flow = pipeline(ctx, &mut conn, &mut stream, requests).await?;
        if flow == Flow::Close {
            // The client may have pipelined more after QUIT: linger, so that closing with
            // unread input does not reset the connection before the replies arrive.
            stream.write_all(conn.out.bytes()).await?;
            close_after_error(ctx, stream).await;
            return Ok(());
        }
        if let Some(e) = refused {
            bump(&ctx.stats.protocol_errors);
            conn.out.error(&format!("ERR {e}"));
            count_errors(ctx, &mut conn.out);
            stream.write_all(conn.out.bytes()).await?;
            close_after_error(ctx, stream).await;
            return Ok(());
        }
        if !conn.out.is_empty() {
            stream.write_all(conn.out.bytes()).await?;
            conn.out.clear();
        }
        if full {
            // More complete requests may be buffered: take them before reading.
            continue;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The writes or the reads waiting to go as one group.
enum Group {
    Empty,
    Writes {
        commands: Vec<KvCommand>,
        shapes: Vec<WriteShape>,
        /// The size bound of the batch so far, less the request overhead.
        batched_bytes: usize,
    },
    Reads {
        queries: Vec<KvQuery>,
        shapes: Vec<ReadShape>,
    },
}

/// Executes `requests` in order as groups (see the module docs), appending their replies
/// to `conn.out` and writing them out as they pile up.
async fn pipeline(
    ctx: &Ctx,
    conn: &mut Conn<'_>,
    stream: &mut BoxConn,
    requests: Vec<Vec<Bytes>>,
) -> std::io::Result<Flow> {
    let max_command_bytes = ctx.node.max_command_bytes();
    let mut group = Group::Empty;
    for words in requests {
        bump(&ctx.stats.commands);
        let (name, step) = dispatch::plan(&words, max_command_bytes);
        conn.touch(ctx, name);
        let flow = if conn.tx.is_some() || matches!(step, Step::Tx(_)) {
            // Inside a transaction nothing is grouped: what was pipelined before it runs
            // first, and its replies come first.
            match run(ctx, conn, std::mem::replace(&mut group, Group::Empty)).await {
                Flow::Continue => transaction::handle(ctx, conn, step, &words).await,
                Flow::Close => Flow::Close,
            }
        } else {
            group_step(ctx, conn, &mut group, step, &words, max_command_bytes).await
        };
        count_errors(ctx, &mut conn.out);
        if flow == Flow::Close {
            return Ok(Flow::Close);
        }
        // What is buffered are the replies of requests before the pending group: writing
        // them now keeps the order.
        if conn.out.len() >= MAX_OUT_BYTES {
            stream.write_all(conn.out.bytes()).await?;
            conn.out.clear();
        }
    }
    let flow = run(ctx, conn, group).await;
    count_errors(ctx, &mut conn.out);
    Ok(flow)
}

/// Adds one request outside a transaction to the pending group, or executes the group
/// first when the request does not join it.
async fn group_step(
    ctx: &Ctx,
    conn: &mut Conn<'_>,
    group: &mut Group,
    step: Step,
    words: &[Bytes],
    max_command_bytes: usize,
) -> Flow {
    let mut flow = Flow::Continue;
    match step {
        Step::Write(command, shape) => {
            bump(&ctx.stats.writes);
            let room = max_command_bytes.saturating_sub(crate::kv::REQUEST_OVERHEAD_BYTES);
            let fits = match &group {
                Group::Writes { batched_bytes, .. } => {
                    batched_bytes.saturating_add(command.max_batched_bytes()) <= room
                }
                _ => false,
            };
            if !fits {
                flow = run(ctx, conn, std::mem::replace(group, Group::Empty)).await;
                *group = Group::Writes {
                    commands: Vec::new(),
                    shapes: Vec::new(),
                    batched_bytes: 0,
                };
            }
            if let Group::Writes {
                commands,
                shapes,
                batched_bytes,
            } = group
            {
                *batched_bytes = batched_bytes.saturating_add(command.max_batched_bytes());
                commands.push(command);
                shapes.push(shape);
            }
        }
        Step::Read(query, shape) => {
            bump(&ctx.stats.reads);
            let fits =
                matches!(&group, Group::Reads { queries, .. } if queries.len() < MAX_READ_GROUP);
            if !fits {
                flow = run(ctx, conn, std::mem::replace(group, Group::Empty)).await;
                *group = Group::Reads {
                    queries: Vec::new(),
                    shapes: Vec::new(),
                };
            }
            if let Group::Reads { queries, shapes } = group {
                queries.push(query);
                shapes.push(shape);
            }
        }
        Step::Local(spec) => {
            flow = run(ctx, conn, std::mem::replace(group, Group::Empty)).await;
            if flow == Flow::Continue {
                flow = crate::server::local::execute(ctx, conn, spec, words).await;
            }
        }
        Step::Refuse(refusal) => {
            flow = run(ctx, conn, std::mem::replace(group, Group::Empty)).await;
            conn.out.error(&refusal);
        }
        // `pipeline` hands these to the transaction instead.
        Step::Tx(_) => {}
    }
    flow
}

/// Counts the error replies appended since the last call.
fn count_errors(ctx: &Ctx, out: &mut Encoder) {
    for _ in 0..out.take_errors() {
        bump(&ctx.stats.error_replies);
    }
}

impl Conn<'_> {
    /// Notes the command for `CLIENT LIST` (`cmd=`, `idle=`).
    fn touch(&self, ctx: &Ctx, name: &'static str) {
        let mut info = self.registration.info();
        info.command = name;
        info.last_command = ctx.runtime.now();
    }
}

/// Executes one group and appends its replies; a group of one goes as itself.
async fn run(ctx: &Ctx, conn: &mut Conn<'_>, group: Group) -> Flow {
    match group {
        Group::Empty => Flow::Continue,
        Group::Writes {
            mut commands,
            shapes,
            ..
        } => {
            let single = commands.len() == 1;
            let command = if single {
                commands.pop().expect("one command")
            } else {
                KvCommand::Batch(commands)
            };
            match write(ctx, &mut conn.client, command).await {
                Ok(output) if single => dispatch::render_output(&mut conn.out, shapes[0], output),
                Ok(KvOutput::Many(outputs)) if outputs.len() == shapes.len() => {
                    for (shape, output) in shapes.into_iter().zip(outputs) {
                        dispatch::render_output(&mut conn.out, shape, output);
                    }
                }
                // Refused as a whole (stale, malformed): every command gets the refusal.
                Ok(KvOutput::Error(e)) => shapes.iter().for_each(|_| conn.out.error(&e)),
                Ok(_) => shapes.iter().for_each(|_| {
                    conn.out
                        .error("ERR malformed output from the state machine")
                }),
                Err(failed) => return failed.reply_to_each(&mut conn.out, shapes.len()),
            }
            Flow::Continue
        }
        Group::Reads {
            mut queries,
            shapes,
        } => {
            let single = queries.len() == 1;
            let query = if single {
                queries.pop().expect("one query")
            } else {
                KvQuery::Batch(queries)
            };
            match read(ctx, query).await {
                Ok(answer) if single => dispatch::render_answer(&mut conn.out, shapes[0], answer),
                Ok(KvAnswer::Many(answers)) if answers.len() == shapes.len() => {
                    for (shape, answer) in shapes.into_iter().zip(answers) {
                        dispatch::render_answer(&mut conn.out, shape, answer);
                    }
                }
                Ok(_) => shapes.iter().for_each(|_| {
                    conn.out
                        .error("ERR malformed answer from the state machine")
                }),
                Err(failed) => return failed.reply_to_each(&mut conn.out, shapes.len()),
            }
            Flow::Continue
        }
    }
}

/// A write or read that did not get an outcome: the error to answer, and whether the node
/// stopped (close the connection).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) reply: String,
    pub(crate) flow: Flow,
}

impl Failed {
    fn new(reply: String) -> Self {
        Self {
            reply,
            flow: Flow::Continue,
        }
    }

    fn reply_to_each(&self, out: &mut Encoder, n: usize) -> Flow {
        for _ in 0..n {
            out.error(&self.reply);
        }
        self.flow
    }
}

/// Backs off before retry `attempt`: waits for a leader to be known when none is, else a
/// short growing pause (the node refused or lost the request).
async fn back_off(ctx: &Ctx, attempt: u32, deadline: Instant) {
    bump(&ctx.stats.retries);
    let left = deadline.saturating_duration_since(ctx.runtime.now());
    let pause = Duration::from_millis(5u64 << attempt.min(5)).min(left);
    if ctx.node.status().leader.is_none() {
        ctx.node
            .wait_for(left.min(Duration::from_secs(1)), |s| s.leader.is_some())
            .await;
    } else {
        ctx.runtime.sleep(pause).await;
    }
}

/// Proposes a write (one command or a batch), retrying with the same request id (so it
/// applies at most once) until it is applied, the attempts run out or the deadline passes.
///
/// If the state machine refuses the request because the client's session expired (see
/// `crate::kv`, "Exactly once"), the connection goes on as a new client. When no
/// earlier attempt can have been applied, the command is then retried once as that new
/// client's first request; otherwise its outcome is unknown and the reply says so.
///
/// The caller has checked the command against the node's size bound.
pub(crate) async fn write(
    ctx: &Ctx,
    client: &mut Client,
    command: KvCommand,
) -> Result<KvOutput, Failed> {
    let mut request = KvRequest {
        id: client.next_request(),
        command,
    };
    let mut encoded = request.encode();
    let deadline = ctx.runtime.now() + ctx.client_deadline();
    let mut unknown = false;
    let mut renewed = false;
    let mut last = ProposeError::NoLeader;
    for attempt in 0..MAX_ATTEMPTS {
        match ctx.node.propose(encoded.clone()).await {
            Ok(output) => match KvOutput::decode(&output) {
                Some(KvOutput::SessionExpired) => {
                    bump(&ctx.stats.sessions_renewed);
                    *client = ctx.new_client();
                    if unknown || renewed {
                        return Err(Failed::new(
                            "ERR session expired, reconnect: the outcome of this command is unknown"
                                .into(),
                        ));
                    }
                    // Refused at once: nothing of it was applied. Start over as a new client.
                    renewed = true;
                    request.id = client.next_request();
                    encoded = request.encode();
                    continue;
                }
                Some(output) => return Ok(output),
                None => {
                    return Err(Failed::new(
                        "ERR malformed output from the state machine".into(),
                    ));
                }
            },
            Err(ProposeError::TooLarge { len, max }) => {
                return Err(Failed::new(format!(
                    "ERR command of {len} bytes exceeds the largest accepted ({max} bytes)"
                )));
            }
            Err(ProposeError::Fatal(e)) => {
                return Err(Failed {
                    reply: format!("ERR node stopped: {e}"),
                    flow: Flow::Close,
                });
            }
            // Not retryable (say, applied without an output): retrying could apply it again.
            Err(e) if !e.is_retryable() => {
                return Err(Failed::new(format!("ERR {e}")));
            }
            Err(e) => {
                unknown |= e.outcome_unknown();
                last = e;
            }
        }
        if ctx.runtime.now() >= deadline {
            break;
        }
        back_off(ctx, attempt, deadline).await;
    }
    Err(Failed::new(if unknown {
        format!("TIMEOUT the outcome is unknown ({last})")
    } else if last == ProposeError::Overloaded {
        "OVERLOADED the node is overloaded; retry later".into()
    } else {
        format!("NOLEADER {last}; retry later")
    }))
}

/// Reads linearizably (one query or a batch), retrying until answered or out of time.
///
/// On the leader under its lease, between two cycles of its driver, the read is answered
/// here at once from the shared state ([`NodeHandle::try_read_barrier`]): no trip through
/// the driver, no encoding of the query or the answer.
///
/// [`NodeHandle::try_read_barrier`]: paxos_node::NodeHandle::try_read_barrier
pub(crate) async fn read(ctx: &Ctx, query: KvQuery) -> Result<KvAnswer, Failed> {
    if ctx.node.try_read_barrier().is_some() {
        return Ok(ctx.reader.answer(query));
    }
    let query = query.encode();
    let deadline = ctx.runtime.now() + ctx.client_deadline();
    let mut last = ReadError::NoLeader;
    for attempt in 0..MAX_ATTEMPTS {
        match ctx.node.read(query.clone()).await {
            Ok(answer) => {
                return KvAnswer::decode(&answer).ok_or_else(|| {
                    Failed::new("ERR malformed answer from the state machine".into())
                });
            }
            Err(ReadError::Fatal(e)) => {
                return Err(Failed {
                    reply: format!("ERR node stopped: {e}"),
                    flow: Flow::Close,
                });
            }
            Err(e) => last = e,
        }
        if ctx.runtime.now() >= deadline {
            break;
        }
        back_off(ctx, attempt, deadline).await;
    }
    Err(Failed::new(match last {
        ReadError::Overloaded => "OVERLOADED the node is overloaded; retry later".into(),
        ReadError::Timeout => "TIMEOUT read timed out; retry later".into(),
        e => format!("NOLEADER {e}; retry later"),
    }))
}
