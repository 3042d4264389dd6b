//! Step tests: each compares the exact Ready a step emits.

use std::time::Duration;

use bytes::Bytes;

use super::Replica;
use crate::message::{
    Accept, Accepted, Envelope, Forward, Message, Nack, PreVoteReply, Prepare, Promise,
};
use crate::ready::{
    Committed, HardState, PersistBatch, Ready, RecoveredState, Role, SnapshotFetch,
};
use crate::types::{Ballot, Command, Entry, Instant, NodeId, Slot, Value};
use crate::{Config, ProposeRefused};

pub(super) const N1: NodeId = NodeId(1);
pub(super) const N2: NodeId = NodeId(2);
pub(super) const N3: NodeId = NodeId(3);

pub(super) fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, vec![N1, N2, N3]);
    c.rng_seed = Some([7; 32]);
    c
}

pub(super) fn replica(id: NodeId) -> Replica {
    Replica::new(config(id), RecoveredState::default(), Instant::ZERO).unwrap()
}

pub(super) fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// Takes the next Ready and advances it, as a driver would after persisting and sending.
pub(super) fn step(r: &mut Replica) -> Ready {
    let ready = r.poll_ready().expect("a Ready");
    r.advance(ready.id);
    ready
}

pub(super) fn b(round: u64, node: NodeId) -> Ballot {
    Ballot::new(round, node)
}

/// A promise of `ballot` with nothing accepted, from a replica that knows no commit.
fn empty_promise(ballot: Ballot) -> Promise {
    Promise {
        ballot,
        from: Slot(0),
        accepted: vec![],
        next: None,
        commit: Slot(0),
    }
}

/// Times `r` out at `now` and grants its pre-vote from N2: it is a candidate, its
/// Prepares and its own promise in its next Ready.
fn pre_vote(r: &mut Replica, now: Instant) {
    r.handle_timeout(now);
    let ready = step(r);
    let Some(Message::PreVote(ask)) = ready.messages.first().map(|e| &e.message) else {
        panic!("expected a pre-vote, got {:?}", ready.messages);
    };
    let reply = PreVoteReply {
        ballot: ask.ballot,
        round: ask.round,
        granted: true,
        promised: Ballot::ZERO,
        commit: ask.commit,
    };
    r.handle_message(now, N2, Message::PreVoteReply(reply));
    assert_eq!(r.status().role, Role::Candidate);
}

/// Times `r` out at `now`, grants its pre-vote from N2, and returns the ballot of the
/// Prepares it then sends (its own promise persisted and counted).
fn campaign(r: &mut Replica, now: Instant) -> Ballot {
    pre_vote(r, now);
    let ready = step(r);
    match &ready.messages[0].message {
        Message::Prepare(p) => p.ballot,
        m => panic!("expected prepare, got {m:?}"),
    }
}

#[test]
fn prepare_is_promised_and_persisted_before_the_promise_is_sent() {
    let mut r = replica(N2);
    r.handle_message(
        at(1),
        N1,
        Message::Prepare(Prepare {
            ballot: b(1, N1),
            from: Slot(0),
        }),
    );
    let ready = step(&mut r);
    assert_eq!(
        ready,
        Ready {
            fetch_snapshot: None,
            early_messages: 0,
            id: 1,
            persist: PersistBatch {
                hard_state: Some(HardState {
                    promised: b(1, N1),
                    commit: Slot(0),
                    epoch: 1,
                    non_voting: false,
                }),
                entries: vec![],
            },
            messages: vec![Envelope {
                to: N1,
                message: Message::Promise(Promise {
                    ballot: b(1, N1),
                    from: Slot(0),
                    accepted: vec![],
                    next: None,
                    commit: Slot(0),
                }),
            }],
            committed: vec![],
            reads: vec![],
            aborted_reads: vec![],
        }
    );
    assert!(r.poll_ready().is_none());
}

#[test]
fn lower_ballot_is_nacked_without_persisting() {
    let mut r = replica(N2);
    r.handle_message(
        at(1),
        N1,
        Message::Prepare(Prepare {
            ballot: b(5, N1),
            from: Slot(0),
        }),
    );
    let _ = step(&mut r);
    r.handle_message(
        at(2),
        N3,
        Message::Prepare(Prepare {
            ballot: b(4, N3),
            from: Slot(0),
        }),
    );
    r.handle_message(
        at(2),
        N3,
        Message::Accept(Accept {
            ballot: b(4, N3),
            first: Slot(0),
            values: vec![Value::Noop],
            commit: Slot(0),
            stamp: Instant::ZERO,
        }),
    );
    let ready = step(&mut r);
    assert!(ready.persist.is_empty());
    let nack = Message::Nack(Nack {
        ballot: b(4, N3),
        promised: b(5, N1),
        leased: false,
    });
    assert_eq!(
        ready.messages,
        vec![
            Envelope {
                to: N3,
                message: nack.clone()
            },
            Envelope {
                to: N3,
                message: nack
            }
        ]
    );
}

