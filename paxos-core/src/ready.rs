//! The output of the core: one [`Ready`] batch at a time, with its ordering rule.

use crate::compaction::CoreSnapshot;
use crate::message::Envelope;
use crate::types::{Ballot, Entry, NodeId, Slot, Value};

/// Durable state that is not per-slot: what the acceptor promised and how far the log is
/// known to be chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HardState {
    /// The highest ballot this acceptor promised. Must never move backwards on disk.
    pub promised: Ballot,
    /// Every slot below `commit` is chosen, and the stored entry for it holds the chosen
    /// value. A lower bound: losing progress here is safe, it is relearned.
    pub commit: Slot,
    /// The replica's incarnation, raised by one at every start and written with the first
    /// [`Ready`]. Proposal ids carry it ([`ProposalId::epoch`](crate::ProposalId::epoch)),
    /// so ids of one incarnation never repeat those of an earlier one: a store must never
    /// hand back an older value than it made durable. 0 on a replica back with an empty
    /// disk that has not caught up yet: it proposes nothing until it can choose an epoch
    /// above every one its lost incarnations used (they are in the chosen log).
    pub epoch: u64,
    /// This replica lost its disk and came back without a vote (see
    /// [`Config::bootstrap`](crate::Config::bootstrap)): it never promises or accepts.
    pub non_voting: bool,
}

/// State to make durable before anything else in a [`Ready`] happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistBatch {
    /// New hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Accepted entries to write. An entry replaces any stored entry for the same slot.
    pub entries: Vec<Entry>,
}

impl PersistBatch {
    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.entries.is_empty()
    }
}

/// What storage hands back on recovery: everything made durable by earlier
/// [`Storage::persist`](crate::Storage::persist) calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredState {
    /// The last hard state written, or the default for a fresh store.
    pub hard_state: HardState,
    /// Every stored entry, in slot order, at most one per slot (the last written).
    /// Entries below the snapshot's `upto`, if any are left, are ignored.
    pub entries: Vec<Entry>,
    /// The core's part of the latest durable snapshot ([`CoreSnapshot`]), if the log was
    /// compacted: the state machine has been restored from that snapshot, and the
    /// replica resumes after it (see [`compaction`](crate::compaction)).
    pub snapshot: Option<CoreSnapshot>,
}

/// A value chosen for a slot, ready to apply.
///
/// # At most once
///
/// The network may duplicate a Forward, so one proposal can reach the log twice. Commands
/// are filtered as they are handed out, identically on every replica (the filter is a
/// function of the chosen log alone), so each [`ProposalId`](crate::ProposalId) is
/// applied at most once. The filter's memory is bounded, and what it forgets it treats as
/// applied: a command is applied the first time it appears in the chosen log **unless**
///
/// * its sequence number is more than 65,536 below the highest applied for its origin
///   incarnation, or
/// * its incarnation ([`ProposalId::epoch`](crate::ProposalId::epoch)) is older than the
///   8 newest seen for its origin, or older than one already forgotten (epochs grow with
///   every start of a replica, see [`HardState::epoch`]).
///
/// Such a command is dropped, never applied twice. It is the late echo of a command
/// whose caller has long given up: its origin has since had 65,536 newer commands
/// applied, or restarted eight times (and a restart fails every waiting caller). Drops
/// are counted in [`Metrics::duplicates_dropped`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The slot.
    pub slot: Slot,
    /// The chosen value.
    pub value: Value,
}

/// Identifies a read handed to [`Replica::read`](crate::Replica::read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// Declares [`Metrics`]: one line per counter, its doc comment and its name. The sum and
/// the name/help/value listing follow from the list, so a new counter is one line here (and
/// exporters, which loop over [`Metrics::fields`], need no line at all).
macro_rules! metrics {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// Counters, for metrics and for tests that prove what did (not) happen.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Metrics {
            $($(#[doc = $doc])+ pub $name: u64,)+
        }

        impl Metrics {
            /// Every counter as `(name, help, value)`, in declaration order, for exporters.
            /// The name is the field's; the help is its doc comment, on one line.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((
                    stringify!($name),
                    concat!($($doc),+).trim_ascii_start(),
                    self.$name,
                )),+]
            }
        }

        impl std::ops::Add for Metrics {
            type Output = Self;
            /// Counter by counter, for totals over replicas.
            fn add(self, other: Self) -> Self {
                Self { $($name: self.$name + other.$name),+ }
            }
        }
    };
}

metrics! {
    /// Prepare messages sent to peers.
    prepares_sent,
    /// Pre-votes this replica asked for (each election timeout that fired).
    pre_votes,
    /// Pre-votes this replica refused (it heard from a leader, held a lease for another,
    /// or knew more of the chosen log than the asker).
    pre_votes_refused,
    /// Times this replica started phase 1 (after a won pre-vote).
    elections_started,
    /// Times this replica completed phase 1 and became leader.
    elections_won,
    /// Reads answered under the leader lease, with no message sent.
    lease_reads,
    /// Reads that needed a read-index round (a heartbeat round confirming leadership).
    read_index_reads,
    /// Heartbeat rounds sent on behalf of reads: the only messages reads ever cost.
    read_rounds,
    /// Prepares this acceptor refused because it had granted a lease to another leader.
    lease_refusals,
    /// Commands not applied because their id was applied before (a duplicated Forward),
    /// or is too old to tell (see the at-most-once rule on [`Committed`]).
    duplicates_dropped,
}

/// The role a replica plays right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Accepts values and learns decisions from a leader.
    Follower,
    /// Running phase 1 to become leader.
    Candidate,
    /// Completed phase 1 for its ballot; runs phase 2 only.
    Leader,
}

