//! Safety: an acceptor keeps its promises, across crashes too.
//!
//! Once an acceptor has sent `Promise(b)`, it never again sends a Promise or an Accepted
//! for a ballot below `b`. The check watches messages as they leave, so it sees through
//! restarts: a replica that lost its promised ballot breaks it on the first stale message
//! it answers, usually long before two values end up chosen.

use paxos_core::{Ballot, Message};

/// The highest ballot each acceptor has promised, as seen on the wire.
#[derive(Debug)]
pub struct PromiseLedger {
    promised: Vec<Ballot>,
}

impl PromiseLedger {
    /// A ledger for `nodes` acceptors.
    pub fn new(nodes: usize) -> Self {
        Self {
            promised: vec![Ballot::ZERO; nodes],
        }
    }

    /// Checks a message acceptor `node` sends, then records it.
    pub fn on_send(&mut self, node: usize, message: &Message) -> Result<(), String> {
        let (ballot, kind) = match message {
            Message::Promise(p) => (p.ballot, "Promise"),
            Message::Accepted(a) => (a.ballot, "Accepted"),
            _ => return Ok(()),
        };
        let promised = self.promised[node];
        if ballot < promised {
            return Err(format!(
                "node index {node} sent {kind} for ballot {ballot} after promising ballot {promised}"
            ));
        }
        if matches!(message, Message::Promise(_)) {
            self.promised[node] = ballot;
        }
        Ok(())
    }
}