#[test]
fn accept_is_persisted_before_accepted_is_sent_and_commit_is_learned() {
    let mut r = replica(N2);
    let v = Value::Batch(vec![cmd(1)].into());
    r.handle_message(
        at(1),
        N1,
        Message::Accept(Accept {
            ballot: b(1, N1),
            first: Slot(0),
            values: vec![v.clone()],
            commit: Slot(0),
            stamp: Instant::ZERO,
        }),
    );
    let ready = step(&mut r);
    assert_eq!(
        ready.persist.entries,
        vec![Entry {
            slot: Slot(0),
            ballot: b(1, N1),
            value: v.clone()
        }]
    );
    assert_eq!(
        ready.persist.hard_state,
        Some(HardState {
            promised: b(1, N1),
            commit: Slot(0),
            epoch: 1,
            non_voting: false,
        })
    );
    assert_eq!(
        ready.messages,
        vec![Envelope {
            to: N1,
            message: Message::Accepted(Accepted {
                ballot: b(1, N1),
                first: Slot(0),
                count: 1,
                stamp: Instant::ZERO
            })
        }]
    );
    assert_eq!(r.status().leader, Some(N1));
    // The heartbeat carries the commit point: the value accepted at that ballot is chosen.
    r.handle_message(
        at(2),
        N1,
        Message::Accept(Accept {
            ballot: b(1, N1),
            first: Slot(1),
            values: vec![],
            commit: Slot(1),
            stamp: Instant::ZERO,
        }),
    );
    let ready = step(&mut r);
    assert_eq!(
        ready.committed,
        vec![Committed {
            slot: Slot(0),
            value: v
        }]
    );
}

#[test]
fn commit_from_another_ballot_is_fetched_not_assumed() {
    let mut r = replica(N2);
    r.handle_message(
        at(1),
        N1,
        Message::Accept(Accept {
            ballot: b(1, N1),
            first: Slot(0),
            values: vec![Value::Noop],
            commit: Slot(0),
            stamp: Instant::ZERO,
        }),
    );
    let _ = step(&mut r);
    // Leader 3 says slot 0 is chosen, but we hold slot 0 at ballot 1.1, not 2.3.
    r.handle_message(
        at(2),
        N3,
        Message::Accept(Accept {
            ballot: b(2, N3),
            first: Slot(1),
            values: vec![],
            commit: Slot(1),
            stamp: Instant::ZERO,
        }),
    );
    let ready = step(&mut r);
    assert!(ready.committed.is_empty());
    assert!(
        ready.messages.iter().any(
            |e| e.to == N3 && matches!(e.message, Message::CatchUp(ref c) if c.from == Slot(0))
        )
    );
}

pub(super) fn cmd(seq: u64) -> Command {
    Command {
        id: crate::ProposalId {
            origin: N9,
            seq,
            epoch: 0,
        },
        payload: Bytes::from(format!("c{seq}")),
    }
}
const N9: NodeId = NodeId(9);

/// A lossless in-memory cluster for step tests.
pub(super) struct Cluster {
    pub(super) replicas: Vec<Replica>,
    pub(super) now: Instant,
    pub(super) committed: Vec<Vec<Committed>>,
    pub(super) sent: Vec<(NodeId, NodeId, Message)>,
    /// Snapshot fetches asked for, by replica index, in order.
    pub(super) fetches: Vec<(usize, SnapshotFetch)>,
    /// A replica cut off from the others.
    pub(super) down: Option<NodeId>,
    /// A replica that sends but hears nothing.
    deaf: Option<NodeId>,
}

impl Cluster {
    pub(super) fn new(configure: impl Fn(&mut Config)) -> Self {
        let replicas = [N1, N2, N3]
            .iter()
            .map(|&id| {
                let mut c = config(id);
                configure(&mut c);
                Replica::new(c, RecoveredState::default(), Instant::ZERO).unwrap()
            })
            .collect();
        Self {
            replicas,
            now: Instant::ZERO,
            committed: vec![vec![]; 3],
            sent: vec![],
            fetches: vec![],
            down: None,
            deaf: None,
        }
    }

    pub(super) fn idx(id: NodeId) -> usize {
        (id.0 - 1) as usize
    }

    /// Delivers everything until quiet.
    pub(super) fn settle(&mut self) {
        for _ in 0..100 {
            let mut inflight = vec![];
            for i in 0..3 {
                while let Some(ready) = self.replicas[i].poll_ready() {
                    let from = self.replicas[i].id();
                    for e in ready.messages {
                        self.sent.push((from, e.to, e.message.clone()));
                        inflight.push((from, e.to, e.message));
                    }
                    self.committed[i].extend(ready.committed);
                    self.fetches.extend(ready.fetch_snapshot.map(|f| (i, f)));
                    self.replicas[i].advance(ready.id);
                }
            }
            if inflight.is_empty() {
                return;
            }
            for (from, to, m) in inflight {
                if self.down == Some(from) || self.down == Some(to) || self.deaf == Some(to) {
                    continue;
                }
                self.replicas[Self::idx(to)].handle_message(self.now, from, m);
            }
        }
        panic!("cluster did not settle");
    }

    pub(super) fn elect(&mut self, id: NodeId) {
        let i = Self::idx(id);
        self.now = self.now + Duration::from_millis(1000);
        self.replicas[i].handle_timeout(self.now);
        self.settle();
        assert_eq!(self.replicas[i].status().role, Role::Leader);
    }
}

#[test]
fn leader_election_then_commit_through_phase_two_only() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    let prepares_before = c
        .sent
        .iter()
        .filter(|s| matches!(s.2, Message::Prepare(_)))
        .count();
    for i in 0..10 {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("w{i}")))
            .unwrap();
        c.settle();
    }
    let prepares_after = c
        .sent
        .iter()
        .filter(|s| matches!(s.2, Message::Prepare(_)))
        .count();
    assert_eq!(
        prepares_before, prepares_after,
        "a stable leader runs phase 2 only"
    );
    let applied: Vec<_> = c.committed[0]
        .iter()
        .flat_map(|c| c.value.commands())
        .map(|c| c.payload.clone())
        .collect();
    assert_eq!(applied.len(), 10);
    assert_eq!(c.replicas[1].status().leader, Some(N1));
}

