//! Elections: randomized timeouts drawn from the replica's seeded RNG, and the pre-vote
//! that comes before phase 1.
//!
//! # Pre-vote
//!
//! A follower whose election timeout fires does not run phase 1 at once. It first asks
//! every member, with [`PreVote`], whether it would join an election now, and starts
//! phase 1 only once a quorum (itself included) says yes. A member says yes when all of
//! these hold:
//!
//! * it is not leading, and heard from no leader for `election_timeout_min`;
//! * it holds no unexpired lease granted to another ballot;
//! * the asker's commit point is at least its own (so the next leader starts from the
//!   chosen prefix, and phase 1 collects only the open tail; an asker refused for this
//!   catches up from the voter first).
//!
//! Grants count for half an election timeout from the round's start, so a grant given
//! before a new leader appeared cannot start phase 1 long after it.
//!
//! A pre-vote changes nothing durable at the voter: no promise (a voter that says yes only
//! restarts its own election timer, to give the asker time to finish). So a replica that was
//! cut off, and cannot win, never raises any acceptor's promise, its own included; when
//! the link heals it accepts the leader's next heartbeat instead of refusing it with a
//! Nack that would depose a healthy leader. Pre-vote is about liveness only: safety rests
//! on phase 1 and the leases, as before.

use std::time::Duration;

use crate::message::{Message, PreVote, PreVoteReply};
use crate::ready::Role;
use crate::types::{Ballot, NodeId};

use super::Replica;

/// A pre-vote under way.
#[derive(Debug)]
pub(crate) struct PreVoteRound {
    /// Phase 1 will use a ballot at least this high.
    ballot: Ballot,
    /// Which of our rounds this is ([`Metrics::pre_votes`](crate::Metrics) at its start).
    round: u64,
    /// When it started: grants count for half an election timeout only, so that a grant
    /// given before a new leader appeared cannot start phase 1 long after it.
    started: crate::types::Instant,
    /// Members that said yes, as a bitmask over `members` indexes.
    granted: u64,
}

impl Replica {
    /// Picks a new election deadline, uniformly in
    /// `[election_timeout_min, election_timeout_max)` from now.
    pub(super) fn reset_election_deadline(&mut self) {
        let min = self.cfg.election_timeout_min;
        let spread = self.cfg.election_timeout_max.saturating_sub(min);
        let jitter = self.random_below(u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX));
        self.election_deadline = self.now + min + Duration::from_nanos(jitter);
    }

    /// Heard from the leader of `ballot`: follow it and hold off elections.
    pub(super) fn follow(&mut self, leader: NodeId, ballot: Ballot) {
        if leader == self.cfg.id || self.role != Role::Follower {
            return;
        }
        if self.leader.is_none_or(|(_, b)| ballot >= b) {
            self.leader = Some((leader, ballot));
        }
        self.leader_heard_at = Some(self.now);
        self.pre_vote = None;
        self.reset_election_deadline();
    }

    /// The election timeout fired: ask for a pre-vote (or, alone, campaign at once).
    pub(super) fn start_pre_vote(&mut self) {
        self.reset_election_deadline();
        let Some(ballot) = self.next_ballot() else {
            return;
        };
        // The leader we followed is silent: stop forwarding into the void.
        self.leader = None;
        self.metrics.pre_votes += 1;
        let me = self.member_bit(self.cfg.id);
        let round = self.metrics.pre_votes;
        self.pre_vote = Some(PreVoteRound {
            ballot,
            round,
            started: self.now,
            granted: me,
        });
        if self.quorum <= 1 {
            self.start_candidacy();
            return;
        }
        let ask = PreVote {
            ballot,
            round,
            commit: self.commit,
        };
        self.send_to_peers(&Message::PreVote(ask));
    }

    pub(super) fn handle_pre_vote(&mut self, from: NodeId, m: PreVote) {
        let leased = self
            .granted
            .is_some_and(|(b, until)| self.now < until && b != m.ballot);
        let heard = self
            .leader_heard_at
            .is_some_and(|t| self.now < t + self.cfg.election_timeout_min);
        let granted =
            self.voter && self.role != Role::Leader && !leased && !heard && m.commit >= self.commit;
        if granted {
            // Give the asker the time to finish before campaigning ourselves: otherwise
            // two replicas timing out close together both run phase 1, and duel.
            if self.role == Role::Follower {
                self.reset_election_deadline();
            }
        } else {
            self.metrics.pre_votes_refused += 1;
        }
        let reply = PreVoteReply {
            ballot: m.ballot,
            round: m.round,
            granted,
            promised: self.promised,
            commit: self.commit,
        };
        self.send(from, Message::PreVoteReply(reply));
    }

    pub(super) fn handle_pre_vote_reply(&mut self, from: NodeId, m: PreVoteReply) {
        self.see_round(m.promised);
        self.note_peer_commit(from, m.commit);
        if !m.granted && m.commit > self.commit && self.catch_up_sent.is_none() {
            // Refused for being behind: catch up (from the voter that knows most), and
            // ask again at the next timeout.
            self.request_catch_up();
        }
        let bit = self.member_bit(from);
        let window = self.cfg.election_timeout_min / 2;
        let now = self.now;
        let Some(round) = self.pre_vote.as_mut() else {
            return;
        };
        if now > round.started + window {
            // Too late: the grants may predate a leader that appeared meanwhile. The next
            // timeout asks again.
            return;
        }
        if round.ballot != m.ballot
            || round.round != m.round
            || !m.granted
            || self.role != Role::Follower
        {
            return;
        }
        round.granted |= bit;
        if round.granted.count_ones() as usize >= self.quorum {
            self.start_candidacy();
        }
    }

    /// `id`'s bit in the member bitmasks (0 for a non-member).
    fn member_bit(&self, id: NodeId) -> u64 {
        self.cfg
            .members
            .iter()
            .position(|&m| m == id)
            .map_or(0, |i| 1 << i)
    }
}
