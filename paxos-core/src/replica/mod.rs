//! The replica: one type that plays proposer, acceptor and learner.
//!
//! The role-specific handlers live in sibling files: [`acceptor`](self) (phase 1b/2b),
//! `proposer` (phase 1a/2a, batching, pipelining), `learner` (commit, catch-up, apply) and
//! `election` (timers and randomized timeouts).

mod acceptor;
mod compaction;
mod dedup;
mod election;
mod learner;
mod proposer;
mod reads;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::compaction::CoreSnapshot;
use crate::config::{Config, ConfigError};
use crate::error::ProposeRefused;
use crate::lease;
use crate::message::{Envelope, Forward, Message};
use crate::ready::{
    Chosen, Committed, HardState, Metrics, PersistBatch, ReadId, Ready, RecoveredState, Role,
    Status,
};
use crate::types::{Ballot, Command, Entry, Instant, NodeId, ProposalId, Slot, Value};
use crate::wire;

use self::proposer::{Candidacy, Leadership};

pub(crate) use self::dedup::Dedup;

/// Committed values handed out per [`Ready`], to bound its size.
const MAX_COMMITTED_PER_READY: usize = 1024;

/// One Multi-Paxos replica as a pure state machine: proposer, acceptor and learner in one.
///
/// `Replica` performs no I/O and never reads a clock. The driver feeds it inputs, and
/// collects its outputs as [`Ready`] batches.
///
/// # Driver contract
///
/// * **Inputs** (`handle_*`, [`propose`](Self::propose)): call them as events arrive, each
///   with `now`, the replica's monotonic time. `now` must never go backwards; the replica
///   asserts this, because lease and timeout arithmetic depend on it.
/// * **Outputs**: after a burst of inputs, call [`poll_ready`](Self::poll_ready) and handle
///   the [`Ready`] by its ordering rule (persist, send, apply), then
///   [`advance`](Self::advance) it. Feeding many inputs before polling is what batches them
///   into one persist.
/// * **Timers**: [`poll_timeout`](Self::poll_timeout) says when to call
///   [`handle_timeout`](Self::handle_timeout) next. Poll it again after every input and
///   every `advance`, since inputs move deadlines.
/// * **Errors**: if persisting a `Ready` fails, drop the replica; restart from storage.
///   Calling `advance` with an id other than the oldest outstanding Ready's panics: that
///   is a driver bug, and continuing could send a promise that was never persisted.
/// * **Pipelining**: with [`Config::max_outstanding_readys`] above 1, `poll_ready` hands
///   out that many Readys before the oldest is advanced. Persist them in order, send each
///   one's messages only once it and every earlier one is durable, and advance them in
///   order.
#[derive(Debug)]
pub struct Replica {
    pub(crate) cfg: Config,
    quorum: usize,
    rng: ChaCha8Rng,
    now: Instant,
    /// This incarnation: the recovered [`HardState::epoch`] plus one, persisted with the
    /// first Ready. Distinguishes this incarnation's proposal ids from earlier ones.
    epoch: u64,
    /// A replica back with an empty disk does not know the epochs its earlier
    /// incarnations used: it proposes nothing until it has caught up, then takes an epoch
    /// above every one of its own in the chosen log (see `settle_epoch`).
    epoch_unknown: bool,
    /// `epoch` is durable: a Ready that wrote it was advanced. Until then no message may
    /// leave before its Ready's persist (see [`Ready::early_messages`]).
    epoch_durable: bool,
    next_seq: u64,

    // Acceptor state (durable).
    /// False for a replica that came back with an empty disk: it never votes.
    voter: bool,
    promised: Ballot,
    /// Accepted values from `log_start` on (a slot may be missing: never accepted here).
    log: BTreeMap<Slot, Accepted>,
    /// The compaction point: every slot below it is chosen, applied, and in a durable
    /// snapshot, and gone from `log`. At most `applied`.
    log_start: Slot,
    /// The snapshot fetch to ask the driver for in the next Ready.
    fetch_snapshot: Option<crate::ready::SnapshotFetch>,
    /// The lease this acceptor granted: the ballot, and until when (our clock).
    granted: Option<(Ballot, Instant)>,

