//! Liveness: after faults heal, the cluster converges within a bounded simulated time.
//!
//! Converged means: a probe write proposed after healing has committed; every replica is
//! up, has committed every chosen slot, and has applied all it committed; and all agree on
//! the commit point.

use paxos_core::{Ballot, Role, Slot};

/// What the check needs to know about one replica.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaView {
    /// Replica is running.
    pub up: bool,
    /// Its commit point.
    pub commit: Slot,
    /// Its apply point.
    pub applied: Slot,
    /// It has no Ready awaiting persistence.
    pub idle: bool,
    /// Its role, for the report.
    pub role: Option<Role>,
    /// Its promised ballot, for the report.
    pub promised: Ballot,
}

/// True once the cluster has converged (see the module docs).
pub fn converged(probe_done: bool, max_chosen: Option<Slot>, replicas: &[ReplicaView]) -> bool {
    let need = max_chosen.map_or(Slot(0), Slot::next);
    let first = replicas.first().map(|r| r.commit);
    probe_done
        && replicas.iter().all(|r| {
            r.up && r.idle && r.commit >= need && r.applied == r.commit && Some(r.commit) == first
        })
}
