//! Compaction and installed snapshots in the core: a follower behind the compaction
//! point is offered a snapshot, installs it, and catches up through the log after it,
//! filtering duplicates as the others do; an acceptor never accepts a compacted slot; a
//! restart resumes after the snapshot.

use bytes::Bytes;

use super::Replica;
use super::tests::{Cluster, N1, N2, N3, at, b, cmd, config, step};
use crate::compaction::{CoreSnapshot, CoreSnapshotError};
use crate::message::{Accept, Accepted, CatchUp, Forward, Message, SnapshotOffer};
use crate::ready::{HardState, RecoveredState, SnapshotFetch};
use crate::types::{Entry, Slot, Value};

/// Commands applied by replica `i`, as payloads.
fn applied(c: &Cluster, i: usize) -> Vec<Bytes> {
    c.committed[i]
        .iter()
        .flat_map(|c| c.value.commands())
        .map(|c| c.payload.clone())
        .collect()
}

fn write(c: &mut Cluster, n: usize, tag: &str) {
    for i in 0..n {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("{tag}{i}")))
            .unwrap();
        c.settle();
    }
}

#[test]
fn a_follower_behind_the_compaction_point_installs_the_snapshot_and_catches_up() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    c.down = Some(N3);
    write(&mut c, 20, "a");
    // A duplicate of a command applied before the snapshot: filtered everywhere.
    let dup = cmd(1);
    for _ in 0..2 {
        c.replicas[0].handle_message(
            c.now,
            N2,
            Message::Forward(Forward {
                commands: vec![dup.clone()],
            }),
        );
        c.settle();
    }
    // N1 and N2 take their snapshots and compact.
    let mut snapshots = Vec::new();
    for i in 0..2 {
        let snapshot = c.replicas[i].core_snapshot();
        let upto = c.replicas[i].status().applied;
        assert_eq!(snapshot.upto(), upto);
        c.replicas[i].compact(upto);
        assert_eq!(c.replicas[i].status().log_start, upto);
        snapshots.push(snapshot);
    }
    let upto = snapshots[0].upto();
    assert!(
        upto > Slot(20),
        "every write and the noop of election: {upto}"
    );

    // N3 comes back and learns it is behind: its CatchUp from slot 0 is answered with
    // an offer, and its core asks for a fetch.
    c.down = None;
    write(&mut c, 1, "b");
    let offers = c
        .sent
        .iter()
        .filter(|(_, to, m)| *to == N3 && matches!(m, Message::SnapshotOffer(_)))
        .count();
    assert!(offers >= 1, "no snapshot offered to N3");
    let Some(&(2, SnapshotFetch { from, upto: asked })) = c.fetches.last() else {
        panic!("N3 asked for no snapshot: {:?}", c.fetches);
    };
    assert!(from == N1 || from == N2);
    assert_eq!(asked, upto);
    assert!(
        applied(&c, 2).is_empty(),
        "no command applied before the snapshot"
    );

    // The driver fetched it: N3 installs it, then takes the rest from the log.
    let snapshot = snapshots[usize::from(from != N1)].clone();
    assert!(c.replicas[2].install_snapshot(c.now, snapshot.clone()));
    assert!(
        !c.replicas[2].install_snapshot(c.now, snapshot),
        "a repeat changes nothing"
    );
    let status = c.replicas[2].status();
    assert_eq!((status.applied, status.log_start), (upto, upto));
    c.now = c.now + std::time::Duration::from_millis(200);
    c.replicas[2].handle_timeout(c.now);
    c.settle();
    write(&mut c, 1, "c");
    let (one, three) = (c.replicas[0].status(), c.replicas[2].status());
    assert_eq!(three.commit, one.commit);
    assert_eq!(three.applied, one.applied);
    // It applied exactly what the others applied after `upto`.
    let after: Vec<Bytes> = c.committed[0]
        .iter()
        .filter(|k| k.slot >= upto)
        .flat_map(|k| k.value.commands())
        .map(|k| k.payload.clone())
        .collect();
    assert_eq!(applied(&c, 2), after);
    assert_eq!(after, vec![Bytes::from("b0"), Bytes::from("c0")]);
    // Same duplicate filter as a replica that applied the whole log.
    assert_eq!(c.replicas[2].core_snapshot(), c.replicas[0].core_snapshot());
    c.replicas[0].handle_message(
        c.now,
        N2,
        Message::Forward(Forward {
            commands: vec![dup],
        }),
    );
    c.settle();
    for i in 0..3 {
        let last = c.committed[i].last().unwrap();
        assert!(
            last.value.commands().is_empty(),
            "replica {i} applied a duplicate"
        );
    }
}

#[test]
fn catch_up_from_below_the_compaction_point_is_offered_the_snapshot() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    write(&mut c, 3, "a");
    let upto = c.replicas[1].status().applied;
    c.replicas[1].compact(upto);
    c.replicas[1].handle_message(c.now, N3, Message::CatchUp(CatchUp { from: Slot(0) }));
    let ready = step(&mut c.replicas[1]);
    let commit = c.replicas[1].status().commit;
    assert_eq!(
        ready
            .messages
            .iter()
            .map(|e| (e.to, e.message.clone()))
            .collect::<Vec<_>>(),
        vec![(N3, Message::SnapshotOffer(SnapshotOffer { upto, commit }))]
    );
    // From the compaction point on, the log answers as before.
    c.replicas[1].handle_message(c.now, N3, Message::CatchUp(CatchUp { from: upto }));
    let ready = step(&mut c.replicas[1]);
    assert!(matches!(
        ready.messages[0].message,
        Message::CatchUpReply(_)
    ));
}

