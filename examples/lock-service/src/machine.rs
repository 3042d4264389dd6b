//! The replicated state: named locks with owners and fencing tokens, as a
//! [`StateMachine`].

use std::collections::BTreeMap;

use paxos_node::{
    Bytes, Committed, ProposalId, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError,
    async_trait,
};
use serde::{Deserialize, Serialize};

/// The longest lock or owner name accepted, in bytes. A longer one is refused with
/// [`Response::Invalid`], identically on every replica.
pub const MAX_NAME_BYTES: usize = 256;

/// The largest lock table snapshot [`LockMachine`] restores (64 MiB): far above what a
/// lock service holds, and a bound on what a corrupt length can make it allocate.
pub(crate) const MAX_SNAPSHOT_BYTES: usize = 64 << 20;

/// A write, proposed through the log. Encode with [`Command::encode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take `lock` for `owner` if nobody holds it. Idempotent: an owner that already holds
    /// the lock gets its token again, so a client may retry an acquire whose outcome it
    /// does not know.
    Acquire {
        /// The lock's name.
        lock: String,
        /// Who wants it.
        owner: String,
    },
    /// Give `lock` back. Only the holder can, and only for the acquisition `token` names.
    Release {
        /// The lock's name.
        lock: String,
        /// Who claims to hold it.
        owner: String,
        /// The fencing token its acquire returned.
        token: u64,
    },
}

/// A read-only question, answered by one replica (linearizably, by the node). Encode with
/// [`Query::encode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Who holds `lock`?
    Holder {
        /// The lock's name.
        lock: String,
    },
}

/// Who holds a lock, under which token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The owner's name.
    pub owner: String,
    /// The fencing token of this acquisition.
    pub token: u64,
}

/// What the state machine answers, to a [`Command`] or a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// The lock is now (or was already) held by the caller, under `token`. Tokens grow
    /// with every acquisition of any lock, so a resource guarded by the lock can refuse a
    /// request carrying a token older than one it has seen (a holder that was paused and
    /// lost the lock without knowing).
    Acquired {
        /// The fencing token.
        token: u64,
    },
    /// Someone else holds the lock: the acquire changed nothing.
    Held(Holder),
    /// The lock was released.
    Released,
    /// A release by someone other than the holder, or for another acquisition (token)
    /// than the current one: refused, nothing changed.
    NotOwner {
        /// The current holder.
        holder: Holder,
    },
    /// A release of a lock nobody holds: nothing changed. A client that retried its own
    /// release may see this when the first attempt went through.
    NotHeld,
    /// The answer to [`Query::Holder`].
    HolderIs(Option<Holder>),
    /// The command or query could not be decoded, or a name is longer than
    /// [`MAX_NAME_BYTES`]: nothing changed.
    Invalid,
}

