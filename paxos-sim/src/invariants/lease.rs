//! Safety: at most one replica holds the leader lease at any real instant.
//!
//! Each replica reports, on its own clock, until when it holds the lease; the simulator
//! converts that to real (simulated) time with the replica's clock and checks after every
//! step that no two leases are in force together.

use paxos_core::Instant;

/// A replica's lease as the simulator sees it.
#[derive(Clone, Copy, Debug)]
pub struct LeaseView {
    /// Node index.
    pub node: usize,
    /// The replica's clock now.
    pub local_now: Instant,
    /// Until when it holds the lease (its clock), if it claims one.
    pub until: Option<Instant>,
}

/// Fails if two replicas hold a lease at once.
pub fn at_most_one_holder(views: &[LeaseView]) -> Result<(), String> {
    let holders: Vec<usize> = views
        .iter()
        .filter(|v| v.until.is_some_and(|u| v.local_now < u))
        .map(|v| v.node)
        .collect();
    if holders.len() > 1 {
        return Err(format!(
            "two lease holders at once: node indexes {holders:?}"
        ));
    }
    Ok(())
}
