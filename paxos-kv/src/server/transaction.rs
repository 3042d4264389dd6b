//! `MULTI`/`EXEC`: a connection's transaction, executed as one log entry.
//!
//! After `MULTI` (`+OK`), each command is checked as it arrives and queued (`+QUEUED`);
//! `EXEC` executes the queue and answers an array of its replies, in order; `DISCARD`
//! drops it (`+OK`). As in Redis 7:
//!
//! * a command refused while queueing (unknown, wrong arity, syntax, too large) gets its
//!   error at once and marks the transaction: its `EXEC` then answers `-EXECABORT
//!   Transaction discarded because of previous errors.` and runs nothing;
//! * a command that fails while executing (`INCR` of a non-integer) gets its error in the
//!   array, and the others still run: nothing is rolled back;
//! * `MULTI` inside a transaction, and `EXEC` or `DISCARD` outside one, are errors that
//!   change nothing; `QUIT` and `RESET` act at once (`RESET` discards the transaction).
//!
//! **Atomicity.** The writes and reads of a transaction become one
//! [`KvCommand::Batch`]: one log entry, applied with nothing in between, on every replica.
//! A read in it is a [`KvCommand::Read`], so it sees the writes queued before it and none
//! after. A transaction of reads only is one [`KvQuery::Batch`], answered at one point of
//! the state without going through the log. Connection commands queued in it (`PING`,
//! `ECHO`, `CLIENT SETNAME`...) run after the batch, in their places in the array. The
//! batch is retried like any write, with one request id, so it applies at most once; if
//! it gets no outcome, `EXEC` answers that error (`-TIMEOUT`, `-NOLEADER`...) instead of
//! an array.
//!
//! **Bounds.** The queued writes and reads must fit one command of the node's
//! [`max_command_bytes`](paxos_node::NodeHandle::max_command_bytes) (a command that would
//! take the batch over is refused and marks the transaction; a transaction of one write
//! goes as that write, so a value at the size limit fits alone, as outside one), at most [`MAX_QUEUED`]
//! commands are queued, and at most [`MAX_READ_GROUP`] of them reads, since their answers
//! are held whole until the array is written.
//!
//! **`WATCH` is not supported**: it is refused with [`WATCH_UNSUPPORTED`], so a client
//! relying on optimistic locking fails loudly instead of running unguarded. `CAS key
//! expected new` is this server's compare-and-set. `UNWATCH` answers `+OK` (nothing is
//! ever watched).

use bytes::Bytes;

use crate::kv::{KvAnswer, KvCommand, KvOutput, KvQuery, REQUEST_OVERHEAD_BYTES};
use crate::server::Ctx;
use crate::server::commands::{Cmd, Spec};
use crate::server::connection::{Conn, Flow, MAX_READ_GROUP, read, write};
use crate::server::dispatch::{self, Step, WriteShape};

/// Commands one transaction queues at most.
pub(crate) const MAX_QUEUED: usize = 4096;

/// The refusal of `WATCH`.
pub(crate) const WATCH_UNSUPPORTED: &str =
    "ERR WATCH is not supported: use CAS key expected new for a compare-and-set";

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A transaction being queued.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    queued: Vec<Queued>,
    /// A command was refused while queueing: `EXEC` runs nothing.
    aborted: bool,
    /// The size bound of the batch so far ([`KvCommand::max_batched_bytes`] summed).
    batched_bytes: usize,
    reads: usize,
}