    // Learner state.
    /// Every slot below `commit` is chosen, and `log` holds its chosen value.
    commit: Slot,
    /// Every slot below `applied` has been handed out in a `Ready`.
    applied: Slot,
    /// Highest commit point any peer told us of.
    commit_hint: Slot,
    /// The CatchUp in flight: when, and to whom.
    catch_up_sent: Option<(Instant, NodeId)>,
    /// The peer to ask for missing chosen values.
    catch_up_from: Option<NodeId>,

    // Election and roles.
    role: Role,
    /// The leader we follow and its ballot, once it sent Accept or Decide.
    leader: Option<(NodeId, Ballot)>,
    /// When we last heard from the leader we follow: pre-votes are refused for an
    /// election timeout after it.
    leader_heard_at: Option<Instant>,
    election_deadline: Instant,
    /// The pre-vote under way, if any (before phase 1; see `election.rs`).
    pre_vote: Option<election::PreVoteRound>,
    /// Highest round seen anywhere, so the next ballot beats it.
    max_round_seen: u64,
    candidacy: Option<Candidacy>,
    leadership: Option<Leadership>,

    // Proposals waiting for a slot (leader, candidate) or to be forwarded (follower).
    pending: VecDeque<Command>,
    /// Payload bytes in `pending`, bounded by `max_pending_bytes`.
    pending_bytes: usize,

    /// Filters duplicate proposals out of what is applied.
    dedup: Dedup,
    /// Reads waiting to be answered (leader only).
    reads: VecDeque<reads::PendingRead>,
    next_read_id: u64,
    metrics: Metrics,

    // Output under construction, and the outstanding Readys (oldest first).
    out: Outbox,
    outstanding: VecDeque<Outstanding>,
    next_ready_id: u64,
}

/// An accepted value in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) ballot: Ballot,
    pub(crate) value: Value,
}

/// Output accumulated between two `poll_ready` calls.
#[derive(Debug, Default)]
struct Outbox {
    reads: Vec<ReadId>,
    aborted_reads: Vec<ReadId>,
    /// The promised ballot moved: the hard state must be written.
    hard_state_dirty: bool,
    entries: BTreeMap<Slot, Entry>,
    messages: Vec<Envelope>,
    /// Messages to ourselves: delivered after the Ready's persist, like any send.
    loopback: Vec<Message>,
}

/// The Ready handed out and not yet advanced.
#[derive(Debug)]
struct Outstanding {
    id: u64,
    loopback: Vec<Message>,
    /// The epoch its persist writes, if it writes the hard state.
    writes_epoch: Option<u64>,
}

