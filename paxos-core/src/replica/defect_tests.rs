//! Regression tests for defects users and reviewers found, one (or more) per defect. Each
//! failed on the code before its fix.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::Replica;
use crate::codec::{DEFAULT_MAX_FRAME_BYTES, encode_frame};
use crate::message::{Accept, CatchUp, CatchUpReply, Message, Prepare};
use crate::ready::{Committed, HardState, ReadId, RecoveredState, Role};
use crate::types::{Ballot, Entry, Instant, NodeId, Slot, Value};
use crate::{Command, Config, ProposalId};

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

fn config(id: NodeId, n: u64) -> Config {
    let mut c = Config::new(id, ids(n));
    let mut seed = [7u8; 32];
    seed[0] = id.0 as u8;
    c.rng_seed = Some(seed);
    c
}

/// A cluster of replicas whose messages the test delivers, drops or holds explicitly.
struct Net {
    replicas: Vec<Replica>,
    now: Instant,
    /// Sent and not yet delivered or dropped: (from, to, message).
    queue: Vec<(NodeId, NodeId, Message)>,
    /// Every message sent, for assertions.
    sent: Vec<(NodeId, NodeId, Message)>,
    committed: Vec<Vec<Committed>>,
    reads: Vec<Vec<ReadId>>,
    /// Replicas cut off from everyone: what they send or are sent is dropped.
    cut: BTreeSet<NodeId>,
    /// Persisted state per replica, as a store would hold it.
    disk: Vec<RecoveredState>,
}

impl Net {
    fn new(n: u64, configure: impl Fn(&mut Config)) -> Self {
        let replicas = ids(n)
            .into_iter()
            .map(|id| {
                let mut c = config(id, n);
                configure(&mut c);
                Replica::new(c, RecoveredState::default(), Instant::ZERO).unwrap()
            })
            .collect();
        let n = n as usize;
        Self {
            replicas,
            now: Instant::ZERO,
            queue: vec![],
            sent: vec![],
            committed: vec![vec![]; n],
            reads: vec![vec![]; n],
            cut: BTreeSet::new(),
            disk: vec![RecoveredState::default(); n],
        }
    }

    fn r(&mut self, id: NodeId) -> &mut Replica {
        &mut self.replicas[(id.0 - 1) as usize]
    }

    /// Handles every Ready of every replica (persist, queue the sends, apply, advance).
    fn pump(&mut self) {
        for i in 0..self.replicas.len() {
            while let Some(ready) = self.replicas[i].poll_ready() {
                let from = self.replicas[i].id();
                let disk = &mut self.disk[i];
                if let Some(h) = ready.persist.hard_state {
                    disk.hard_state = h;
                }
                for e in &ready.persist.entries {
                    disk.entries.retain(|x| x.slot != e.slot);
                    disk.entries.push(e.clone());
                }
                disk.entries.sort_by_key(|e| e.slot);
                for e in ready.messages {
                    self.sent.push((from, e.to, e.message.clone()));
                    self.queue.push((from, e.to, e.message));
                }
                self.committed[i].extend(ready.committed);
                self.reads[i].extend(ready.reads);
                self.replicas[i].advance(ready.id);
            }
        }
    }

