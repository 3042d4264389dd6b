//! [`NodeMetrics`]: the node's counters, declared once.
//!
//! The driver bumps atomics ([`Counters`]); [`NodeHandle::metrics`](crate::NodeHandle::metrics)
//! copies them into a plain [`NodeMetrics`]; an exporter lists them with
//! [`NodeMetrics::visit`]. All three follow from the one list in `node_metrics!` below, so
//! a new counter is one line there (its doc comment is its help text), and an exporter that
//! loops over `visit` shows it without a line of its own. The core's counters come along
//! the same way, from [`Metrics::fields`].
//!
//! No exporter lives here: this crate depends on no metrics or HTTP crate. The
//! `paxos-node` binary (crate `paxos-kv`) encodes the visit as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use paxos_core::{Message, Metrics};

/// Declares [`NodeMetrics`] and its atomic twin [`Counters`]: one line per counter, its doc
/// comment (the help text exporters show) and its name and kind. The snapshot and the
/// listing follow from the list.
macro_rules! node_metrics {
    ($($(#[doc = $doc:literal])+ $name:ident: $kind:ident,)+) => {
        /// Counters since the node started, for metrics (see [`visit`](Self::visit)).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct NodeMetrics {
            $($(#[doc = $doc])+ pub $name: u64,)+
            /// The core's own counters (elections, Prepares, lease and read-index reads).
            pub core: Metrics,
            /// Messages handed to the transport, by kind, indexed like [`Message::KINDS`].
            pub messages_sent: [u64; Message::KINDS.len()],
            /// How long `Storage::persist` took.
            pub persist_latency: LatencyHistogram,
        }

        /// What the driver bumps: one atomic per counter of [`NodeMetrics`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)+
            pub(crate) sent: [AtomicU64; Message::KINDS.len()],
            pub(crate) persist_buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
            pub(crate) persist_sum_us: AtomicU64,
        }

        impl Counters {
            /// The counters now, with the core's as of the driver's last cycle.
            pub(crate) fn snapshot(&self, core: Metrics) -> NodeMetrics {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                NodeMetrics {
                    $($name: get(&self.$name),)+
                    core,
                    messages_sent: std::array::from_fn(|i| get(&self.sent[i])),
                    persist_latency: LatencyHistogram {
                        counts: std::array::from_fn(|i| get(&self.persist_buckets[i])),
                        sum_us: get(&self.persist_sum_us),
                    },
                }
            }
        }

        impl NodeMetrics {
            fn visit_declared(&self, visit: &mut impl FnMut(Metric<'_>)) {
                $(visit(Metric {
                    name: stringify!($name),
                    help: concat!($($doc),+).trim_ascii_start(),
                    value: MetricValue::$kind(self.$name),
                });)+
            }
        }
    };
}

node_metrics! {
    /// Proposals taken by the core (client writes on this node).
    proposals: Counter,
    /// Reads answered on this node.
    reads: Counter,
    /// Read barriers answered at once on the caller's task under the leader lease
    /// ([`NodeHandle::try_read_barrier`](crate::NodeHandle::try_read_barrier)); not in
    /// `reads`.
    local_read_barriers: Counter,
    /// Read markers proposed (reads started away from the leader go through the log; reads
    /// of one cycle share a marker).
    read_markers: Counter,
    /// Slots applied to the state machine.
    committed_slots: Counter,
    /// Client commands applied (from every node's clients).
    committed_commands: Counter,
    /// The most commands applied from one slot: the largest batch seen.
    largest_batch: Gauge,
    /// The most proposals ever queued in the core at once (bounded by
    /// `Config::max_pending_proposals`).
    peak_pending_proposals: Gauge,
    /// The most requests ever waiting for their outcome at once (bounded by
    /// `NodeOptions::max_waiters`).
    peak_waiters: Gauge,
    /// `Storage::persist` calls: one per `Ready` with something to persist.
    persists: Counter,
    /// Entries written by those calls.
    persisted_entries: Counter,
    /// Driver cycles run.
    driver_cycles: Counter,
    /// Batches of chosen values applied while a persist was under way, taken from the
    /// core as the messages that chose them arrived (`Replica::poll_chosen`), rather than
    /// in the next `Ready`.
    chosen_during_persist: Counter,
    /// Persists started while an earlier one was still under way (pipelined persists,
    /// `NodeOptions::persists_in_flight` above 1).
    persists_pipelined: Counter,
    /// Snapshots this node took of its own state (by policy or on demand).
    snapshots_taken: Counter,
    /// Of those, snapshots written in the background from a frozen state
    /// (`StateMachine::freeze`) while the node served.
    snapshots_background: Counter,
    /// Snapshots this node fetched from a peer and installed.
    snapshots_installed: Counter,
    /// Snapshot chunks sent to peers.
    snapshot_chunks_sent: Counter,
    /// Snapshot bytes sent to peers.
    snapshot_bytes_sent: Counter,
    /// Snapshot chunks received and staged.
    snapshot_chunks_received: Counter,
    /// Snapshot chunks received and dropped (out of order, stale, bad checksum), and
    /// whole transfers that failed their checksum.
    snapshot_chunks_dropped: Counter,
    /// Snapshots the state machine failed to take (the node kept running).
    snapshot_failures: Counter,
    /// The first slot still in the log: everything below is in the snapshot.
    log_start: Gauge,
    /// Size of the saved snapshot, in bytes.
    snapshot_bytes: Gauge,
}

impl NodeMetrics {
    /// Calls `visit` once for every metric: the counters declared above, then the core's
    /// ([`Metrics::fields`]), the messages sent by kind and the persist latency. Names are
    /// unique, in `snake_case`, without a prefix or unit suffix: an exporter adds those
    /// (Prometheus: `paxos_proposals_total`, `paxos_persist_seconds`).
    pub fn visit(&self, mut visit: impl FnMut(Metric<'_>)) {
        self.visit_declared(&mut visit);
        for (name, help, value) in self.core.fields() {
            let value = MetricValue::Counter(value);
            visit(Metric { name, help, value });
        }
        visit(Metric {
            name: "messages_sent",
            help: "Protocol messages sent, by kind.",
            value: MetricValue::CountersBy {
                label: "kind",
                keys: &Message::KINDS,
                values: &self.messages_sent,
            },
        });
        visit(Metric {
            name: "persist",
            help: "Time taken by Storage::persist, as the driver saw it (it applies chosen values meanwhile, and notices the end when that yields).",
            value: MetricValue::Latency(&self.persist_latency),
        });
    }
}

/// One metric, as [`NodeMetrics::visit`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metric<'a> {
    /// Unique among the metrics listed, `snake_case`, without prefix or unit.
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// Its kind and value.
    pub value: MetricValue<'a>,
}

/// The kind and value of a [`Metric`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricValue<'a> {
    /// A count that only goes up while the node runs.
    Counter(u64),
    /// A level, or a high-water mark.
    Gauge(u64),
    /// Counters by the value of one label: `values[i]` counts `label = keys[i]`.
    CountersBy {
        /// The label's name.
        label: &'static str,
        /// The label's values.
        keys: &'static [&'static str],
        /// One count per key.
        values: &'a [u64],
    },
    /// Durations, in the buckets of [`LATENCY_BOUNDS_US`].
    Latency(&'a LatencyHistogram),
}

/// A latency histogram with fixed buckets, for Prometheus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket: `counts[i]` took at most `LATENCY_BOUNDS_US[i]` µs and
    /// more than the bound before it; the last counts everything slower.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of all observations, µs.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Upper bounds of the [`LatencyHistogram`] buckets, µs.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one persist that took `took`.
    pub(crate) fn observe_persist(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        Self::add(&self.persist_buckets[bucket], 1);
        Self::add(&self.persist_sum_us, us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_copied_and_listed_once() {
        let counters = Counters::default();
        Counters::add(&counters.proposals, 3);
        Counters::add(&counters.driver_cycles, 5);
        Counters::add(&counters.sent[1], 7);
        counters.observe_persist(Duration::from_micros(60));
        let m = counters.snapshot(Metrics::default());
        assert_eq!((m.proposals, m.driver_cycles), (3, 5));
        assert_eq!(m.messages_sent[1], 7);
        assert_eq!(m.persist_latency.counts[1], 1);
        assert_eq!(m.persist_latency.count(), 1);

        let mut names = Vec::new();
        m.visit(|metric| {
            assert!(!metric.help.is_empty() && !metric.help.starts_with(' '));
            assert!(!metric.help.contains('\n'), "{metric:?}");
            names.push(metric.name);
        });
        let listed = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), listed, "a name is listed twice");
        for name in [
            "proposals",
            "driver_cycles",
            "elections_won",
            "messages_sent",
        ] {
            assert!(names.contains(&name), "{name} is not listed");
        }
        for (name, _, _) in Metrics::default().fields() {
            assert!(names.contains(&name), "the core's {name} is not listed");
        }
    }
}
