//! Safety: every replica's applied log is a prefix of the longest one; what is applied was
//! chosen (less the duplicates the core filters); no proposal is applied twice.

use std::collections::HashMap;

use paxos_core::{Committed, ProposalId, Slot, Value};

use super::chosen::ChosenTracker;
use super::digest;

/// The longest applied log seen, as digests.
#[derive(Debug, Default)]
pub struct AppliedLog {
    slots: Vec<u64>,
    placed: HashMap<ProposalId, Slot>,
}

impl AppliedLog {
    /// Records that a replica applied `c` as its next slot.
    pub fn record(&mut self, c: &Committed, chosen: &ChosenTracker) -> Result<(), String> {
        let d = digest(&c.value);
        let i = usize::try_from(c.slot.0).map_err(|e| e.to_string())?;
        let Some(value) = chosen.chosen(c.slot) else {
            return Err(format!("slot {} applied before it was chosen", c.slot));
        };
        if !is_filtered_from(&c.value, value) {
            return Err(format!(
                "slot {} applied with a value that is not the chosen one",
                c.slot
            ));
        }
        if i < self.slots.len() {
            if self.slots[i] != d {
                return Err(format!("applied logs diverge at slot {}", c.slot));
            }
            return Ok(());
        }
        if i != self.slots.len() {
            return Err(format!(
                "slot {} applied before slot {}",
                c.slot,
                self.slots.len()
            ));
        }
        self.slots.push(d);
        for cmd in c.value.commands() {
            if let Some(prev) = self.placed.insert(cmd.id, c.slot) {
                return Err(format!(
                    "command {:?} applied at both {prev} and {}",
                    cmd.id, c.slot
                ));
            }
        }
        Ok(())
    }

    /// Length of the longest applied log.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if nothing was applied yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// True if `applied` is `chosen` with some commands removed, order kept.
fn is_filtered_from(applied: &Value, chosen: &Value) -> bool {
    match (applied, chosen) {
        (Value::Noop, Value::Noop) => true,
        (Value::Batch(a), Value::Batch(c)) => {
            let mut rest = c.iter();
            a.iter().all(|x| rest.any(|y| y == x))
        }
        _ => false,
    }
}
