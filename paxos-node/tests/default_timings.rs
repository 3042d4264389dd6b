//! The defaults of the three layers fit together: the core's protocol timings
//! ([`Config`]), the node's client deadline ([`NodeOptions`]) and the TCP transport's
//! timeouts and bounds ([`TcpConfig`]). Each relation below is one a user would see broken:
//! a client deadline shorter than a failover fails every request made during one; a
//! reconnect backoff longer than the deadline fails the requests a healed link could
//! serve; a frame limit below the core's message bound would refuse to build the node.

use std::collections::BTreeMap;
use std::time::Duration;

use paxos_core::{Config, NodeId};
use paxos_net_tcp::TcpConfig;
use paxos_node::NodeOptions;

fn defaults() -> (Config, NodeOptions, TcpConfig) {
    let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let core = Config::new(NodeId(1), members);
    let tcp = TcpConfig::new(
        1,
        NodeId(1),
        "127.0.0.1:0".parse().unwrap(),
        BTreeMap::new(),
    );
    (core, NodeOptions::default(), tcp)
}

#[test]
fn the_default_core_config_is_valid() {
    let (core, _, _) = defaults();
    assert_eq!(core.validate(), Ok(()));
}

#[test]
fn a_client_deadline_outlasts_a_failover_and_a_redial() {
    let (core, node, tcp) = defaults();
    // A leader dies: followers wait out the longest election timeout, then the lease the
    // old leader may still hold, run phase 1 (a round trip or so), and redial the links
    // that broke (at worst the longest backoff). The request must still be in time.
    let failover = core.election_timeout_max
        + core.lease_duration.unwrap_or_default()
        + core.resend_interval
        + tcp.reconnect_backoff_max;
    assert!(
        node.request_timeout > failover,
        "request_timeout {:?} <= failover {failover:?}",
        node.request_timeout
    );
}

#[test]
fn the_transport_notices_a_dead_link_before_a_client_gives_up_twice() {
    let (_, node, tcp) = defaults();
    // A handshake that hangs is abandoned within one client deadline (so a retry finds a
    // fresh connection); a peer that stops reading is given up within two.
    assert!(tcp.handshake_timeout <= node.request_timeout);
    assert!(tcp.write_timeout <= 2 * node.request_timeout);
    assert!(tcp.reconnect_backoff_min <= tcp.reconnect_backoff_max);
}

#[test]
fn heartbeats_fit_the_transport_queues_and_frames() {
    let (core, _, tcp) = defaults();
    // The node refuses to build if a core message cannot be framed.
    assert!(core.max_message_bytes < tcp.max_frame_bytes);
    // One election timeout of heartbeats fits an outbound queue, so a slow link drops
    // data, never the heartbeats that keep the leader.
    let per_election = core.election_timeout_max.as_nanos() / core.heartbeat_interval.as_nanos();
    assert!(per_election < tcp.max_outbound_queue as u128);
    // A full outbound queue of the largest messages is within its byte bound's reach:
    // at least one largest message is always admitted.
    assert!(core.max_message_bytes <= tcp.max_outbound_queue_bytes);
    assert!(Duration::ZERO < core.heartbeat_interval);
}
