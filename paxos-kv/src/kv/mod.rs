//! [`KvStateMachine`]: the replicated key-value store behind the `paxos-node` binary.
//!
//! Keys and values are byte strings. Writes ([`KvCommand`]) go through the log wrapped in a
//! [`KvRequest`] that carries a [`RequestId`] (client id and sequence number); reads
//! ([`KvQuery`]) go through [`NodeHandle::read`](paxos_node::NodeHandle::read), or, on the
//! leader under its lease, straight to a [`KvReader`] after
//! [`NodeHandle::try_read_barrier`](paxos_node::NodeHandle::try_read_barrier). They never
//! touch the log's state.
//!
//! # Commands
//!
//! Each command has Redis 7's semantics for strings (checked against a real Redis 7.0),
//! its error messages included; the `paxos-node` server maps the Redis commands onto them
//! and their outputs onto Redis replies.
//!
//! | Write ([`KvCommand`]) | Redis | Output ([`KvOutput`]) |
//! |---|---|---|
//! | `Set` | `SET k v` | `Ok` |
//! | `SetWith` | `SET k v [NX\|XX] [GET]`, `SETNX`, `GETSET` | with `get`: `Bulk(old value)`, set or not; without: `Ok` if set, `Bulk(None)` if the condition did not hold |
//! | `MSet` | `MSET k v [k v ...]` | `Ok`; all pairs in one step, the last of a repeated key wins |
//! | `Del` | `DEL k [k ...]` | `Integer(keys removed)` |
//! | `Incr`, `IncrBy` | `INCR`, `INCRBY`, `DECR`, `DECRBY` | `Integer(new value)`; `Error` if the value is not a 64-bit integer or the result would overflow |
//! | `Append` | `APPEND k v` | `Integer(new length)`; `Error` past [`MAX_VALUE_BYTES`] |
//! | `Cas` | none (the server's own `CAS k expected new`) | `Integer(1)` if it set, `Integer(0)` if not |
//! | `Read` | a read inside a `Batch` (`MULTI ... GET ... EXEC`) | `Answer(answer)`: the query's answer at that point of the batch |
//! | `Batch` | a pipeline of the above, or a `MULTI`/`EXEC` transaction | `Many(outputs)`, one per command, in order |
//!
//! | Read ([`KvQuery`]) | Redis | Answer ([`KvAnswer`]) |
//! |---|---|---|
//! | `Get` | `GET k` | `Bulk(value)` (see [`decode_get_answer`]) |
//! | `MGet` | `MGET k [k ...]` | `Values(values)` |
//! | `Exists` | `EXISTS k [k ...]` | `Integer(keys present)`, a repeated key counted each time |
//! | `StrLen` | `STRLEN k` | `Integer(length)`, 0 if absent |
//! | `DbSize` | `DBSIZE` | `Integer(keys)` |
//! | `Scan` | `SCAN cursor [MATCH pattern] [COUNT count]` | `Scan { cursor, keys }` (see [below](#scan)) |
//! | `Batch` | a pipeline of the above | `Many(answers)`, all read at one point of the state |
//!
//! A `Batch` is one log entry: its commands are applied one after the other with nothing
//! in between, each with its own output, and one that fails (`INCR` of a non-integer) does
//! not stop the others nor undo anything, as in a Redis pipeline or `EXEC`. A batch holds
//! no batch: one inside another does not decode (see [Encoding](#encoding)).
//!
//! What is **not** supported: expiry (`EX`, `PX`, `KEEPTTL`, `EXPIRE`, `TTL`...: no key
//! ever expires, because time would have to come through the log for replicas to agree);
//! other data types (lists, hashes, sets, sorted sets, streams), so `WRONGTYPE` never
//! happens; several databases (`SELECT`); `KEYS`; `SCAN`'s `TYPE` option; `WATCH`. A
//! `MULTI`/`EXEC` transaction is a `Batch`: applied as a unit, without rollback, as in
//! Redis.
//!
//! # Scan
//!
//! The keyspace is kept in *scan order*: by a 64-bit hash of the key, then by the key. The
//! hash is SipHash-1-3 under the all-zero key, written out in this crate: the same on
//! every replica and every build, so that a cursor handed out by one node can be resumed
//! by another. A cursor is a hash value. A call visits the keys whose hash is at least the
//! cursor, in scan order, and returns those that match its pattern together with the next
//! cursor: the hash of the first key it did not visit, or 0 if it visited the rest of the
//! keyspace. It stops only between two hash values (keys sharing a hash are never split
//! across calls), as soon as it has visited `count` keys (Redis's `COUNT`, taken as 1 to
//! [`MAX_SCAN_COUNT`]) or done [`MAX_SCAN_WORK`] (key bytes visited, times the pattern's
//! length when there is one: what matching costs at most). One call therefore visits
//! at most `count` keys plus the rest of one hash value, never the whole keyspace unless it
//! is that small; with a 64-bit hash more than one key per value is rare, and SipHash makes
//! crafting many keys on one value impractical (see `store.rs`).
//!
//! Redis's guarantees follow:
//!
//! * **0 starts and ends.** Every hash is at least 0, so cursor 0 visits from the start; a
//!   call that stops early has visited at least one key, all with hashes below the cursor
//!   it returns, so that cursor is above 0. (Any other `u64` is a valid cursor too: the
//!   iteration starts from that hash.)
//! * **A key present for the whole iteration is returned** (if it matches). The calls of
//!   one iteration visit the hash ranges `[0, c1)`, `[c1, c2)`, ..., `[cn, 2^64)`, which
//!   leave no gap, and each call visits every key of its range present at the time. A key
//!   always sorts at the same place, so it is returned at most once per iteration, even if
//!   deleted and added again (Redis may return duplicates; this never does).
//! * **The iteration ends.** Each call that does not end visits at least one key and
//!   returns a cursor above the one it was given, so an iteration takes at most one call
//!   per key it visits: it ends unless keys keep being added ahead of it (the condition
//!   Redis states too).
//! * **`MATCH` filters what was visited.** A call may return no key and a nonzero cursor,
//!   as in Redis. Patterns follow Redis's glob rules (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`,
//!   `\` escapes; `glob.rs` spells them out, with the one difference: range bounds compare
//!   as unsigned bytes on every platform); matching takes O(pattern × key) time per key,
//!   never exponential. A pattern longer than [`MAX_SCAN_PATTERN_BYTES`] is refused
//!   (answered as a malformed query), so that one key's matching stays bounded too.
//! * Keys added or removed during the iteration may or may not be returned; the order is
//!   not the keys' order.
//!
//! # Exactly once
//!
//! The replicated state keeps, per client, the highest sequence number applied and its
//! output (a *session*). A request whose sequence number equals the session's gets the saved
//! output again without being applied a second time (a retry after `Timeout` or
//! `LeadershipChanged`, or a duplicate forwarded by a follower); a lower one gets an error
//! output (`stale`), also without effect. A client must therefore issue its requests one at
//! a time, with increasing sequence numbers, which is what one RESP connection does. A
//! `Batch` is one request: one sequence number, and one saved output (its `Many`); a
//! request refused as a whole (`stale`, [`KvOutput::SessionExpired`], malformed) gets a
//! single output, not a `Many`.
//!
//! The output saved is no larger than its request or [`MIN_KEPT_OUTPUT_BYTES`]: if the
//! encoded output is larger than both (a `SET ... GET` of a large value, or a batch of
//! them), the session keeps an `Error` saying that the request was applied but its reply
//! was not kept, and a retry gets that instead. The first reply is complete; the sessions'
//! memory stays within the size of the requests they remember.
//!
//! Sessions are bounded ([`KvStateMachine::new`]'s `max_sessions`): when a new client would
//! exceed the bound, the session touched least recently (by a logical counter of applied
//! requests, identical on every replica) is evicted. Forgetting a session must not let a
//! late retry of one of its requests apply a second time, so eviction leaves a mark:
//!
//! * every request carries, besides its client id and sequence number, the client's
//!   [`born_slot`](RequestId::born_slot): a number fixed when the client is created (the
//!   `paxos-node` server uses the slot its node had applied when the connection opened);
//! * the state keeps the *eviction floor*: the highest `born_slot` of any session evicted so
//!   far (one number, so memory stays bounded);
//! * **the rule**: a request from a client that has no session is applied only if its
//!   `born_slot` is above the floor. Otherwise it gets [`KvOutput::SessionExpired`] and has
//!   no effect.
//!
//! Why that cannot apply anything twice: if a client's session was evicted, the floor is at
//! least that client's `born_slot` from then on (it only grows), so every later request of
//! that client finds no session and is refused. A client whose `born_slot` is above the
//! floor has never had a session evicted, so having no session means none of its requests
//! was applied yet. Everything is decided from the request and the replicated state, in log
//! order, so every replica decides alike.
//!
//! The price is a refusal that was not strictly needed: a client with no session whose
//! `born_slot` is at or below the floor, which happens only when `max_sessions` other
//! clients wrote after that slot (with the default bound of 16,384 sessions, a client idle
//! for that long, or one created on a node that lags that far behind). The server treats a
//! refusal of a request that cannot have been applied before as "start a new session" and
//! retries it transparently under a new client id; otherwise it answers
//! `-ERR session expired` (the outcome of that one command is unknown).
//!
//! What this covers at the client port: the retries the *server* makes on a client's
//! behalf (same request id, within the client deadline), and duplicates inside the
//! cluster. It does not cover a RESP client that retries on its own over a **new
//! connection**: a new connection is a new client (new id), so its retry is a new command
//! and may apply a second time if the first one did apply. A client that needs
//! exactly-once across reconnects must make its writes idempotent itself (for example
//! with `CAS`).
//!
//! # Bounds
//!
//! Everything a command adds to the state is bounded by its own size: the keys and values
//! it carries, a session entry, and a saved output no larger than the request or
//! [`MIN_KEPT_OUTPUT_BYTES`] (above). `APPEND` is the one way to grow a value past a
//! command's size; it stops at [`MAX_VALUE_BYTES`], Redis's default `proto-max-bulk-len`.
//! A read's work is proportional to its own size and to the values it returns, except
//! `SCAN`'s, which is bounded per call (above). The size of an encoded request is bounded
//! by [`KvCommand::max_request_bytes`], which the server checks against the node's command
//! bound before proposing.
//!
//! # Encoding
//!
//! Commands, outputs, queries and answers are postcard-encoded; see [`KvRequest::encode`],
//! [`KvOutput::decode`], [`KvQuery::encode`] and [`KvAnswer::decode`]. Every replica must
//! run the same encoding. New variants are only ever appended, so the tags of the existing
//! ones do not change and a log or snapshot written by an older version decodes and
//! applies alike; but an older replica refuses a command it does not know as malformed,
//! where a newer one applies it, so every replica must be upgraded before clients use new
//! commands. Decoding never panics, whatever the bytes. A batch (`Batch`,
//! `Many`) holds one level only: a batch inside a batch does not decode (so hostile bytes
//! cannot nest deeply enough to overflow the stack), and its request is refused as
//! malformed. Snapshots are a stream of records, one session or one key at a time (see
//! `snapshot.rs` for the format, which carries its own version byte).