impl Replica {
    /// Builds a replica from its config and the state recovered from storage.
    ///
    /// `now` is the replica's clock at start. A fresh store gives
    /// `RecoveredState::default()`.
    pub fn new(cfg: Config, recovered: RecoveredState, now: Instant) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let rng = match cfg.rng_seed {
            Some(seed) => ChaCha8Rng::from_seed(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        let fresh = recovered == RecoveredState::default();
        let voter = if fresh {
            cfg.bootstrap
        } else {
            !recovered.hard_state.non_voting
        };
        let RecoveredState {
            hard_state,
            entries,
            snapshot,
        } = recovered;
        let log_start = snapshot.as_ref().map_or(Slot(0), |s| s.upto());
        // A fresh incarnation whatever the seed: written with the first Ready, before any
        // proposal of this incarnation can leave. A replica back with an empty disk writes
        // epoch 0 ("unknown") until it has caught up and can choose one (`settle_epoch`),
        // so a restart before then still knows it must not propose.
        let epoch_unknown = !voter && hard_state.epoch == 0;
        let epoch = if epoch_unknown {
            0
        } else {
            hard_state.epoch.saturating_add(1)
        };
        let mut log = BTreeMap::new();
        let mut max_round_seen = hard_state.promised.round;
        for e in entries.into_iter().filter(|e| e.slot >= log_start) {
            if e.ballot.is_proposer_ballot() {
                max_round_seen = max_round_seen.max(e.ballot.round);
            }
            log.insert(
                e.slot,
                Accepted {
                    ballot: e.ballot,
                    value: e.value,
                },
            );
        }
        // Paired with the check before persisting: the chosen prefix must be complete.
        // Entries stored at `Ballot::CHOSEN` are chosen too, whatever the commit point
        // written last said.
        let mut commit = log_start;
        while log
            .get(&commit)
            .is_some_and(|a: &Accepted| commit < hard_state.commit || a.ballot == Ballot::CHOSEN)
        {
            commit = commit.next();
        }
        let mut replica = Self {
            quorum: cfg.quorum(),
            cfg,
            rng,
            now,
            epoch,
            next_seq: 0,
            epoch_unknown,
            epoch_durable: false,
            voter,
            promised: hard_state.promised,
            log,
            log_start,
            fetch_snapshot: None,
            granted: None,
            commit,
            applied: log_start,
            commit_hint: commit,
            catch_up_sent: None,
            catch_up_from: None,
            role: Role::Follower,
            leader: None,
            leader_heard_at: None,
            election_deadline: now,
            pre_vote: None,
            max_round_seen,
            candidacy: None,
            leadership: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            dedup: snapshot.map(CoreSnapshot::into_dedup).unwrap_or_default(),
            reads: VecDeque::new(),
            next_read_id: 0,
            metrics: Metrics::default(),
            out: Outbox::default(),
            outstanding: VecDeque::new(),
            next_ready_id: 1,
        };
        replica.out.hard_state_dirty = true;
        replica.reset_election_deadline();
        let granted_nothing = replica.promised == Ballot::ZERO
            && replica.log.is_empty()
            && replica.log_start == Slot(0);
        if let (Some(lease), false) = (replica.cfg.lease_duration, granted_nothing) {
            // Grants live in memory only. Before the crash this acceptor may have granted a
            // lease it no longer remembers, so it honours one full lease from restart:
            // promising nobody but the ballot it last promised until then. A fresh store
            // never accepted anything, hence never granted.
            replica.granted = Some((replica.promised, lease::grant_end(now, lease)));
        }
        Ok(replica)
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The current view, for status pages and tests.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            promised: self.promised,
            leader: self.leader_id(),
            commit: self.commit,
            applied: self.applied,
            log_start: self.log_start,
            lease_until: self.lease_until(),
            voter: self.voter,
        }
    }

