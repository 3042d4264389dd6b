//! Safety: at most one value is chosen per slot.
//!
//! A value is chosen for a slot once a majority of acceptors has accepted it at one ballot.
//! Acceptances are recorded when the acceptor's write becomes durable, which is when the
//! protocol may report them. Also checked: one ballot never carries two values for a slot.

use std::collections::{BTreeMap, HashMap};

use paxos_core::{Ballot, Entry, Slot, Value};

use super::digest;

/// Tracks acceptances and the values they choose.
#[derive(Debug, Default)]
pub struct ChosenTracker {
    quorum: usize,
    accepted: HashMap<(Slot, Ballot), (u64, u64)>,
    chosen: BTreeMap<Slot, (u64, Value)>,
}

impl ChosenTracker {
    /// A tracker for a cluster with this quorum size.
    pub fn new(quorum: usize) -> Self {
        Self {
            quorum,
            ..Self::default()
        }
    }

    /// Records that acceptor `node` durably accepted `entry`.
    pub fn record(&mut self, node: usize, entry: &Entry) -> Result<(), String> {
        let d = digest(&entry.value);
        let (value, acceptors) = self
            .accepted
            .entry((entry.slot, entry.ballot))
            .or_insert((d, 0));
        if *value != d {
            return Err(format!(
                "two values accepted for slot {} at ballot {} (second by node index {node})",
                entry.slot, entry.ballot
            ));
        }
        *acceptors |= 1 << node;
        if acceptors.count_ones() as usize >= self.quorum {
            match self.chosen.get(&entry.slot) {
                Some((c, _)) if *c != d => {
                    return Err(format!(
                        "two different values chosen for slot {} (the second at ballot {})",
                        entry.slot, entry.ballot
                    ));
                }
                Some(_) => {}
                None => {
                    self.chosen.insert(entry.slot, (d, entry.value.clone()));
                }
            }
        }
        Ok(())
    }

    /// The value chosen for `slot`, if one is.
    pub fn chosen(&self, slot: Slot) -> Option<&Value> {
        self.chosen.get(&slot).map(|(_, v)| v)
    }

    /// The highest slot with a chosen value.
    pub fn max_chosen(&self) -> Option<Slot> {
        self.chosen.keys().next_back().copied()
    }
}