#[test]
fn batching_is_bounded_by_count_and_pipelining_by_window() {
    let mut c = Cluster::new(|c| {
        c.max_batch_commands = 4;
        c.max_inflight_slots = 2;
    });
    c.elect(N1);
    for i in 0..20 {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("w{i}")))
            .unwrap();
    }
    let ready = c.replicas[0].poll_ready().unwrap();
    let accepts: Vec<&Accept> = ready
        .messages
        .iter()
        .filter(|e| e.to == N2)
        .filter_map(|e| {
            if let Message::Accept(a) = &e.message {
                Some(a)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(accepts.len(), 1);
    let sizes: Vec<usize> = accepts[0]
        .values
        .iter()
        .map(|v| v.commands().len())
        .collect();
    assert_eq!(sizes, vec![4, 4], "two slots of four: the window holds two");
    assert_eq!(c.replicas[0].pending_proposals(), 12);
    c.replicas[0].advance(ready.id);
    for e in ready.messages {
        c.replicas[Cluster::idx(e.to)].handle_message(c.now, N1, e.message);
    }
    c.settle();
    let applied: usize = c.committed[0]
        .iter()
        .map(|c| c.value.commands().len())
        .sum();
    assert_eq!(applied, 20, "the rest follows as the window opens");
}

#[test]
fn batching_is_bounded_by_bytes() {
    let mut c = Cluster::new(|c| c.max_batch_bytes = 10);
    c.elect(N1);
    for _ in 0..3 {
        c.replicas[0]
            .propose(c.now, Bytes::from_static(b"123456"))
            .unwrap();
    }
    let too_big = c.replicas[0].propose(c.now, Bytes::from_static(b"12345678901"));
    assert_eq!(too_big, Err(ProposeRefused::TooLarge { len: 11, max: 10 }));
    let ready = c.replicas[0].poll_ready().unwrap();
    let Some(Message::Accept(a)) = ready
        .messages
        .iter()
        .find(|e| e.to == N2)
        .map(|e| &e.message)
    else {
        panic!("no accept")
    };
    assert_eq!(
        a.values
            .iter()
            .map(|v| v.commands().len())
            .collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}

#[test]
fn pending_queue_is_bounded() {
    let mut c = Cluster::new(|c| c.max_pending_proposals = 2);
    c.elect(N1);
    c.replicas[0].propose(c.now, Bytes::new()).unwrap();
    c.replicas[0].propose(c.now, Bytes::new()).unwrap();
    assert_eq!(
        c.replicas[0].propose(c.now, Bytes::new()),
        Err(ProposeRefused::Overloaded { pending: 2 })
    );
}

#[test]
fn follower_forwards_and_unknown_leader_is_refused() {
    let mut r = replica(N2);
    assert_eq!(
        r.propose(at(0), Bytes::new()),
        Err(ProposeRefused::NoLeader)
    );
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    let id = c.replicas[1]
        .propose(c.now, Bytes::from_static(b"fwd"))
        .unwrap();
    let ready = c.replicas[1].poll_ready().unwrap();
    assert_eq!(
        ready.messages,
        vec![Envelope {
            to: N1,
            message: Message::Forward(Forward {
                commands: vec![Command {
                    id,
                    payload: Bytes::from_static(b"fwd")
                }]
            })
        }]
    );
    c.replicas[1].advance(ready.id);
    c.replicas[0].handle_message(c.now, N2, ready.messages[0].message.clone());
    c.settle();
    assert!(
        c.committed[1]
            .iter()
            .any(|e| e.value.commands().iter().any(|x| x.id == id))
    );
}

#[test]
fn new_leader_adopts_highest_ballot_values_and_fills_gaps() {
    let old = Value::Batch(vec![cmd(1)].into());
    let newer = Value::Batch(vec![cmd(2)].into());
    let first = Value::Batch(vec![cmd(3)].into());
    // Our own acceptor holds slot 2 at ballot 1.2; N2 reports slot 2 at 2.3.
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: b(2, N3),
            commit: Slot(0),
            epoch: 0,
            non_voting: false,
        },
        entries: vec![Entry {
            slot: Slot(2),
            ballot: b(1, N2),
            value: old,
        }],
    };
    let mut r = Replica::new(config(N1), recovered, Instant::ZERO).unwrap();
    let ballot = campaign(&mut r, at(1000));
    assert_eq!(ballot, b(3, N1));
    r.handle_message(
        at(1001),
        N2,
        Message::Promise(Promise {
            ballot,
            from: Slot(0),
            accepted: vec![
                Entry {
                    slot: Slot(0),
                    ballot: b(1, N2),
                    value: first.clone(),
                },
                Entry {
                    slot: Slot(2),
                    ballot: b(2, N3),
                    value: newer.clone(),
                },
            ],
            next: None,
            commit: Slot(0),
        }),
    );
    assert_eq!(r.status().role, Role::Leader);
    let ready = r.poll_ready().unwrap();
    let Some(Message::Accept(a)) = ready
        .messages
        .iter()
        .find(|e| e.to == N2)
        .map(|e| &e.message)
    else {
        panic!("no accept")
    };
    assert_eq!(a.ballot, ballot);
    assert_eq!(a.first, Slot(0));
    assert_eq!(a.values, vec![first, Value::Noop, newer]);
}

#[test]
fn promise_pages_are_requested_until_complete() {
    let mut c = Cluster::new(|c| c.max_slots_per_message = 2);
    c.elect(N1);
    // N1's Accepts reach the others but N1 hears nothing back: seven slots accepted, none
    // known chosen, an open tail of seven.
    c.deaf = Some(N1);
    for i in 0..7 {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("w{i}")))
            .unwrap();
        c.settle();
    }
    c.deaf = None;
    c.down = Some(N1);
    // N2 takes over: it must read every page of N3's log (and its own).
    c.elect(N2);
    c.down = None;
    let pages = c
        .sent
        .iter()
        .filter(|(from, _, m)| *from == N3 && matches!(m, Message::Promise(p) if p.next.is_some()))
        .count();
    assert!(pages >= 1, "paged promises were sent");
    c.replicas[1]
        .propose(c.now, Bytes::from_static(b"after"))
        .unwrap();
    c.settle();
    let n2: Vec<_> = c.committed[1]
        .iter()
        .flat_map(|e| e.value.commands())
        .map(|x| x.payload.clone())
        .collect();
    assert_eq!(n2.len(), 8);
    assert_eq!(n2.last(), Some(&Bytes::from_static(b"after")));
}

