//! Step tests of the learner's inputs, [`Decide`] and [`CatchUpReply`]: each compares the
//! exact Ready a step emits, as in `tests.rs`.

use super::Replica;
use super::tests::{N1, N2, N3, at, b, cmd, config, replica, step};
use crate::message::{CatchUp, CatchUpReply, Decide, Envelope, Message};
use crate::ready::{Committed, HardState, PersistBatch, Ready, RecoveredState};
use crate::types::{Ballot, Entry, Instant, Slot, Value};

fn value(seq: u64) -> Value {
    Value::Batch(vec![cmd(seq)].into())
}

fn catch_up(to: crate::NodeId, from: u64) -> Envelope {
    Envelope {
        to,
        message: Message::CatchUp(CatchUp { from: Slot(from) }),
    }
}

fn decide(ballot: Ballot, commit: u64) -> Message {
    Message::Decide(Decide {
        ballot,
        commit: Slot(commit),
    })
}

fn reply(first: u64, values: Vec<(Ballot, Value)>, commit: u64) -> Message {
    Message::CatchUpReply(CatchUpReply {
        first: Slot(first),
        values,
        commit: Slot(commit),
    })
}

/// A fresh follower N2 that heard from leader N1 (ballot 1.1) that slots below `commit`
/// are chosen, and asked N1 for them; the CatchUp's Ready is checked and advanced.
fn lagging(commit: u64) -> Replica {
    let mut r = replica(N2);
    let _ = step(&mut r); // the first hard state (epoch)
    r.handle_message(at(1), N1, decide(b(1, N1), commit));
    let ready = step(&mut r);
    assert_eq!(ready.messages, vec![catch_up(N1, 0)]);
    assert!(ready.committed.is_empty() && ready.persist.is_empty());
    r
}

#[test]
fn decide_commits_only_entries_at_its_ballot_and_fetches_the_rest() {
    // Slot 1 was accepted at 1.3, an older leader's ballot: leader 2.1's Decide says
    // nothing about which value was chosen there.
    let entry = |slot, ballot, value| Entry {
        slot: Slot(slot),
        ballot,
        value,
    };
    let recovered = RecoveredState {
        snapshot: None,
        hard_state: HardState {
            promised: b(2, N1),
            commit: Slot(0),
            epoch: 0,
            non_voting: false,
        },
        entries: vec![
            entry(0, b(2, N1), value(0)),
            entry(1, b(1, N3), value(1)),
            entry(2, b(2, N1), value(2)),
        ],
    };
    let mut r = Replica::new(config(N2), recovered, Instant::ZERO).unwrap();
    let _ = step(&mut r);
    r.handle_message(at(1), N1, decide(b(2, N1), 3));
    assert_eq!(
        step(&mut r),
        Ready {
            fetch_snapshot: None,
            early_messages: 0,
            id: 2,
            persist: PersistBatch::default(),
            messages: vec![catch_up(N1, 1)],
            committed: vec![Committed {
                slot: Slot(0),
                value: value(0),
            }],
            reads: vec![],
            aborted_reads: vec![],
        }
    );
    assert_eq!(r.status().commit, Slot(1));
    assert_eq!(r.status().leader, Some(N1));

    // The chosen value of slot 1 is not the one we held; slot 2's is.
    let chosen = value(11);
    r.handle_message(
        at(2),
        N1,
        reply(1, vec![(b(2, N1), chosen.clone()), (b(2, N1), value(2))], 3),
    );
    assert_eq!(
        step(&mut r),
        Ready {
            fetch_snapshot: None,
            early_messages: 0,
            id: 3,
            persist: PersistBatch {
                hard_state: Some(HardState {
                    promised: b(2, N1),
                    commit: Slot(3),
                    epoch: 1,
                    non_voting: false,
                }),
                entries: vec![entry(1, Ballot::CHOSEN, chosen.clone())],
            },
            messages: vec![],
            committed: vec![
                Committed {
                    slot: Slot(1),
                    value: chosen,
                },
                Committed {
                    slot: Slot(2),
                    value: value(2),
                },
            ],
            reads: vec![],
            aborted_reads: vec![],
        }
    );
    // The same Decide again: nothing new to learn, nothing to ask.
    r.handle_message(at(3), N1, decide(b(2, N1), 3));
    assert_eq!(r.poll_ready(), None);
}