mod commands;
mod glob;
mod snapshot;
mod store;
mod wire;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{
    Committed, FrozenState, ProposalId, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError,
};
use serde::{Deserialize, Serialize};
use store::Store;

/// The default bound on client sessions kept in the replicated state.
pub const DEFAULT_MAX_SESSIONS: usize = 16_384;

/// Bytes an encoded [`KvRequest`] adds at most to its command's arguments, besides
/// [`ARGUMENT_OVERHEAD_BYTES`] per argument: the request id (three integers of at most 10
/// bytes each), the command's tag, and its key, pair or command count (or `SetWith`'s
/// flags). See [`KvCommand::max_request_bytes`].
pub const REQUEST_OVERHEAD_BYTES: usize = 40;

/// Bytes each key or value adds at most to an encoded [`KvRequest`] beyond its own length:
/// its length prefix (a varint, 5 bytes for any length below 32 GiB).
pub const ARGUMENT_OVERHEAD_BYTES: usize = 5;

/// Bytes an integer argument (`IncrBy`'s `delta`) adds at most to an encoded
/// [`KvRequest`]: a 64-bit varint.
pub const INTEGER_ARGUMENT_BYTES: usize = 10;

/// Bytes each command inside a [`KvCommand::Batch`] adds at most to an encoded
/// [`KvRequest`] besides its arguments: its tag (1 byte) and its key, pair or command count
/// (a varint, at most 5 bytes) or `SetWith`'s two flags.
pub const BATCH_COMMAND_OVERHEAD_BYTES: usize = 6;

