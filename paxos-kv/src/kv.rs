//! [`KvStateMachine`]: the replicated key-value store behind the `paxos-node` binary.
//!
//! Keys and values are byte strings. Writes ([`KvCommand`]: `SET`, `DEL`, `INCR`, `CAS`)
//! go through the log wrapped in a [`KvRequest`] that carries a [`RequestId`] (client id and
//! sequence number); reads ([`KvQuery`]: `GET`) go through
//! [`NodeHandle::read`](paxos_node::NodeHandle::read) and never touch the log's state.
//!
//! # Exactly once
//!
//! The replicated state keeps, per client, the highest sequence number applied and its
//! output (a *session*). A request whose sequence number equals the session's gets the saved
//! output again without being applied a second time (a retry after `Timeout` or
//! `LeadershipChanged`, or a duplicate forwarded by a follower); a lower one gets an error
//! output (`stale`), also without effect. A client must therefore issue its requests one at
//! a time, with increasing sequence numbers, which is what one RESP connection does.
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
//! # Encoding
//!
//! Commands, outputs, queries and answers are postcard-encoded; see [`KvRequest::encode`],
//! [`KvOutput::decode`], [`KvQuery::encode`] and [`decode_get_answer`]. Every replica must
//! run the same encoding.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use paxos_core::{Committed, ProposalId, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// The default bound on client sessions kept in the replicated state.
pub const DEFAULT_MAX_SESSIONS: usize = 16_384;

/// Bytes an encoded [`KvRequest`] adds at most to its command's arguments, besides
/// [`ARGUMENT_OVERHEAD_BYTES`] per argument: the request id (three integers of at most 10
/// bytes each), the command's tag, and `DEL`'s key count. See
/// [`KvCommand::max_request_bytes`].
pub const REQUEST_OVERHEAD_BYTES: usize = 40;

/// Bytes each key or value adds at most to an encoded [`KvRequest`] beyond its own length:
/// its length prefix (a varint, 5 bytes for any length below 32 GiB).
pub const ARGUMENT_OVERHEAD_BYTES: usize = 5;

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

/// A write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`. Output: `Ok`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The new value.
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
        key: Vec<u8>,
    },
    /// Sets `key` to `new` if it currently holds `expected` (an absent key holds nothing).
    /// Output: 1 if it did, 0 if not.
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must hold.
        expected: Vec<u8>,
        /// The value it gets.
        new: Vec<u8>,
    },
}

impl KvCommand {
    /// Its keys and values: how many there are, and their total length in bytes.
    pub fn arguments(&self) -> (usize, usize) {
        let strings: Vec<&[u8]> = match self {
            Self::Set { key, value } => vec![key, value],
            Self::Del { keys } => keys.iter().map(Vec::as_slice).collect(),
            Self::Incr { key } => vec![key],
            Self::Cas { key, expected, new } => vec![key, expected, new],
        };
        let bytes = strings
            .iter()
            .fold(0usize, |n, s| n.saturating_add(s.len()));
        (strings.len(), bytes)
    }

    /// An upper bound on the encoded size of any [`KvRequest`] carrying this command,
    /// whatever its request id: [`REQUEST_OVERHEAD_BYTES`] + [`ARGUMENT_OVERHEAD_BYTES`]
    /// per key or value + their total length. For `SET key value` that is `key + value +
    /// 50` bytes. The `paxos-node` server refuses a write whose bound exceeds the node's
    /// [`max_command_bytes`](paxos_node::NodeHandle::max_command_bytes), so the rule users see
    /// does not depend on the size of the (random) client id.
    pub fn max_request_bytes(&self) -> usize {
        let (count, bytes) = self.arguments();
        REQUEST_OVERHEAD_BYTES
            .saturating_add(ARGUMENT_OVERHEAD_BYTES.saturating_mul(count))
            .saturating_add(bytes)
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
        Bytes::from(postcard::to_allocvec(self).expect("encoding to a Vec cannot fail"))
    }