    /// Delivers queued messages for which `pass` holds (and that no cut forbids); drops
    /// the ones a cut forbids; keeps the rest queued. Repeats until nothing moves.
    fn deliver_where(&mut self, pass: impl Fn(NodeId, NodeId, &Message) -> bool) {
        for _ in 0..1000 {
            self.pump();
            let queue = std::mem::take(&mut self.queue);
            let mut moved = false;
            for (from, to, m) in queue {
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    moved = true;
                    continue;
                }
                if !pass(from, to, &m) {
                    self.queue.push((from, to, m));
                    continue;
                }
                moved = true;
                let now = self.now;
                self.r(to).handle_message(now, from, m);
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn settle(&mut self) {
        self.deliver_where(|_, _, _| true);
    }

    /// Advances time by `ms` in steps of one millisecond, firing due timers and
    /// delivering everything allowed each step.
    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now = self.now + Duration::from_millis(1);
            for i in 0..self.replicas.len() {
                let now = self.now;
                if self.replicas[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.replicas[i].handle_timeout(now);
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<_> = self
            .replicas
            .iter()
            .filter(|r| r.status().role == Role::Leader)
            .map(Replica::id)
            .collect();
        assert!(leaders.len() <= 1 || !self.cut.is_empty(), "{leaders:?}");
        leaders.first().copied()
    }

    /// Makes `id` leader: it times out first, everyone else hears it.
    fn elect(&mut self, id: NodeId) {
        self.now = self.now + Duration::from_secs(2);
        let now = self.now;
        self.r(id).handle_timeout(now);
        self.settle();
        self.run_for(5);
        assert_eq!(self.r(id).status().role, Role::Leader, "{id} won");
    }

    /// Makes `id` campaign at once, whatever its timers say, and settles.
    fn force_campaign(&mut self, id: NodeId) {
        let now = self.now;
        self.r(id).tick(now);
        self.r(id).start_candidacy();
        self.settle();
        self.run_for(5);
        assert_eq!(self.r(id).status().role, Role::Leader, "{id} won");
    }

    fn count_sent(&self, pred: impl Fn(NodeId, NodeId, &Message) -> bool) -> usize {
        self.sent.iter().filter(|(f, t, m)| pred(*f, *t, m)).count()
    }
}

fn payload(len: usize, tag: u8) -> Bytes {
    Bytes::from(vec![tag; len])
}

fn every_message_fits_a_frame(net: &Net) {
    for (from, to, m) in &net.sent {
        let mut buf = BytesMut::new();
        if let Err(e) = encode_frame(m, &mut buf, DEFAULT_MAX_FRAME_BYTES) {
            panic!("{from}->{to} {}: {e}", m.kind());
        }
    }
}

// ---- Defect 1: messages bounded in slots only, never in bytes ----

#[test]
fn accepts_of_large_values_fit_the_frame_limit_and_are_chosen() {
    let mut net = Net::new(3, |_| {});
    net.elect(NodeId(1));
    // Sixty-four clients SET 1,000,000-byte values: each is a slot of its own.
    for i in 0..64 {
        let now = net.now;
        net.r(NodeId(1))
            .propose(now, payload(1_000_000, i as u8))
            .unwrap();
    }
    net.run_for(50);
    every_message_fits_a_frame(&net);
    let applied: usize = net.committed[1]
        .iter()
        .map(|c| c.value.commands().len())
        .sum();
    assert_eq!(applied, 64, "every large value is chosen and learned");
}

#[test]
fn promise_pages_and_catch_up_of_large_values_fit_the_frame_limit() {
    let mut net = Net::new(3, |_| {});
    net.elect(NodeId(1));
    // N3 misses 40 large values, then N2 takes over (phase 1 pages N1's whole tail),
    // and N3 catches up.
    net.cut.insert(NodeId(3));
    for i in 0..40 {
        let now = net.now;
        net.r(NodeId(1))
            .propose(now, payload(1_000_000, i as u8))
            .unwrap();
    }
    net.run_for(30);
    net.cut.clear();
    net.cut.insert(NodeId(1));
    net.elect(NodeId(2));
    net.cut.clear();
    net.run_for(300);
    every_message_fits_a_frame(&net);
    let n3: usize = net.committed[2]
        .iter()
        .map(|c| c.value.commands().len())
        .sum();
    assert_eq!(n3, 40, "the lagging replica caught up on every large value");
}

// ---- Defect 2: leader reads stall with a follower down and no writes ----

#[test]
fn leader_reads_complete_with_one_follower_down_and_no_writes() {
    let mut net = Net::new(3, |_| {});
    net.elect(NodeId(1));
    let now = net.now;
    net.r(NodeId(1)).propose(now, payload(3, 1)).unwrap();
    net.run_for(10);
    net.cut.insert(NodeId(3));
    // Well past any lease granted with that write.
    net.run_for(1000);
    let lease = net.r(NodeId(1)).cfg.lease_duration.unwrap();
    for _ in 0..10 {
        let now = net.now;
        let id = net.r(NodeId(1)).read(now).unwrap();
        let before = net.now;
        while !net.reads[0].contains(&id) {
            assert!(
                net.now.saturating_duration_since(before) < lease,
                "read {id:?} not answered within one lease period"
            );
            net.run_for(1);
        }
    }
}

// ---- Defect 3: a node that was cut off deposes a healthy leader when it comes back ----

#[test]
fn a_cut_off_follower_does_not_depose_the_leader_when_it_returns() {
    let mut net = Net::new(3, |_| {});
    net.elect(NodeId(1));
    let elections_before: u64 = net.replicas.iter().map(|r| r.metrics().elections_won).sum();
    net.cut.insert(NodeId(3));
    net.run_for(3000);
    net.cut.clear();
    net.run_for(2000);
    assert_eq!(
        net.leader(),
        Some(NodeId(1)),
        "the healthy leader kept leading"
    );
    let elections_after: u64 = net.replicas.iter().map(|r| r.metrics().elections_won).sum();
    assert_eq!(
        elections_before, elections_after,
        "no election after the heal"
    );
    assert!(
        net.r(NodeId(3)).status().promised <= net.r(NodeId(1)).status().promised,
        "the cut-off node never raised its promise above the leader's"
    );
}

#[test]
fn a_flapping_link_costs_no_election() {
    let mut net = Net::new(3, |_| {});
    net.elect(NodeId(1));
    let won = |net: &Net| -> u64 { net.replicas.iter().map(|r| r.metrics().elections_won).sum() };
    let before = won(&net);
    let heals = 20;
    for i in 0..heals {
        // Each follower in turn loses its link for longer than an election timeout.
        net.cut.insert(NodeId(2 + i % 2));
        net.run_for(700);
        net.cut.clear();
        net.run_for(300);
    }
    let changes = won(&net) - before;
    eprintln!("leader changes over {heals} heals: {changes}");
    assert_eq!(changes, 0, "{changes} leader changes over {heals} heals");
    assert_eq!(net.leader(), Some(NodeId(1)));
}

// ---- Defect 4: a stale leader announces a value that was not chosen ----

#[test]
fn a_stale_leader_never_announces_a_value_that_was_not_chosen() {
    let (a, g, y, x, z) = (NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5));
    let mut net = Net::new(5, |c| {
        c.lease_duration = None;
        if c.id == a || c.id == g {
            // A and G never time out during the test: A stays leader at b1 throughout
            // (a leader steps down after election_timeout_max without a quorum).
            c.election_timeout_min = Duration::from_secs(100);
            c.election_timeout_max = Duration::from_secs(200);
        }
    });
    net.force_campaign(a);
    let b1 = net.r(a).status().promised;
    let s = net.r(a).status().commit;
    // 1. A proposes w at slot s; only A and G accept it.
    let now = net.now;
    net.r(a).propose(now, Bytes::from_static(b"w")).unwrap();
    net.deliver_where(|from, to, m| {
        !matches!(m, Message::Accept(acc) if !acc.values.is_empty())
            || from != a
            || to == g
            || to == a
    });
    net.queue
        .retain(|(_, _, m)| !matches!(m, Message::Accept(_)));
    // 2. Y wins phase 1 at a higher ballot without A and G, and v (a no-op) is chosen at s.
    net.cut.insert(a);
    net.cut.insert(g);
    net.now = net.now + Duration::from_secs(2);
    let now = net.now;
    net.r(y).handle_timeout(now);
    net.settle();
    net.run_for(1000);
    let y = [y, x, z]
        .into_iter()
        .find(|&n| net.r(n).status().role == Role::Leader)
        .expect("Y, X or Z leads");
    let b2 = net.r(y).status().promised;
    assert!(b2 > b1);
    assert!(net.r(y).status().commit > s, "v is chosen at s");
    let y_value = net.committed[(y.0 - 1) as usize]
        .iter()
        .find(|c| c.slot == s)
        .map(|c| c.value.clone())
        .unwrap();
    assert_ne!(
        y_value.commands().first().map(|c| &c.payload[..]),
        Some(&b"w"[..])
    );
    // 3. A, still leading at b1, gets a delayed CatchUpReply carrying (s, v).
    net.cut.clear();
    net.cut.extend([y, x, z]);
    assert_eq!(net.r(a).status().role, Role::Leader, "A still leads at b1");
    let reply = CatchUpReply {
        first: s,
        values: vec![(b2, y_value.clone())],
        commit: s.next(),
    };
    let now = net.now;
    net.r(a)
        .handle_message(now, y, Message::CatchUpReply(reply));
    // 5. A's next messages at b1 reach G.
    net.run_for(200);
    let g_value = net.committed[1]
        .iter()
        .find(|c| c.slot == s)
        .map(|c| &c.value);
    assert!(
        g_value.is_none_or(|v| *v == y_value),
        "G applied {g_value:?} at {s}, but {y_value:?} was chosen"
    );
    // A never announced a commit point over s at b1 after learning s from elsewhere.
    assert_eq!(
        net.count_sent(|from, _, m| from == a
            && match m {
                Message::Accept(acc) => acc.ballot == b1 && acc.commit > s,
                Message::Decide(d) => d.ballot == b1 && d.commit > s,
                _ => false,
            }),
        0
    );
}

#[test]
fn a_catch_up_never_lowers_a_stored_ballot() {
    let (a, g) = (NodeId(1), NodeId(2));
    let mut r = Replica::new(config(g, 5), RecoveredState::default(), Instant::ZERO).unwrap();
    let b1 = Ballot::new(5, a);
    let w = Value::Batch(
        vec![Command {
            id: ProposalId {
                origin: a,
                seq: 0,
                epoch: 1,
            },
            payload: Bytes::from_static(b"w"),
        }]
        .into(),
    );
    r.handle_message(
        Instant::ZERO,
        a,
        Message::Accept(Accept {
            ballot: b1,
            first: Slot(0),
            values: vec![w],
            commit: Slot(0),
            stamp: Instant::ZERO,
        }),
    );
    let ready = r.poll_ready().unwrap();
    r.advance(ready.id);
    // A chosen value learned from a peer that holds it at a lower ballot.
    r.handle_message(
        Instant::ZERO,
        NodeId(3),
        Message::CatchUpReply(CatchUpReply {
            first: Slot(0),
            values: vec![(Ballot::new(2, NodeId(3)), Value::Noop)],
            commit: Slot(1),
        }),
    );
    let ready = r.poll_ready().unwrap();
    for e in &ready.persist.entries {
        assert!(
            e.ballot >= b1,
            "stored ballot lowered to {} at {}",
            e.ballot,
            e.slot
        );
    }
    r.advance(ready.id);
    assert_eq!(r.status().commit, Slot(1));
}

// ---- Defect 6: the proposal epoch comes from rng_seed ----

#[test]
fn every_start_gets_a_fresh_epoch_even_with_a_fixed_seed() {
    let mut net = Net::new(1, |_| {});
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        net.elect(NodeId(1));
        let now = net.now;
        let id = net.r(NodeId(1)).propose(now, payload(1, 1)).unwrap();
        net.settle();
        assert!(
            seen.insert(id.epoch),
            "epoch {} reused after a restart",
            id.epoch
        );
        // Restart from what was persisted, with the same config (and seed).
        let recovered = net.disk[0].clone();
        let cfg = net.r(NodeId(1)).cfg.clone();
        let now = net.now;
        net.replicas[0] = Replica::new(cfg, recovered, now).unwrap();
        net.committed[0].clear();
    }
}

// ---- Defect 8: recovery after a long partition is unbounded ----

#[test]
fn a_new_leader_reproposes_within_the_pipelining_window() {
    let mut net = Net::new(3, |c| {
        c.max_inflight_slots = 16;
        c.max_slots_per_message = 8;
    });
    // N2 holds a long open tail from an old leader (accepted, never known chosen).
    let old = Ballot::new(1, NodeId(1));
    let entries = (0..200)
        .map(|s| Entry {
            slot: Slot(s),
            ballot: old,
            value: Value::Noop,
        })
        .collect();
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: old,
            ..HardState::default()
        },
        entries,
    };
    let cfg = net.r(NodeId(2)).cfg.clone();
    net.replicas[1] = Replica::new(cfg, recovered, Instant::ZERO).unwrap();
    net.now = net.now + Duration::from_secs(2);
    let now = net.now;
    net.r(NodeId(2)).handle_timeout(now);
    // Phase 1 runs; every Accept is held.
    net.deliver_where(|_, _, m| !matches!(m, Message::Accept(_)));
    assert_eq!(net.r(NodeId(2)).status().role, Role::Leader);
    let slots: BTreeSet<u64> = net
        .queue
        .iter()
        .filter(|(from, to, _)| *from == NodeId(2) && *to == NodeId(1))
        .filter_map(|(_, _, m)| match m {
            Message::Accept(a) => Some(a.first.0..a.first.0 + a.values.len() as u64),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        slots.len() <= 16,
        "{} slots re-proposed at once, beyond the window of 16",
        slots.len()
    );
    // And the whole tail is still recovered, window by window.
    net.settle();
    net.run_for(100);
    assert!(net.r(NodeId(2)).status().commit >= Slot(200));
}

