//! Proposer: phase 1a once per leadership, then phase 2a with batching and pipelining.
//!
//! Bounds: phase 1 reports only the open tail (the first slot not known chosen by any
//! promiser on); re-proposals and new batches share one pipelining window, in slots
//! (`max_inflight_slots`) and bytes (`max_inflight_bytes`); every message is bounded in
//! slots and bytes (`max_slots_per_message`, `max_message_bytes`) and carries at least
//! one value.

use std::collections::{BTreeMap, VecDeque};

use crate::message::{Accept, Accepted, Decide, Forward, Message, Nack, Prepare, Promise};
use crate::ready::Role;
use crate::types::{Ballot, Command, Instant, NodeId, Slot, Value};
use crate::wire;

use super::Replica;

/// A replica running phase 1 for `ballot`.
#[derive(Debug)]
pub(crate) struct Candidacy {
    pub(crate) ballot: Ballot,
    /// The first slot phase 1 must decide: below it, every slot is chosen (by our commit
    /// point, or by the commit point a promiser reported), so nothing there is adopted;
    /// the chosen values are fetched with catch-up instead.
    from: Slot,
    /// Members whose Promise (all pages) arrived, as a bitmask over `members` indexes.
    done: u64,
    /// Per member, the slot its next Promise page starts at.
    next_page: Vec<Slot>,
    /// The highest-ballot value reported for each slot.
    adopted: BTreeMap<Slot, (Ballot, Value)>,
    last_sent: Instant,
}

/// A replica that completed phase 1 for `ballot` and runs phase 2 only.
#[derive(Debug)]
pub(crate) struct Leadership {
    pub(crate) ballot: Ballot,
    /// The next slot to fill with a new batch.
    pub(crate) next_slot: Slot,
    /// Proposed, not yet chosen. Slots below `commit + max_inflight_slots`, holding at
    /// most about `max_inflight_bytes` of payload.
    pub(crate) inflight: BTreeMap<Slot, Inflight>,
    /// Payload bytes in `inflight`.
    inflight_bytes: usize,
    /// Values adopted in phase 1 (no-ops in the gaps), for the slots from `next_slot` on,
    /// waiting for room in the window. Proposed before any new batch.
    pub(crate) reproposals: VecDeque<Value>,
    last_heartbeat: Instant,
    /// Per member, when it last answered this ballot.
    last_ack: Vec<Instant>,
    /// The commit point last sent to followers.
    pub(crate) commit_sent: Slot,
    /// End of the slots re-proposed when phase 1 completed (at least one, a no-op if
    /// nothing was open). Every value chosen before this leadership lies below it, so the
    /// commit point covers them all only once it reaches this slot: reads wait for that.
    pub(crate) recovered_to: Slot,
    /// Per member, the latest [`Accept::stamp`] it answered at this ballot.
    pub(crate) lease_acks: Vec<Option<Instant>>,
}

#[derive(Debug)]
pub(crate) struct Inflight {
    value: Value,
    /// Members that accepted it, as a bitmask.
    acks: u64,
    sent_at: Instant,
}

impl Leadership {
    /// When the last heartbeat round went out.
    pub(crate) fn last_heartbeat_at(&self) -> Instant {
        self.last_heartbeat
    }
}

impl Replica {
    fn member_index(&self, id: NodeId) -> Option<usize> {
        self.cfg.members.iter().position(|&m| m == id)
    }

    /// Starts phase 1 with a ballot above every one seen (after a won pre-vote).
    pub(super) fn start_candidacy(&mut self) {
        let Some(ballot) = self.next_ballot() else {
            return;
        };
        self.max_round_seen = ballot.round;
        self.pre_vote = None;
        self.role = Role::Candidate;
        self.leader = None;
        self.leadership = None;
        let from = self.commit;
        self.candidacy = Some(Candidacy {
            ballot,
            from,
            done: 0,
            next_page: vec![from; self.cfg.members.len()],
            adopted: BTreeMap::new(),
            last_sent: self.now,
        });
        self.reset_election_deadline();
        self.metrics.elections_started += 1;
        self.metrics.prepares_sent += self.cfg.members.len() as u64 - 1;
        self.broadcast(&Message::Prepare(Prepare { ballot, from }));
    }