/// The longest value `APPEND` builds: 512 MiB, Redis's default `proto-max-bulk-len`.
pub const MAX_VALUE_BYTES: usize = 512 << 20;

/// The largest `COUNT` one `SCAN` call honours; a larger one counts as this.
pub const MAX_SCAN_COUNT: usize = 10_000;

/// One `SCAN` call stops (between two hash values) once it has done this much work,
/// whatever its `COUNT`: the bytes of the keys it visited, each counted once per token of
/// the `MATCH` pattern (`*`, `?`, a class or a byte), which bounds the matching steps. With
/// a typical pattern and keys, `COUNT` binds first.
pub const MAX_SCAN_WORK: usize = 16 << 20;

/// The longest `MATCH` pattern `SCAN` takes (Redis has no such bound): matching one key
/// takes up to pattern × key steps, and a call must visit at least one key. A longer one is
/// answered [`KvAnswer::Bulk(None)`](KvAnswer::Bulk), as a malformed query is; the server
/// should refuse it first.
pub const MAX_SCAN_PATTERN_BYTES: usize = 1024;

/// A session keeps its request's output for a retry if the encoded output is at most this
/// long or at most as long as the encoded request (see the [module docs](self#exactly-once)).
pub const MIN_KEPT_OUTPUT_BYTES: usize = 4096;

