//! Errors of the core's operations.
//!
//! They are named `…Refused`, not `…Error`, because each means the core refused the
//! call and queued nothing; the node's client errors (`paxos_node::ProposeError`,
//! `paxos_node::ReadError`) also cover what can happen after a request is queued, and
//! keep the plain names for the API users call.

/// Why a proposal was refused. Nothing was queued when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeRefused {
    /// This replica knows no leader to forward to. Retry later or elsewhere.
    #[error("no leader is known")]
    NoLeader,
    /// The proposal queue is full.
    #[error("overloaded: {pending} proposals already queued")]
    Overloaded {
        /// Proposals queued.
        pending: usize,
    },
    /// The command alone exceeds the batch byte bound.
    #[error("command of {len} bytes exceeds max_batch_bytes ({max})")]
    TooLarge {
        /// The command's size.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Why a read was refused. Nothing was queued when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadRefused {
    /// Only the leader serves linearizable reads; `leader` is the one this replica knows.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader: Option<crate::types::NodeId>,
    },
    /// Too many reads are waiting.
    #[error("overloaded: {pending} reads already waiting")]
    Overloaded {
        /// Reads waiting.
        pending: usize,
    },
}
