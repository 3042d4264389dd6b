//! [`NodeOptions`]: the driver's own bounds and timeouts (the protocol's are in
//! [`paxos_core::Config`]).

use std::time::Duration;

use crate::error::OptionsError;

/// The driver's bounds and timeouts. Build with [`NodeOptions::default`] and adjust.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeOptions {
    /// How long a [`propose`](crate::NodeHandle::propose) or
    /// [`read`](crate::NodeHandle::read) waits for its outcome before returning `Timeout`.
    /// A backstop: leadership changes fail requests sooner.
    pub request_timeout: Duration,
    /// Client requests queued for the driver. A request that does not fit is refused at
    /// once with `Overloaded`.
    pub request_queue: usize,
    /// Requests waiting for their outcome (proposals and reads together). `None` uses the
    /// core's [`max_pending_proposals`](paxos_core::Config::max_pending_proposals). A
    /// request beyond it is refused with `Overloaded`.
    pub max_waiters: Option<usize>,
    /// Client requests taken from the queue in one driver cycle.
    pub max_requests_per_cycle: usize,
    /// Inbound messages taken from the transport in one driver cycle.
    pub max_inbound_per_cycle: usize,
    /// Persists under way at once, with a store that
    /// [pipelines persists](paxos_core::Storage::pipelines_persists) (both stores of
    /// `paxos-storage` do): the node sets the core's
    /// [`max_outstanding_readys`](paxos_core::Config::max_outstanding_readys) to this.
    /// Above 1, while one persist syncs the driver starts the next Ready's as soon as new
    /// input arrives, instead of after the sync and a round trip through the driver, and
    /// the file store writes the persists queued behind a sync with one fdatasync. With a
    /// store that does not pipeline it is always 1. 1 to 64.
    ///
    /// The default is 1, one persist at a time: measured on a 2-core machine with one
    /// shared disk, 2 or 4 gave the same throughput at 16 clients and about 7% less at 64
    /// (smaller batches, so more CPU per command, on a machine whose CPU and disk are
    /// both saturated); see ARCHITECTURE.md. Try it where syncs are cheap and cores many.
    pub persists_in_flight: usize,
    /// When the node snapshots its state machine and drops the log below the snapshot.
    pub compaction: Compaction,
    /// Bytes of snapshot in one [`SnapshotChunk`](paxos_core::message::SnapshotChunk) of
    /// a transfer (capped to fit the transport's frame). The receiver has one chunk in
    /// flight, so this is also the memory a transfer holds on either side.
    pub snapshot_chunk_bytes: usize,
    /// The most snapshot bytes a second this node sends, to all peers together, so that
    /// replication and heartbeats keep flowing while a large snapshot moves.
    pub snapshot_send_rate: u64,
    /// How long a snapshot fetch waits for the next chunk before asking again (the
    /// request or its answer may have been lost with a connection).
    pub snapshot_request_timeout: Duration,
}

/// The compaction policy: a snapshot is taken when either threshold is reached and the
/// commands applied since the last snapshot outweigh it (see [`due`](Self::due)), and on
/// demand ([`NodeHandle::compact`](crate::NodeHandle::compact)); then the log below
/// `applied - keep_entries` is dropped, in memory and in storage, and more of it if the
/// slots kept would carry over `keep_bytes` of commands.
///
/// A state machine that does not take snapshots (the trait's default) is never asked
/// twice: the node logs a warning and keeps its whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compaction {
    /// Snapshot after this many slots applied since the last snapshot; `None`: never by
    /// count.
    pub every_entries: Option<u64>,
    /// Snapshot after this many bytes of commands applied since the last snapshot;
    /// `None`: never by size.
    pub every_bytes: Option<u64>,
    /// Slots kept in the log behind a snapshot, so that a follower a little behind catches
    /// up from the log instead of fetching the whole snapshot.
    pub keep_entries: u64,
    /// Bound on the command bytes those kept slots carry: with large values, fewer
    /// slots are kept (1,000 slots of 1 MB values would keep 1 GB of log).
    pub keep_bytes: u64,
}

impl Compaction {
    /// Never compacts by policy (only on demand).
    pub fn never() -> Self {
        Self {
            every_entries: None,
            every_bytes: None,
            keep_entries: 0,
            keep_bytes: 0,
        }
    }