#[test]
fn recovered_state_is_restored() {
    let v = Value::Batch(vec![cmd(3)].into());
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: b(4, N3),
            commit: Slot(1),
            epoch: 0,
            non_voting: false,
        },
        entries: vec![Entry {
            slot: Slot(0),
            ballot: b(4, N3),
            value: v.clone(),
        }],
    };
    let mut r = Replica::new(config(N2), recovered, Instant::ZERO).unwrap();
    assert_eq!(r.status().promised, b(4, N3));
    let ready = step(&mut r);
    assert_eq!(
        ready.committed,
        vec![Committed {
            slot: Slot(0),
            value: v
        }]
    );
    r.handle_message(
        at(1),
        N1,
        Message::Prepare(Prepare {
            ballot: b(3, N1),
            from: Slot(0),
        }),
    );
    let ready = step(&mut r);
    assert!(matches!(ready.messages[0].message, Message::Nack(_)));
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_refused() {
    let mut r = replica(N1);
    r.handle_timeout(at(10));
    r.handle_timeout(at(5));
}

#[test]
fn a_restarted_acceptor_honours_a_full_lease_before_promising_anew() {
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: b(4, N3),
            commit: Slot(0),
            epoch: 0,
            non_voting: false,
        },
        entries: vec![],
    };
    let mut r = Replica::new(config(N2), recovered, Instant::ZERO).unwrap();
    r.handle_message(
        at(1),
        N1,
        Message::Prepare(Prepare {
            ballot: b(5, N1),
            from: Slot(0),
        }),
    );
    let ready = step(&mut r);
    assert_eq!(
        ready.messages,
        vec![Envelope {
            to: N1,
            message: Message::Nack(Nack {
                ballot: b(5, N1),
                promised: b(4, N3),
                leased: true
            })
        }]
    );
    let lease = config(N2).lease_duration.unwrap();
    r.handle_message(
        at(1) + lease,
        N1,
        Message::Prepare(Prepare {
            ballot: b(5, N1),
            from: Slot(0),
        }),
    );
    let ready = step(&mut r);
    assert!(matches!(ready.messages[0].message, Message::Promise(_)));
}

#[test]
fn reads_wait_until_every_reproposed_slot_is_chosen() {
    // Found by the simulator (seed 62, 3 nodes, direct reads): a new leader answered a
    // read once the first re-proposed slot was chosen, while later re-proposed slots (and
    // values chosen under the previous leader) were still missing from its commit point.
    let old = |n| Entry {
        slot: Slot(n),
        ballot: b(1, N2),
        value: Value::Batch(vec![cmd(n)].into()),
    };
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: b(1, N2),
            commit: Slot(0),
            epoch: 0,
            non_voting: false,
        },
        entries: vec![old(0), old(1), old(2)],
    };
    let mut r = Replica::new(config(N1), recovered, Instant::ZERO).unwrap();
    let ballot = campaign(&mut r, at(1000));
    let promise = Promise {
        ballot,
        from: Slot(0),
        accepted: vec![],
        next: None,
        commit: Slot(0),
    };
    r.handle_message(at(1001), N2, Message::Promise(promise));
    assert_eq!(r.status().role, Role::Leader);
    let ready = step(&mut r); // Accepts for slots 0..3, persisted by our own acceptor too
    let stamp = match ready
        .messages
        .iter()
        .find(|e| e.to == N2)
        .map(|e| &e.message)
    {
        Some(Message::Accept(a)) => {
            assert_eq!((a.first, a.values.len()), (Slot(0), 3));
            a.stamp
        }
        m => panic!("expected accept, got {m:?}"),
    };
    let accepted = |first, count| {
        Message::Accepted(Accepted {
            ballot,
            first: Slot(first),
            count,
            stamp,
        })
    };
    assert_eq!(
        r.lease_read_until(),
        None,
        "no lease yet, nothing re-proposed is chosen"
    );
    r.handle_message(at(1002), N2, accepted(0, 1));
    assert_eq!(r.status().commit, Slot(1));
    assert!(
        r.status().lease_until.is_some(),
        "a quorum acknowledged: lease held"
    );
    assert_eq!(
        r.lease_read_until(),
        None,
        "leased, but slots 1 and 2 are not chosen: no read at once"
    );
    let id = r.read(at(1002)).unwrap();
    let ready = step(&mut r);
    assert!(
        ready.reads.is_empty(),
        "slots 1 and 2 are not chosen yet: the read must wait"
    );
    r.handle_message(at(1003), N2, accepted(1, 2));
    assert_eq!(
        r.lease_read_until(),
        None,
        "every re-proposed slot is chosen, but not all handed out for applying"
    );
    let ready = step(&mut r);
    assert_eq!(ready.committed.len(), 2);
    assert_eq!(ready.reads, vec![id]);
    let until = r
        .lease_read_until()
        .expect("leased, recovered, all handed out");
    assert_eq!(Some(until), r.status().lease_until);
    assert!(until > at(1003));
    r.tick(until);
    assert_eq!(r.lease_read_until(), None, "the lease ran out");
}