    pub(super) fn handle_promise(&mut self, from: NodeId, m: Promise) {
        let Some(idx) = self.member_index(from) else {
            return;
        };
        self.note_peer_commit(from, m.commit);
        let Some(c) = self.candidacy.as_mut() else {
            return;
        };
        if m.ballot != c.ballot || m.from != c.next_page[idx] || c.done & (1 << idx) != 0 {
            return;
        }
        if m.commit > c.from {
            // Everything below the promiser's commit point is chosen: phase 1 need not
            // decide it (nor collect it), we fetch it with catch-up.
            c.from = m.commit;
            c.adopted = c.adopted.split_off(&c.from);
        }
        for e in m.accepted {
            if e.slot < c.from {
                continue;
            }
            match c.adopted.get(&e.slot) {
                Some((b, v)) if *b == e.ballot => {
                    assert_eq!(
                        *v, e.value,
                        "two values accepted for slot {} at ballot {b}",
                        e.slot
                    );
                }
                Some((b, _)) if *b > e.ballot => {}
                _ => {
                    c.adopted.insert(e.slot, (e.ballot, e.value));
                }
            }
        }
        let ballot = c.ballot;
        if let Some(next) = m.next {
            let next = next.max(c.from);
            c.next_page[idx] = next;
            if from != self.cfg.id {
                self.metrics.prepares_sent += 1;
            }
            self.send(from, Message::Prepare(Prepare { ballot, from: next }));
            // Phase 1 is making progress through a long log: do not restart it.
            self.reset_election_deadline();
            return;
        }
        c.done |= 1 << idx;
        if c.done.count_ones() as usize >= self.quorum {
            self.become_leader();
        } else if self.commit < self.commit_hint && self.catch_up_sent.is_none() {
            self.request_catch_up();
        }
    }

    fn become_leader(&mut self) {
        let Some(c) = self.candidacy.take() else {
            return;
        };
        self.role = Role::Leader;
        self.leader = None;
        self.metrics.elections_won += 1;
        let start = self.commit.max(c.from);
        // At least one slot: a no-op if nothing is open, so that a slot of our own ballot
        // gets chosen and reads know the commit point is complete.
        let end = c
            .adopted
            .keys()
            .next_back()
            .map_or(start, |s| s.next().max(start))
            .max(start.next());
        // Re-propose, at our ballot, the highest-ballot value reported for each open slot;
        // fill the gaps with no-ops. Queued, and proposed window by window.
        let mut adopted = c.adopted;
        let reproposals = (start.0..end.0)
            .map(|s| adopted.remove(&Slot(s)).map_or(Value::Noop, |(_, v)| v))
            .collect();
        let leadership = Leadership {
            ballot: c.ballot,
            next_slot: start,
            inflight: BTreeMap::new(),
            inflight_bytes: 0,
            reproposals,
            last_heartbeat: self.now,
            last_ack: vec![self.now; self.cfg.members.len()],
            commit_sent: self.commit,
            recovered_to: end,
            // A new leader starts with no lease.
            lease_acks: vec![None; self.cfg.members.len()],
        };
        self.leadership = Some(leadership);
        if self.commit < self.commit_hint && self.catch_up_sent.is_none() {
            // The chosen values below `start` that we miss.
            self.request_catch_up();
        }
        self.propose_batches();
    }

