//! Requests waiting for their outcome: proposals by [`ProposalId`], reads (and read
//! barriers) by what they wait on (a core read or a read marker). Bounded, with deadlines.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;
use paxos_core::{ProposalId, ReadId, Slot};

use crate::client::Applied;
use crate::error::{FatalError, ProposeError, ReadError};

/// A proposal waiting to be applied here.
#[derive(Debug)]
struct ProposalWaiter {
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
    /// The slot whose batch holds the command, once the driver is applying that batch
    /// ([`Waiters::record_slot`]).
    slot: Option<Slot>,
}

/// A read or a read barrier, waiting for its confirmation (a core read, or its marker
/// applied here).
#[derive(Debug)]
pub(crate) struct ReadWaiter {
    pub(crate) deadline: Instant,
    pub(crate) reply: ReadReply,
}

/// What a confirmed read answers.
#[derive(Debug)]
pub(crate) enum ReadReply {
    /// A read: answered with `StateMachine::query(query)`.
    Query {
        query: Bytes,
        reply: oneshot::Sender<Result<Bytes, ReadError>>,
    },
    /// A read barrier: answered with the applied position, without a query.
    Barrier {
        reply: oneshot::Sender<Result<Slot, ReadError>>,
    },
}

impl ReadWaiter {
    /// Its caller gave up (dropped the future): no need to answer.
    pub(crate) fn is_canceled(&self) -> bool {
        match &self.reply {
            ReadReply::Query { reply, .. } => reply.is_canceled(),
            ReadReply::Barrier { reply } => reply.is_canceled(),
        }
    }