    /// Counters since this replica started.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// The leader this replica believes in: itself when leading.
    pub fn leader_id(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader => Some(self.cfg.id),
            _ => self.leader.map(|(id, _)| id),
        }
    }

    /// Proposals queued here, not yet in a slot or forwarded.
    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    /// Proposes a command. On the leader it is queued for the next batch; on a follower
    /// it is forwarded to the leader.
    ///
    /// The returned id comes back in [`Committed`] when the command is chosen. A command
    /// can be lost with a leader that fails; callers time out and retry (see
    /// [`StateMachine`](crate::StateMachine) on exactly-once).
    pub fn propose(
        &mut self,
        now: Instant,
        payload: bytes::Bytes,
    ) -> Result<ProposalId, ProposeRefused> {
        self.tick(now);
        if payload.len() > self.cfg.max_batch_bytes {
            return Err(ProposeRefused::TooLarge {
                len: payload.len(),
                max: self.cfg.max_batch_bytes,
            });
        }
        if self.epoch_unknown || (self.role == Role::Follower && self.leader.is_none()) {
            // (A replica back with an empty disk proposes nothing until it has caught up.)
            return Err(ProposeRefused::NoLeader);
        }
        if !self.pending_has_room(payload.len()) {
            return Err(ProposeRefused::Overloaded {
                pending: self.pending.len(),
            });
        }
        let id = ProposalId {
            origin: self.cfg.id,
            seq: self.next_seq,
            epoch: self.epoch,
        };
        self.next_seq += 1;
        self.push_pending(Command { id, payload });
        Ok(id)
    }

    /// Handles a message from peer `from`.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: Message) {
        self.tick(now);
        if !self.cfg.members.contains(&from) || from == self.cfg.id {
            // Not a member, or a forged loopback: ignore.
            return;
        }
        if !message.is_well_formed() {
            // A reserved ballot, or slot numbers that overflow: no correct peer sends it.
            return;
        }
        self.dispatch(from, message);
    }

    /// Handles every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        match self.role {
            Role::Leader => self.leader_timers(),
            Role::Candidate => self.candidate_timers(),
            Role::Follower => {}
        }
        if self.voter && self.role != Role::Leader && self.now >= self.election_deadline {
            match self.granted {
                // Wait out the lease we granted: our own acceptor would refuse us anyway,
                // and the leader holding it may still be serving reads.
                Some((_, until)) if self.now < until => self.election_deadline = until,
                _ => self.start_pre_vote(),
            }
        }
        self.learner_timers();
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; `None` when
    /// nothing is timed (a replica without a vote that is not catching up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = match self.role {
            Role::Leader => Some(self.leader_deadline()),
            Role::Candidate => Some(self.candidate_deadline().min(self.election_deadline)),
            // A replica without a vote never campaigns: no election timer.
            Role::Follower => self.voter.then_some(self.election_deadline),
        };
        match (own, self.learner_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next batch of work, or `None` if there is none or
    /// [`max_outstanding_readys`](Config::max_outstanding_readys) (by default one) are
    /// handed out and not yet advanced. See [`Ready`] for the order in which to handle it.
    pub fn poll_ready(&mut self) -> Option<Ready> {
        if self.outstanding.len() >= self.cfg.max_outstanding_readys {
            return None;
        }
        self.flush_proposals();
        // Loopback messages may be delivered at once while nothing of this Ready awaits
        // persistence. While an earlier Ready is outstanding, only our own `Accept`s are:
        // our acceptor accepts into this Ready's persist, and its `Accepted` waits for this
        // Ready's `advance`. A reply to ourselves (a `Promise`, an `Accepted`) may report
        // state an outstanding Ready is still making durable (a promise repeated without a
        // new write), so it waits for an `advance` too.
        let mut rounds = 0;
        while !self.out.loopback.is_empty() && !self.out.needs_persist() && rounds < 8 {
            rounds += 1;
            let mut loopback = std::mem::take(&mut self.out.loopback);
            if !self.outstanding.is_empty() {
                let (accepts, rest): (Vec<Message>, Vec<Message>) = loopback
                    .into_iter()
                    .partition(|m| matches!(m, Message::Accept(_)));
                self.out.loopback = rest;
                if accepts.is_empty() {
                    break;
                }
                loopback = accepts;
            }
            for message in loopback {
                self.dispatch(self.cfg.id, message);
            }
            self.flush_proposals();
        }
        let committed = self.take_committed();
        self.settle_epoch();
        self.release_reads();
        let persist = self.take_persist();
        let mut out = std::mem::take(&mut self.out);
        let early_messages = self.early_first(&mut out.messages);
        let ready = Ready {
            id: self.next_ready_id,
            early_messages,
            persist,
            messages: out.messages,
            committed,
            reads: out.reads,
            aborted_reads: out.aborted_reads,
            fetch_snapshot: self.fetch_snapshot.take(),
        };
        if ready.is_empty() && out.loopback.is_empty() {
            return None;
        }
        self.next_ready_id += 1;
        self.outstanding.push_back(Outstanding {
            id: ready.id,
            loopback: out.loopback,
            writes_epoch: ready.persist.hard_state.map(|h| h.epoch),
        });
        Some(ready)
    }

    /// Takes the values chosen since the last [`Ready`] or `Chosen` was handed out, and
    /// the reads that may be answered once they are applied; `None` if there are none.
    ///
    /// May be called at any time, in particular **while a Ready is outstanding**: a
    /// driver waiting on a persist can keep feeding inbound messages (the followers'
    /// `Accepted`s, a leader's `Decide`) and apply and answer what they choose at once,
    /// instead of one Ready later. That is safe for the reason step 3 of the ordering rule
    /// gives: a chosen value is on a majority's disks already, and this replica's own
    /// acceptance counts only once its persist is done (its loopback `Accepted` is
    /// delivered by [`advance`](Self::advance)). Apply what it returns after everything
    /// taken before it, every outstanding Ready's `committed` included.
    pub fn poll_chosen(&mut self) -> Option<Chosen> {
        let committed = self.take_committed();
        self.settle_epoch();
        self.release_reads();
        let reads = std::mem::take(&mut self.out.reads);
        if committed.is_empty() && reads.is_empty() {
            return None;
        }
        Some(Chosen { committed, reads })
    }

    /// Marks the oldest outstanding Ready as handled: persisted, sent and applied.
    ///
    /// # Panics
    ///
    /// If `id` is not the oldest outstanding Ready's id (a driver bug).
    pub fn advance(&mut self, id: u64) {
        let outstanding = self.outstanding.pop_front();
        let Some(outstanding) = outstanding else {
            panic!("advance({id}) with no outstanding Ready");
        };
        assert_eq!(
            outstanding.id, id,
            "advance() for a Ready that is not the oldest outstanding one"
        );
        if outstanding.writes_epoch == Some(self.epoch) {
            self.epoch_durable = true;
        }
        for message in outstanding.loopback {
            self.dispatch(self.cfg.id, message);
        }
    }

    /// Moves the messages that may leave before the Ready's persist to the front of
    /// `messages` (keeping the order within each part) and returns how many there are:
    /// the leader's `Accept`s and `Decide`s, once this incarnation's epoch is durable.
    ///
    /// Why they may: neither reports anything of this replica's acceptor. An `Accept` asks
    /// the others to accept a value that phase 1 made safe for its ballot, and the leader
    /// counts its own acceptance only through the loopback `Accepted`, which is delivered
    /// after the persist like any other acceptor's reply; a `Decide` reports slots a quorum
    /// accepted, that vote included. So a crash before the persist loses only this
    /// replica's own vote, which nobody counted. The epoch rule keeps proposal ids unique:
    /// an `Accept` may carry this incarnation's proposals, and if the replica crashed
    /// before its epoch was durable, the next incarnation would take the same epoch and
    /// reuse their ids.
    fn early_first(&self, messages: &mut Vec<Envelope>) -> usize {
        if !self.epoch_durable || self.epoch_unknown {
            return 0;
        }
        let early = |e: &Envelope| matches!(e.message, Message::Accept(_) | Message::Decide(_));
        if messages.iter().all(early) {
            return messages.len();
        }
        let (mut first, rest): (Vec<Envelope>, Vec<Envelope>) =
            std::mem::take(messages).into_iter().partition(early);
        let n = first.len();
        first.extend(rest);
        *messages = first;
        n
    }

    fn tick(&mut self, now: Instant) {
        assert!(
            now >= self.now,
            "time went backwards: {now:?} < {:?}",
            self.now
        );
        self.now = now;
    }

    fn dispatch(&mut self, from: NodeId, message: Message) {
        match message {
            Message::Prepare(m) => self.handle_prepare(from, m),
            Message::Promise(m) => self.handle_promise(from, m),
            Message::Accept(m) => self.handle_accept(from, m),
            Message::Accepted(m) => self.handle_accepted(from, m),
            Message::Decide(m) => self.handle_decide(from, m),
            Message::Nack(m) => self.handle_nack(m),
            Message::Forward(m) => self.handle_forward(m),
            Message::CatchUp(m) => self.handle_catch_up(from, m),
            Message::CatchUpReply(m) => self.handle_catch_up_reply(from, m),
            Message::PreVote(m) => self.handle_pre_vote(from, m),
            Message::PreVoteReply(m) => self.handle_pre_vote_reply(from, m),
            Message::SnapshotOffer(m) => self.handle_snapshot_offer(from, m),
            // Snapshot bytes are the driver's to move (see `compaction`).
            Message::SnapshotRequest(_) | Message::SnapshotChunk(_) => {}
        }
    }

    /// Queues `message` for `to`; messages to ourselves take the loopback path.
    fn send(&mut self, to: NodeId, message: Message) {
        if to == self.cfg.id {
            self.out.loopback.push(message);
        } else {
            self.out.messages.push(Envelope { to, message });
        }
    }

    /// Sends `message` to every member, ourselves included.
    fn broadcast(&mut self, message: &Message) {
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            self.send(to, message.clone());
        }
    }

    /// Sends `message` to every member but ourselves.
    fn send_to_peers(&mut self, message: &Message) {
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            if to != self.cfg.id {
                self.send(to, message.clone());
            }
        }
    }

    /// Records that the acceptor now holds `value` for `slot` at `ballot`, in memory and in
    /// the next persist batch.
    ///
    /// # Panics
    ///
    /// On the safety rules every caller must keep: a slot known chosen never changes its
    /// value (paired with the recovery in [`Replica::new`]), and the ballot stored for a
    /// slot never moves down (so a Promise never under-reports what was accepted).
    fn store(&mut self, slot: Slot, ballot: Ballot, value: Value) {
        if let Some(old) = self.log.get(&slot) {
            assert!(
                (slot >= self.commit && old.ballot != Ballot::CHOSEN) || old.value == value,
                "overwriting chosen slot {slot}"
            );
            assert!(
                ballot >= old.ballot,
                "lowering the ballot stored for slot {slot} from {} to {ballot}",
                old.ballot
            );
        }
        let entry = Entry {
            slot,
            ballot,
            value,
        };
        self.log.insert(
            slot,
            Accepted {
                ballot,
                value: entry.value.clone(),
            },
        );
        self.out.entries.insert(slot, entry);
    }

    fn set_promised(&mut self, ballot: Ballot) {
        assert!(ballot >= self.promised, "promised ballot moving backwards");
        assert!(ballot.is_proposer_ballot(), "promising the reserved ballot");
        if ballot > self.promised {
            self.promised = ballot;
            self.out.hard_state_dirty = true;
        }
        self.see_round(ballot);
    }

    /// Notes a ballot seen anywhere, so that our next one beats it.
    fn see_round(&mut self, ballot: Ballot) {
        if ballot.is_proposer_ballot() {
            self.max_round_seen = self.max_round_seen.max(ballot.round);
        }
    }

    /// Our next ballot, above every one seen; `None` once rounds are exhausted (only a
    /// peer reporting round `u64::MAX - 1` can do that), because reusing a ballot for a
    /// second phase 1 could propose two values at one ballot.
    fn next_ballot(&self) -> Option<Ballot> {
        let round = self.max_round_seen.checked_add(1)?;
        let ballot = Ballot::new(round, self.cfg.id);
        ballot.is_proposer_ballot().then_some(ballot)
    }

    /// True if a proposal of `len` payload bytes fits the pending queue's bounds. One
    /// always fits an empty queue, so a command up to `max_batch_bytes` can make progress.
    fn pending_has_room(&self, len: usize) -> bool {
        self.pending.len() < self.cfg.max_pending_proposals
            && (self.pending.is_empty()
                || self.pending_bytes.saturating_add(len) <= self.cfg.max_pending_bytes)
    }

    fn push_pending(&mut self, command: Command) {
        self.pending_bytes += command.payload.len();
        self.pending.push_back(command);
    }

    fn pop_pending(&mut self) -> Option<Command> {
        let command = self.pending.pop_front()?;
        self.pending_bytes -= command.payload.len();
        Some(command)
    }

    fn take_persist(&mut self) -> PersistBatch {
        let entries: Vec<Entry> = std::mem::take(&mut self.out.entries)
            .into_values()
            .collect();
        let write_hard = self.out.hard_state_dirty || !entries.is_empty();
        self.out.hard_state_dirty = false;
        PersistBatch {
            hard_state: write_hard.then_some(HardState {
                promised: self.promised,
                commit: self.commit,
                epoch: self.epoch,
                non_voting: !self.voter,
            }),
            entries,
        }
    }

    /// A replica back with an empty disk may propose once it has applied every slot it
    /// heard was chosen: its epoch then goes above every epoch of its id in the chosen log,
    /// with a margin for proposals of a lost incarnation still in flight, and is written
    /// with the next Ready like any epoch.
    fn settle_epoch(&mut self) {
        if !self.epoch_unknown || self.commit_hint == Slot(0) || self.applied < self.commit_hint {
            return;
        }
        /// Incarnations a lost disk may have run since its last command was chosen.
        const MARGIN: u64 = 1 << 16;
        let seen = self.dedup.max_epoch(self.cfg.id).unwrap_or(0);
        self.epoch = self.epoch.max(seen.saturating_add(MARGIN));
        self.epoch_unknown = false;
        self.epoch_durable = false;
        self.out.hard_state_dirty = true;
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        let mut committed = Vec::new();
        while self.applied < self.commit && committed.len() < MAX_COMMITTED_PER_READY {
            let accepted = self.log.get(&self.applied);
            let Some(accepted) = accepted else {
                panic!("chosen slot {} missing from the log", self.applied);
            };
            let value = match &accepted.value {
                Value::Noop => Value::Noop,
                Value::Batch(cmds) => {
                    // Share the logged batch; copy it only if the dedup filter drops
                    // a command.
                    let mut kept: Option<Vec<Command>> = None;
                    for (i, c) in cmds.iter().enumerate() {
                        let first = self.dedup.first_time(c.id);
                        match (&mut kept, first) {
                            (Some(kept), true) => kept.push(c.clone()),
                            (None, false) => kept = Some(cmds[..i].to_vec()),
                            _ => {}
                        }
                    }
                    match kept {
                        None => Value::Batch(Arc::clone(cmds)),
                        Some(kept) => {
                            self.metrics.duplicates_dropped += (cmds.len() - kept.len()) as u64;
                            Value::Batch(kept.into())
                        }
                    }
                }
            };
            committed.push(Committed {
                slot: self.applied,
                value,
            });
            self.applied = self.applied.next();
        }
        committed
    }

    /// Forwards every queued proposal to `leader`, in messages bounded by count and bytes.
    fn forward_pending(&mut self, leader: NodeId) {
        while !self.pending.is_empty() {
            let n = wire::fit(
                self.pending.iter().map(wire::command_bytes),
                self.cfg.max_batch_commands,
                self.cfg.max_message_bytes,
            );
            let commands: Vec<Command> = (0..n).filter_map(|_| self.pop_pending()).collect();
            self.send(leader, Message::Forward(Forward { commands }));
        }
    }

    fn random_below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.rng.next_u64() % bound
        }
    }
}

impl Outbox {
    fn needs_persist(&self) -> bool {
        self.hard_state_dirty || !self.entries.is_empty()
    }
}

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod defect_tests;
#[cfg(test)]
mod learner_tests;
#[cfg(test)]
mod tests;
