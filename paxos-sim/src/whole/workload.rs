//! Clients of the whole-node simulation and the history they record.
//!
//! Each client issues one operation at a time through a node's [`NodeHandle`], on a node
//! it picks (followers included, so reads and writes are forwarded):
//!
//! * register operations on a few shared keys, `SET`, `GET` and `CAS` of 64-bit values
//!   carried in the first 8 bytes of values from 0 bytes to the largest the node accepts
//!   (`GET`s and `SET`s of up to hundreds of KiB), checked for linearizability;
//! * `INCR` of the client's own counter, whose answers must be 1, 2, 3, ... exactly:
//!   a retried request applied twice shows as a gap (exactly once at the KV level).
//!
//! A write that fails with an unknown outcome is retried with the **same request id**
//! (on any node) until it succeeds or the run ends. What the clients do follows the
//! run's phase: mixed, read-only or write-only. Some clients are pipelined: they keep
//! several operations in flight at once, each under its own client id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use paxos_kv::kv::{KvCommand, KvOutput, KvQuery, KvRequest, RequestId, decode_get_answer};
use paxos_lincheck::{Input, Operation, Output};
use paxos_node::{ProposeError, ReadError};
use paxos_runtime::Runtime;

use super::cluster::Cluster;
use super::executor::Executor;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What clients are asked to do right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Mixed,
    ReadOnly,
    WriteOnly,
    /// Stop issuing; finish what is in flight.
    Stop,
}

/// Shared by the clients and the conductor.
pub(crate) struct Shared {
    pub(crate) cluster: Arc<Mutex<Cluster>>,
    pub(crate) exec: Executor,
    pub(crate) rt: Arc<dyn Runtime>,
    pub(crate) phase: Mutex<Phase>,
    pub(crate) history: Mutex<Vec<Operation>>,
    /// Per counter client: the answers of its INCRs, in order (`None`: unknown at the end).
    pub(crate) counters: Mutex<BTreeMap<u64, Vec<Option<i64>>>>,
    pub(crate) keys: u64,
    /// The largest value a SET may carry (the node's bound less key and overhead).
    pub(crate) max_value: usize,
    /// Varies value sizes from seed to seed.
    salt: u64,
    pub(crate) stats: Mutex<Stats>,
    next_value: Mutex<u64>,
    /// [`NodeBug::ReadAtOnceWhileLeading`](super::NodeBug::ReadAtOnceWhileLeading).
    read_at_once_while_leading: bool,
}

/// What the clients did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes applied (acknowledged).
    pub writes_ok: u64,
    /// Reads answered.
    pub reads_ok: u64,
    /// Of those, reads answered at once from the node's state after
    /// `NodeHandle::try_read_barrier`, as the binary's server does on the leader.
    pub reads_at_once: u64,
    /// Reads that failed (no effect; not in the history).
    pub reads_failed: u64,
    /// Write attempts that failed with an unknown outcome and were retried.
    pub retries: u64,
    /// Writes still unknown when the run ended.
    pub unknown: u64,
    /// Bytes of the largest value written.
    pub largest_value: u64,
    /// Writes refused up front (too large: must not happen below the documented bound).
    pub refused: u64,
}

