//! Election timers: randomized timeouts drawn from the replica's seeded RNG.

use std::time::Duration;

use crate::ready::Role;
use crate::types::{Ballot, NodeId};

use super::Replica;

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
        self.reset_election_deadline();
    }
}
