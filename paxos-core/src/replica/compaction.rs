//! Log compaction and installed snapshots: the core's side (see
//! [`crate::compaction`] for the whole protocol).

use crate::compaction::CoreSnapshot;
use crate::message::{CatchUp, Message, SnapshotOffer};
use crate::ready::SnapshotFetch;
use crate::types::{Ballot, Instant, NodeId, Slot};

use super::Replica;

impl Replica {
    /// The core's part of a snapshot taken now: its state after every slot below the
    /// applied point ([`Status::applied`](crate::Status::applied)).
    ///
    /// Take it together with the state machine's snapshot, when the state machine has
    /// applied every [`Committed`](crate::Committed) handed out so far and nothing more,
    /// so that both describe the same prefix of the log.
    pub fn core_snapshot(&self) -> CoreSnapshot {
        CoreSnapshot::new(self.applied, self.dedup.clone())
    }

    /// Drops every slot below `upto` from the log, once a snapshot covering them is
    /// durable. Later [`CatchUp`]s from below `upto` are answered with a
    /// [`SnapshotOffer`]. A no-op if the log starts at or above `upto` already.
    ///
    /// Compacting right up to the applied point makes every follower that is even a
    /// little behind fetch a snapshot; a driver keeps some slots of margin.
    ///
    /// # Panics
    ///
    /// If `upto` is above the applied point: those slots are not in any snapshot (a
    /// driver bug; going on would lose chosen values).
    pub fn compact(&mut self, upto: Slot) {
        assert!(
            upto <= self.applied,
            "compact({upto}) above the applied point {}",
            self.applied
        );
        if upto <= self.log_start {
            return;
        }
        self.log = self.log.split_off(&upto);
        self.log_start = upto;
    }

    /// Where to start the log when compacting behind a snapshot up to `upto` while
    /// keeping at most `max_bytes` of command payload: the lowest slot at or above
    /// `from` such that the slots from it to `upto` carry at most `max_bytes` (so a log of
    /// large values keeps fewer slots). Walks the slots between `from` and `upto` only.
    pub fn log_start_keeping(&self, from: Slot, upto: Slot, max_bytes: u64) -> Slot {
        let mut kept = 0u64;
        for (slot, accepted) in self.log.range(from..upto).rev() {
            kept = kept.saturating_add(accepted.value.payload_bytes() as u64);
            if kept > max_bytes {
                return slot.next();
            }
        }
        from
    }

    /// Moves the replica past a snapshot fetched from a peer: commit and applied points
    /// to its [`upto`](CoreSnapshot::upto), the log below it dropped, the core's state
    /// replaced by the snapshot's. Call it once the snapshot is durable here and the
    /// state machine has been restored from it, and before handling the next
    /// [`Ready`](crate::Ready).
    ///
    /// Returns false, changing nothing, if the snapshot is not ahead of the applied
    /// point (an older or repeated fetch).
    ///
    /// # Panics
    ///
    /// If a Ready is outstanding (polled, not yet advanced): its `committed` values lie
    /// below the snapshot's point and would be applied on top of the restored state (a
    /// driver bug).
    pub fn install_snapshot(&mut self, now: Instant, snapshot: CoreSnapshot) -> bool {
        assert!(
            self.outstanding.is_empty(),
            "install_snapshot() while a Ready is outstanding: advance it first"
        );
        self.tick(now);
        let upto = snapshot.upto();
        if upto <= self.applied {
            return false;
        }
        self.log = self.log.split_off(&upto);
        self.log_start = upto;
        self.applied = upto;
        self.dedup = snapshot.into_dedup();
        if self.commit < upto {
            // Every slot below `upto` is chosen: the peer applied it.
            self.commit = upto;
            self.out.hard_state_dirty = true;
        }
        while self
            .log
            .get(&self.commit)
            .is_some_and(|a| a.ballot == Ballot::CHOSEN)
        {
            self.commit = self.commit.next();
        }
        self.commit_hint = self.commit_hint.max(self.commit);
        self.catch_up_sent = None;
        self.prune_inflight();
        self.advance_commit();
        if self.commit < self.commit_hint {
            self.request_catch_up();
        }
        true
    }

    /// A CatchUp from below the compaction point: offer the snapshot instead.
    pub(super) fn offer_snapshot(&mut self, to: NodeId, m: &CatchUp) -> bool {
        if m.from >= self.log_start {
            return false;
        }
        let offer = SnapshotOffer {
            upto: self.log_start,
            commit: self.commit,
        };
        self.send(to, Message::SnapshotOffer(offer));
        true
    }

    pub(super) fn handle_snapshot_offer(&mut self, from: NodeId, m: SnapshotOffer) {
        self.note_peer_commit(from, m.commit);
        if m.upto > self.commit {
            // Slots we miss exist only in that peer's snapshot. The CatchUp stays
            // outstanding: it is resent on the usual timer while we are behind, so the
            // request is repeated until a snapshot is installed.
            self.fetch_snapshot = Some(SnapshotFetch { from, upto: m.upto });
        }
    }
}
