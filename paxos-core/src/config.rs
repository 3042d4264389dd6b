//! Replica configuration and its validation.

use std::time::Duration;

use crate::types::{Ballot, NodeId};
use crate::wire;

/// Settings for one replica. Build with [`Config::new`], adjust fields, then
/// [`Replica::new`](crate::Replica::new) validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// This replica's id; must be in `members`.
    pub id: NodeId,
    /// Every voting replica, including this one. 1 to 64 members.
    pub members: Vec<NodeId>,
    /// How often a leader sends a heartbeat (an empty Accept) to each follower.
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing from a leader for a random time in
    /// `[election_timeout_min, election_timeout_max)` starts phase 1.
    pub election_timeout_min: Duration,
    /// Upper end of the election timeout range (exclusive).
    pub election_timeout_max: Duration,
    /// How long a leader or candidate waits before resending an unanswered Accept or
    /// Prepare.
    pub resend_interval: Duration,
    /// Pipelining bound: slots the leader may have proposed but not yet seen chosen.
    pub max_inflight_slots: u64,
    /// Readys [`poll_ready`](crate::Replica::poll_ready) hands out before the oldest is
    /// advanced: 1 (the default) is one at a time. A driver whose store pipelines
    /// persists may take more, so that the next persist is queued while one is being
    /// synced; it must still persist them in order (a later one is never durable before
    /// an earlier one), send each one's messages only after its own persist and every
    /// earlier one's, and advance them in order. See the [`Ready`](crate::Ready) ordering
    /// rule. 1 to 64.
    pub max_outstanding_readys: usize,
    /// Batching bound: commands in one slot.
    pub max_batch_commands: usize,
    /// Batching bound: payload bytes in one slot (a single larger command is refused).
    pub max_batch_bytes: usize,
    /// Pipelining bound in bytes: payload of the slots the leader proposed and has not yet
    /// seen chosen. A new slot opens only while the open ones hold less than this (one
    /// always may), so a window of large values cannot hold gigabytes.
    pub max_inflight_bytes: usize,
    /// Proposals queued on this replica, waiting for a slot or to be forwarded.
    pub max_pending_proposals: usize,
    /// Payload bytes queued on this replica, waiting for a slot or to be forwarded. A
    /// proposal that would cross it is refused with `Overloaded` (one is always queued
    /// when the queue is empty).
    pub max_pending_bytes: usize,
    /// Slots carried by one Promise, Accept or CatchUpReply message.
    pub max_slots_per_message: usize,
    /// Bytes of one message's encoding (the postcard body, before framing). Accept,
    /// Promise pages, CatchUpReply and Forward carry values until the next one would cross
    /// it, and always at least one, so progress is always possible. It must leave room for
    /// one full batch ([`Config::min_message_bytes`]); the node checks it against the
    /// transport's frame limit when it is built.
    pub max_message_bytes: usize,
    /// Leader leases: how long an acceptor that accepted a leader's Accept refuses to
    /// promise any other ballot, on its own clock from the Accept's arrival. `None`
    /// disables leases: every read then takes a read-index round. See the [lease
    /// rules](crate::lease_docs).
    pub lease_duration: Option<Duration>,
    /// Bound on clock rate error, in parts per million: every replica's monotonic clock
    /// runs at a rate within `1 ± max_clock_drift_ppm / 10^6` of real time. The leader
    /// shortens its lease by this bound. At most 100,000 (10%).
    pub max_clock_drift_ppm: u32,
    /// What a replica whose store is empty does. `true` (the default): it is a member of
    /// a new cluster, and votes from the start. `false`: it is coming back under its old id
    /// after losing its disk, so it must not vote: the promises and acceptances it made
    /// before are gone, and voting now could break them. It then serves as a learner (it
    /// follows the leader, catches up, forwards proposals, answers reads through the log;
    /// it refuses proposals with `NoLeader` until it has caught up, because only the
    /// chosen log tells which proposal epochs its lost incarnations used) and **never votes
    /// again**; the decision is written to its store, so later restarts
    /// keep it. Why that is safe: an acceptor that never answers again is an acceptor that
    /// crashed for good, which Paxos tolerates, and its old promises stay as they were.
    /// Putting it back to work is membership change's job (not built yet). The cluster
    /// runs on the remaining voters meanwhile. Ignored when the store is not empty.
    pub bootstrap: bool,
    /// Seed for election jitter. `None` seeds from the operating system; simulations pass
    /// one so that runs replay exactly.
    pub rng_seed: Option<[u8; 32]>,
}

