//! Errors of the core's operations.

/// Why a proposal was refused. Nothing was queued when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
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