    /// Decodes a proposed command; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// Done (`SET`).
    Ok,
    /// An integer answer (`DEL`, `INCR`, `CAS`).
    Integer(i64),
    /// The command had no effect; the message is a Redis error reply without the `-`.
    Error(String),
    /// The client has no session and may have had one evicted: the request had no effect
    /// now, but an earlier copy of it may have (see the [module docs](self#exactly-once)).
    SessionExpired,
}

impl KvOutput {
    fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).expect("encoding to a Vec cannot fail"))
    }

    /// Decodes the output of [`NodeHandle::propose`](paxos_node::NodeHandle::propose); `None` if
    /// malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The value of `key`. Answer: see [`decode_get_answer`].
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

impl KvQuery {
    /// The bytes to [`read`](paxos_node::NodeHandle::read).
    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).expect("encoding to a Vec cannot fail"))
    }
}

/// Decodes the answer to [`KvQuery::Get`]: `Some(None)` for an absent key, `None` if
/// malformed.
pub fn decode_get_answer(bytes: &[u8]) -> Option<Option<Vec<u8>>> {
    postcard::from_bytes(bytes).ok()
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

/// The replicated state. Everything is a `BTreeMap`: iteration order and eviction are the
/// same on every replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KvState {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: BTreeMap<u64, Session>,
    /// Session stamp -> client, oldest first.
    by_age: BTreeMap<u64, u64>,
    /// The next stamp: counts requests applied.
    next_stamp: u64,
    /// The eviction floor: the highest `born_slot` of an evicted session (`None` before the
    /// first eviction).
    evicted_born_max: Option<u64>,
}

/// The key-value [`StateMachine`]. See the [module docs](self).
#[derive(Debug)]
pub struct KvStateMachine {
    state: KvState,
    max_sessions: usize,
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
            state: KvState::default(),
            max_sessions: max_sessions.max(1),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.state.map.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.state.map.is_empty()
    }

    /// Number of client sessions kept.
    pub fn sessions(&self) -> usize {
        self.state.sessions.len()
    }

    /// Applies one proposed command and returns its output.
    fn apply_one(&mut self, payload: &[u8]) -> KvOutput {
        let Some(request) = KvRequest::decode(payload) else {
            return KvOutput::Error("ERR malformed command".into());
        };
        let RequestId {
            client,
            born_slot,
            seq,
        } = request.id;
        match self.state.sessions.get(&client) {
            Some(session) if seq == session.seq => return session.output.clone(),
            Some(session) if seq < session.seq => {
                return KvOutput::Error(format!(
                    "ERR stale request {seq} (client {client:#x} is at {})",
                    session.seq
                ));
            }
            Some(_) => {}
            None if self
                .state
                .evicted_born_max
                .is_some_and(|floor| born_slot <= floor) =>
            {
                return KvOutput::SessionExpired;
            }
            None => {}
        }
        let output = execute(&mut self.state.map, request.command);
        self.record(request.id, output.clone());
        output
    }

    fn record(&mut self, id: RequestId, output: KvOutput) {
        let state = &mut self.state;
        let stamp = state.next_stamp;
        state.next_stamp += 1;
        let born_slot = match state.sessions.get(&id.client) {
            Some(old) => old.born_slot,
            None => id.born_slot,
        };
        let session = Session {
            seq: id.seq,
            output,
            stamp,
            born_slot,
        };
        if let Some(old) = state.sessions.insert(id.client, session) {
            state.by_age.remove(&old.stamp);
        }
        state.by_age.insert(stamp, id.client);
        while state.sessions.len() > self.max_sessions {
            let Some((_, oldest)) = state.by_age.pop_first() else {
                break;
            };
            if let Some(evicted) = state.sessions.remove(&oldest) {
                let floor = state.evicted_born_max.get_or_insert(evicted.born_slot);
                *floor = (*floor).max(evicted.born_slot);
            }
        }
    }

    /// The eviction floor: the highest [`RequestId::born_slot`] of an evicted session, if
    /// any session was evicted. A client without a session is served only above it.
    pub fn eviction_floor(&self) -> Option<u64> {
        self.state.evicted_born_max
    }
}

