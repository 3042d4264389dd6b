//! What the two paxos transports, `paxos-net-tcp` and `paxos-net-quic`, share.
//!
//! - [`ByteBudget`] (with [`Held`]): a bound in bytes on a queue, beside its bound in
//!   messages, with one rule on both transports: a message is admitted to an empty queue
//!   whatever its size, so progress is always possible.
//! - [`WarnLimiter`] (with [`WarnKey`]): at most one warning per peer, remote address or
//!   listener per interval, the rest counted, in a table of bounded size.
//! - [`Backoff`]: exponential reconnect backoff with jitter.
//! - [`try_enqueue`] and [`recv_batch`]: the two ends of the bounded queues, so both
//!   transports drop and deliver by the same rules.
//!
//! What it is **not**: a public API for applications. It has no I/O, no runtime and no
//! clock of its own (the caller passes `now`); the transports' configuration types, wire
//! headers and statistics stay in each transport, because they differ (QUIC has traffic
//! classes and certificates bound to ids; TCP has a two-way handshake).

mod budget;
mod limit;
mod queue;

pub use budget::{ByteBudget, Held};
pub use limit::{Backoff, WarnKey, WarnLimiter};
pub use queue::{recv_batch, try_enqueue};
