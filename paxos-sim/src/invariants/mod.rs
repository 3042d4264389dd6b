//! The invariants the simulator checks, one per file. Each check runs at the step that
//! could break it (a persist, an apply), so a violation is reported at the step that
//! caused it.

pub mod applied;
pub mod chosen;
pub mod lease;
pub mod liveness;
pub mod promises;
pub mod proposed;

use std::hash::{DefaultHasher, Hash, Hasher};

use paxos_core::Value;

/// A stable digest of a value (SipHash with fixed keys: identical across runs).
pub fn digest(value: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}