#[test]
fn a_replica_back_with_an_empty_disk_never_votes() {
    let mut cfg = config(N2);
    cfg.bootstrap = false;
    let mut r = Replica::new(cfg, RecoveredState::default(), Instant::ZERO).unwrap();
    let ready = step(&mut r);
    let hard = ready
        .persist
        .hard_state
        .expect("the decision is written at once");
    assert!(hard.non_voting);
    r.handle_message(
        at(1),
        N1,
        Message::Prepare(Prepare {
            ballot: b(1, N1),
            from: Slot(0),
        }),
    );
    assert!(r.poll_ready().is_none(), "no promise, no nack");
    r.handle_message(
        at(2),
        N1,
        Message::Accept(Accept {
            ballot: b(1, N1),
            first: Slot(0),
            values: vec![Value::Noop],
            commit: Slot(1),
            stamp: at(2),
        }),
    );
    let ready = step(&mut r);
    assert!(ready.persist.entries.is_empty(), "accepts nothing");
    assert_eq!(
        ready.messages,
        vec![Envelope {
            to: N1,
            message: Message::CatchUp(crate::message::CatchUp { from: Slot(0) }),
        }],
        "it learns the chosen value instead"
    );
    assert_eq!(r.status().leader, Some(N1));
    r.handle_message(
        at(3),
        N1,
        Message::CatchUpReply(crate::message::CatchUpReply {
            first: Slot(0),
            values: vec![(b(1, N1), Value::Noop)],
            commit: Slot(1),
        }),
    );
    let ready = step(&mut r);
    assert_eq!(ready.committed.len(), 1);
    let written = ready.persist.hard_state.unwrap();
    assert!(written.non_voting);
    // Its timers never make it campaign, and it refuses pre-votes.
    r.handle_timeout(at(10_000));
    assert!(r.poll_ready().is_none());
    assert_eq!(r.status().promised, Ballot::ZERO);
    assert!(!r.status().voter);

    // Restarted from its disk, even with `bootstrap` on, it still does not vote.
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: written,
        entries: ready.persist.entries,
    };
    let r = Replica::new(config(N2), recovered, Instant::ZERO).unwrap();
    assert!(!r.status().voter);
}

#[test]
fn a_replica_back_with_an_empty_disk_proposes_only_above_its_old_epochs() {
    // Found by the whole-node simulator: a wiped node started over at epoch 1, and its
    // waiters got the outputs of its first incarnation's commands.
    let mut cfg = config(N2);
    cfg.bootstrap = false;
    let mut r = Replica::new(cfg, RecoveredState::default(), Instant::ZERO).unwrap();
    let first = step(&mut r).persist.hard_state.unwrap();
    assert_eq!(
        (first.epoch, first.non_voting),
        (0, true),
        "epoch unknown, written"
    );
    // Restarted before it caught up (and with `bootstrap` on): still unknown.
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: first,
        entries: vec![],
    };
    let mut r = Replica::new(config(N2), recovered, Instant::ZERO).unwrap();
    let _ = r.poll_ready().map(|ready| r.advance(ready.id));
    r.handle_message(
        at(1),
        N1,
        Message::Accept(Accept {
            ballot: b(3, N1),
            first: Slot(2),
            values: vec![],
            commit: Slot(2),
            stamp: at(1),
        }),
    );
    assert_eq!(r.status().leader, Some(N1));
    assert_eq!(
        r.propose(at(1), Bytes::from_static(b"x")),
        Err(ProposeRefused::NoLeader),
        "no proposal before it caught up"
    );
    let _ = step(&mut r);
    // The chosen log holds commands of its lost incarnation 7.
    let old = |seq| Command {
        id: crate::ProposalId {
            origin: N2,
            seq,
            epoch: 7,
        },
        payload: Bytes::from_static(b"old"),
    };
    r.handle_message(
        at(2),
        N1,
        Message::CatchUpReply(crate::message::CatchUpReply {
            first: Slot(0),
            values: vec![
                (b(1, N1), Value::Batch(vec![old(0)].into())),
                (b(1, N1), Value::Batch(vec![old(1)].into())),
            ],
            commit: Slot(2),
        }),
    );
    let ready = step(&mut r);
    assert_eq!(ready.committed.len(), 2);
    let written = ready.persist.hard_state.unwrap();
    let id = r.propose(at(3), Bytes::from_static(b"x")).unwrap();
    assert!(
        id.epoch > 7,
        "epoch {} reuses the lost incarnation's",
        id.epoch
    );
    assert_eq!(
        written.epoch, id.epoch,
        "the chosen epoch is made durable with the Ready that chose it, before any proposal"
    );
}

#[test]
fn catch_up_follows_the_best_peer_rather_than_circling_back_to_a_dead_one() {
    // Found by the whole-node simulator: a lagging replica's target was reset to the live
    // leader by every heartbeat, then rotated on from there, to the same dead peer.
    let mut r = replica(N3);
    // N2 reports a commit point (it dies right after): the first CatchUp goes to N2.
    r.handle_message(
        at(1),
        N2,
        Message::Decide(crate::message::Decide {
            ballot: b(1, N2),
            commit: Slot(5),
        }),
    );
    let ready = step(&mut r);
    let catch_ups = |ready: &Ready| -> Vec<NodeId> {
        ready
            .messages
            .iter()
            .filter(|e| matches!(e.message, Message::CatchUp(_)))
            .map(|e| e.to)
            .collect()
    };
    assert_eq!(catch_ups(&ready), vec![N2]);
    // N1 leads now and heartbeats with the same commit point; N2 never answers.
    let mut asked = vec![];
    for i in 0..6 {
        let t = 2 + i * 60;
        r.handle_message(
            at(t),
            N1,
            Message::Accept(Accept {
                ballot: b(2, N1),
                first: Slot(5),
                values: vec![],
                commit: Slot(5),
                stamp: at(t),
            }),
        );
        r.handle_timeout(at(t + 1));
        while let Some(ready) = r.poll_ready() {
            asked.extend(catch_ups(&ready));
            r.advance(ready.id);
        }
    }
    assert!(asked.contains(&N1), "only asked {asked:?}");
}

