//! Learner: advancing the commit point, catching up on missed decisions, handing chosen
//! values out for applying.
//!
//! A replica learns that its own accepted value for slot `s` is chosen when a leader with
//! ballot `b` reports `s` below its commit point and the replica accepted `s` at exactly
//! `b`. That rests on one rule of the leader's, which the proposer keeps: **a leader at
//! `b` reports a commit point over `s` only if `b`'s value for `s` (if `b` proposed one)
//! is the chosen value.** For slots it chose itself that is so by counting; for a slot it
//! learned otherwise (a catch-up), it compares, and a leader whose own proposal for the
//! slot was not the chosen value is stale: it steps down instead of announcing it
//! (`prune_inflight`). Entries stored at [`Ballot::CHOSEN`] are chosen by definition.
//! Slots it accepted at another ballot, or missed, it fetches from a peer with
//! [`CatchUp`].
//!
//! A value learned by catch-up is stored at [`Ballot::CHOSEN`], never at the ballot the
//! sender holds it at: that could be lower than what this acceptor stored for the slot,
//! and an acceptor that lowers a stored ballot under-reports in its next Promise.

use crate::message::{CatchUp, CatchUpReply, Decide, Message};
use crate::types::{Ballot, Instant, NodeId, Slot};
use crate::wire;

use super::Replica;

impl Replica {
    /// Learns from `from`, a proposer at `ballot`, that every slot below `commit` is
    /// chosen.
    pub(super) fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        if from == self.cfg.id {
            return;
        }
        while self.commit < commit
            && self
                .log
                .get(&self.commit)
                .is_some_and(|a| a.ballot == ballot || a.ballot == Ballot::CHOSEN)
        {
            self.commit = self.commit.next();
        }
        self.note_peer_commit(from, commit);
        if self.commit < self.commit_hint && self.catch_up_sent.is_none() {
            self.request_catch_up();
        }
        self.prune_inflight();
    }

    /// Peer `from` knows every slot below `commit` chosen: raise the hint, and fetch
    /// missing values from the peer that reported the most.
    pub(super) fn note_peer_commit(&mut self, from: NodeId, commit: Slot) {
        if commit > self.commit_hint {
            self.commit_hint = commit;
        }
        if commit >= self.commit_hint && commit > self.commit && from != self.cfg.id {
            self.catch_up_from = Some(from);
        }
    }

    /// The peer we ask did not help (no reply, or nothing new): ask the next member.
    fn rotate_catch_up(&mut self) {
        let members = &self.cfg.members;
        let at = self
            .catch_up_from
            .and_then(|t| members.iter().position(|&m| m == t))
            .unwrap_or(0);
        self.catch_up_from = (1..=members.len())
            .map(|i| members[(at + i) % members.len()])
            .find(|&m| m != self.cfg.id);
    }

    pub(super) fn handle_decide(&mut self, from: NodeId, m: Decide) {
        if m.ballot.node != from {
            return;
        }
        if m.ballot >= self.promised {
            self.observe_higher_ballot(m.ballot);
            self.follow(from, m.ballot);
        }
        self.learn_commit(from, m.ballot, m.commit);
    }

    pub(super) fn handle_catch_up(&mut self, from: NodeId, m: CatchUp) {
        if self.offer_snapshot(from, &m) {
            return;
        }
        let known = self
            .log
            .range(m.from..self.commit.max(m.from))
            .enumerate()
            .take_while(|&(i, (&slot, _))| slot.0 - m.from.0 == i as u64);
        let n = wire::fit(
            known
                .clone()
                .map(|(_, (_, a))| wire::ENTRY_OVERHEAD_BYTES + wire::value_bytes(&a.value)),
            self.cfg.max_slots_per_message,
            self.cfg.max_message_bytes,
        );
        let values = known
            .take(n)
            .map(|(_, (_, a))| (a.ballot, a.value.clone()))
            .collect();
        let reply = CatchUpReply {
            first: m.from,
            values,
            commit: self.commit,
        };
        self.send(from, Message::CatchUpReply(reply));
    }

    pub(super) fn handle_catch_up_reply(&mut self, from: NodeId, m: CatchUpReply) {
        let claimed = Slot(m.first.0.saturating_add(m.values.len() as u64));
        if claimed > m.commit {
            // The sender claims chosen values beyond its own commit point: malformed, so
            // its commit point is not taken either (a correct sender that is behind us
            // replies with no values from our `from`, and its commit point tells us
            // nothing new).
            return;
        }
        self.note_peer_commit(from, m.commit);
        let before = self.commit;
        // Well formed: `first + values.len()` does not overflow.
        let skip = self.commit.0.saturating_sub(m.first.0);
        if m.first > self.commit {
            // Not contiguous with what we know: useless (a reply to an older request).
            self.catch_up_sent = None;
            return;
        }
        for (_, value) in m
            .values
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        {
            let slot = self.commit;
            let same = self.log.get(&slot).is_some_and(|a| a.value == value);
            if !same {
                // A chosen value, stored as such: above whatever we held, so no stored
                // ballot goes down, and every later Promise makes a leader adopt it.
                self.store(slot, Ballot::CHOSEN, value);
            }
            self.commit = slot.next();
        }
        self.prune_inflight();
        self.advance_commit();
        self.catch_up_sent = None;
        if self.commit < self.commit_hint {
            if self.commit == before && self.catch_up_from == Some(from) {
                self.rotate_catch_up();
            }
            self.request_catch_up();
        }
    }

    pub(super) fn request_catch_up(&mut self) {
        let Some(target) = self.catch_up_from else {
            return;
        };
        self.catch_up_sent = Some((self.now, target));
        self.send(target, Message::CatchUp(CatchUp { from: self.commit }));
    }

    pub(super) fn learner_timers(&mut self) {
        if self.commit >= self.commit_hint {
            self.catch_up_sent = None;
            return;
        }
        match self.catch_up_sent {
            None => self.request_catch_up(),
            Some((t, to)) if self.now >= t + self.cfg.resend_interval => {
                if self.catch_up_from == Some(to) {
                    // Unanswered: the peer may be down. (If a better peer was learned of
                    // meanwhile, ask that one instead.)
                    self.rotate_catch_up();
                }
                self.request_catch_up();
            }
            Some(_) => {}
        }
    }

    pub(super) fn learner_deadline(&self) -> Option<Instant> {
        if self.commit >= self.commit_hint || self.catch_up_from.is_none() {
            return None;
        }
        Some(
            self.catch_up_sent
                .map_or(self.now, |(t, _)| t + self.cfg.resend_interval),
        )
    }
}