#[test]
fn phase_one_does_not_collect_a_chosen_tail_from_a_stale_commit_point() {
    let n = 3;
    let mut net = Net::new(n, |c| {
        c.max_slots_per_message = 8;
        c.max_inflight_slots = 16;
        c.max_batch_commands = 1;
    });
    net.elect(NodeId(1));
    net.cut.insert(NodeId(3));
    for i in 0..400 {
        let now = net.now;
        net.r(NodeId(1)).propose(now, payload(8, i as u8)).unwrap();
        if i % 10 == 0 {
            net.run_for(2);
        }
    }
    net.run_for(20);
    assert!(net.r(NodeId(2)).status().commit.0 >= 400);
    assert!(net.r(NodeId(3)).status().commit.0 <= 10);
    // N3 comes back with a stale commit point and N1 is gone: whoever leads next must not
    // page through four hundred chosen slots in phase 1.
    net.cut.clear();
    net.cut.insert(NodeId(1));
    let sent_before = net.sent.len();
    net.now = net.now + Duration::from_secs(2);
    let now = net.now;
    net.r(NodeId(3)).handle_timeout(now);
    net.run_for(3000);
    assert!(net.leader().is_some());
    let reported: usize = net.sent[sent_before..]
        .iter()
        .map(|(_, _, m)| match m {
            Message::Promise(p) => p.accepted.len(),
            _ => 0,
        })
        .sum();
    assert!(
        reported <= 64,
        "phase 1 collected {reported} entries, most of them long chosen"
    );
    // And N3 still learns everything.
    let commit2 = net.r(NodeId(2)).status().commit;
    assert!(net.r(NodeId(3)).status().commit >= commit2.min(Slot(390)));
}