    /// True if `entries` slots and `bytes` bytes of commands applied since the last
    /// snapshot, which was `snapshot_bytes` long, call for a new one: a threshold is
    /// reached, **and** the commands applied since are at least as large as that snapshot.
    ///
    /// The second rule bounds the cost: writing snapshots never takes more I/O than the
    /// log they replace (at most 2x write amplification, as Redis's AOF rewrite at 100%
    /// growth), and the log kept in memory is at most about the state's size, so memory
    /// stays within about twice the live state whatever the history's length.
    pub fn due(&self, entries: u64, bytes: u64, snapshot_bytes: u64) -> bool {
        let threshold = self.every_entries.is_some_and(|n| entries >= n)
            || self.every_bytes.is_some_and(|n| bytes >= n);
        threshold && bytes >= snapshot_bytes
    }
}

impl Default for Compaction {
    /// Every 50,000 slots or 64 MiB of commands, keeping 1,000 slots (at most 16 MiB of
    /// commands) behind.
    fn default() -> Self {
        Self {
            every_entries: Some(50_000),
            every_bytes: Some(64 << 20),
            keep_entries: 1_000,
            keep_bytes: 16 << 20,
        }
    }
}

impl Default for NodeOptions {
    /// Request timeout 5 s, 1024 queued requests, 1024 requests and 1024 messages per
    /// cycle, one persist at a time, waiters bounded by the core's pending-proposal bound; the default
    /// [`Compaction`]; snapshot chunks of 256 KiB, sent at most 128 MiB/s, asked for
    /// again after 1 s.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            request_queue: 1024,
            max_waiters: None,
            max_requests_per_cycle: 1024,
            max_inbound_per_cycle: 1024,
            persists_in_flight: 1,
            compaction: Compaction::default(),
            snapshot_chunk_bytes: 256 << 10,
            snapshot_send_rate: 128 << 20,
            snapshot_request_timeout: Duration::from_secs(1),
        }
    }
}

impl NodeOptions {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let zero = |field| {
            Err(OptionsError {
                field,
                reason: "must be at least 1",
            })
        };
        if self.request_timeout.is_zero() {
            return Err(OptionsError {
                field: "request_timeout",
                reason: "must be non-zero",
            });
        }
        if self.request_queue == 0 {
            return zero("request_queue");
        }
        if self.max_waiters == Some(0) {
            return zero("max_waiters");
        }
        if self.max_requests_per_cycle == 0 {
            return zero("max_requests_per_cycle");
        }
        if self.max_inbound_per_cycle == 0 {
            return zero("max_inbound_per_cycle");
        }
        if self.persists_in_flight == 0 || self.persists_in_flight > 64 {
            return Err(OptionsError {
                field: "persists_in_flight",
                reason: "must be 1 to 64",
            });
        }
        if self.compaction.every_entries == Some(0) {
            return zero("compaction.every_entries");
        }
        if self.compaction.every_bytes == Some(0) {
            return zero("compaction.every_bytes");
        }
        if self.snapshot_chunk_bytes == 0 {
            return zero("snapshot_chunk_bytes");
        }
        if self.snapshot_send_rate == 0 {
            return zero("snapshot_send_rate");
        }
        if self.snapshot_request_timeout.is_zero() {
            return Err(OptionsError {
                field: "snapshot_request_timeout",
                reason: "must be non-zero",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_is_due_at_a_threshold_once_the_log_outweighs_the_snapshot() {
        let policy = Compaction::default();
        assert!(!policy.due(49_999, 0, 0));
        assert!(policy.due(50_000, 0, 0), "the first snapshot: by count");
        assert!(policy.due(0, 64 << 20, 0), "by size");
        // A snapshot of 100 MiB: not again until 100 MiB of commands replace it.
        assert!(!policy.due(50_000, 10 << 20, 100 << 20));
        assert!(!policy.due(50_000, 99 << 20, 100 << 20));
        assert!(policy.due(50_000, 100 << 20, 100 << 20));
        assert!(!Compaction::never().due(u64::MAX, u64::MAX, 0));
    }

    #[test]
    fn refuses_each_zero_bound() {
        assert_eq!(NodeOptions::default().validate(), Ok(()));
        let cases: Vec<fn(&mut NodeOptions)> = vec![
            |o| o.request_timeout = Duration::ZERO,
            |o| o.request_queue = 0,
            |o| o.max_waiters = Some(0),
            |o| o.max_requests_per_cycle = 0,
            |o| o.max_inbound_per_cycle = 0,
            |o| o.persists_in_flight = 0,
            |o| o.persists_in_flight = 65,
            |o| o.compaction.every_entries = Some(0),
            |o| o.compaction.every_bytes = Some(0),
            |o| o.snapshot_chunk_bytes = 0,
            |o| o.snapshot_send_rate = 0,
            |o| o.snapshot_request_timeout = Duration::ZERO,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let mut o = NodeOptions::default();
            case(&mut o);
            assert!(o.validate().is_err(), "case {i} accepted");
        }
    }
}