/// One batch of work for the driver.
///
/// # Ordering rule: persist, then send, then advance; apply any time before advancing
///
/// 1. Write [`Ready::persist`] with **one** [`Storage::persist`](crate::Storage::persist)
///    call, and wait until it is durable (fsynced).
/// 2. Only then send [`Ready::messages`]. They include Promise and Accepted messages that
///    report the state in `persist`; sending one before that state is durable lets a crash
///    break the promise it made, which can let two values be chosen for one slot.
///
///    The exception: the first [`Ready::early_messages`] of them report nothing of
///    `persist` and **may** be sent before it, as soon as the Ready is polled (the leader's
///    `Accept`s: its followers then write while it writes, instead of after). A driver
///    that sends every message after the persist is also correct, only slower.
/// 3. Apply [`Ready::committed`] to the state machine, in order, then answer
///    [`Ready::reads`]. This **may** run while the persist of step 1 is under way, and
///    its results may be handed to clients at once: every value in `committed` is chosen,
///    and the core counts an acceptance only once it is durable (its own through a
///    loopback `Accepted` delivered by `advance`, after the persist), so a chosen value is
///    on a majority's disks whatever becomes of this replica's persist. A driver that
///    applies after the persist is also correct, only slower.
/// 4. Call [`Replica::advance`](crate::Replica::advance) with [`Ready::id`], once the
///    persist is durable and `committed` applied.
///
/// By default the core hands out one `Ready` at a time:
/// [`Replica::poll_ready`](crate::Replica::poll_ready) returns `None` until the previous
/// one is advanced. With [`Config::max_outstanding_readys`](crate::Config::max_outstanding_readys)
/// above 1 it hands out several; then step 1 of a later Ready may start before an earlier
/// one's ends, but they must become durable in order, step 2 of each waits for its own
/// persist and every earlier one's, step 3 follows the order they were polled in, and step
/// 4 advances them in order. If persisting fails, the driver must stop the replica (never
/// retry and go on): the state it reported may be half written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a Ready must be persisted, sent, applied and advanced"]
pub struct Ready {
    /// Identifies this batch for [`Replica::advance`](crate::Replica::advance).
    pub id: u64,
    /// What to make durable first.
    pub persist: PersistBatch,
    /// What to send once `persist` is durable; the first
    /// [`early_messages`](Self::early_messages) of them may go before.
    pub messages: Vec<Envelope>,
    /// How many of `messages`, from the first, may be sent before `persist` is durable
    /// (see the ordering rule): the leader's `Accept`s and `Decide`s, which report no
    /// state of this replica. 0 when every message must wait.
    pub early_messages: usize,
    /// Chosen values to apply, in slot order, contiguous with what was handed out before
    /// (the previous Ready's, or a [`Chosen`] taken since).
    pub committed: Vec<Committed>,
    /// Reads that may now be answered from the state machine, **after** applying
    /// `committed`: the answer then reflects every write that completed before the read
    /// began.
    pub reads: Vec<ReadId>,
    /// Reads that can no longer be answered here because leadership changed: fail them
    /// with a "leadership changed" error (no state was read, nothing was changed).
    pub aborted_reads: Vec<ReadId>,
    /// Slots this replica needs were compacted away at a peer: fetch that peer's
    /// snapshot, then [`install_snapshot`](crate::Replica::install_snapshot) it. Repeated
    /// while the replica stays behind (about every `resend_interval`); a driver already
    /// fetching one that covers `upto` ignores the repeats. Independent of the ordering
    /// rule: nothing else in the Ready waits for it.
    pub fetch_snapshot: Option<SnapshotFetch>,
}

/// Chosen values, and the reads they let be answered, taken between two [`Ready`]s with
/// [`Replica::poll_chosen`](crate::Replica::poll_chosen).
///
/// Handle it as step 3 of the [`Ready`] ordering rule: apply `committed` in order, then
/// answer `reads`. Its slots follow those of whatever was handed out before it (a
/// `Ready`'s or an earlier `Chosen`'s), so a driver applies everything it takes in the
/// order it took it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "chosen values must be applied, and the reads answered"]
pub struct Chosen {
    /// Chosen values to apply, in slot order.
    pub committed: Vec<Committed>,
    /// Reads that may be answered once `committed` is applied (see [`Ready::reads`]).
    pub reads: Vec<ReadId>,
}

/// A request to fetch a snapshot: see [`Ready::fetch_snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotFetch {
    /// The peer that offered it.
    pub from: NodeId,
    /// Its snapshot covers at least every slot below this one.
    pub upto: Slot,
}

impl Ready {
    /// True if the batch holds no work at all.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.aborted_reads.is_empty()
            && self.fetch_snapshot.is_none()
    }
}

/// A snapshot of a replica's view, for status pages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This replica.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Highest ballot promised.
    pub promised: Ballot,
    /// The leader this replica believes in, if any.
    pub leader: Option<NodeId>,
    /// Every slot below this is chosen and known here.
    pub commit: Slot,
    /// Every slot below this has been handed out for applying.
    pub applied: Slot,
    /// The compaction point: every slot below it was dropped from the log, and is in a
    /// snapshot (0 until the first compaction or installed snapshot).
    pub log_start: Slot,
    /// Until when (on this replica's clock) it holds the leader lease, if it does.
    pub lease_until: Option<crate::types::Instant>,
    /// It votes (promises and accepts). False for a replica that came back with an empty
    /// disk (see [`Config::bootstrap`](crate::Config::bootstrap)).
    pub voter: bool,
}