    /// Fails it with `error`.
    pub(crate) fn fail(self, error: ReadError) {
        match self.reply {
            ReadReply::Query { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ReadReply::Barrier { reply } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// What a group of reads waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ReadKey {
    /// A read the core serves on its leader (lease or read index): answered when the id
    /// shows up in `Ready::reads`.
    Core(ReadId),
    /// A read marker proposed through the log: answered when it is applied here.
    Marker(ProposalId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Proposal(ProposalId),
    Reads(ReadKey),
}

/// Every request waiting for an outcome on this node.
///
/// Invariant: every waiter was registered while the node believed in the leader it
/// believes in now. When that belief changes away from a known leader, the driver fails
/// them all ([`fail_all`](Self::fail_all)): the leader they went through may have dropped
/// them. Registered while no leader was known (a candidate queues proposals), they stay,
/// since the core proposes or forwards them once a leader is known.
#[derive(Debug)]
pub(crate) struct Waiters {
    cap: usize,
    len: usize,
    proposals: HashMap<ProposalId, ProposalWaiter>,
    reads: HashMap<ReadKey, Vec<ReadWaiter>>,
    /// Deadlines, earliest first. Entries for requests already answered are skipped.
    expiry: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Waiters {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            len: 0,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }

    /// Requests waiting now.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Room for `n` more waiters.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.len + n <= self.cap
    }

    pub(crate) fn add_proposal(
        &mut self,
        id: ProposalId,
        deadline: Instant,
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    ) {
        debug_assert!(self.has_room(1));
        self.proposals
            .insert(id, ProposalWaiter { reply, slot: None });
        self.expiry.push(Reverse((deadline, Key::Proposal(id))));
        self.len += 1;
    }

    /// Registers reads that wait on `marker`.
    pub(crate) fn add_reads(&mut self, marker: ReadKey, reads: Vec<ReadWaiter>) {
        debug_assert!(self.has_room(reads.len()));
        self.len += reads.len();
        for r in &reads {
            self.expiry.push(Reverse((r.deadline, Key::Reads(marker))));
        }
        self.reads.entry(marker).or_default().extend(reads);
    }

    /// Notes that the proposal `id`, if it waits here, is in the batch of `slot`: the
    /// driver calls it for every command of a batch before applying it, so that the
    /// output can be answered with its slot. One map lookup per command.
    pub(crate) fn record_slot(&mut self, id: ProposalId, slot: Slot) {
        if let Some(w) = self.proposals.get_mut(&id) {
            w.slot = Some(slot);
        }
    }

    /// Answers the proposal `id` with `output` and the slot [`record_slot`](Self::record_slot)
    /// noted, if it waits here. Returns false if it waits but no slot was noted: the state
    /// machine gave an output for a command that was not in the batch it applied (a
    /// contract breach); the proposal keeps waiting for its own batch.
    pub(crate) fn resolve_proposal(&mut self, id: ProposalId, output: Bytes) -> bool {
        let Some(slot) = self.proposals.get(&id).map(|w| w.slot) else {
            return true;
        };
        let Some(slot) = slot else {
            return false;
        };
        if let Some(w) = self.proposals.remove(&id) {
            self.len -= 1;
            let _ = w.reply.send(Ok(Applied { slot, output }));
        }
        true
    }

    /// Fails the proposal `id` with `error`, if it waits here; returns whether it did.
    pub(crate) fn fail_proposal(&mut self, id: ProposalId, error: ProposeError) -> bool {
        let Some(w) = self.proposals.remove(&id) else {
            return false;
        };
        self.len -= 1;
        let _ = w.reply.send(Err(error));
        true
    }

    /// Takes the reads waiting on `marker`, for the driver to answer or fail.
    pub(crate) fn take_reads(&mut self, marker: ReadKey) -> Vec<ReadWaiter> {
        let reads = self.reads.remove(&marker).unwrap_or_default();
        self.len -= reads.len();
        reads
    }

    /// The earliest deadline of a waiter still waiting.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, key))) = self.expiry.peek().copied() {
            let live = match key {
                Key::Proposal(id) => self.proposals.contains_key(&id),
                Key::Reads(marker) => self.reads.contains_key(&marker),
            };
            if live {
                return Some(deadline);
            }
            self.expiry.pop();
        }
        None
    }

    /// Fails every waiter whose deadline is at or before `now` with `Timeout`. Its caller
    /// has usually given up already (the handle has the same deadline); this frees room.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, key))) = self.expiry.peek().copied() {
            if deadline > now {
                break;
            }
            self.expiry.pop();
            match key {
                Key::Proposal(id) => {
                    if let Some(w) = self.proposals.remove(&id) {
                        self.len -= 1;
                        let _ = w.reply.send(Err(ProposeError::Timeout));
                    }
                }
                Key::Reads(marker) => {
                    let Some(group) = self.reads.get_mut(&marker) else {
                        continue;
                    };
                    let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(group)
                        .into_iter()
                        .partition(|r| r.deadline <= now);
                    *group = kept;
                    self.len -= expired.len();
                    for r in expired {
                        r.fail(ReadError::Timeout);
                    }
                    if group.is_empty() {
                        self.reads.remove(&marker);
                    }
                }
            }
        }
    }

    /// Fails every waiter: with `LeadershipChanged`, or with `Fatal` when stopping.
    pub(crate) fn fail_all(&mut self, fatal: Option<&FatalError>) {
        for (_, w) in self.proposals.drain() {
            let error = fatal.map_or(ProposeError::LeadershipChanged, |f| {
                ProposeError::Fatal(f.clone())
            });
            let _ = w.reply.send(Err(error));
        }
        for (_, group) in self.reads.drain() {
            for r in group {
                let error = fatal.map_or(ReadError::LeadershipChanged, |f| {
                    ReadError::Fatal(f.clone())
                });
                r.fail(error);
            }
        }
        self.expiry.clear();
        self.len = 0;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use paxos_core::NodeId;

    use super::*;

    fn id(seq: u64) -> ProposalId {
        ProposalId {
            origin: NodeId(1),
            seq,
            epoch: 0,
        }
    }

    fn read(deadline: Instant) -> (ReadWaiter, oneshot::Receiver<Result<Bytes, ReadError>>) {
        let (reply, rx) = oneshot::channel();
        (
            ReadWaiter {
                deadline,
                reply: ReadReply::Query {
                    query: Bytes::new(),
                    reply,
                },
            },
            rx,
        )
    }

    #[test]
    fn bounded_expiring_and_failing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Waiters::new(3);
        let (tx, mut p0) = oneshot::channel();
        w.add_proposal(id(0), t0 + ms(10), tx);
        let (r1, mut rx1) = read(t0 + ms(5));
        let (r2, mut rx2) = read(t0 + ms(20));
        w.add_reads(ReadKey::Marker(id(1)), vec![r1, r2]);
        assert!(!w.has_room(1));
        assert_eq!(w.next_deadline(), Some(t0 + ms(5)));

        w.expire(t0 + ms(5));
        assert_eq!(rx1.try_recv(), Ok(Some(Err(ReadError::Timeout))));
        assert!(w.has_room(1));
        assert_eq!(w.next_deadline(), Some(t0 + ms(10)));

        // An output for a proposal whose slot was not noted (not in the applied batch) is
        // not taken as its answer.
        assert!(!w.resolve_proposal(id(0), Bytes::from_static(b"stray")));
        assert_eq!(p0.try_recv(), Ok(None));
        w.record_slot(id(0), Slot(4));
        assert!(w.resolve_proposal(id(0), Bytes::from_static(b"out")));
        let applied = Applied {
            slot: Slot(4),
            output: Bytes::from_static(b"out"),
        };
        assert_eq!(p0.try_recv(), Ok(Some(Ok(applied))));
        // Another node's command: nothing waits for it here.
        assert!(w.resolve_proposal(id(9), Bytes::new()));
        assert_eq!(w.next_deadline(), Some(t0 + ms(20)));

        w.fail_all(None);
        assert_eq!(rx2.try_recv(), Ok(Some(Err(ReadError::LeadershipChanged))));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }
}