impl Shared {
    pub(crate) fn new(
        cluster: Arc<Mutex<Cluster>>,
        exec: Executor,
        rt: Arc<dyn Runtime>,
        keys: u64,
        max_value: usize,
        read_at_once_while_leading: bool,
    ) -> Self {
        let salt = exec.random();
        Self {
            cluster,
            exec,
            rt,
            phase: Mutex::new(Phase::Mixed),
            history: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            keys,
            max_value,
            salt,
            stats: Mutex::new(Stats::default()),
            next_value: Mutex::new(1),
            read_at_once_while_leading,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    fn now(&self) -> u64 {
        self.exec.now()
    }

    fn random(&self) -> u64 {
        self.exec.random()
    }

    fn fresh_value(&self) -> u64 {
        let mut v = lock(&self.next_value);
        *v += 1;
        *v
    }

    /// A live node to talk to: any up node, at random.
    fn pick(&self) -> Option<paxos_node::NodeHandle> {
        let cluster = lock(&self.cluster);
        let n = cluster.len();
        let start = (self.random() % n as u64) as usize;
        (0..n)
            .map(|k| (start + k) % n)
            .find_map(|i| cluster.handle(i))
    }

    /// The node that believes it leads, if any.
    fn leader(&self) -> Option<paxos_node::NodeHandle> {
        let cluster = lock(&self.cluster);
        (0..cluster.len())
            .filter_map(|i| cluster.handle(i))
            .find(|h| h.status().role == paxos_core::Role::Leader)
    }

    /// The bytes of register value `v`: its number in the first 8 bytes, padded to a size
    /// that is a function of `v` (so a CAS can name the exact bytes): mostly small,
    /// sometimes up to the largest accepted. Value 0 is the empty value.
    fn value_bytes(&self, v: u64) -> Vec<u8> {
        if v == 0 {
            return Vec::new();
        }
        let h = splitmix(v ^ self.salt);
        let max = self.max_value.max(8) as u64;
        let size = match h % 100 {
            0..=79 => 8 + (h >> 8) % 56,
            80..=94 => 8 + (h >> 8) % 4096,
            95..=97 => 8 + (h >> 8) % max,
            _ => max,
        }
        .min(max);
        let mut out = v.to_le_bytes().to_vec();
        out.resize(size as usize, (v % 251) as u8);
        out
    }

    /// A pause between two operations of one client.
    async fn think(&self) {
        let ms = 10 + self.random() % 90;
        self.rt.sleep(Duration::from_millis(ms)).await;
    }

    async fn backoff(&self) {
        let ms = 1 + self.random() % 20;
        self.rt.sleep(Duration::from_millis(ms)).await;
    }

    /// Proposes `request` until it is applied, retrying with the same id; `None` if the
    /// run stopped first (outcome unknown).
    async fn write(&self, request: &KvRequest) -> Option<KvOutput> {
        let bytes = request.encode();
        loop {
            if self.phase() == Phase::Stop {
                return None;
            }
            let Some(node) = self.pick() else {
                self.backoff().await;
                continue;
            };
            let r = node.propose(bytes.clone()).await;
            if super::trace_on() && matches!(request.command, KvCommand::Incr { .. }) {
                eprintln!(
                    "t={} {:?} via {} -> {:?}",
                    self.now() / 1_000_000,
                    request.id,
                    node.id(),
                    r.as_ref().map(|b| KvOutput::decode(b))
                );
            }
            match r {
                Ok(out) => return KvOutput::decode(&out),
                Err(ProposeError::TooLarge { .. }) => {
                    lock(&self.stats).refused += 1;
                    return Some(KvOutput::Error("too large".into()));
                }
                Err(ProposeError::NoLeader | ProposeError::Overloaded) => {}
                Err(_) => lock(&self.stats).retries += 1,
            }
            self.backoff().await;
        }
    }

    async fn read(&self, key: u64) -> Option<Option<u64>> {
        // In a read-only phase, reads go to the leader (when known), as users send GETs:
        // then nothing at all is written, not even a read marker.
        let node = if self.phase() == Phase::ReadOnly {
            self.leader().or_else(|| self.pick())?
        } else {
            self.pick()?
        };
        let query = KvQuery::Get {
            key: key_bytes(key),
        };
        // Half the reads try the at-once path, as the binary's server does for every read:
        // the lease gate, then the state as it is; the rest, and those the gate refuses,
        // go through the driver.
        let reader = (self.random() % 2 == 0 && self.at_once_allowed(&node))
            .then(|| lock(&self.cluster).reader_of(node.id()))
            .flatten();
        let answer = match reader {
            Some(reader) => {
                lock(&self.stats).reads_at_once += 1;
                reader.answer(query).encode()
            }
            None => match node.read(query.encode()).await {
                Ok(answer) => answer,
                Err(ReadError::Fatal(_) | ReadError::Timeout | ReadError::LeadershipChanged)
                | Err(ReadError::NoLeader | ReadError::Overloaded)
                | Err(_) => return None,
            },
        };
        decode_get_answer(&answer).map(|v| v.map(|v| decode_value(&v)))
    }

    /// Whether `node` may answer a read at once: its lease gate, or, with
    /// [`NodeBug::ReadAtOnceWhileLeading`](super::NodeBug::ReadAtOnceWhileLeading), its
    /// belief that it leads.
    fn at_once_allowed(&self, node: &paxos_node::NodeHandle) -> bool {
        if self.read_at_once_while_leading {
            node.status().role == paxos_core::Role::Leader
        } else {
            node.try_read_barrier().is_some()
        }
    }
}

fn key_bytes(key: u64) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn decode_value(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = bytes.len().min(8);
    raw[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(raw)
}

/// One client: `client` is its id; `depth` operations in flight at once.
pub(crate) async fn client(shared: Arc<Shared>, client: u64, depth: usize) {
    let lanes = (0..depth as u64).map(|lane| lane_loop(shared.clone(), client * 16 + lane));
    futures::future::join_all(lanes).await;
}

async fn lane_loop(shared: Arc<Shared>, id: u64) {
    let mut seq = 0u64;
    let mut counter = 0usize;
    loop {
        shared.think().await;
        let phase = shared.phase();
        if phase == Phase::Stop {
            return;
        }
        let roll = shared.random() % 100;
        let kind = match phase {
            Phase::ReadOnly => 0,
            Phase::WriteOnly => 40 + roll % 60,
            _ => roll,
        };
        let key = shared.random() % shared.keys;
        if kind < 40 {
            let call = shared.now();
            match shared.read(key).await {
                Some(value) => {
                    let ret = shared.now();
                    lock(&shared.stats).reads_ok += 1;
                    lock(&shared.history).push(Operation {
                        client: id,
                        key,
                        input: Input::Read,
                        output: Some(Output::Read(value)),
                        call,
                        ret: Some(ret),
                    });
                }
                None => {
                    lock(&shared.stats).reads_failed += 1;
                    shared.backoff().await;
                }
            }
            continue;
        }
        seq += 1;
        let request_id = RequestId {
            client: id,
            born_slot: 0,
            seq,
        };
        let (command, input) = if kind < 80 {
            // Now and then the empty value (0).
            let v = if shared.random() % 30 == 0 {
                0
            } else {
                shared.fresh_value()
            };
            let value = shared.value_bytes(v);
            {
                let mut stats = lock(&shared.stats);
                stats.largest_value = stats.largest_value.max(value.len() as u64);
            }
            (
                KvCommand::Set {
                    key: key_bytes(key),
                    value,
                },
                Some(Input::Write(v)),
            )
        } else if kind < 90 {
            // CAS from a recently written value (it may or may not still be there).
            let expected = shared.fresh_value().saturating_sub(1 + shared.random() % 3);
            let new = shared.fresh_value();
            (
                KvCommand::Cas {
                    key: key_bytes(key),
                    expected: shared.value_bytes(expected),
                    new: shared.value_bytes(new),
                },
                Some(Input::Cas { expected, new }),
            )
        } else {
            counter += 1;
            (
                KvCommand::Incr {
                    key: format!("c{id}").into_bytes(),
                },
                None,
            )
        };
        let request = KvRequest {
            id: request_id,
            command,
        };
        let call = shared.now();
        let out = shared.write(&request).await;
        let ret = shared.now();
        match (&out, input) {
            (None, _) => lock(&shared.stats).unknown += 1,
            (Some(_), _) => lock(&shared.stats).writes_ok += 1,
        }
        match input {
            Some(input) => {
                let output = match (&out, input) {
                    (None, _) => None,
                    (Some(KvOutput::Ok), Input::Write(_)) => Some(Output::Write),
                    (Some(KvOutput::Integer(n)), Input::Cas { .. }) => Some(Output::Cas(*n == 1)),
                    (Some(other), _) => {
                        // Refused up front or an error output: it had no effect.
                        let _ = other;
                        continue;
                    }
                };
                let ret = output.is_some().then_some(ret);
                lock(&shared.history).push(Operation {
                    client: id,
                    key,
                    input,
                    output,
                    call,
                    ret,
                });
            }
            None => {
                let answer = match out {
                    Some(KvOutput::Integer(n)) => Some(n),
                    other => {
                        if super::trace_on() {
                            eprintln!("client {id} INCR seq {seq}: {other:?} at {}", shared.now());
                        }
                        None
                    }
                };
                let mut counters = lock(&shared.counters);
                let answers = counters.entry(id).or_default();
                answers.push(answer);
                debug_assert_eq!(answers.len(), counter);
            }
        }
    }
}

/// Final reads of every key on every live node, added to the history.
pub(crate) async fn final_reads(shared: &Shared) {
    let nodes: Vec<_> = {
        let cluster = lock(&shared.cluster);
        (0..cluster.len())
            .filter_map(|i| cluster.handle(i))
            .collect()
    };
    for node in nodes {
        for key in 0..shared.keys {
            let call = shared.now();
            let query = KvQuery::Get {
                key: key_bytes(key),
            }
            .encode();
            if let Ok(answer) = node.read(query).await {
                let value = decode_get_answer(&answer).map(|v| v.map(|v| decode_value(&v)));
                if let Some(value) = value {
                    lock(&shared.history).push(Operation {
                        client: u64::MAX,
                        key,
                        input: Input::Read,
                        output: Some(Output::Read(value)),
                        call,
                        ret: Some(shared.now()),
                    });
                }
            }
        }
    }
}

/// Exactly once at the KV level: each counter's answers are 1, 2, 3, ... with unknown
/// outcomes only at the end.
pub(crate) fn check_counters(shared: &Shared) -> Result<(), String> {
    for (client, answers) in lock(&shared.counters).iter() {
        let mut expected = 1i64;
        let mut ended = false;
        for a in answers {
            match a {
                Some(n) if !ended => {
                    if *n != expected {
                        return Err(format!(
                            "exactly once: client {client}'s INCR answered {n}, expected {expected} \
                             (answers {answers:?})"
                        ));
                    }
                    expected += 1;
                }
                Some(n) => {
                    return Err(format!(
                        "client {client} got INCR answer {n} after an unknown outcome"
                    ));
                }
                None => ended = true,
            }
        }
    }
    Ok(())
}
