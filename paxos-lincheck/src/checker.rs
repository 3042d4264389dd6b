//! The checker: split a history by key, then run a Wing-Gong-Lowe depth-first search per key.
//!
//! The search itself, per key, is in [`crate::search`].

use std::collections::BTreeMap;

use crate::history::Operation;
use crate::search::{KeyVerdict, Search};

/// Knobs for [`check`]. Build with struct update syntax:
/// `CheckOptions { max_steps_per_key: 1_000_000, ..CheckOptions::default() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Search budget per key, in events visited. A key whose search needs more answers
    /// [`Verdict::Unknown`]. Default: 100 million (seconds of work on one core).
    pub max_steps_per_key: u64,
    /// Memory budget per key for the cache of visited configurations, in bytes (approximate).
    /// When it is reached the cache stops growing: the search goes on, with less pruning.
    /// Default: 256 MiB.
    pub max_cache_bytes_per_key: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_steps_per_key: 100_000_000,
            max_cache_bytes_per_key: 256 << 20,
        }
    }
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// This key's history has no linearization (the lowest such key, if several).
    NotLinearizable {
        /// The offending key.
        key: u64,
        /// A human-readable account of the deepest attempt: how many operations it
        /// linearized and which operation returned before it could be placed.
        detail: String,
    },
    /// No key is known to be non-linearizable, but this key's search ran out of budget
    /// (the lowest such key, if several).
    Unknown {
        /// The key whose search was cut short.
        key: u64,
    },
}

/// Checks that `history` is linearizable, one key (one register) at a time.
///
/// The order of `history` does not matter; times do. Keys are checked in ascending order and
/// all of them are checked: a definite [`Verdict::NotLinearizable`] on any key wins over a
/// [`Verdict::Unknown`] on another.
///
/// # Panics
///
/// If an operation is malformed (see [`Operation::malformation`]): that is a bug in the caller's
/// history recording, not a property of the system under test.
#[must_use]
pub fn check(history: &[Operation], opts: &CheckOptions) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if let Some(why) = op.malformation() {
            panic!("malformed operation {op:?}: {why}");
        }
        by_key.entry(op.key).or_default().push(op);
    }
    let mut unknown = None;
    for (key, ops) in by_key {
        match Search::new(&ops).run(opts) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::NotLinearizable(detail) => {
                return Verdict::NotLinearizable { key, detail };
            }
            KeyVerdict::OutOfBudget => {
                unknown.get_or_insert(key);
            }
        }
    }
    match unknown {
        Some(key) => Verdict::Unknown { key },
        None => Verdict::Linearizable,
    }
}

#[cfg(test)]
#[path = "checker_test.rs"]
mod tests;
