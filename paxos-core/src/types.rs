//! The protocol's vocabulary: node ids, ballots, slots, time, commands and values.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one replica in the cluster. Must be unique and stable across restarts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A ballot (the paper's "proposal number"): a round, made unique by the proposer's id.
///
/// Ballots are totally ordered, first by `round`, then by `node`. Two proposers never use
/// the same ballot because each only issues ballots carrying its own id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// Monotonically increasing round number; compared first.
    pub round: u64,
    /// The proposer that owns this ballot; breaks ties between equal rounds.
    pub node: NodeId,
}

impl Ballot {
    /// The smallest ballot. No proposer ever uses it; an acceptor starts promised to it.
    pub const ZERO: Self = Self {
        round: 0,
        node: NodeId(0),
    };

    /// Marks an entry the learner knows to be **chosen** (it learned the value from a peer
    /// with [`CatchUp`](crate::message::CatchUp)) rather than accepted at a real ballot.
    ///
    /// It is above every ballot a proposer can issue, which is exactly what a chosen value
    /// deserves: a Promise that reports it makes the new leader adopt it (every proposer at
    /// a higher ballot must propose the chosen value anyway), and storing it never lowers
    /// the ballot an acceptor held for the slot. Two different values stored at `CHOSEN`
    /// for one slot would be two chosen values: the core asserts that never happens.
    /// No message may carry it as a proposer's ballot; the core drops any that does.
    pub const CHOSEN: Self = Self {
        round: u64::MAX,
        node: NodeId(u64::MAX),
    };

    /// Builds a ballot.
    pub const fn new(round: u64, node: NodeId) -> Self {
        Self { round, node }
    }

    /// True if a proposer can own this ballot: its round is below the reserved
    /// `u64::MAX` of [`Ballot::CHOSEN`]. Messages with any other ballot are malformed.
    pub const fn is_proposer_ballot(self) -> bool {
        self.round < u64::MAX
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

/// A position in the replicated log. Slot 0 is the first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Slot(pub u64);

impl Slot {
    /// The next slot.
    ///
    /// # Panics
    ///
    /// At `u64::MAX`. The core never moves a slot of its own that far (it would take
    /// 2^64 commits); slots from peers go through [`Slot::checked_add`].
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// `self + n`, or `None` on overflow. Used on every slot number a peer supplies, so a
    /// malformed message is dropped instead of wrapping around.
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(s) => Some(Self(s)),
            None => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// A point on one replica's monotonic clock, in nanoseconds since an origin the driver picks
/// (typically when the replica started).
///
/// The core never reads a clock: every input carries `now`. Using a core-owned integer
/// rather than `std::time::Instant` keeps runs and traces byte-identical under simulation.
/// The only rule for callers: `now` must never go backwards for one replica. The core
/// asserts it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Self = Self(0);

    /// Builds an instant from nanoseconds since the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(nanos))
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_sub(nanos))
    }
}

/// Identifies one proposed command: the replica it was first proposed on, and a sequence
/// number that replica assigned. The origin uses it to match applied entries to waiting
/// callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    /// The replica the command was proposed on.
    pub origin: NodeId,
    /// Sequence number assigned by the origin; unique per origin incarnation together with
    /// [`ProposalId::epoch`]. Starts at 0 on every start.
    pub seq: u64,
    /// The origin's incarnation: [`HardState::epoch`](crate::HardState::epoch), raised by
    /// one and persisted on every start before any proposal leaves, so it grows
    /// strictly from one incarnation to the next whatever the RNG seed.
    pub epoch: u64,
}

/// One client command, opaque to the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// Who proposed it.
    pub id: ProposalId,
    /// The state machine's encoding of the command.
    pub payload: Bytes,
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A no-op, used by a new leader to fill gaps in the log.
    Noop,
    /// A batch of commands, applied in order.
    ///
    /// Shared (`Arc`), so the copies a replica keeps (its log, the persist batch, the
    /// Accept sent to each peer, the committed output) cost a reference count, not a deep
    /// copy of every command. Build one with `vec.into()` or `iter.collect()`. The wire and
    /// storage encoding is the same as a `Vec`'s: a length, then the commands.
    Batch(Arc<[Command]>),
}

impl Value {
    /// The commands in this value (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Self::Noop => &[],
            Self::Batch(cmds) => cmds,
        }
    }

    /// Payload bytes carried, used for batching bounds.
    pub fn payload_bytes(&self) -> usize {
        self.commands().iter().map(|c| c.payload.len()).sum()
    }
}

/// A value an acceptor accepted for a slot, at a ballot. This is what storage keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The slot.
    pub slot: Slot,
    /// The ballot under which the value was accepted.
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}