impl Command {
    /// The bytes to hand to [`NodeHandle::propose`](paxos_node::NodeHandle::propose).
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes a command; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

impl Query {
    /// The bytes to hand to [`NodeHandle::read`](paxos_node::NodeHandle::read).
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes a query; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

impl Response {
    /// Encodes the response, as the state machine outputs it.
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    /// Decodes a state machine output; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // Only fails for types serde cannot describe or a writer that runs out of room;
    // neither happens with these enums and a growable Vec.
    Bytes::from(postcard::to_allocvec(value).unwrap_or_default())
}

/// The lock table, as a [`StateMachine`]: what every replica applies in log order.
///
/// Deterministic: the tables are `BTreeMap`s, tokens come from a counter in the state, and
/// nothing reads a clock. Bad input (undecodable bytes, names over [`MAX_NAME_BYTES`]) is
/// answered with [`Response::Invalid`], never with an error: an error from `apply` or
/// `query` stops the node.
///
/// Locks have no expiry: a holder that disappears keeps its lock until it releases it.
/// Expiry would need time in the log (say, a timestamp the leader puts in each command),
/// since the state machine must not read a clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockMachine {
    held: BTreeMap<String, Holder>,
    /// The last token handed out; the next acquisition gets one more.
    last_token: u64,
}

impl LockMachine {
    /// An empty lock table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command and returns its response.
    pub fn execute(&mut self, command: &Command) -> Response {
        match command {
            Command::Acquire { lock, owner } => {
                if !valid(lock) || !valid(owner) {
                    return Response::Invalid;
                }
                match self.held.get(lock) {
                    Some(h) if h.owner == *owner => Response::Acquired { token: h.token },
                    Some(h) => Response::Held(h.clone()),
                    None => {
                        self.last_token += 1;
                        let token = self.last_token;
                        let holder = Holder {
                            owner: owner.clone(),
                            token,
                        };
                        self.held.insert(lock.clone(), holder);
                        Response::Acquired { token }
                    }
                }
            }
            Command::Release { lock, owner, token } => {
                if !valid(lock) || !valid(owner) {
                    return Response::Invalid;
                }
                match self.held.get(lock) {
                    Some(h) if h.owner == *owner && h.token == *token => {
                        self.held.remove(lock);
                        Response::Released
                    }
                    Some(h) => Response::NotOwner { holder: h.clone() },
                    None => Response::NotHeld,
                }
            }
        }
    }

    /// Answers one query.
    pub fn answer(&self, query: &Query) -> Response {
        match query {
            Query::Holder { lock } if valid(lock) => {
                Response::HolderIs(self.held.get(lock).cloned())
            }
            Query::Holder { .. } => Response::Invalid,
        }
    }

    /// Applies an encoded command: what [`StateMachine::apply`] does for each one.
    pub fn execute_bytes(&mut self, command: &[u8]) -> Response {
        match Command::decode(command) {
            Some(command) => self.execute(&command),
            None => Response::Invalid,
        }
    }
}

fn valid(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES
}

#[async_trait]
impl StateMachine for LockMachine {
    async fn apply(
        &mut self,
        batch: &[Committed],
        outputs: &mut Vec<(ProposalId, Bytes)>,
    ) -> Result<(), StateMachineError> {
        for committed in batch {
            for command in committed.value.commands() {
                let response = self.execute_bytes(&command.payload);
                outputs.push((command.id, response.encode()));
            }
        }
        Ok(())
    }

    async fn query(&mut self, query: &[u8]) -> Result<Bytes, StateMachineError> {
        let response = match Query::decode(query) {
            Some(query) => self.answer(&query),
            None => Response::Invalid,
        };
        Ok(response.encode())
    }

    /// The lock table is small (bounded by its locks), so it is encoded whole and
    /// written in one piece, with its length first.
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let bytes = postcard::to_allocvec(self)
            .map_err(|e| StateMachineError::new(format!("encoding the lock table: {e}")))?;
        let io = |e| StateMachineError::with_source("writing the lock table snapshot", e);
        out.write(&(bytes.len() as u64).to_le_bytes())
            .await
            .map_err(io)?;
        out.write(&bytes).await.map_err(io)
    }