#[test]
fn sixty_four_members_elect_and_commit_through_the_last_bit_of_the_vote_masks() {
    // Pre-vote grants, phase 1 promises and phase 2 acks are counted in u64 bitmasks
    // indexed by member position; the config allows 64 members, so the last one's bit is
    // bit 63. Here the last member campaigns: without its own bit, 32 peers are one short
    // of the quorum of 33.
    let members: Vec<NodeId> = (1..=64).map(NodeId).collect();
    let me = NodeId(64);
    let mut cfg = Config::new(me, members);
    cfg.rng_seed = Some([7; 32]);
    let mut r = Replica::new(cfg, RecoveredState::default(), Instant::ZERO).unwrap();
    let drain = |r: &mut Replica| {
        let mut sent = vec![];
        while let Some(ready) = r.poll_ready() {
            sent.extend(ready.messages);
            r.advance(ready.id);
        }
        sent
    };
    let _ = drain(&mut r);
    let now = at(1000);
    r.handle_timeout(now);
    let sent = drain(&mut r);
    assert_eq!(sent.len(), 63, "a pre-vote to every peer");
    let Message::PreVote(ask) = sent[0].message.clone() else {
        panic!("expected a pre-vote, got {:?}", sent[0]);
    };
    let voters: Vec<NodeId> = (32..=63).map(NodeId).collect();
    for &from in &voters {
        let grant = PreVoteReply {
            ballot: ask.ballot,
            round: ask.round,
            granted: true,
            promised: Ballot::ZERO,
            commit: Slot(0),
        };
        r.handle_message(now, from, Message::PreVoteReply(grant));
    }
    assert_eq!(r.status().role, Role::Candidate);
    let _ = drain(&mut r); // Prepares out, our own promise persisted and counted
    for &from in &voters {
        let promise = Promise {
            ballot: ask.ballot,
            from: Slot(0),
            accepted: vec![],
            next: None,
            commit: Slot(0),
        };
        r.handle_message(now, from, Message::Promise(promise));
    }
    assert_eq!(r.status().role, Role::Leader);
    let sent = drain(&mut r);
    let Some(Message::Accept(accept)) = sent.first().map(|e| e.message.clone()) else {
        panic!("expected the new leader's no-op, got {sent:?}");
    };
    assert_eq!((accept.first, accept.values.len()), (Slot(0), 1));
    for &from in &voters {
        let ack = Accepted {
            ballot: ask.ballot,
            first: Slot(0),
            count: 1,
            stamp: accept.stamp,
        };
        r.handle_message(now, from, Message::Accepted(ack));
    }
    assert_eq!(r.status().commit, Slot(1));
}

#[test]
fn the_leaders_accepts_may_leave_before_its_own_persist_and_its_vote_waits_for_it() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"early"))
        .unwrap();
    let ready = c.replicas[0].poll_ready().expect("a Ready");
    assert_eq!(
        ready.persist.entries.len(),
        1,
        "the leader's own acceptance"
    );
    assert_eq!(ready.early_messages, 2);
    for e in &ready.messages[..2] {
        assert!(matches!(e.message, Message::Accept(_)), "{:?}", e.message);
    }
    // The followers accept and answer while the leader's persist is under way.
    for e in &ready.messages[..ready.early_messages] {
        c.replicas[Cluster::idx(e.to)].handle_message(c.now, N1, e.message.clone());
    }
    let mut accepted = vec![];
    for i in 1..3 {
        let reply = step(&mut c.replicas[i]);
        assert_eq!(
            reply.early_messages, 0,
            "a follower's Accepted waits for its persist"
        );
        assert!(!reply.persist.entries.is_empty());
        accepted.extend(reply.messages.into_iter().map(|e| (c.replicas[i].id(), e)));
    }
    // The leader crashes before its persist: the value is chosen all the same, by the
    // two followers, and the next leader keeps it.
    assert_eq!(accepted.len(), 2);
    c.down = Some(N1);
    c.elect(N2);
    c.settle();
    let applied: Vec<Bytes> = c.committed[1]
        .iter()
        .flat_map(|c| c.value.commands())
        .map(|c| c.payload.clone())
        .collect();
    assert_eq!(applied, vec![Bytes::from_static(b"early")]);
}

