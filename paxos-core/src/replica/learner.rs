//! Learner: advancing the commit point, catching up on missed decisions, handing chosen
//! values out for applying.
//!
//! A replica learns that its own accepted value for slot `s` is chosen when a leader with
//! ballot `b` reports `s` below its commit point and the replica accepted `s` at exactly
//! `b`: one ballot proposes one value per slot, so the values match. Slots it accepted at
//! another ballot, or missed, it fetches from a peer with [`CatchUp`].

use crate::message::{CatchUp, CatchUpReply, Decide, Message};
use crate::types::{Ballot, Instant, NodeId, Slot};

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
                .is_some_and(|a| a.ballot == ballot)
        {
            self.commit = self.commit.next();
        }
        if commit > self.commit_hint {
            self.commit_hint = commit;
        }
        if self.commit < self.commit_hint {
            self.catch_up_from = Some(from);
            if self.catch_up_sent.is_none() {
                self.request_catch_up();
            }
        }
        self.prune_inflight();
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
        let mut values = Vec::new();
        let mut slot = m.from;
        while slot < self.commit && values.len() < self.cfg.max_slots_per_message {
            let Some(a) = self.log.get(&slot) else { break };
            values.push((a.ballot, a.value.clone()));
            slot = slot.next();
        }
        let reply = CatchUpReply {
            first: m.from,
            values,
            commit: self.commit,
        };
        self.send(from, Message::CatchUpReply(reply));
    }

    pub(super) fn handle_catch_up_reply(&mut self, from: NodeId, m: CatchUpReply) {
        if m.commit > self.commit_hint {
            self.commit_hint = m.commit;
        }
        let claimed = Slot(m.first.0.saturating_add(m.values.len() as u64));
        if claimed > m.commit {
            // The sender claims chosen values beyond its own commit point: malformed.
            return;
        }
        for (i, (ballot, value)) in m.values.into_iter().enumerate() {
            let slot = Slot(m.first.0 + i as u64);
            if slot != self.commit {
                continue;
            }
            let same = self
                .log
                .get(&slot)
                .is_some_and(|a| a.ballot == ballot && a.value == value);
            if !same {
                // A chosen value: safe to hold at any ballot, since every proposer that
                // adopts a value for this slot adopts this one.
                self.store(slot, ballot, value);
            }
            self.commit = self.commit.next();
        }
        self.prune_inflight();
        self.catch_up_sent = None;
        if self.commit < self.commit_hint {
            self.catch_up_from = Some(from);
            self.request_catch_up();
        }
    }

    fn request_catch_up(&mut self) {
        let Some(target) = self.catch_up_from else {
            return;
        };
        self.catch_up_sent = Some(self.now);
        self.send(target, Message::CatchUp(CatchUp { from: self.commit }));
    }

    pub(super) fn learner_timers(&mut self) {
        if self.commit >= self.commit_hint {
            self.catch_up_sent = None;
            return;
        }
        let due = self
            .catch_up_sent
            .is_none_or(|t| self.now >= t + self.cfg.resend_interval);
        if due {
            self.request_catch_up();
        }
    }

    pub(super) fn learner_deadline(&self) -> Option<Instant> {
        if self.commit >= self.commit_hint || self.catch_up_from.is_none() {
            return None;
        }
        Some(
            self.catch_up_sent
                .map_or(self.now, |t| t + self.cfg.resend_interval),
        )
    }
}
