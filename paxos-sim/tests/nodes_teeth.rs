//! The whole-node checks have teeth: each bug, injected from outside the production code,
//! is caught by the check it targets within the first seeds CI runs.

use paxos_sim::whole::{NodeBug, NodeSimConfig, run};

/// Runs seeds 0.. of `bug` until one fails a check `targets` accepts; panics if none of
/// the first `within` does. Returns the seed that caught it.
fn caught(bug: NodeBug, within: u64, targets: &[&str]) -> u64 {
    for seed in 0..within {
        let cfg = NodeSimConfig {
            bug: Some(bug),
            ..NodeSimConfig::new(seed, [3, 5, 7][(seed % 3) as usize])
        };
        let report = run(&cfg);
        if let Some(v) = &report.violation {
            if targets.iter().any(|t| v.starts_with(t)) {
                eprintln!(
                    "{bug:?} caught at seed {seed}: {v}\nreplay: {}",
                    cfg.replay_command()
                );
                return seed;
            }
        }
    }
    panic!("{bug:?} was not caught by {targets:?} within {within} seeds");
}

/// Safety checks: agreement of applied logs, linearizability, exactly-once counters.
const SAFETY: &[&str] = &["agreement:", "history not linearizable", "exactly once:"];

#[test]
fn batching_without_a_byte_bound_is_caught_by_the_frame_limit() {
    caught(NodeBug::NoByteBound, 40, &["limits:"]);
}

#[test]
fn a_store_that_acks_before_it_syncs_loses_an_acknowledged_write() {
    caught(NodeBug::AckBeforeSync, 20, SAFETY);
}

#[test]
fn an_empty_disk_that_votes_breaks_safety() {
    caught(NodeBug::EmptyDiskVotes, 40, SAFETY);
}

#[test]
fn reading_at_once_on_a_leader_without_its_lease_is_caught() {
    caught(
        NodeBug::ReadAtOnceWhileLeading,
        20,
        &["history not linearizable"],
    );
}

#[test]
fn replay_commands_name_the_mode() {
    let cfg = NodeSimConfig {
        bug: Some(NodeBug::AckBeforeSync),
        ..NodeSimConfig::new(7, 5)
    };
    assert_eq!(
        cfg.replay_command(),
        "cargo run -p paxos-sim --release -- --mode node --seed 7 --nodes 5 --bug ack-before-sync"
    );
    // One seed, one run: the same report twice.
    let a = run(&NodeSimConfig::new(3, 3));
    let b = run(&NodeSimConfig::new(3, 3));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