#[test]
fn a_batch_is_shared_by_the_accepts_the_persist_and_the_committed_output() {
    // The leader sends one batch to every peer, persists it and hands it to the state
    // machine; each of those holds the same allocation, not a deep copy per use.
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    for i in 0..3 {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("w{i}")))
            .unwrap();
    }
    let ready = c.replicas[0].poll_ready().unwrap();
    let batches: Vec<&std::sync::Arc<[Command]>> = ready
        .messages
        .iter()
        .filter_map(|e| match &e.message {
            Message::Accept(a) => match &a.values[..] {
                [Value::Batch(cmds)] => Some(cmds),
                v => panic!("expected one batch, got {v:?}"),
            },
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 2, "one Accept per peer");
    assert_eq!(batches[0].len(), 3);
    assert!(std::sync::Arc::ptr_eq(batches[0], batches[1]));
    let Some(Value::Batch(persisted)) = ready.persist.entries.first().map(|e| &e.value) else {
        panic!("expected the batch in the persist, got {:?}", ready.persist);
    };
    assert!(std::sync::Arc::ptr_eq(batches[0], persisted));
    let sent = std::sync::Arc::clone(batches[0]);
    c.replicas[0].advance(ready.id);
    for e in ready.messages {
        c.replicas[Cluster::idx(e.to)].handle_message(c.now, N1, e.message);
    }
    c.settle();
    let Some(committed) = c.committed[0].last() else {
        panic!("nothing committed");
    };
    let Value::Batch(applied) = &committed.value else {
        panic!("expected a batch, got {:?}", committed.value);
    };
    assert!(std::sync::Arc::ptr_eq(&sent, applied));
}

#[test]
fn duplicates_are_dropped_from_a_committed_batch_and_the_rest_keeps_its_order() {
    // Forwarded retries put commands already applied into later batches: at the front,
    // in the middle, and a batch of nothing else. Each replica applies every command once.
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    let forward = |c: &mut Cluster, seqs: &[u64]| {
        let commands = seqs.iter().map(|&s| cmd(s)).collect();
        c.replicas[0].handle_message(c.now, N2, Message::Forward(Forward { commands }));
        c.settle();
    };
    forward(&mut c, &[1, 2]);
    forward(&mut c, &[3, 1, 4]);
    forward(&mut c, &[2, 5, 3, 6]);
    forward(&mut c, &[5, 6]);
    for i in 0..3 {
        let applied: Vec<Bytes> = c.committed[i]
            .iter()
            .flat_map(|c| c.value.commands())
            .map(|c| c.payload.clone())
            .collect();
        let want: Vec<Bytes> = [1, 2, 3, 4, 5, 6].iter().map(|&s| cmd(s).payload).collect();
        assert_eq!(applied, want, "replica {i}");
        assert_eq!(c.replicas[i].metrics().duplicates_dropped, 5, "replica {i}");
    }
}

#[test]
fn values_chosen_while_a_ready_is_outstanding_are_handed_out_once_by_poll_chosen() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    let payloads = |committed: &[Committed]| -> Vec<Bytes> {
        committed
            .iter()
            .flat_map(|c| c.value.commands())
            .map(|c| c.payload.clone())
            .collect()
    };
    // "a" goes out, N2 accepts it, and the leader's own persist of it completes.
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"a"))
        .unwrap();
    let first = c.replicas[0].poll_ready().expect("a Ready");
    let to_n2 = first
        .messages
        .iter()
        .find(|e| e.to == N2)
        .expect("an Accept for N2");
    c.replicas[1].handle_message(c.now, N1, to_n2.message.clone());
    let reply = step(&mut c.replicas[1]);
    c.replicas[0].advance(first.id);
    // "b" is being persisted when N2's Accepted for "a" arrives.
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"b"))
        .unwrap();
    let second = c.replicas[0].poll_ready().expect("a Ready");
    assert_eq!(payloads(&second.committed), Vec::<Bytes>::new());
    assert!(c.replicas[0].poll_chosen().is_none(), "nothing chosen yet");
    for e in reply.messages {
        assert!(matches!(e.message, Message::Accepted(_)), "{:?}", e.message);
        c.replicas[0].handle_message(c.now, N2, e.message);
    }
    assert!(
        c.replicas[0].poll_ready().is_none(),
        "the Ready is outstanding"
    );
    let chosen = c.replicas[0].poll_chosen().expect("a is chosen");
    assert_eq!(payloads(&chosen.committed), vec![Bytes::from_static(b"a")]);
    assert!(c.replicas[0].poll_chosen().is_none(), "handed out once");
    // A lease read started now may be answered at once: everything committed is out.
    let read = c.replicas[0].read(c.now).expect("the leader reads");
    let chosen = c.replicas[0].poll_chosen().expect("the read is released");
    assert_eq!((chosen.committed, chosen.reads), (vec![], vec![read]));
    // The outstanding Ready ends (its Accepts for "b" delivered); what follows never
    // repeats "a".
    c.replicas[0].advance(second.id);
    for e in second.messages {
        c.replicas[Cluster::idx(e.to)].handle_message(c.now, N1, e.message);
    }
    c.settle();
    assert_eq!(
        payloads(&c.committed[0]),
        vec![Bytes::from_static(b"b")],
        "the leader's Readys hand out b only"
    );
    assert_eq!(
        payloads(&c.committed[1]),
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
}

fn payloads(committed: &[Committed]) -> Vec<Bytes> {
    committed
        .iter()
        .flat_map(|c| c.value.commands())
        .map(|c| c.payload.clone())
        .collect()
}