/// The output a retry gets when the first one's was too large to keep.
const OUTPUT_NOT_KEPT: &str =
    "ERR the command was applied, but its reply was too large to keep for a retry";

/// Identifies one client request: the client, and its sequence number (increasing per
/// client, one request at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// A client id, unique in the cluster (a random 64-bit number).
    pub client: u64,
    /// Fixed for the client's lifetime, the same in all its requests: orders clients
    /// against the eviction floor (see the [module docs](self#exactly-once)). The higher,
    /// the less likely a refusal; the `paxos-node` server uses the slot its node had
    /// applied when the client connected.
    pub born_slot: u64,
    /// The client's sequence number for this request, from 1.
    pub seq: u64,
}

/// A write. See the [module docs](self#commands) for each one's Redis counterpart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`. Output: `Ok`.
    Set {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes the keys. Output: how many existed.
    Del {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Adds one to the integer at `key` (absent counts as 0). Output: the new value, or an
    /// error if the value is not a base-10 64-bit integer or would overflow.
    Incr {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets `key` to `new` if it currently holds `expected` (an absent key holds nothing).
    /// Output: 1 if it did, 0 if not.
    Cas {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must hold.
        #[serde(with = "serde_bytes")]
        expected: Vec<u8>,
        /// The value it gets.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// `SET key value [NX|XX] [GET]`: sets `key` to `value` if `condition` holds. Output:
    /// with `get`, `Bulk` of the value before (`None` if absent), whether it set or not;
    /// without, `Ok` if it set and `Bulk(None)` if not (Redis's nil). `SETNX` is
    /// `IfAbsent` without `get` (`Ok` is its 1, `Bulk(None)` its 0); `GETSET` is `Always`
    /// with `get`.
    SetWith {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// When to set.
        condition: SetCondition,
        /// Whether the output is the value before.
        get: bool,
    },
    /// `MSET`: sets every pair, in order (a repeated key ends with its last value), in one
    /// step. Output: `Ok`.
    MSet {
        /// Keys and their new values.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Appends `value` to the value at `key` (absent counts as empty). Output: the new
    /// length, or an error if it would exceed [`MAX_VALUE_BYTES`].
    Append {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The bytes to append.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Adds `delta` to the integer at `key` (absent counts as 0): `INCRBY`, and `DECR` and
    /// `DECRBY` with the delta negated. Output: the new value, or
    /// `Error("ERR value is not an integer or out of range")`, or
    /// `Error("ERR increment or decrement would overflow")`.
    IncrBy {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// What to add.
        delta: i64,
    },
    /// Several commands of one client (a pipeline), applied in order in one log entry
    /// under one request id. Output: `Many`, one output per command. A `Batch` inside a
    /// `Batch` does not decode: such a request is refused as malformed.
    Batch(#[serde(deserialize_with = "wire::commands")] Vec<Self>),
    /// A read applied through the log, at its point in a [`Batch`](Self::Batch): what a
    /// `GET` inside `MULTI ... EXEC` becomes, so that it sees the writes queued before it
    /// and none after. It changes nothing. Output: [`KvOutput::Answer`]. The query is not
    /// a batch (one does not decode). Alone, it is a write that only reads: prefer
    /// [`NodeHandle::read`](paxos_node::NodeHandle::read).
    Read(#[serde(deserialize_with = "wire::query")] KvQuery),
}

/// When [`KvCommand::SetWith`] sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetCondition {
    /// Always (plain `SET`).
    #[default]
    Always,
    /// Only if the key is absent (`NX`).
    IfAbsent,
    /// Only if the key is present (`XX`).
    IfPresent,
}

impl KvCommand {
    /// Its keys and values (in a `Batch`, those of all its commands): how many there are,
    /// and their total length in bytes.
    pub fn arguments(&self) -> (usize, usize) {
        let (mut count, mut bytes) = (0usize, 0usize);
        self.each_argument(&mut |argument| {
            count += 1;
            bytes = bytes.saturating_add(argument.len());
        });
        (count, bytes)
    }

    fn each_argument(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            Self::Set { key, value }
            | Self::Append { key, value }
            | Self::SetWith { key, value, .. } => {
                f(key);
                f(value);
            }
            Self::Del { keys } => keys.iter().for_each(|key| f(key)),
            Self::Incr { key } | Self::IncrBy { key, .. } => f(key),
            Self::Cas { key, expected, new } => {
                f(key);
                f(expected);
                f(new);
            }
            Self::MSet { pairs } => {
                for (key, value) in pairs {
                    f(key);
                    f(value);
                }
            }
            Self::Batch(commands) => commands.iter().for_each(|c| c.each_argument(f)),
            Self::Read(query) => query.each_argument(f),
        }
    }

    /// An upper bound on the encoded size of any [`KvRequest`] carrying this command,
    /// whatever its request id:
    ///
    /// [`REQUEST_OVERHEAD_BYTES`]
    /// \+ [`ARGUMENT_OVERHEAD_BYTES`] per key or value (in a `Batch`, of all its commands)
    /// \+ their total length
    /// \+ [`INTEGER_ARGUMENT_BYTES`] per `IncrBy`
    /// \+ 1 per `Read` (the query's tag), and 2 × [`INTEGER_ARGUMENT_BYTES`] + 1 more for a
    /// `Read` of a `Scan` (its cursor, count and pattern's option tag)
    /// \+ [`BATCH_COMMAND_OVERHEAD_BYTES`] per command inside a `Batch`.
    ///
    /// For `SET key value` that is `key + value + 50` bytes; a `Batch`'s bound is
    /// [`REQUEST_OVERHEAD_BYTES`] plus the [`max_batched_bytes`](Self::max_batched_bytes)
    /// of each of its commands, so a pipeline can be cut into batches that fit by adding
    /// up. The `paxos-node` server refuses a write whose bound exceeds the node's
    /// [`max_command_bytes`](paxos_node::NodeHandle::max_command_bytes), so the rule users
    /// see does not depend on the size of the (random) client id.
    pub fn max_request_bytes(&self) -> usize {
        REQUEST_OVERHEAD_BYTES.saturating_add(self.max_body_bytes())
    }

    /// What this command adds at most to the encoded size of a [`KvCommand::Batch`] that
    /// carries it: `self.max_request_bytes() - REQUEST_OVERHEAD_BYTES +
    /// BATCH_COMMAND_OVERHEAD_BYTES`.
    pub fn max_batched_bytes(&self) -> usize {
        BATCH_COMMAND_OVERHEAD_BYTES.saturating_add(self.max_body_bytes())
    }

    /// The bound without [`REQUEST_OVERHEAD_BYTES`].
    fn max_body_bytes(&self) -> usize {
        match self {
            Self::Batch(commands) => commands
                .iter()
                .fold(0usize, |n, c| n.saturating_add(c.max_batched_bytes())),
            _ => {
                let (count, bytes) = self.arguments();
                let integers = match self {
                    Self::IncrBy { .. } => INTEGER_ARGUMENT_BYTES,
                    // The query's tag; `Scan`'s cursor and count, and its pattern's
                    // option tag.
                    Self::Read(KvQuery::Scan { .. }) => 2 * INTEGER_ARGUMENT_BYTES + 2,
                    Self::Read(_) => 1,
                    _ => 0,
                };
                ARGUMENT_OVERHEAD_BYTES
                    .saturating_mul(count)
                    .saturating_add(bytes)
                    .saturating_add(integers)
            }
        }
    }
}

/// What the state machine applies: a command and the request it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// Deduplicates retries.
    pub id: RequestId,
    /// The write.
    pub command: KvCommand,
}

impl KvRequest {
    /// The bytes to [`propose`](paxos_node::NodeHandle::propose).
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes a proposed command; `None` if malformed (a batch inside a batch included).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// Done (`SET`, `MSET`, `SET` with a condition that held).
    Ok,
    /// An integer answer (`DEL`, `INCR`, `INCRBY`, `APPEND`, `CAS`).
    Integer(i64),
    /// The command had no effect; the message is a Redis error reply without the `-`.
    /// Also what a retry gets for a request whose output was too large to keep (see the
    /// [module docs](self#exactly-once)): then it *was* applied, once.
    Error(String),
    /// The client has no session and may have had one evicted: the request had no effect
    /// now, but an earlier copy of it may have (see the [module docs](self#exactly-once)).
    SessionExpired,
    /// A string or nil: the value before of `SET ... GET` and `GETSET`; `None` (nil) also
    /// for a `SET NX`/`XX` without `GET` that did not set.
    Bulk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The outputs of a [`KvCommand::Batch`], in order; never holds a `Many`. A batch
    /// refused as a whole gets a single output instead (`Error`, `SessionExpired`).
    Many(#[serde(deserialize_with = "wire::outputs")] Vec<Self>),
    /// The answer of a [`KvCommand::Read`]; never a [`KvAnswer::Many`].
    Answer(#[serde(deserialize_with = "wire::answer")] KvAnswer),
}

impl KvOutput {
    /// The bytes [`NodeHandle::propose`](paxos_node::NodeHandle::propose) returns for it.
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes the output of [`NodeHandle::propose`](paxos_node::NodeHandle::propose); `None` if
    /// malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    fn encoded_len(&self) -> usize {
        encoded_len(self).unwrap_or(usize::MAX)
    }
}

/// A read. See the [module docs](self#commands) for each one's Redis counterpart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The value of `key`. Answer: `Bulk`; see [`decode_get_answer`].
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The values of the keys, in order. Answer: `Values`.
    MGet {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// How many of the keys exist, a repeated key counted each time. Answer: `Integer`.
    Exists {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// The length of the value of `key`, 0 if absent. Answer: `Integer`.
    StrLen {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// How many keys there are. Answer: `Integer`.
    DbSize,
    /// One step of a scan (see the [module docs](self#scan)). Answer: `Scan`.
    Scan {
        /// Where to resume: 0 to start, else the cursor the previous step returned.
        cursor: u64,
        /// A glob pattern (`MATCH`): only matching keys are returned; `None` for all. At
        /// most [`MAX_SCAN_PATTERN_BYTES`] long, else the query is refused.
        #[serde(with = "serde_bytes")]
        pattern: Option<Vec<u8>>,
        /// How many keys to visit, a hint (`COUNT`, Redis's default is 10); taken as 1 to
        /// [`MAX_SCAN_COUNT`].
        count: usize,
    },
    /// Several reads (a pipeline), answered in order at one point of the state. Answer:
    /// `Many`. A `Batch` inside a `Batch` does not decode.
    Batch(#[serde(deserialize_with = "wire::queries")] Vec<Self>),
}

impl KvQuery {
    /// Its keys and its pattern (in a `Batch`, those of all its queries).
    fn each_argument(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            Self::Get { key } | Self::StrLen { key } => f(key),
            Self::MGet { keys } | Self::Exists { keys } => keys.iter().for_each(|key| f(key)),
            Self::DbSize => {}
            Self::Scan { pattern, .. } => pattern.iter().for_each(|p| f(p)),
            Self::Batch(queries) => queries.iter().for_each(|q| q.each_argument(f)),
        }
    }

    /// The bytes to [`read`](paxos_node::NodeHandle::read).
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes a query; `None` if malformed (a batch inside a batch included).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The answer to a [`KvQuery`]. A malformed query is answered `Bulk(None)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvAnswer {
    /// A string or nil (`Get`).
    Bulk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// A count or length (`Exists`, `StrLen`, `DbSize`).
    Integer(i64),
    /// Values or nils, in the order of the keys (`MGet`).
    Values(Vec<Option<Vec<u8>>>),
    /// One step of a scan.
    Scan {
        /// The cursor to resume from; 0 when the scan is complete.
        cursor: u64,
        /// The keys visited that matched; may be empty even when `cursor` is not 0.
        keys: Vec<Vec<u8>>,
    },
    /// The answers of a [`KvQuery::Batch`], in order; never holds a `Many`.
    Many(#[serde(deserialize_with = "wire::answers")] Vec<Self>),
}

impl KvAnswer {
    /// The bytes [`NodeHandle::read`](paxos_node::NodeHandle::read) returns for it.
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes the answer of [`NodeHandle::read`](paxos_node::NodeHandle::read); `None` if
    /// malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Decodes the answer to [`KvQuery::Get`] (a [`KvAnswer::Bulk`]): `Some(None)` for an
/// absent key, `None` if malformed or another kind of answer.
pub fn decode_get_answer(bytes: &[u8]) -> Option<Option<Vec<u8>>> {
    match KvAnswer::decode(bytes)? {
        KvAnswer::Bulk(value) => Some(value),
        _ => None,
    }
}

/// Encodes `value` into a buffer of exactly its size: one sizing pass, then one
/// allocation, instead of growing a `Vec` by doubling (five reallocations for a 64-byte SET).
fn encode<T: Serialize>(value: &T) -> Bytes {
    let capacity = encoded_len(value).unwrap_or(0);
    let out = postcard::serialize_with_flavor(value, Presized(Vec::with_capacity(capacity)))
        .expect("encoding to a Vec cannot fail");
    Bytes::from(out)
}

/// The length of `value`'s encoding, without writing it; `None` if it cannot be encoded
/// (none of this module's types can fail).
fn encoded_len<T: Serialize>(value: &T) -> Option<usize> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).ok()
}

/// A postcard output into a `Vec` allocated beforehand; it still grows if it must.
struct Presized(Vec<u8>);

impl postcard::ser_flavors::Flavor for Presized {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    output: KvOutput,
    /// Key in `by_age`.
    stamp: u64,
    /// The client's [`RequestId::born_slot`]; raises the eviction floor when evicted.
    born_slot: u64,
}

/// The replicated state. Everything is ordered (ordered maps, the keyspace in scan
/// order): iteration order and eviction are the same on every replica.
///
/// Every map is persistent ([`imbl::OrdMap`], see [`Store`]), so a clone is O(1) and is
/// what [`KvStateMachine::freeze`](StateMachine::freeze) hands the snapshot thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct KvState {
    map: Store,
    sessions: imbl::OrdMap<u64, Session>,
    /// Session stamp -> client, oldest first.
    by_age: imbl::OrdMap<u64, u64>,
    /// The next stamp: counts requests applied.
    next_stamp: u64,
    /// The eviction floor: the highest `born_slot` of an evicted session (`None` before the
    /// first eviction).
    evicted_born_max: Option<u64>,
}

/// The key-value [`StateMachine`]. See the [module docs](self).
///
/// Its state sits behind a mutex shared with every [`KvReader`] taken from it: `apply`
/// holds the lock for one whole batch, a reader for one query.
#[derive(Debug)]
pub struct KvStateMachine {
    state: Arc<Mutex<KvState>>,
    max_sessions: usize,
}

/// Answers queries from a [`KvStateMachine`]'s state as it is now, from any task, without
/// the node's driver: for reads that [`NodeHandle::try_read_barrier`] allowed (after it,
/// the state holds every write acknowledged before the call).
///
/// [`NodeHandle::try_read_barrier`]: paxos_node::NodeHandle::try_read_barrier
#[derive(Clone, Debug)]
pub struct KvReader {
    state: Arc<Mutex<KvState>>,
}

impl KvReader {
    /// Answers `query` from the state as applied now, as
    /// [`StateMachine::query`] would.
    pub fn answer(&self, query: KvQuery) -> KvAnswer {
        commands::answer(&lock(&self.state).map, query)
    }
}

/// Locks the shared state. Nothing panics while holding it; if something did, the state
/// is what it was when it did, and the node has stopped.
fn lock(state: &Mutex<KvState>) -> MutexGuard<'_, KvState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for KvStateMachine {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SESSIONS)
    }
}

impl KvStateMachine {
    /// An empty store keeping at most `max_sessions` client sessions (at least 1).
    pub fn new(max_sessions: usize) -> Self {
        Self {
            state: Arc::default(),
            max_sessions: max_sessions.max(1),
        }
    }

    /// A reader of this state machine's state, for reads answered without the driver.
    pub fn reader(&self) -> KvReader {
        KvReader {
            state: self.state.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, KvState> {
        lock(&self.state)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.state().map.len() == 0
    }

    /// Number of client sessions kept.
    pub fn sessions(&self) -> usize {
        self.state().sessions.len()
    }

    /// [`apply_to`](Self::apply_to) this state machine's state.
    #[cfg(test)]
    fn apply_one(&mut self, payload: &[u8]) -> KvOutput {
        Self::apply_to(&mut lock(&self.state), self.max_sessions, payload)
    }

    /// Applies one proposed command to `state` and returns its output.
    ///
    /// The client's session is looked up once. In the usual case, the client's next
    /// command, it is updated in place and keeps the `born_slot` it started with. No
    /// session is added then, so none is evicted.
    fn apply_to(state: &mut KvState, max_sessions: usize, payload: &[u8]) -> KvOutput {
        let Some(request) = KvRequest::decode(payload) else {
            return KvOutput::Error("ERR malformed command".into());
        };
        let RequestId {
            client,
            born_slot,
            seq,
        } = request.id;
        let KvState {
            map,
            sessions,
            by_age,
            next_stamp,
            evicted_born_max,
        } = state;
        let session = match sessions.get_mut(&client) {
            Some(session) if seq == session.seq => return session.output.clone(),
            Some(session) if seq < session.seq => {
                return KvOutput::Error(format!(
                    "ERR stale request {seq} (client {client:#x} is at {})",
                    session.seq
                ));
            }
            Some(session) => Some(session),
            None if evicted_born_max.is_some_and(|floor| born_slot <= floor) => {
                return KvOutput::SessionExpired;
            }
            None => None,
        };
        let output = commands::execute(map, request.command);
        let kept = if output.encoded_len() <= payload.len().max(MIN_KEPT_OUTPUT_BYTES) {
            output.clone()
        } else {
            KvOutput::Error(OUTPUT_NOT_KEPT.into())
        };
        let stamp = *next_stamp;
        *next_stamp += 1;
        if let Some(session) = session {
            let old_stamp = std::mem::replace(&mut session.stamp, stamp);
            session.seq = seq;
            session.output = kept;
            by_age.remove(&old_stamp);
            by_age.insert(stamp, client);
            return output;
        }
        let session = Session {
            seq,
            output: kept,
            stamp,
            born_slot,
        };
        sessions.insert(client, session);
        by_age.insert(stamp, client);
        while sessions.len() > max_sessions {
            let Some(&(stamp, oldest)) = by_age.get_min() else {
                break;
            };
            by_age.remove(&stamp);
            if let Some(evicted) = sessions.remove(&oldest) {
                let floor = evicted_born_max.get_or_insert(evicted.born_slot);
                *floor = (*floor).max(evicted.born_slot);
            }
        }
        output
    }

    /// The eviction floor: the highest [`RequestId::born_slot`] of an evicted session, if
    /// any session was evicted. A client without a session is served only above it.
    pub fn eviction_floor(&self) -> Option<u64> {
        self.state().evicted_born_max
    }

    /// Answers one encoded query; a malformed one is answered `Bulk(None)`.
    fn answer(&self, query: &[u8]) -> KvAnswer {
        match KvQuery::decode(query) {
            Some(query) => commands::answer(&self.state().map, query),
            None => KvAnswer::Bulk(None),
        }
    }
}

/// Parses a base-10 signed 64-bit integer the way Redis does (`string2ll`): an optional
/// `-`, digits, no `+`, no spaces, no leading zeros, no `-0`, within range.
pub fn parse_redis_integer(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    if digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse().ok()
}

#[async_trait]
impl StateMachine for KvStateMachine {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        let mut state = lock(&self.state);
        for committed in batch {
            for command in committed.value.commands() {
                let output = Self::apply_to(&mut state, self.max_sessions, &command.payload);
                outputs.push((command.id, output.encode()));
            }
        }
        Ok(())
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        // A malformed query is answered as an absent key rather than stopping the node:
        // queries come from clients of this node only.
        Ok(self.answer(query).encode())
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        // A copy (O(1)): no lock is held across the writes.
        let state = self.state().clone();
        snapshot::write(&state, out).await
    }

    fn freeze(&mut self) -> Option<Box<dyn FrozenState>> {
        Some(Box::new(snapshot::Frozen(self.state().clone())))
    }

    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let restored = snapshot::read(input).await?;
        *self.state() = restored;
        Ok(())
    }
}

#[cfg(test)]
mod encoding_tests;
#[cfg(test)]
mod tests;