#[derive(Debug)]
enum Queued {
    /// A write or a read: its place in the batch.
    Kv(KvCommand, WriteShape),
    /// A connection command, run after the batch.
    Local(&'static Spec, Vec<Bytes>),
    /// `UNWATCH`: `+OK`.
    Unwatch,
}

/// Handles a request while a transaction is open, or a transaction command (`MULTI`,
/// `EXEC`...) outside one. The caller has executed what was pipelined before it.
pub(crate) async fn handle(ctx: &Ctx, conn: &mut Conn<'_>, step: Step, words: &[Bytes]) -> Flow {
    let Some(tx) = conn.tx.as_mut() else {
        match step {
            Step::Tx(Cmd::Multi) => {
                conn.tx = Some(Transaction::default());
                conn.out.simple("OK");
            }
            Step::Tx(Cmd::Exec) => conn.out.error("ERR EXEC without MULTI"),
            Step::Tx(Cmd::Discard) => conn.out.error("ERR DISCARD without MULTI"),
            Step::Tx(Cmd::Unwatch) => conn.out.simple("OK"),
            Step::Tx(_) => conn.out.error(WATCH_UNSUPPORTED),
            // Not called for other steps outside a transaction.
            _ => conn.out.error("ERR not in a transaction"),
        }
        return Flow::Continue;
    };
    let queued = match step {
        Step::Tx(Cmd::Exec) => {
            let tx = conn.tx.take().expect("a transaction is open");
            return exec(ctx, conn, tx).await;
        }
        Step::Tx(Cmd::Discard) => {
            conn.tx = None;
            conn.out.simple("OK");
            return Flow::Continue;
        }
        Step::Tx(Cmd::Multi) => {
            conn.out.error("ERR MULTI calls can not be nested");
            return Flow::Continue;
        }
        Step::Tx(Cmd::Unwatch) => Queued::Unwatch,
        Step::Tx(_) => {
            conn.out.error("ERR WATCH inside MULTI is not allowed");
            return Flow::Continue;
        }
        Step::Local(spec) if matches!(spec.cmd, Cmd::Quit | Cmd::Reset) => {
            conn.tx = None;
            return crate::server::local::execute(ctx, conn, spec, words).await;
        }
        Step::Local(spec) => Queued::Local(spec, words.to_vec()),
        Step::Refuse(refusal) => {
            tx.aborted = true;
            conn.out.error(&refusal);
            return Flow::Continue;
        }
        Step::Write(command, shape) => Queued::Kv(command, shape),
        Step::Read(query, shape) => Queued::Kv(KvCommand::Read(query), WriteShape::Read(shape)),
    };
    let refusal = if tx.queued.len() >= MAX_QUEUED {
        Some(format!(
            "ERR a transaction queues at most {MAX_QUEUED} commands"
        ))
    } else if let Queued::Kv(command, _) = &queued {
        let room = ctx
            .node
            .max_command_bytes()
            .saturating_sub(REQUEST_OVERHEAD_BYTES);
        let bytes = tx.batched_bytes.saturating_add(command.max_batched_bytes());
        let is_read = matches!(command, KvCommand::Read(_));
        // A transaction of one command goes as itself, so a write at the size limit
        // fits alone, as it does outside a transaction.
        let alone = tx.queued.iter().all(|q| !matches!(q, Queued::Kv(..)));
        if bytes > room && !alone {
            Some(format!(
                "ERR the transaction would exceed the largest command accepted ({} bytes)",
                ctx.node.max_command_bytes()
            ))
        } else if is_read && tx.reads >= MAX_READ_GROUP {
            Some(format!(
                "ERR a transaction holds at most {MAX_READ_GROUP} reads"
            ))
        } else {
            tx.batched_bytes = bytes;
            tx.reads += usize::from(is_read);
            None
        }
    } else {
        None
    };
    match refusal {
        Some(refusal) => {
            tx.aborted = true;
            conn.out.error(&refusal);
        }
        None => {
            tx.queued.push(queued);
            conn.out.simple("QUEUED");
        }
    }
    Flow::Continue
}

/// `EXEC`: runs the batch, then answers the array.
async fn exec(ctx: &Ctx, conn: &mut Conn<'_>, tx: Transaction) -> Flow {
    if tx.aborted {
        conn.out.error(EXECABORT);
        return Flow::Continue;
    }
    let mut commands = Vec::new();
    let mut items = Vec::with_capacity(tx.queued.len());
    for queued in tx.queued {
        match queued {
            Queued::Kv(command, shape) => {
                commands.push(command);
                items.push(Item::Kv(shape));
            }
            Queued::Local(spec, words) => items.push(Item::Local(spec, words)),
            Queued::Unwatch => items.push(Item::Unwatch),
        }
    }
    let outputs = match run_batch(ctx, conn, commands).await {
        Ok(outputs) => outputs,
        Err((reply, flow)) => {
            conn.out.error(&reply);
            return flow;
        }
    };
    let mut outputs = outputs.into_iter();
    conn.out.array(items.len());
    for item in items {
        match item {
            Item::Kv(shape) => match outputs.next() {
                Some(output) => dispatch::render_output(&mut conn.out, shape, output),
                None => conn
                    .out
                    .error("ERR malformed output from the state machine"),
            },
            Item::Local(spec, words) => {
                // No connection command that can be queued closes the connection.
                let _ = crate::server::local::execute(ctx, conn, spec, &words).await;
            }
            Item::Unwatch => conn.out.simple("OK"),
        }
    }
    Flow::Continue
}

enum Item {
    Kv(WriteShape),
    Local(&'static Spec, Vec<Bytes>),
    Unwatch,
}

/// Executes the transaction's writes and reads: one batch through the log, or one read
/// batch if it only reads. Its outputs, one per command, in order; or the error `EXEC`
/// answers instead of the array.
async fn run_batch(
    ctx: &Ctx,
    conn: &mut Conn<'_>,
    commands: Vec<KvCommand>,
) -> Result<Vec<KvOutput>, (String, Flow)> {
    let n = commands.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let malformed = || {
        (
            "ERR malformed output from the state machine".to_string(),
            Flow::Continue,
        )
    };
    if commands.iter().all(|c| matches!(c, KvCommand::Read(_))) {
        let queries = commands
            .into_iter()
            .filter_map(|c| match c {
                KvCommand::Read(query) => Some(query),
                _ => None,
            })
            .collect();
        return match read(ctx, KvQuery::Batch(queries)).await {
            Ok(KvAnswer::Many(answers)) if answers.len() == n => {
                Ok(answers.into_iter().map(KvOutput::Answer).collect())
            }
            Ok(_) => Err(malformed()),
            Err(failed) => Err((failed.reply, failed.flow)),
        };
    }
    if n == 1 {
        let command = commands.into_iter().next().expect("one command");
        return match write(ctx, &mut conn.client, command).await {
            Ok(output) => Ok(vec![output]),
            Err(failed) => Err((failed.reply, failed.flow)),
        };
    }
    match write(ctx, &mut conn.client, KvCommand::Batch(commands)).await {
        Ok(KvOutput::Many(outputs)) if outputs.len() == n => Ok(outputs),
        // Refused as a whole (stale, malformed).
        Ok(KvOutput::Error(e)) => Err((e, Flow::Continue)),
        Ok(_) => Err(malformed()),
        Err(failed) => Err((failed.reply, failed.flow)),
    }
}