// ---- Smaller items ----

#[test]
fn slot_and_round_arithmetic_on_peer_numbers_never_overflows() {
    let mut r = Replica::new(
        config(NodeId(2), 3),
        RecoveredState::default(),
        Instant::ZERO,
    )
    .unwrap();
    let top = Ballot::new(u64::MAX, NodeId(1));
    let msgs = vec![
        Message::Accept(Accept {
            ballot: Ballot::new(3, NodeId(1)),
            first: Slot(u64::MAX - 1),
            values: vec![Value::Noop, Value::Noop, Value::Noop],
            commit: Slot(u64::MAX),
            stamp: Instant::ZERO,
        }),
        Message::CatchUpReply(CatchUpReply {
            first: Slot(u64::MAX - 1),
            values: vec![(top, Value::Noop), (top, Value::Noop)],
            commit: Slot(u64::MAX),
        }),
        Message::Prepare(Prepare {
            ballot: top,
            from: Slot(u64::MAX),
        }),
        Message::CatchUp(CatchUp {
            from: Slot(u64::MAX),
        }),
    ];
    for m in msgs {
        r.handle_message(Instant::ZERO, NodeId(1), m);
        while let Some(ready) = r.poll_ready() {
            r.advance(ready.id);
        }
    }
    // Its own timers still work: no round overflow when it campaigns.
    r.handle_timeout(Instant::ZERO + Duration::from_secs(5));
    while let Some(ready) = r.poll_ready() {
        r.advance(ready.id);
    }
}

#[test]
#[should_panic(expected = "overwriting chosen slot")]
fn overwriting_a_chosen_slot_is_caught() {
    let mut r = Replica::new(
        config(NodeId(2), 3),
        RecoveredState::default(),
        Instant::ZERO,
    )
    .unwrap();
    r.commit = Slot(1);
    r.log.insert(
        Slot(0),
        super::Accepted {
            ballot: Ballot::new(1, NodeId(1)),
            value: Value::Noop,
        },
    );
    r.store(
        Slot(0),
        Ballot::new(2, NodeId(1)),
        Value::Batch(
            vec![Command {
                id: ProposalId {
                    origin: NodeId(1),
                    seq: 0,
                    epoch: 0,
                },
                payload: Bytes::new(),
            }]
            .into(),
        ),
    );
    let _ = r.poll_ready();
}