    async fn restore(&mut self, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let io = |e| StateMachineError::with_source("reading the lock table snapshot", e);
        let bad = || StateMachineError::new("the lock table snapshot is cut short or too long");
        let mut len = [0; 8];
        if input.read_full(&mut len).await.map_err(io)? != 8 {
            return Err(bad());
        }
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad())?;
        if len > MAX_SNAPSHOT_BYTES {
            return Err(bad());
        }
        let mut bytes = vec![0; len];
        if input.read_full(&mut bytes).await.map_err(io)? != len
            || input.read(&mut [0; 1]).await.map_err(io)? != 0
        {
            return Err(bad());
        }
        *self = postcard::from_bytes(&bytes)
            .map_err(|e| StateMachineError::new(format!("decoding a lock table snapshot: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(lock: &str, owner: &str) -> Command {
        Command::Acquire {
            lock: lock.into(),
            owner: owner.into(),
        }
    }

    fn release(lock: &str, owner: &str, token: u64) -> Command {
        Command::Release {
            lock: lock.into(),
            owner: owner.into(),
            token,
        }
    }

    fn holder(owner: &str, token: u64) -> Holder {
        Holder {
            owner: owner.into(),
            token,
        }
    }

    #[test]
    fn one_owner_at_a_time_with_growing_tokens() {
        let mut m = LockMachine::new();
        assert_eq!(
            m.execute(&acquire("db", "alice")),
            Response::Acquired { token: 1 }
        );
        // Retried by its owner: the same acquisition.
        assert_eq!(
            m.execute(&acquire("db", "alice")),
            Response::Acquired { token: 1 }
        );
        assert_eq!(
            m.execute(&acquire("db", "bob")),
            Response::Held(holder("alice", 1))
        );
        assert_eq!(
            m.execute(&acquire("queue", "bob")),
            Response::Acquired { token: 2 }
        );
        assert_eq!(
            m.execute(&release("db", "bob", 1)),
            Response::NotOwner {
                holder: holder("alice", 1)
            }
        );
        // The right owner with a stale token is refused too.
        assert_eq!(
            m.execute(&release("db", "alice", 7)),
            Response::NotOwner {
                holder: holder("alice", 1)
            }
        );
        assert_eq!(m.execute(&release("db", "alice", 1)), Response::Released);
        assert_eq!(m.execute(&release("db", "alice", 1)), Response::NotHeld);
        assert_eq!(
            m.execute(&acquire("db", "bob")),
            Response::Acquired { token: 3 }
        );
        let query = Query::Holder { lock: "db".into() };
        assert_eq!(m.answer(&query), Response::HolderIs(Some(holder("bob", 3))));
    }

    #[test]
    fn bad_input_is_an_answer_not_an_error() {
        let mut m = LockMachine::new();
        assert_eq!(m.execute_bytes(b"\xff\xff\xff garbage"), Response::Invalid);
        assert_eq!(m.execute_bytes(&[]), Response::Invalid);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(m.execute(&acquire(&long, "alice")), Response::Invalid);
        assert_eq!(m.execute(&acquire("db", &long)), Response::Invalid);
        assert_eq!(m.answer(&Query::Holder { lock: long }), Response::Invalid);
        assert_eq!(m, LockMachine::new(), "nothing changed");
        let answer = futures::executor::block_on(m.query(b"\x07 not a query"));
        assert_eq!(
            answer.map(|b| Response::decode(&b)),
            Ok(Some(Response::Invalid))
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let mut m = LockMachine::new();
        m.execute(&acquire("db", "alice"));
        m.execute(&acquire("queue", "bob"));
        let mut copy = LockMachine::new();
        futures::executor::block_on(async {
            let mut data = Vec::new();
            m.snapshot(&mut data).await.unwrap();
            copy.restore(&mut data.as_slice()).await.unwrap();
            for len in 0..data.len() {
                let mut cut = &data[..len];
                assert!(copy.restore(&mut cut).await.is_err(), "cut at {len}");
            }
            assert!(copy.restore(&mut &b"\xff"[..]).await.is_err());
            copy.restore(&mut data.as_slice()).await.unwrap();
        });
        assert_eq!(copy, m);
        assert_eq!(
            copy.execute(&acquire("x", "carol")),
            Response::Acquired { token: 3 }
        );
    }

    #[test]
    fn codecs_round_trip_and_refuse_garbage() {
        let c = release("db", "alice", 9);
        assert_eq!(Command::decode(&c.encode()), Some(c));
        let q = Query::Holder { lock: "db".into() };
        assert_eq!(Query::decode(&q.encode()), Some(q));
        let r = Response::Held(holder("alice", 1));
        assert_eq!(Response::decode(&r.encode()), Some(r));
        assert_eq!(Response::decode(b"\xff\xff"), None);
    }
}