#[test]
fn an_acceptor_never_accepts_a_compacted_slot() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    write(&mut c, 3, "a");
    let r = &mut c.replicas[1];
    let upto = r.status().applied;
    r.compact(upto);
    let ballot = b(1, N1);
    let promised = r.status().promised;
    assert_eq!(promised, ballot);
    let now = c.now;
    r.handle_message(
        now,
        N1,
        Message::Accept(Accept {
            ballot,
            first: Slot(upto.0 - 1),
            values: vec![Value::Noop, Value::Noop],
            commit: upto,
            stamp: now,
        }),
    );
    let ready = step(r);
    assert!(ready.persist.entries.is_empty(), "{:?}", ready.persist);
    let accepted: Vec<_> = ready
        .messages
        .iter()
        .filter_map(|e| match &e.message {
            Message::Accepted(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        accepted,
        vec![Accepted {
            ballot,
            first: Slot(upto.0 - 1),
            count: 0,
            stamp: now
        }]
    );
}

#[test]
fn a_restart_resumes_after_the_snapshot() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    write(&mut c, 5, "a");
    let snapshot = c.replicas[1].core_snapshot();
    let upto = snapshot.upto();
    write(&mut c, 2, "b");
    let commit = c.replicas[1].status().commit;
    // What N2's store holds: every entry (some below the snapshot, not yet dropped).
    let entries: Vec<Entry> = (0..commit.0)
        .map(|s| Entry {
            slot: Slot(s),
            ballot: b(1, N1),
            value: c.committed[0]
                .iter()
                .find(|k| k.slot == Slot(s))
                .unwrap()
                .value
                .clone(),
        })
        .collect();
    let recovered = RecoveredState {
        hard_state: HardState {
            promised: b(1, N1),
            commit,
            epoch: 1,
            non_voting: false,
        },
        entries,
        snapshot: Some(CoreSnapshot::decode(&snapshot.encode()).unwrap()),
    };
    let mut r = Replica::new(config(N2), recovered, at(0)).unwrap();
    let status = r.status();
    assert_eq!(
        (status.log_start, status.applied, status.commit),
        (upto, upto, commit)
    );
    let ready = step(&mut r);
    let replayed: Vec<Slot> = ready.committed.iter().map(|k| k.slot).collect();
    assert_eq!(replayed, (upto.0..commit.0).map(Slot).collect::<Vec<_>>());
}

#[test]
#[should_panic(expected = "above the applied point")]
fn compacting_above_the_applied_point_is_a_driver_bug() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    let applied = c.replicas[0].status().applied;
    c.replicas[0].compact(applied.next());
}

#[test]
fn a_core_snapshot_round_trips_and_bad_bytes_are_refused() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    write(&mut c, 3, "a");
    let snapshot = c.replicas[0].core_snapshot();
    let bytes = snapshot.encode();
    assert_eq!(CoreSnapshot::decode(&bytes), Ok(snapshot.clone()));
    assert_eq!(snapshot.max_epoch(N1), Some(1));
    assert!(matches!(
        CoreSnapshot::decode(&bytes[..bytes.len() - 1]),
        Err(CoreSnapshotError::Malformed(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        CoreSnapshot::decode(&longer),
        Err(CoreSnapshotError::Malformed(_))
    ));
    let mut other = bytes;
    other[0] = 9;
    assert_eq!(
        CoreSnapshot::decode(&other),
        Err(CoreSnapshotError::Version(9))
    );
    assert!(CoreSnapshot::decode(&[]).is_err());
    // Garbage never panics.
    for seed in 0..200u32 {
        let junk: Vec<u8> = (0..64)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 17) % 251) as u8)
            .collect();
        let _ = CoreSnapshot::decode(&junk);
    }
}

#[test]
fn the_log_kept_behind_a_snapshot_is_bounded_by_bytes_too() {
    let mut c = Cluster::new(|_| {});
    c.elect(N1);
    // One command of 100 bytes per slot.
    for i in 0..20 {
        c.replicas[0]
            .propose(c.now, Bytes::from(format!("{i:0>100}")))
            .unwrap();
        c.settle();
    }
    let r = &c.replicas[0];
    let upto = r.status().applied;
    let from = Slot(upto.0 - 10);
    // Room for all ten slots: the count decides.
    assert_eq!(r.log_start_keeping(from, upto, 10_000), from);
    // Room for three whole slots of 100 bytes: the three below `upto`.
    assert_eq!(r.log_start_keeping(from, upto, 399), Slot(upto.0 - 3));
    assert_eq!(r.log_start_keeping(from, upto, 300), Slot(upto.0 - 3));
    // No room: nothing kept.
    assert_eq!(r.log_start_keeping(from, upto, 0), upto);
    assert_eq!(r.log_start_keeping(upto, upto, 0), upto);
}
