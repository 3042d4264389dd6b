//! Linearizable reads: under the leader lease with no message at all, otherwise with a
//! read-index round (one heartbeat round confirming leadership).
//!
//! Either way a read is answered only once (1) every slot the leader re-proposed when it
//! took over is chosen, so its commit point covers everything chosen before it led (a
//! single own-ballot slot is not enough: the commit point advances in slot order, and
//! earlier re-proposed slots may still be open), and (2) everything up to the commit
//! point at the time of the read has been handed out for applying.

use crate::error::ReadRefused;
use crate::lease;
use crate::ready::{ReadId, Role};
use crate::types::{Instant, Slot};

use super::Replica;

/// A read waiting to be answered.
#[derive(Debug)]
pub(crate) struct PendingRead {
    id: ReadId,
    /// Apply point the answer must reflect; `None` until the commit point has reached
    /// `recovered_to` (then it is the commit point at that moment).
    index: Option<Slot>,
    /// For a read-index read: a quorum must have answered an Accept stamped at or after
    /// this time. `None` for a lease read.
    confirm: Option<Instant>,
}

impl Replica {
    /// Starts a linearizable read on the leader. The read is answered when its id shows
    /// up in [`Ready::reads`](crate::Ready::reads): apply that Ready's `committed`, then
    /// read the state machine.
    ///
    /// Under the lease the read costs no message; without it, it joins a read-index round.
    /// If leadership changes first, the id shows up in
    /// [`Ready::aborted_reads`](crate::Ready::aborted_reads) instead.
    pub fn read(&mut self, now: Instant) -> Result<ReadId, ReadRefused> {
        self.tick(now);
        if self.role != Role::Leader {
            return Err(ReadRefused::NotLeader {
                leader: self.leader_id(),
            });
        }
        if self.reads.len() >= self.cfg.max_pending_proposals {
            return Err(ReadRefused::Overloaded {
                pending: self.reads.len(),
            });
        }
        let id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        let recovered = self
            .leadership
            .as_ref()
            .is_some_and(|l| self.commit >= l.recovered_to);
        let index = recovered.then_some(self.commit);
        let leased = self.lease_until().is_some_and(|until| now < until);
        let confirm = if leased {
            self.metrics.lease_reads += 1;
            None
        } else {
            self.metrics.read_index_reads += 1;
            let sent_now = self
                .leadership
                .as_ref()
                .is_some_and(|l| l.last_heartbeat_at() == now);
            if !sent_now {
                self.metrics.read_rounds += 1;
                self.send_heartbeats();
            }
            Some(now)
        };
        self.reads.push_back(PendingRead { id, index, confirm });
        Ok(id)
    }

    /// Until when this replica holds the leader lease (its own clock), if it does.
    pub fn lease_until(&self) -> Option<Instant> {
        let l = self.leadership.as_ref()?;
        let duration = self.cfg.lease_duration?;
        let stamp = lease::quorum_stamp(&l.lease_acks, self.quorum)?;
        let until = lease::leader_lease_end(stamp, duration, self.cfg.max_clock_drift_ppm);
        (self.now < until).then_some(until)
    }

    /// Until when a linearizable read may be answered on this replica **at once**, from
    /// the state machine as it is, without [`read`](Self::read): `Some(until)` only on a
    /// leader that holds its lease, whose commit point covers every slot it re-proposed
    /// on taking over, and that has handed out for applying every slot it knows chosen.
    ///
    /// It speaks for the core only. The caller must also have applied everything handed
    /// out (every Ready taken is handled) and must not let a commit point above what it
    /// applied reach anyone (a message, an answer) while it acts on `until`: the
    /// node's driver answers such reads only between two of its cycles. Until then no
    /// other leader can choose anything (the lease), and nothing chosen under this one is
    /// missing from the state, so a read of the state is ordered at the moment it checked
    /// `until` against its clock.
    pub fn lease_read_until(&self) -> Option<Instant> {
        let l = self.leadership.as_ref()?;
        if self.role != Role::Leader || self.commit < l.recovered_to || self.applied < self.commit {
            return None;
        }
        self.lease_until()
    }

    /// Moves every read that may now be answered into the outbox.
    pub(super) fn release_reads(&mut self) {
        let Some(l) = self.leadership.as_ref() else {
            return;
        };
        if self.commit < l.recovered_to {
            return;
        }
        let confirmed = lease::quorum_stamp(&l.lease_acks, self.quorum);
        let (commit, applied) = (self.commit, self.applied);
        let mut ready = Vec::new();
        self.reads.retain_mut(|r| {
            let index = *r.index.get_or_insert(commit);
            let confirmed = r.confirm.is_none_or(|c| confirmed.is_some_and(|q| q >= c));
            if confirmed && index <= applied {
                ready.push(r.id);
                false
            } else {
                true
            }
        });
        self.out.reads.extend(ready);
    }

    /// Leadership is lost: no waiting read can be answered here.
    pub(super) fn abort_reads(&mut self) {
        let aborted = self.reads.drain(..).map(|r| r.id);
        self.out.aborted_reads.extend(aborted);
    }
}