    /// Sends `values` for slots from `first` on to every member, in messages bounded by
    /// slots and bytes.
    fn broadcast_accepts(&mut self, first: Slot, values: Vec<Value>) {
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        let ballot = l.ballot;
        l.commit_sent = self.commit;
        let sizes: Vec<usize> = values.iter().map(wire::value_bytes).collect();
        let mut slot = first;
        let mut values = values.into_iter();
        let mut done = 0;
        while done < sizes.len() {
            let n = wire::fit(
                sizes[done..].iter().copied(),
                self.cfg.max_slots_per_message,
                self.cfg.max_message_bytes,
            );
            let chunk: Vec<Value> = values.by_ref().take(n).collect();
            done += n;
            let accept = Accept {
                ballot,
                first: slot,
                values: chunk,
                commit: self.commit,
                stamp: self.now,
            };
            self.broadcast(&Message::Accept(accept));
            slot = Slot(slot.0 + n as u64);
        }
    }

    /// Moves queued proposals into new slots (leader) or forwards them (follower).
    pub(super) fn flush_proposals(&mut self) {
        match self.role {
            Role::Follower => {
                if let Some((leader, _)) = self.leader {
                    self.forward_pending(leader);
                }
            }
            Role::Candidate => {}
            Role::Leader => self.propose_batches(),
        }
    }

    /// Opens new slots while the window has room: re-proposals from phase 1 first, then
    /// batches of queued proposals.
    pub(super) fn propose_batches(&mut self) {
        let window_end = self.commit.0.saturating_add(self.cfg.max_inflight_slots);
        let max_bytes = self.cfg.max_inflight_bytes;
        let Some(l) = self.leadership.as_ref() else {
            return;
        };
        let first = l.next_slot;
        let mut values = Vec::new();
        loop {
            let Some(l) = self.leadership.as_ref() else {
                return;
            };
            let room = l.next_slot.0 < window_end
                && (l.inflight.is_empty() || l.inflight_bytes < max_bytes);
            if !room {
                break;
            }
            let value = match self
                .leadership
                .as_mut()
                .and_then(|l| l.reproposals.pop_front())
            {
                Some(value) => value,
                None if self.pending.is_empty() => break,
                None => Value::Batch(self.take_batch().into()),
            };
            let now = self.now;
            let Some(l) = self.leadership.as_mut() else {
                return;
            };
            l.inflight_bytes += value.payload_bytes();
            l.inflight.insert(
                l.next_slot,
                Inflight {
                    value: value.clone(),
                    acks: 0,
                    sent_at: now,
                },
            );
            l.next_slot = l.next_slot.next();
            values.push(value);
        }
        let commit_sent = self
            .leadership
            .as_ref()
            .map_or(self.commit, |l| l.commit_sent);
        if !values.is_empty() {
            self.broadcast_accepts(first, values);
        } else if self.commit > commit_sent {
            self.broadcast_decide();
        }
    }

    /// Cuts one batch off the pending queue, bounded by count and bytes (at least one).
    fn take_batch(&mut self) -> Vec<Command> {
        let mut batch: Vec<Command> = Vec::new();
        let mut bytes = 0;
        while let Some(cmd) = self.pending.front() {
            let full = batch.len() == self.cfg.max_batch_commands
                || (!batch.is_empty() && bytes + cmd.payload.len() > self.cfg.max_batch_bytes);
            if full {
                break;
            }
            bytes += cmd.payload.len();
            batch.extend(self.pop_pending());
        }
        batch
    }

    fn broadcast_decide(&mut self) {
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        l.commit_sent = self.commit;
        let decide = Decide {
            ballot: l.ballot,
            commit: self.commit,
        };
        self.send_to_peers(&Message::Decide(decide));
    }

    pub(super) fn handle_accepted(&mut self, from: NodeId, m: Accepted) {
        let Some(idx) = self.member_index(from) else {
            return;
        };
        let now = self.now;
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        if m.ballot != l.ballot {
            return;
        }
        l.last_ack[idx] = now;
        if l.lease_acks[idx].is_none_or(|t| t < m.stamp) {
            l.lease_acks[idx] = Some(m.stamp);
        }
        // Well formed: `first + count` does not overflow.
        let end = Slot(m.first.0 + m.count);
        for (_, inflight) in l.inflight.range_mut(m.first..end) {
            inflight.acks |= 1 << idx;
        }
        self.advance_commit();
    }

