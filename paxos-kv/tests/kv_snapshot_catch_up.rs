//! Catching up through a snapshot, over real processes: three `paxos-node serve` nodes
//! with file storage and a small compaction threshold. One follower is killed; the others
//! write well past the threshold (so the leader compacts its log past everything the
//! follower has), with values large enough that the snapshot takes several chunks. The
//! follower comes back on its old data directory, must catch up by fetching and
//! installing the leader's snapshot (its `/status` counts it), and must then hold exactly
//! the keyspace the others hold, read back from each node's own state.

mod proc;

use std::collections::BTreeMap;

use proc::{NodeAddrs, WAIT, http_get, layout, poll, redis_conn, serve, wait_all_writable};

/// Compaction after this many slots, keeping this many behind: small, so that a few
/// thousand writes compact many times.
const EVERY: &str = "100";
const KEEP: &str = "20";
/// Writes made while the follower is down, one slot each.
const SINGLE_WRITES: usize = 600;
/// Keys of 64 KiB values, written in pipelines: 8 MiB of state, so the snapshot is many
/// 256 KiB chunks.
const BIG_KEYS: usize = 128;
const BIG_VALUE: usize = 64 << 10;

fn status(node: &NodeAddrs) -> Option<serde_json::Value> {
    let (code, body) = http_get(node.admin, "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

fn field(node: &NodeAddrs, name: &str) -> Option<u64> {
    status(node)?[name].as_u64()
}

/// Every key and value, read from `node`'s own state (SCAN and MGET on that node).
fn keyspace(node: &NodeAddrs) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut con = redis_conn(node.resp, WAIT).expect("connect");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query(&mut con)
            .expect("SCAN");
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut map = BTreeMap::new();
    for batch in keys.chunks(64) {
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(batch).query(&mut con).expect("MGET");
        for (k, v) in batch.iter().zip(values) {
            map.insert(k.clone(), v.expect("a scanned key has a value"));
        }
    }
    map
}

#[test]
fn a_follower_down_past_the_compaction_point_catches_up_by_snapshot() {
    let dir = proc::tempdir();
    let nodes = layout(3);
    let flags = [
        "--storage",
        "file",
        "--compact-every-entries",
        EVERY,
        "--compact-keep-entries",
        KEEP,
    ];
    let mut procs: Vec<Option<proc::Proc>> = (0..3)
        .map(|i| Some(serve(&nodes, i, dir.path(), &flags)))
        .collect();
    wait_all_writable(&nodes, dir.path());

    let leader = poll("a leader", WAIT, || {
        (0..3).find(|&i| status(&nodes[i]).is_some_and(|s| s["role"] == "leader"))
    });
    let follower = (leader + 1) % 3;
    let mut con = redis_conn(nodes[leader].resp, WAIT).expect("connect to the leader");
    let () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query(&mut con)
        .unwrap();
    let follower_applied = poll("the follower to apply the first write", WAIT, || {
        let applied = field(&nodes[follower], "applied")?;
        (applied >= field(&nodes[leader], "applied")?).then_some(applied)
    });
    drop(procs[follower].take());

    // Writes the follower misses: single SETs (a slot each), overwrites of a small set of
    // keys, and large values in pipelines.
    for i in 0..SINGLE_WRITES {
        let () = redis::cmd("SET")
            .arg(format!("k{}", i % 50))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    for chunk in 0..BIG_KEYS / 16 {
        let mut pipe = redis::pipe();
        for j in 0..16 {
            let key = chunk * 16 + j;
            pipe.cmd("SET")
                .arg(format!("big{key}"))
                .arg(vec![key as u8; BIG_VALUE])
                .ignore();
        }
        let () = pipe.query(&mut con).unwrap();
    }
    let () = redis::cmd("DEL")
        .arg("k0")
        .arg("k1")
        .query(&mut con)
        .unwrap();
    let () = redis::cmd("INCR").arg("counter").query(&mut con).unwrap();

    // The leader compacted past everything the follower has.
    let log_start = poll("the leader to compact its log", WAIT, || {
        let start = field(&nodes[leader], "log_start")?;
        (start > follower_applied && field(&nodes[leader], "snapshots_taken")? > 0).then_some(start)
    });
    let target = field(&nodes[leader], "applied").unwrap();
    assert!(target > log_start, "{target} {log_start}");

    procs[follower] = Some(serve(&nodes, follower, dir.path(), &flags));
    let installed = poll(
        "the follower to install a snapshot and catch up",
        WAIT,
        || {
            let s = status(&nodes[follower])?;
            let installed = s["snapshots_installed"].as_u64()?;
            (installed >= 1 && s["applied"].as_u64()? >= target).then_some(installed)
        },
    );
    assert!(installed >= 1);
    // Chunks went out from a peer: whichever live node answered the follower's catch-up
    // first offered its snapshot (the leader or the other follower, both compacted).
    let chunks_sent = |node: &NodeAddrs| -> u64 {
        let metrics = http_get(node.admin, "/metrics").unwrap().1;
        metrics
            .lines()
            .filter(|l| l.starts_with("paxos_snapshot_chunks_sent_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let sent: u64 = (0..3)
        .filter(|&i| i != follower)
        .map(|i| chunks_sent(&nodes[i]))
        .sum();
    assert!(sent > 0, "no peer sent a snapshot chunk");

    // Every node holds the same keyspace, read from its own state.
    let expected = keyspace(&nodes[leader]);
    assert_eq!(
        expected.len(),
        50 - 2 + BIG_KEYS + 3,
        "keys: before, counter, __ready"
    );
    assert_eq!(expected[b"counter".as_slice()], b"1");
    assert_eq!(expected[b"big7".as_slice()], vec![7u8; BIG_VALUE]);
    for (i, node) in nodes.iter().enumerate() {
        let got = keyspace(node);
        assert!(
            got == expected,
            "node {} differs from the leader's keyspace",
            i + 1
        );
    }
}
