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
use crate::wire;

use super::Replica;
use crate::lease;

impl Replica {
    pub(super) fn handle_prepare(&mut self, from: NodeId, m: Prepare) {
        if !self.voter {
            // No vote: not even a Nack, which would report a promise it does not keep.
            return;
        }
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
        // One page, bounded by slots and bytes, at least one entry.
        let n = wire::fit(
            self.log
                .range(m.from..)
                .map(|(_, a)| wire::ENTRY_OVERHEAD_BYTES + wire::value_bytes(&a.value)),
            self.cfg.max_slots_per_message,
            self.cfg.max_message_bytes,
        );
        let mut page = self.log.range(m.from..);
        let accepted: Vec<Entry> = page
            .by_ref()
            .take(n)
            .map(|(&slot, a)| Entry {
                slot,
                ballot: a.ballot,
                value: a.value.clone(),
            })
            .collect();
        let next = page.next().map(|(&slot, _)| slot);
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
        if !self.voter {
            // A learner: follow the leader and learn its commit point (by catch-up, since
            // it holds no entry at the leader's ballot), accept nothing, grant no lease.
            if m.ballot.node == from {
                self.follow(from, m.ballot);
                self.learn_commit(from, m.ballot, m.commit);
            }
            return;
        }
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
        let mut slot = m.first;
        for value in m.values {
            // Well formed: `first + values.len()` does not overflow.
            let this = slot;
            slot = Slot(slot.0 + 1);
            if this < self.log_start {
                // Compacted: chosen, but its value is gone, so this one cannot be
                // checked against it. Accept (and count) nothing from here.
                break;
            }
            if let Some(a) = self.log.get(&this) {
                let same = a.value == value;
                if same && (a.ballot == m.ballot || a.ballot == Ballot::CHOSEN) {
                    // Already held (at this ballot, or known chosen: accepting the chosen
                    // value again is harmless, and its stored ballot must not go down).
                    count += 1;
                    continue;
                }
                if !same && (this < self.commit || a.ballot == Ballot::CHOSEN) {
                    // We know this slot's chosen value and this is not it. Only a proposer
                    // that a majority already outvoted can send this; it cannot win, and
                    // we must not overwrite a chosen value. Stop here.
                    break;
                }
            }
            self.store(this, m.ballot, value);
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
        self.see_round(ballot);
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