    /// Advances the commit point over the prefix of in-flight slots a quorum accepted.
    pub(super) fn advance_commit(&mut self) {
        let quorum = self.quorum;
        loop {
            let commit = self.commit;
            let Some(l) = self.leadership.as_mut() else {
                return;
            };
            let ballot = l.ballot;
            let chosen = l
                .inflight
                .get(&commit)
                .is_some_and(|i| i.acks.count_ones() as usize >= quorum);
            if !chosen {
                return;
            }
            let Some(inflight) = l.inflight.remove(&commit) else {
                return;
            };
            l.inflight_bytes -= inflight.value.payload_bytes();
            let held = self.log.get(&commit).map(|a| &a.value) == Some(&inflight.value);
            if !held {
                // A quorum of peers chose it before our own acceptor stored it.
                self.store(commit, ballot, inflight.value);
            }
            self.commit = commit.next();
        }
    }

    /// Forgets in-flight slots that became chosen by other means (catch-up).
    ///
    /// A leader at ballot `b` announces its commit point at `b`, and followers take their
    /// own entry at `b` below it as chosen. So if a slot we proposed at `b` turns out to
    /// be chosen with another value, `b` was outvoted by a higher ballot: we are stale, and
    /// step down rather than announce a commit point over a value that was not chosen.
    pub(super) fn prune_inflight(&mut self) {
        let commit = self.commit;
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        let kept = l.inflight.split_off(&commit);
        let pruned = std::mem::replace(&mut l.inflight, kept);
        let mut stale = false;
        for (slot, inflight) in pruned {
            l.inflight_bytes -= inflight.value.payload_bytes();
            stale |= self.log.get(&slot).map(|a| &a.value) != Some(&inflight.value);
        }
        if l.next_slot < commit {
            // Chosen elsewhere while queued for re-proposal: drop those too.
            let skip = usize::try_from(commit.0 - l.next_slot.0).unwrap_or(usize::MAX);
            l.reproposals.drain(..skip.min(l.reproposals.len()));
            l.next_slot = commit;
        }
        if stale {
            self.step_down();
        }
    }

    pub(super) fn handle_nack(&mut self, m: Nack) {
        let ours = self
            .candidacy
            .as_ref()
            .map(|c| c.ballot)
            .or(self.leadership.as_ref().map(|l| l.ballot));
        if ours == Some(m.ballot) && m.leased && self.role == Role::Candidate {
            // Another leader's lease is in force: back off instead of raising the ballot.
            self.step_down();
        } else if ours == Some(m.ballot) && m.promised > m.ballot {
            self.observe_higher_ballot(m.promised);
        } else {
            self.see_round(m.promised);
        }
    }

    pub(super) fn handle_forward(&mut self, m: Forward) {
        if self.role == Role::Follower {
            // Not leading: drop. The origin's caller times out and retries; forwarding
            // again could bounce between two replicas with stale views.
            return;
        }
        for cmd in m.commands {
            if !self.pending_has_room(cmd.payload.len()) {
                break;
            }
            self.push_pending(cmd);
        }
    }

    /// Stops proposing; becomes a follower with no known leader.
    pub(super) fn step_down(&mut self) {
        self.abort_reads();
        self.role = Role::Follower;
        self.candidacy = None;
        self.leadership = None;
        self.leader = None;
        self.pre_vote = None;
        self.reset_election_deadline();
    }

    pub(super) fn leader_timers(&mut self) {
        let now = self.now;
        let horizon = now - self.cfg.election_timeout_max;
        let me = self.member_index(self.cfg.id);
        let quorum = self.quorum;
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        if let Some(me) = me {
            l.last_ack[me] = now;
        }
        // Step down when a quorum has not answered for an election timeout: clients of a
        // partitioned leader should fail fast rather than wait.
        if l.last_ack.iter().filter(|&&t| t >= horizon).count() < quorum {
            self.step_down();
            return;
        }
        self.resend_accepts();
        let due = self
            .leadership
            .as_ref()
            .is_some_and(|l| now >= l.last_heartbeat + self.cfg.heartbeat_interval);
        if due {
            self.send_heartbeats();
        }
    }