fn execute(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, command: KvCommand) -> KvOutput {
    match command {
        KvCommand::Set { key, value } => {
            map.insert(key, value);
            KvOutput::Ok
        }
        KvCommand::Del { keys } => {
            let removed = keys.iter().filter(|k| map.remove(*k).is_some()).count();
            KvOutput::Integer(i64::try_from(removed).unwrap_or(i64::MAX))
        }
        KvCommand::Incr { key } => {
            let current = match map.get(&key) {
                None => 0,
                Some(v) => match parse_redis_integer(v) {
                    Some(n) => n,
                    None => {
                        return KvOutput::Error(
                            "ERR value is not an integer or out of range".into(),
                        );
                    }
                },
            };
            match current.checked_add(1) {
                Some(n) => {
                    map.insert(key, n.to_string().into_bytes());
                    KvOutput::Integer(n)
                }
                None => KvOutput::Error("ERR increment or decrement would overflow".into()),
            }
        }
        KvCommand::Cas { key, expected, new } => match map.get_mut(&key) {
            Some(v) if *v == expected => {
                *v = new;
                KvOutput::Integer(1)
            }
            _ => KvOutput::Integer(0),
        },
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
        for committed in batch {
            for command in committed.value.commands() {
                let output = self.apply_one(&command.payload);
                outputs.push((command.id, output.encode()));
            }
        }
        Ok(())
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        // A malformed query is answered as an absent key rather than stopping the node:
        // queries come from clients of this node only.
        let value = match postcard::from_bytes::<KvQuery>(query) {
            Ok(KvQuery::Get { key }) => self.state.map.get(&key).cloned(),
            Err(_) => None,
        };
        Ok(Bytes::from(
            postcard::to_allocvec(&value).expect("encoding to a Vec cannot fail"),
        ))
    }

    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        postcard::to_allocvec(&self.state)
            .map(Bytes::from)
            .map_err(|e| StateMachineError(e.to_string()))
    }

    async fn restore(&mut self, data: &[u8]) -> Result<(), StateMachineError> {
        self.state = postcard::from_bytes(data).map_err(|e| StateMachineError(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: u64, seq: u64, command: KvCommand) -> Bytes {
        KvRequest {
            id: RequestId {
                client,
                born_slot: client,
                seq,
            },
            command,
        }
        .encode()
    }

    fn born(client: u64, born_slot: u64, seq: u64, command: KvCommand) -> Bytes {
        KvRequest {
            id: RequestId {
                client,
                born_slot,
                seq,
            },
            command,
        }
        .encode()
    }

    fn set(k: &str, v: &str) -> KvCommand {
        KvCommand::Set {
            key: k.into(),
            value: v.into(),
        }
    }

    fn incr(k: &str) -> KvCommand {
        KvCommand::Incr { key: k.into() }
    }

    fn get(sm: &KvStateMachine, k: &str) -> Option<Vec<u8>> {
        sm.state.map.get(k.as_bytes()).cloned()
    }

    #[test]
    fn retried_request_applies_once_and_replays_its_output() {
        let mut sm = KvStateMachine::default();
        assert_eq!(sm.apply_one(&req(7, 1, incr("n"))), KvOutput::Integer(1));
        assert_eq!(sm.apply_one(&req(7, 1, incr("n"))), KvOutput::Integer(1));
        assert_eq!(get(&sm, "n").as_deref(), Some(&b"1"[..]));
        assert_eq!(sm.apply_one(&req(7, 2, incr("n"))), KvOutput::Integer(2));
        // An older request is refused without effect.
        assert!(matches!(
            sm.apply_one(&req(7, 1, incr("n"))),
            KvOutput::Error(_)
        ));
        // Another client has its own sequence.
        assert_eq!(sm.apply_one(&req(8, 1, incr("n"))), KvOutput::Integer(3));
    }

    #[test]
    fn sessions_are_bounded_and_evict_the_least_recent() {
        let mut sm = KvStateMachine::new(2);
        sm.apply_one(&req(1, 1, set("a", "1")));
        sm.apply_one(&req(2, 1, set("a", "2")));
        sm.apply_one(&req(1, 2, set("a", "3"))); // client 1 is now the most recent
        sm.apply_one(&req(3, 1, set("a", "4"))); // evicts client 2
        assert_eq!(sm.sessions(), 2);
        assert!(sm.state.sessions.contains_key(&1));
        assert!(!sm.state.sessions.contains_key(&2));
        assert_eq!(sm.state.by_age.len(), 2);
    }

    #[test]
    fn evicted_session_retry_is_not_applied_twice() {
        let mut sm = KvStateMachine::new(1);
        assert_eq!(sm.apply_one(&req(1, 1, incr("n"))), KvOutput::Integer(1));
        sm.apply_one(&req(2, 1, set("x", "y"))); // evicts client 1
        assert_eq!(sm.eviction_floor(), Some(1));
        // A retry of client 1's request (its reply was lost) arrives late.
        let again = sm.apply_one(&req(1, 1, incr("n")));
        assert_eq!(
            get(&sm, "n").as_deref(),
            Some(&b"1"[..]),
            "applied twice: {again:?}"
        );
        assert_eq!(again, KvOutput::SessionExpired);
        // Refused requests do not create a session.
        assert_eq!(sm.sessions(), 1);
        assert!(!sm.state.sessions.contains_key(&1));
    }

    #[test]
    fn evicted_session_never_moves_backwards() {
        let mut sm = KvStateMachine::new(1);
        sm.apply_one(&req(1, 1, set("k", "a")));
        sm.apply_one(&req(1, 2, set("k", "b")));
        sm.apply_one(&req(2, 1, set("x", "y"))); // evicts client 1
        // A duplicate of client 1's first request, delayed in the network.
        let stale = sm.apply_one(&req(1, 1, set("k", "a")));
        assert_eq!(
            get(&sm, "k").as_deref(),
            Some(&b"b"[..]),
            "stale applied: {stale:?}"
        );
        assert_eq!(stale, KvOutput::SessionExpired);
        // And its next request too: the client must start over under a new id.
        assert_eq!(
            sm.apply_one(&req(1, 3, set("k", "c"))),
            KvOutput::SessionExpired
        );
        assert_eq!(get(&sm, "k").as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn the_floor_is_the_highest_evicted_birth_and_newer_clients_are_served() {
        let mut sm = KvStateMachine::new(2);
        sm.apply_one(&born(10, 50, 1, incr("n")));
        sm.apply_one(&born(11, 20, 1, incr("n")));
        sm.apply_one(&born(12, 60, 1, incr("n"))); // evicts 10 (least recent): floor 50
        assert_eq!(sm.eviction_floor(), Some(50));
        sm.apply_one(&born(13, 70, 1, incr("n"))); // evicts 11, born earlier: floor stays
        assert_eq!(sm.eviction_floor(), Some(50));
        // A client never seen, born at or below the floor: it might be 10 or 11 retrying.
        assert_eq!(
            sm.apply_one(&born(14, 50, 1, incr("n"))),
            KvOutput::SessionExpired
        );
        // Born above the floor: no session of it was ever evicted, so it is served, even
        // with a later sequence number (its earlier requests were never applied).
        assert_eq!(
            sm.apply_one(&born(15, 51, 4, incr("n"))),
            KvOutput::Integer(5)
        );
        // A live session is served whatever its birth.
        assert_eq!(
            sm.apply_one(&born(15, 0, 5, incr("n"))),
            KvOutput::Integer(6)
        );
        assert_eq!(get(&sm, "n").as_deref(), Some(&b"6"[..]));
    }

    #[test]
    fn replicas_applying_the_same_log_agree() {
        let log: Vec<Bytes> = (0..200u64)
            .map(|i| born(i % 37, i % 37, i / 37 + 1, incr("n")))
            .chain((0..50).map(|i| req(i % 5, 1, incr("n"))))
            .collect();
        let run = || {
            let mut sm = KvStateMachine::new(8);
            let outputs: Vec<KvOutput> = log.iter().map(|c| sm.apply_one(c)).collect();
            (outputs, sm.state)
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(a.1.sessions.len() <= 8 && a.1.by_age.len() == a.1.sessions.len());
    }

    #[test]
    fn max_request_bytes_bounds_the_encoding() {
        let id = RequestId {
            client: u64::MAX,
            born_slot: u64::MAX,
            seq: u64::MAX,
        };
        let long = vec![7u8; 70_000]; // a three-byte length prefix
        let commands = [
            KvCommand::Set {
                key: vec![],
                value: vec![],
            },
            KvCommand::Set {
                key: b"k".to_vec(),
                value: long.clone(),
            },
            KvCommand::Del {
                keys: vec![vec![1; 200]; 1024],
            },
            KvCommand::Incr { key: long.clone() },
            KvCommand::Cas {
                key: long.clone(),
                expected: long.clone(),
                new: vec![],
            },
        ];
        for command in commands {
            let bound = command.max_request_bytes();
            let len = KvRequest {
                id,
                command: command.clone(),
            }
            .encode()
            .len();
            assert!(len <= bound, "{len} > {bound}");
            // Not wildly loose either: within the per-argument slack.
            let (count, bytes) = command.arguments();
            assert!(
                bound - len <= REQUEST_OVERHEAD_BYTES + 4 * count,
                "{len} vs {bound}"
            );
            assert!(len >= bytes);
        }
        let set = KvCommand::Set {
            key: b"key".to_vec(),
            value: vec![0; 1000],
        };
        assert_eq!(set.max_request_bytes(), 3 + 1000 + 50);
    }

    #[test]
    fn incr_parses_like_redis() {
        for (text, ok) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+1", None),
            (" 1", None),
            ("01", None),
            ("-0", None),
            ("", None),
            ("-", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_redis_integer(text.as_bytes()), ok, "{text:?}");
        }
        let mut sm = KvStateMachine::default();
        sm.apply_one(&req(1, 1, set("s", "abc")));
        assert!(matches!(
            sm.apply_one(&req(1, 2, incr("s"))),
            KvOutput::Error(_)
        ));
        sm.apply_one(&req(1, 3, set("m", "9223372036854775807")));
        assert!(matches!(
            sm.apply_one(&req(1, 4, incr("m"))),
            KvOutput::Error(_)
        ));
    }

    #[test]
    fn cas_and_del() {
        let mut sm = KvStateMachine::default();
        let cas = |e: &str, n: &str| KvCommand::Cas {
            key: b"k".to_vec(),
            expected: e.into(),
            new: n.into(),
        };
        assert_eq!(sm.apply_one(&req(1, 1, cas("", "x"))), KvOutput::Integer(0));
        sm.apply_one(&req(1, 2, set("k", "a")));
        assert_eq!(
            sm.apply_one(&req(1, 3, cas("b", "x"))),
            KvOutput::Integer(0)
        );
        assert_eq!(
            sm.apply_one(&req(1, 4, cas("a", "x"))),
            KvOutput::Integer(1)
        );
        assert_eq!(get(&sm, "k").as_deref(), Some(&b"x"[..]));
        let del = KvCommand::Del {
            keys: vec![b"k".to_vec(), b"zz".to_vec()],
        };
        assert_eq!(sm.apply_one(&req(1, 5, del)), KvOutput::Integer(1));
        assert!(sm.is_empty());
        assert!(matches!(sm.apply_one(b"\xff\xff"), KvOutput::Error(_)));
    }

    #[test]
    fn snapshot_round_trips() {
        futures::executor::block_on(async {
            let mut sm = KvStateMachine::default();
            sm.apply_one(&req(1, 1, set("k", "v")));
            sm.max_sessions = 1;
            sm.apply_one(&req(2, 1, set("k", "w")));
            assert_eq!(sm.eviction_floor(), Some(1));
            let snap = sm.snapshot().await.unwrap();
            let mut other = KvStateMachine::default();
            other.restore(&snap).await.unwrap();
            assert_eq!(other.state, sm.state);
            let answer = other
                .query(&KvQuery::Get { key: b"k".to_vec() }.encode())
                .await
                .unwrap();
            assert_eq!(decode_get_answer(&answer), Some(Some(b"w".to_vec())));
            assert_eq!(other.eviction_floor(), Some(1));
        });
    }
}
