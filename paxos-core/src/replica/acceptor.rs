//! Acceptor: phase 1b (Promise) and phase 2b (Accepted).
//!
//! The acceptor's two rules are the whole of Paxos safety:
//! 1. never promise or accept a ballot below one already promised;
//! 2. report, in every Promise, the highest-ballot value accepted for each slot.
//!
//! Both replies report durable state, so they leave only after the Ready that persists
//! that state (the [`Ready`](crate::Ready) ordering rule).

use crate::message::{Accept, Accepted, Message, Nack, Prepare, Promise};
use crate::ready::Role;
use crate::types::{Ballot, Entry, NodeId, Slot};

use super::Replica;
use crate::lease;

impl Replica {
    pub(super) fn handle_prepare(&mut self, from: NodeId, m: Prepare) {
        if m.ballot < self.promised {
            self.refuse(from, m.ballot);
            return;
        }
        if let Some((leader, until)) = self.granted {
            if self.now < until && leader != m.ballot {
                // The lease we granted forbids promising anyone else until it ends.
                self.metrics.lease_refusals += 1;
                self.send(
                    from,
                    Message::Nack(Nack {
                        ballot: m.ballot,
                        promised: leader,
                        leased: true,
                    }),
                );
                return;
            }
        }
        if m.ballot > self.promised {
            self.set_promised(m.ballot);
            self.observe_higher_ballot(m.ballot);
        }
        // Someone is campaigning (or paging through our log for phase 1): give them a
        // chance before campaigning ourselves, or phase 1 over a long log never finishes.
        if self.role == Role::Follower {
            self.reset_election_deadline();
        }
        let mut accepted = Vec::new();
        let mut next = None;
        for (&slot, a) in self.log.range(m.from..) {
            if accepted.len() == self.cfg.max_slots_per_message {
                next = Some(slot);
                break;
            }
            accepted.push(Entry {
                slot,
                ballot: a.ballot,
                value: a.value.clone(),
            });
        }
        let promise = Promise {
            ballot: m.ballot,
            from: m.from,
            accepted,
            next,
            commit: self.commit,
        };
        self.send(from, Message::Promise(promise));
    }

    pub(super) fn handle_accept(&mut self, from: NodeId, m: Accept) {
        if m.ballot < self.promised {
            self.refuse(from, m.ballot);
            return;
        }
        if m.ballot.node != from {
            // Only a ballot's owner may issue Accepts for it.
            return;
        }
        self.set_promised(m.ballot);
        self.observe_higher_ballot(m.ballot);
        self.follow(from, m.ballot);
        let mut count = 0u64;
        for (i, value) in m.values.into_iter().enumerate() {
            let slot = Slot(m.first.0 + i as u64);
            if let Some(a) = self.log.get(&slot) {
                if a.ballot == m.ballot && a.value == value {
                    count += 1;
                    continue;
                }
                if slot < self.commit && a.value != value {
                    // We know this slot's chosen value and this is not it. Only a proposer
                    // that a majority already outvoted can send this; it cannot win, and
                    // we must not overwrite a chosen value. Stop here.
                    break;
                }
            }
            self.store(slot, m.ballot, value);
            count += 1;
        }
        if let Some(lease) = self.cfg.lease_duration {
            // Granted from the arrival, on our clock; see crate::lease_docs.
            self.granted = Some((m.ballot, lease::grant_end(self.now, lease)));
        }
        let accepted = Accepted {
            ballot: m.ballot,
            first: m.first,
            count,
            stamp: m.stamp,
        };
        self.send(from, Message::Accepted(accepted));
        self.learn_commit(from, m.ballot, m.commit);
    }

    /// Refuses `ballot` because we promised a higher one.
    fn refuse(&mut self, to: NodeId, ballot: Ballot) {
        let nack = Nack {
            ballot,
            promised: self.promised,
            leased: false,
        };
        self.send(to, Message::Nack(nack));
    }

    /// A message showed a ballot above our own proposals: stop proposing.
    pub(super) fn observe_higher_ballot(&mut self, ballot: Ballot) {
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        let ours = match self.role {
            Role::Follower => return,
            Role::Candidate => self.candidacy.as_ref().map(|c| c.ballot),
            Role::Leader => self.leadership.as_ref().map(|l| l.ballot),
        };
        if ours.is_some_and(|b| ballot > b) {
            self.step_down();
        }
    }
}