    /// Sends an empty Accept, carrying the commit point, to every member.
    pub(super) fn send_heartbeats(&mut self) {
        let now = self.now;
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        l.last_heartbeat = now;
        l.commit_sent = self.commit;
        let heartbeat = Accept {
            ballot: l.ballot,
            first: l.next_slot,
            values: Vec::new(),
            commit: self.commit,
            stamp: now,
        };
        // Ourselves included: our own acceptor's acknowledgement is one of the quorum's,
        // and it must be as fresh as the peers'. With one follower of three down, the
        // lease and read-index rounds rest on it (it costs no persist and no network).
        self.broadcast(&Message::Accept(heartbeat));
    }

    /// Resends unanswered Accepts to the members that have not accepted them.
    fn resend_accepts(&mut self) {
        let now = self.now;
        let resend = self.cfg.resend_interval;
        let page = self.cfg.max_slots_per_message;
        let budget = self
            .cfg
            .max_message_bytes
            .saturating_sub(wire::MESSAGE_OVERHEAD_BYTES);
        let Some(l) = self.leadership.as_mut() else {
            return;
        };
        let ballot = l.ballot;
        let mut messages = Vec::new();
        for (i, &member) in self.cfg.members.iter().enumerate() {
            // A run of contiguous due slots, and its bytes: one bounded Accept.
            let mut run: Option<(Slot, Vec<Value>, usize)> = None;
            for (&slot, inflight) in l.inflight.iter() {
                let due = inflight.sent_at + resend <= now && inflight.acks & (1 << i) == 0;
                let size = wire::value_bytes(&inflight.value);
                let extends = run.as_ref().is_some_and(|(f, v, bytes)| {
                    f.0 + v.len() as u64 == slot.0
                        && v.len() < page
                        && bytes.saturating_add(size) <= budget
                });
                if !due || !extends {
                    if let Some((f, v, _)) = run.take() {
                        messages.push((member, f, v));
                    }
                }
                if due {
                    let (_, values, bytes) = run.get_or_insert_with(|| (slot, Vec::new(), 0));
                    values.push(inflight.value.clone());
                    *bytes += size;
                }
            }
            if let Some((f, v, _)) = run.take() {
                messages.push((member, f, v));
            }
        }
        for inflight in l.inflight.values_mut() {
            if inflight.sent_at + resend <= now {
                inflight.sent_at = now;
            }
        }
        for (to, first, values) in messages {
            let accept = Accept {
                ballot,
                first,
                values,
                commit: self.commit,
                stamp: now,
            };
            self.send(to, Message::Accept(accept));
        }
    }

    pub(super) fn leader_deadline(&self) -> Instant {
        let Some(l) = self.leadership.as_ref() else {
            return self.now;
        };
        let mut next = l.last_heartbeat + self.cfg.heartbeat_interval;
        if let Some(oldest) = l.inflight.values().map(|i| i.sent_at).min() {
            next = next.min(oldest + self.cfg.resend_interval);
        }
        next
    }

    pub(super) fn candidate_timers(&mut self) {
        let now = self.now;
        let Some(c) = self.candidacy.as_mut() else {
            return;
        };
        if now < c.last_sent + self.cfg.resend_interval {
            return;
        }
        c.last_sent = now;
        let ballot = c.ballot;
        let mut prepares = Vec::new();
        for (i, &member) in self.cfg.members.iter().enumerate() {
            if c.done & (1 << i) == 0 {
                prepares.push((member, c.next_page[i]));
            }
        }
        for (to, from) in prepares {
            if to != self.cfg.id {
                self.metrics.prepares_sent += 1;
            }
            self.send(to, Message::Prepare(Prepare { ballot, from }));
        }
    }

    pub(super) fn candidate_deadline(&self) -> Instant {
        self.candidacy
            .as_ref()
            .map_or(self.now, |c| c.last_sent + self.cfg.resend_interval)
    }
}
