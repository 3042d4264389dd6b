//! Safety: only proposed values are chosen. Every command in a committed value must be one
//! a client proposed, byte for byte.

use std::collections::HashMap;

use bytes::Bytes;
use paxos_core::{ProposalId, Value};

/// Every proposal the workload made.
#[derive(Debug, Default)]
pub struct Proposals {
    made: HashMap<ProposalId, Bytes>,
}

impl Proposals {
    /// Records a proposal.
    pub fn record(&mut self, id: ProposalId, payload: Bytes) {
        self.made.insert(id, payload);
    }

    /// Checks that every command in `value` was proposed as is.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        for cmd in value.commands() {
            match self.made.get(&cmd.id) {
                Some(p) if *p == cmd.payload => {}
                Some(_) => {
                    return Err(format!(
                        "command {:?} committed with a payload that was not proposed",
                        cmd.id
                    ));
                }
                None => return Err(format!("command {:?} committed but never proposed", cmd.id)),
            }
        }
        Ok(())
    }
}
