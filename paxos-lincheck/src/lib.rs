//! A linearizability checker for key-value register histories.
//!
//! Give it what the clients of a replicated key-value store saw (every read, write and
//! compare-and-set, with its invocation and completion times) and it answers whether some
//! single, sequential order of those operations explains every result while respecting
//! real time ([`check`]). It is the oracle of the simulator and of the Jepsen-style tests.
//!
//! # How
//!
//! - **Per key** (P-compositionality, Herlihy & Wing): linearizability is local, so the
//!   history is split by key and each key is checked on its own as a single register.
//! - **Wing-Gong-Lowe search**, as in Porcupine: a depth-first search over the time-ordered
//!   call and return events that tries to linearize pending operations one by one and
//!   backtracks when an operation returns before it could be placed, pruning configurations
//!   (linearized set, register state) it has already explored. Reads and failed cas that are
//!   possible are placed at once without branching; timed-out operations are grouped by input
//!   and values nobody observes are merged, so thousands of timeouts do not multiply the
//!   search. The `search` module source has the details and the argument for each reduction.
//! - **Unknown outcomes**: an operation with `output: None` (timed out) may have taken effect
//!   at any point after its call, or never. It stays pending to the end of the history and
//!   never forces a backtrack.
//! - **Bounded**: a step budget and a cache-size budget per key ([`CheckOptions`]). A search
//!   that runs out answers [`Verdict::Unknown`]; the checker never guesses.
//!
//! Linearizability checking is NP-complete; what makes a key expensive is many *concurrent
//! writes* (each set of them may be ordered many ways). Tens of thousands of operations per key
//! with ten concurrent clients check in well under a second; twenty clients writing at once
//! to one key can exhaust the default budget, and then the answer is `Unknown`.
//!
//! # Semantics of results
//!
//! A register starts absent. `Read` returns the current value (`None` if absent); `Write`
//! sets it; `Cas { expected, new }` returning `true` means the value was `expected` and became
//! `new`; returning `false` means the value was *not* `expected` at its linearization point and
//! the cas had no effect. Operations that definitely failed with no effect (an error known to
//! leave the store unchanged, a read that returned nothing) must be left out of the history:
//! they constrain nothing.
//!
//! # What it is not
//!
//! - Not a general model checker: the only model is a `u64` register per key (no
//!   multi-key transactions, no deletes, no appends).
//! - Not a recorder: it does not run clients or take timestamps; the caller does.
//! - No visualisation; on failure, [`Verdict::NotLinearizable`] carries a one-paragraph
//!   account of the deepest attempt.
//!
//! # Example
//!
//! ```
//! use paxos_lincheck::{CheckOptions, Input, Operation, Output, Verdict, check};
//!
//! let op = |client, input, output, call, ret| Operation {
//!     client, key: 0, input, output: Some(output), call, ret: Some(ret),
//! };
//! // Write 1 completes, then a read still sees the register absent: a stale read.
//! let history = [
//!     op(1, Input::Write(1), Output::Write, 0, 10),
//!     op(2, Input::Read, Output::Read(None), 20, 30),
//! ];
//! let verdict = check(&history, &CheckOptions::default());
//! assert!(matches!(verdict, Verdict::NotLinearizable { key: 0, .. }));
//! ```
//!
//! [`jepsen`] parses Jepsen's register logs (`jepsen.util` lines) into a history.
#![forbid(unsafe_code)]

mod cache;
mod checker;
mod history;
pub mod jepsen;
mod search;

pub use checker::{CheckOptions, Verdict, check};
pub use history::{Input, Operation, Output};