#[test]
fn a_decide_whose_ballot_is_not_the_senders_is_ignored() {
    let mut r = replica(N2);
    let _ = step(&mut r);
    // N3 relays (or forges) N1's Decide: a ballot speaks only for its own proposer.
    r.handle_message(at(1), N3, decide(b(1, N1), 5));
    assert_eq!(r.poll_ready(), None);
    assert_eq!(r.status().leader, None);
    let election_timeout_min = config(N2).election_timeout_min;
    assert!(
        r.poll_timeout() >= Some(Instant::ZERO + election_timeout_min),
        "only the election timer runs: no catch-up is due"
    );
}

#[test]
fn a_catch_up_reply_fills_the_log_at_chosen_and_advances_the_commit_point() {
    let mut r = lagging(2);
    r.handle_message(
        at(2),
        N1,
        reply(0, vec![(b(1, N1), value(0)), (b(1, N1), Value::Noop)], 2),
    );
    assert_eq!(
        step(&mut r),
        Ready {
            fetch_snapshot: None,
            early_messages: 0,
            id: 3,
            persist: PersistBatch {
                hard_state: Some(HardState {
                    promised: Ballot::ZERO,
                    commit: Slot(2),
                    epoch: 1,
                    non_voting: false,
                }),
                // At CHOSEN, never at the sender's 1.1.
                entries: vec![
                    Entry {
                        slot: Slot(0),
                        ballot: Ballot::CHOSEN,
                        value: value(0),
                    },
                    Entry {
                        slot: Slot(1),
                        ballot: Ballot::CHOSEN,
                        value: Value::Noop,
                    },
                ],
            },
            messages: vec![],
            committed: vec![
                Committed {
                    slot: Slot(0),
                    value: value(0),
                },
                Committed {
                    slot: Slot(1),
                    value: Value::Noop,
                },
            ],
            reads: vec![],
            aborted_reads: vec![],
        }
    );
    assert_eq!(r.status().commit, Slot(2));
    assert_eq!(
        r.poll_timeout().map(|t| t > at(2)),
        Some(true),
        "no catch-up due"
    );
}

#[test]
fn a_catch_up_reply_overlapping_the_commit_point_stores_only_what_is_new() {
    let mut r = lagging(1);
    r.handle_message(at(2), N1, reply(0, vec![(b(1, N1), value(0))], 1));
    assert_eq!(step(&mut r).committed.len(), 1);
    // A slower peer answers an older request: slot 0 again, then slot 1.
    r.handle_message(
        at(3),
        N3,
        reply(0, vec![(b(1, N1), value(0)), (b(1, N1), value(1))], 2),
    );
    let ready = step(&mut r);
    assert_eq!(
        ready.persist.entries,
        vec![Entry {
            slot: Slot(1),
            ballot: Ballot::CHOSEN,
            value: value(1),
        }]
    );
    assert_eq!(
        ready.committed,
        vec![Committed {
            slot: Slot(1),
            value: value(1),
        }]
    );
    assert!(ready.messages.is_empty());
}

#[test]
fn a_catch_up_reply_claiming_values_beyond_its_commit_is_ignored() {
    let mut r = lagging(1);
    let before = r.poll_timeout();
    // Three values, but the sender says only slots below 2 are chosen: no correct
    // replica sends that. Nothing of it is taken, not even its commit point.
    r.handle_message(
        at(2),
        N1,
        reply(
            0,
            vec![
                (b(1, N1), value(0)),
                (b(1, N1), value(1)),
                (b(1, N1), value(2)),
            ],
            2,
        ),
    );
    assert_eq!(r.poll_ready(), None);
    assert_eq!(r.status().commit, Slot(0));
    assert_eq!(r.poll_timeout(), before, "no timer moved");
    // A correct reply is still taken, and since only slot 0 was ever reported chosen,
    // nothing more is asked for.
    r.handle_message(at(3), N1, reply(0, vec![(b(1, N1), value(0))], 1));
    let ready = step(&mut r);
    assert_eq!(
        ready.committed,
        vec![Committed {
            slot: Slot(0),
            value: value(0),
        }]
    );
    assert_eq!(ready.messages, vec![]);
}

#[test]
fn a_catch_up_reply_not_contiguous_with_the_commit_point_is_ignored() {
    let mut r = lagging(4);
    // Slots 2 and 3 only: slots 0 and 1 would be a hole below them.
    r.handle_message(
        at(2),
        N1,
        reply(2, vec![(b(1, N1), value(2)), (b(1, N1), value(3))], 4),
    );
    assert_eq!(r.poll_ready(), None, "nothing stored, applied or sent");
    assert_eq!(r.status().commit, Slot(0));
    // The request it answered is spent: the learner asks again at once, from slot 0.
    assert_eq!(r.poll_timeout(), Some(at(2)));
    r.handle_timeout(at(2));
    assert_eq!(step(&mut r).messages, vec![catch_up(N1, 0)]);
}