#[test]
fn pipelined_readys_are_handed_out_up_to_the_bound_and_advanced_in_order() {
    let mut c = Cluster::new(|cfg| cfg.max_outstanding_readys = 2);
    c.elect(N1);
    let mut readys = vec![];
    for p in [&b"a"[..], b"b"] {
        c.replicas[0]
            .propose(c.now, Bytes::copy_from_slice(p))
            .unwrap();
        readys.push(c.replicas[0].poll_ready().expect("room for a Ready"));
    }
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"c"))
        .unwrap();
    assert!(
        c.replicas[0].poll_ready().is_none(),
        "two Readys are outstanding: the bound"
    );
    // Each carries its own slot's Accepts, early, and its own acceptance to persist.
    for (ready, slot) in readys.iter().zip([Slot(1), Slot(2)]) {
        assert_eq!(ready.early_messages, ready.messages.len());
        assert!(ready.messages.iter().all(|e| matches!(
            &e.message,
            Message::Accept(a) if a.first == slot && a.values.len() == 1
        )));
        let slots: Vec<Slot> = ready.persist.entries.iter().map(|e| e.slot).collect();
        assert_eq!(
            slots,
            vec![slot],
            "the leader accepts its slot in its Ready"
        );
    }
    // The followers accept both; nothing is chosen by the leader's own votes before its
    // Readys are advanced, but the two followers are a quorum.
    for ready in &readys {
        for e in &ready.messages {
            c.replicas[Cluster::idx(e.to)].handle_message(c.now, N1, e.message.clone());
        }
    }
    for i in 1..3 {
        let from = c.replicas[i].id();
        for e in step(&mut c.replicas[i]).messages {
            c.replicas[0].handle_message(c.now, from, e.message);
        }
    }
    let chosen = c.replicas[0].poll_chosen().expect("a and b are chosen");
    assert_eq!(
        payloads(&chosen.committed),
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    for ready in readys {
        c.replicas[0].advance(ready.id);
    }
    c.settle();
    for i in 0..3 {
        let want: &[&[u8]] = if i == 0 { &[b"c"] } else { &[b"a", b"b", b"c"] };
        let want: Vec<Bytes> = want.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        assert_eq!(payloads(&c.committed[i]), want, "replica {i}");
    }
}

#[test]
#[should_panic(expected = "not the oldest outstanding one")]
fn pipelined_readys_must_be_advanced_oldest_first() {
    let mut c = Cluster::new(|cfg| cfg.max_outstanding_readys = 2);
    c.elect(N1);
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"a"))
        .unwrap();
    let _first = c.replicas[0].poll_ready().expect("a Ready");
    c.replicas[0]
        .propose(c.now, Bytes::from_static(b"b"))
        .unwrap();
    let second = c.replicas[0].poll_ready().expect("a second Ready");
    c.replicas[0].advance(second.id);
}

#[test]
fn a_reply_to_itself_waits_for_the_outstanding_ready_that_makes_it_true() {
    // A single replica is its own quorum: the only vote that can choose a value is its
    // own, so that vote must not count before the Ready persisting it is advanced.
    let mut cfg = config(N1);
    cfg.members = vec![N1];
    cfg.max_outstanding_readys = 3;
    let mut r = Replica::new(cfg, RecoveredState::default(), Instant::ZERO).unwrap();
    let mut now = at(1000);
    r.handle_timeout(now);
    while r.status().role != Role::Leader {
        let ready = r.poll_ready().expect("a Ready while campaigning");
        r.advance(ready.id);
        now = now + Duration::from_millis(1);
        r.handle_timeout(now);
    }
    while let Some(ready) = r.poll_ready() {
        r.advance(ready.id);
    }
    r.propose(now, Bytes::from_static(b"a")).unwrap();
    let first = r.poll_ready().expect("a Ready");
    assert_eq!(first.persist.entries.len(), 1, "its acceptance of a");
    r.propose(now, Bytes::from_static(b"b")).unwrap();
    let second = r.poll_ready().expect("a second Ready");
    assert_eq!(
        second.persist.entries.len(),
        1,
        "its acceptance of b, pipelined"
    );
    assert!(r.poll_chosen().is_none(), "nothing is durable yet");
    let third = r.poll_ready();
    assert!(
        third.as_ref().is_none_or(|t| t.committed.is_empty()),
        "nothing chosen"
    );
    r.advance(first.id);
    let chosen = r.poll_chosen().expect("a is durable, so chosen");
    assert_eq!(payloads(&chosen.committed), vec![Bytes::from_static(b"a")]);
    r.advance(second.id);
    if let Some(t) = third {
        r.advance(t.id);
    }
    let mut rest = r.poll_chosen().map(|c| c.committed).unwrap_or_default();
    while let Some(ready) = r.poll_ready() {
        rest.extend(ready.committed);
        r.advance(ready.id);
    }
    assert_eq!(payloads(&rest), vec![Bytes::from_static(b"b")]);
}

#[test]
fn a_candidate_counts_its_own_promise_only_once_the_ready_persisting_it_is_advanced() {
    let mut cfg = config(N1);
    cfg.max_outstanding_readys = 2;
    let resend = cfg.resend_interval;
    let mut r = Replica::new(cfg, RecoveredState::default(), Instant::ZERO).unwrap();
    let now = at(1000);
    pre_vote(&mut r, now);
    // Its promise is being persisted (not advanced) when the Prepares are resent: the
    // resent Prepare to itself finds the promise already made, so nothing new to write.
    let promising = r.poll_ready().expect("the Prepares and its promise");
    assert!(promising.persist.hard_state.is_some());
    let ballot = match &promising.messages[0].message {
        Message::Prepare(p) => p.ballot,
        m => panic!("expected prepare, got {m:?}"),
    };
    let later = now + resend + Duration::from_millis(1);
    r.handle_timeout(later);
    let resent = r.poll_ready().expect("the resent Prepares");
    assert!(resent.persist.is_empty(), "{:?}", resent.persist);
    r.handle_message(later, N2, Message::Promise(empty_promise(ballot)));
    assert_eq!(
        r.status().role,
        Role::Candidate,
        "one peer's promise, and its own not yet durable: no quorum"
    );
    r.advance(promising.id);
    r.advance(resent.id);
    while let Some(ready) = r.poll_ready() {
        r.advance(ready.id);
    }
    assert_eq!(r.status().role, Role::Leader, "its own promise counts now");
}