/// Why a [`Config`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is outside its valid range, or two fields contradict each other.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// A config with defaults suited to a LAN cluster (heartbeat 50 ms, election timeout
    /// 300-600 ms, lease 150 ms, clock drift bound 1%; batches of up to 512 commands and
    /// 1 MiB, messages of up to 4 MiB, 64 MiB in flight and 64 MiB queued).
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Self {
            id,
            members,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            resend_interval: Duration::from_millis(100),
            max_inflight_slots: 256,
            max_outstanding_readys: 1,
            max_batch_commands: 512,
            max_batch_bytes: 1 << 20,
            max_inflight_bytes: 64 << 20,
            max_pending_proposals: 8192,
            max_pending_bytes: 64 << 20,
            max_slots_per_message: 64,
            max_message_bytes: 4 << 20,
            lease_duration: Some(Duration::from_millis(150)),
            max_clock_drift_ppm: 10_000,
            bootstrap: true,
            rng_seed: None,
        }
    }

    /// Checks every bound and timing relation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.members.is_empty() || self.members.len() > 64 {
            return bad(format!(
                "members must number 1 to 64, got {}",
                self.members.len()
            ));
        }
        let mut sorted = self.members.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.members.len() {
            return bad("members contains duplicates".into());
        }
        if !self.members.contains(&self.id) {
            return bad(format!("id {} is not in members", self.id));
        }
        if self.members.contains(&Ballot::CHOSEN.node) {
            return bad(format!("node id {} is reserved", Ballot::CHOSEN.node));
        }
        if self.heartbeat_interval.is_zero() || self.resend_interval.is_zero() {
            return bad("heartbeat_interval and resend_interval must be non-zero".into());
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return bad("election_timeout_min must be below election_timeout_max".into());
        }
        if self.election_timeout_min < self.heartbeat_interval * 3 {
            return bad(format!(
                "election_timeout_min ({:?}) must be at least 3 heartbeat intervals ({:?})",
                self.election_timeout_min, self.heartbeat_interval
            ));
        }
        if self.max_clock_drift_ppm > 100_000 {
            return bad(format!(
                "max_clock_drift_ppm must be at most 100000 (10%), got {}",
                self.max_clock_drift_ppm
            ));
        }
        if let Some(lease) = self.lease_duration {
            if lease < self.heartbeat_interval * 2 {
                return bad(format!(
                    "lease_duration ({lease:?}) must be at least 2 heartbeat intervals ({:?}), or the lease \
                     lapses between renewals",
                    self.heartbeat_interval
                ));
            }
            if lease * 2 > self.election_timeout_min {
                return bad(format!(
                    "lease_duration ({lease:?}) must be at most half of election_timeout_min ({:?}): \
                     followers would time out while the lease still blocks a new leader",
                    self.election_timeout_min
                ));
            }
        }
        if self.max_inflight_slots == 0
            || self.max_batch_commands == 0
            || self.max_batch_bytes == 0
            || self.max_pending_proposals == 0
            || self.max_slots_per_message == 0
            || self.max_inflight_bytes == 0
            || self.max_pending_bytes == 0
        {
            return bad("every max_* bound must be at least 1".into());
        }
        if self.max_outstanding_readys == 0 || self.max_outstanding_readys > 64 {
            return bad(format!(
                "max_outstanding_readys must be 1 to 64, got {}",
                self.max_outstanding_readys
            ));
        }
        let min = self.min_message_bytes();
        if self.max_message_bytes < min {
            return bad(format!(
                "max_message_bytes ({}) must hold one full batch of max_batch_commands ({}) and \
                 max_batch_bytes ({}): at least {min}",
                self.max_message_bytes, self.max_batch_commands, self.max_batch_bytes
            ));
        }
        Ok(())
    }

    /// The smallest [`max_message_bytes`](Self::max_message_bytes) these batch bounds
    /// allow: the encoding of one message carrying a single full batch
    /// (`max_batch_commands` commands, `max_batch_bytes` of payload), with every varint at
    /// its widest.
    pub fn min_message_bytes(&self) -> usize {
        wire::MESSAGE_OVERHEAD_BYTES
            + wire::ENTRY_OVERHEAD_BYTES
            + wire::VALUE_OVERHEAD_BYTES
            + self
                .max_batch_commands
                .saturating_mul(wire::COMMAND_OVERHEAD_BYTES)
                .saturating_add(self.max_batch_bytes)
    }

    /// Votes needed for a quorum: a strict majority of members.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Config {
        Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)])
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(three().validate(), Ok(()));
        let mut no_lease = three();
        no_lease.lease_duration = None;
        assert_eq!(no_lease.validate(), Ok(()));
    }

    #[test]
    fn quorum_table() {
        for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            let members: Vec<_> = (1..=n).map(NodeId).collect();
            assert_eq!(Config::new(NodeId(1), members).quorum(), q, "n={n}");
        }
    }

    /// Each bad config with the exact error it must get, so that every case is refused
    /// by the rule its name says (not by some other rule that happens to run first), and
    /// deleting or reordering a check fails a case. Each case breaks one rule only, where
    /// it can: "heartbeat too slow" turns leases off, or the lease rule (2 heartbeats)
    /// would refuse it too and deleting the heartbeat rule would go unnoticed. Boundary
    /// cases sit one step past the value [`accepts_exact_boundaries`] accepts.
    #[test]
    fn refuses_bad_configs_with_the_rule_they_break() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let ns = Duration::from_nanos(1);
        let zero_bound = "every max_* bound must be at least 1".to_string();
        let zero_interval = "heartbeat_interval and resend_interval must be non-zero".to_string();
        let inverted = "election_timeout_min must be below election_timeout_max".to_string();
        let min_message = three().min_message_bytes();
        let cases: Vec<(&str, Mutation, String)> = vec![
            (
                "not a member",
                Box::new(|c| c.id = NodeId(9)),
                "id n9 is not in members".into(),
            ),
            (
                "duplicates",
                Box::new(|c| c.members.push(NodeId(2))),
                "members contains duplicates".into(),
            ),
            (
                "empty",
                Box::new(|c| c.members.clear()),
                "members must number 1 to 64, got 0".into(),
            ),
            (
                "65 members (phase 1 counts votes in a u64 bitmask)",
                Box::new(|c| c.members = (1..=65).map(NodeId).collect()),
                "members must number 1 to 64, got 65".into(),
            ),
            (
                "reserved id",
                Box::new(|c| c.members.push(NodeId(u64::MAX))),
                format!("node id {} is reserved", NodeId(u64::MAX)),
            ),
            (
                "zero heartbeat",
                Box::new(|c| c.heartbeat_interval = Duration::ZERO),
                zero_interval.clone(),
            ),
            (
                "zero resend",
                Box::new(|c| c.resend_interval = Duration::ZERO),
                zero_interval,
            ),
            (
                "inverted election range",
                Box::new(|c| c.election_timeout_max = c.election_timeout_min),
                inverted.clone(),
            ),
            (
                "zero election_timeout_max",
                Box::new(|c| c.election_timeout_max = Duration::ZERO),
                inverted,
            ),
            (
                "zero election_timeout_min (below 3 heartbeats)",
                Box::new(|c| {
                    c.lease_duration = None;
                    c.election_timeout_min = Duration::ZERO;
                }),
                "election_timeout_min (0ns) must be at least 3 heartbeat intervals (50ms)".into(),
            ),
            (
                "heartbeat too slow: election_timeout_min one past 3 heartbeats",
                Box::new(move |c| {
                    c.lease_duration = None;
                    c.heartbeat_interval = Duration::from_millis(100) + ns;
                }),
                "election_timeout_min (300ms) must be at least 3 heartbeat intervals \
                 (100.000001ms)"
                    .into(),
            ),
            (
                "drift one past 10%",
                Box::new(|c| c.max_clock_drift_ppm = 100_001),
                "max_clock_drift_ppm must be at most 100000 (10%), got 100001".into(),
            ),
            (
                "lease too long: one past half of election_timeout_min",
                Box::new(move |c| c.lease_duration = Some(Duration::from_millis(150) + ns)),
                "lease_duration (150.000001ms) must be at most half of election_timeout_min \
                 (300ms): followers would time out while the lease still blocks a new leader"
                    .into(),
            ),
            (
                "lease shorter than renewals: one below 2 heartbeats",
                Box::new(move |c| c.lease_duration = Some(Duration::from_millis(100) - ns)),
                "lease_duration (99.999999ms) must be at least 2 heartbeat intervals (50ms), or \
                 the lease lapses between renewals"
                    .into(),
            ),
            (
                "zero lease",
                Box::new(|c| c.lease_duration = Some(Duration::ZERO)),
                "lease_duration (0ns) must be at least 2 heartbeat intervals (50ms), or the \
                 lease lapses between renewals"
                    .into(),
            ),
            (
                "zero window",
                Box::new(|c| c.max_inflight_slots = 0),
                zero_bound.clone(),
            ),
            (
                "zero batch",
                Box::new(|c| c.max_batch_commands = 0),
                zero_bound.clone(),
            ),
            (
                "zero bytes",
                Box::new(|c| c.max_batch_bytes = 0),
                zero_bound.clone(),
            ),
            (
                "zero queue",
                Box::new(|c| c.max_pending_proposals = 0),
                zero_bound.clone(),
            ),
            (
                "zero page",
                Box::new(|c| c.max_slots_per_message = 0),
                zero_bound.clone(),
            ),
            (
                "zero inflight bytes",
                Box::new(|c| c.max_inflight_bytes = 0),
                zero_bound.clone(),
            ),
            (
                "zero pending bytes",
                Box::new(|c| c.max_pending_bytes = 0),
                zero_bound,
            ),
            (
                "message one byte short of a full batch",
                Box::new(move |c| c.max_message_bytes = min_message - 1),
                format!(
                    "max_message_bytes ({}) must hold one full batch of max_batch_commands (512) \
                     and max_batch_bytes (1048576): at least {min_message}",
                    min_message - 1
                ),
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut c = three();
            mutate(&mut c);
            assert_eq!(
                c.validate(),
                Err(ConfigError::Invalid(expected)),
                "{name}: refused by the wrong rule, or not at all"
            );
        }
    }

    /// Every bound at its exact limit is accepted; the refused table holds the value one
    /// step past each.
    #[test]
    fn accepts_exact_boundaries() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("one member", Box::new(|c| c.members = vec![c.id])),
            (
                "64 members, this one the last (bit 63 of the vote masks)",
                Box::new(|c| {
                    c.members = (1..=64).map(NodeId).collect();
                    c.id = NodeId(64);
                }),
            ),
            (
                "election_timeout_min == 3 heartbeats",
                Box::new(|c| {
                    c.lease_duration = None;
                    c.heartbeat_interval = Duration::from_millis(100);
                }),
            ),
            (
                "lease == 2 heartbeats",
                Box::new(|c| c.lease_duration = Some(c.heartbeat_interval * 2)),
            ),
            (
                "lease == election_timeout_min / 2",
                Box::new(|c| c.lease_duration = Some(c.election_timeout_min / 2)),
            ),
            (
                "lease == 2 heartbeats == election_timeout_min / 2",
                Box::new(|c| {
                    c.heartbeat_interval = Duration::from_millis(75);
                    c.lease_duration = Some(Duration::from_millis(150));
                }),
            ),
            (
                "election range one nanosecond wide",
                Box::new(|c| {
                    c.election_timeout_max = c.election_timeout_min + Duration::from_nanos(1);
                }),
            ),
            (
                "drift == 10%",
                Box::new(|c| c.max_clock_drift_ppm = 100_000),
            ),
            ("no drift", Box::new(|c| c.max_clock_drift_ppm = 0)),
            (
                "max_message_bytes == min_message_bytes",
                Box::new(|c| c.max_message_bytes = c.min_message_bytes()),
            ),
            (
                "every max_* bound at 1",
                Box::new(|c| {
                    c.max_inflight_slots = 1;
                    c.max_batch_commands = 1;
                    c.max_batch_bytes = 1;
                    c.max_inflight_bytes = 1;
                    c.max_pending_proposals = 1;
                    c.max_pending_bytes = 1;
                    c.max_slots_per_message = 1;
                    c.max_message_bytes = c.min_message_bytes();
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut c = three();
            mutate(&mut c);
            assert_eq!(c.validate(), Ok(()), "{name} should be accepted");
        }
    }

    #[test]
    fn a_replica_is_not_built_from_an_invalid_config() {
        let mut c = three();
        c.members = (1..=65).map(NodeId).collect();
        let built = crate::Replica::new(c, crate::RecoveredState::default(), crate::Instant::ZERO);
        assert_eq!(
            built.err(),
            Some(ConfigError::Invalid(
                "members must number 1 to 64, got 65".into()
            ))
        );
    }
}
