//! The data commands on a three-node cluster (one node on smol), through the leader and
//! through a follower, with the Rust `redis` crate in RESP2 and in RESP3 (which opens with
//! `HELLO 3`): every command's replies, read-your-writes inside a pipeline, and
//! pipelining itself: 100 `SET`s sent as one pipeline commit in a few slots, not 100.

mod proc;

use std::collections::BTreeSet;
use std::time::Duration;

use proc::{NodeAddrs, Proc, WAIT, http_get, layout, poll, serve, wait_writable};
use redis::{Connection, RedisResult};

struct Cluster {
    _procs: Vec<Proc>,
    nodes: Vec<NodeAddrs>,
    leader: usize,
    follower: usize,
    _dir: tempfile::TempDir,
}

fn status(admin: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(admin, "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

fn cluster() -> Cluster {
    let dir = proc::tempdir();
    let nodes = layout(3);
    let procs = (0..3)
        .map(|i| {
            let runtime = if i == 2 { "smol" } else { "tokio" };
            serve(
                &nodes,
                i,
                dir.path(),
                &["--storage", "memory", "--runtime", runtime],
            )
        })
        .collect();
    for node in &nodes {
        drop(wait_writable(node.resp));
    }
    let leader = poll("a leader every node agrees on", WAIT, || {
        let views: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| status(n.admin))
            .collect::<Option<_>>()?;
        let leader = views[0]["leader"].as_u64()?;
        views
            .iter()
            .all(|v| v["leader"].as_u64() == Some(leader))
            .then(|| nodes.iter().position(|n| n.id == leader))?
    });
    Cluster {
        _procs: procs,
        follower: (leader + 1) % 3,
        leader,
        nodes,
        _dir: dir,
    }
}

fn connect(port: u16, resp3: bool) -> Connection {
    let protocol = if resp3 { "?protocol=resp3" } else { "" };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{protocol}")).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    con.set_read_timeout(Some(WAIT)).unwrap();
    con
}

/// Every data command, on keys starting with `p`.
fn exercise(con: &mut Connection, p: &str) -> RedisResult<()> {
    let k = |s: &str| format!("{p}{s}");
    let cmd = redis::cmd;

    // SET and its options.
    let () = cmd("SET").arg(k("a")).arg("1").query(con)?;
    let r: Option<String> = cmd("SET").arg(k("a")).arg("2").arg("NX").query(con)?;
    assert_eq!(r, None, "NX on a present key");
    let r: Option<String> = cmd("SET")
        .arg(k("a"))
        .arg("2")
        .arg("XX")
        .arg("GET")
        .query(con)?;
    assert_eq!(r.as_deref(), Some("1"), "XX GET: the value before");
    let r: Option<String> = cmd("SET").arg(k("b")).arg("1").arg("XX").query(con)?;
    assert_eq!(r, None, "XX on an absent key");
    let r: Option<String> = cmd("SET").arg(k("b")).arg("1").arg("nx").query(con)?;
    assert_eq!(r.as_deref(), Some("OK"));
    let r: Option<String> = cmd("SET")
        .arg(k("b"))
        .arg("2")
        .arg("NX")
        .arg("GET")
        .query(con)?;
    assert_eq!(r.as_deref(), Some("1"), "NX GET on a present key: not set");
    let r: String = cmd("GET").arg(k("b")).query(con)?;
    assert_eq!(r, "1");
    let e = cmd("SET")
        .arg(k("b"))
        .arg("1")
        .arg("NX")
        .arg("XX")
        .query::<()>(con)
        .unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");

    // SETNX, GETSET.
    let n: i64 = cmd("SETNX").arg(k("a")).arg("x").query(con)?;
    assert_eq!(n, 0);
    let n: i64 = cmd("SETNX").arg(k("c")).arg("x").query(con)?;
    assert_eq!(n, 1);
    let r: Option<String> = cmd("GETSET").arg(k("c")).arg("y").query(con)?;
    assert_eq!(r.as_deref(), Some("x"));
    let r: Option<String> = cmd("GETSET").arg(k("d")).arg("z").query(con)?;
    assert_eq!(r, None);

    // MSET, MGET, EXISTS (a repeated key counts each time).
    let () = cmd("MSET")
        .arg(k("e"))
        .arg("1")
        .arg(k("f"))
        .arg("2")
        .query(con)?;
    let r: Vec<Option<String>> = cmd("MGET")
        .arg(k("e"))
        .arg(k("f"))
        .arg(k("none"))
        .query(con)?;
    assert_eq!(r, [Some("1".into()), Some("2".into()), None]);
    let n: i64 = cmd("EXISTS")
        .arg(k("e"))
        .arg(k("e"))
        .arg(k("none"))
        .query(con)?;
    assert_eq!(n, 2);

    // APPEND, STRLEN.
    let n: i64 = cmd("APPEND").arg(k("g")).arg("ab").query(con)?;
    assert_eq!(n, 2);
    let n: i64 = cmd("APPEND").arg(k("g")).arg("c").query(con)?;
    assert_eq!(n, 3);
    let n: i64 = cmd("STRLEN").arg(k("g")).query(con)?;
    assert_eq!(n, 3);
    let n: i64 = cmd("STRLEN").arg(k("none")).query(con)?;
    assert_eq!(n, 0);

    // Counters.
    let n: i64 = cmd("INCRBY").arg(k("h")).arg(5).query(con)?;
    assert_eq!(n, 5);
    let n: i64 = cmd("DECR").arg(k("h")).query(con)?;
    assert_eq!(n, 4);
    let n: i64 = cmd("DECRBY").arg(k("h")).arg(10).query(con)?;
    assert_eq!(n, -6);
    let n: i64 = cmd("INCR").arg(k("h")).query(con)?;
    assert_eq!(n, -5);
    let e = cmd("INCRBY")
        .arg(k("h"))
        .arg("x")
        .query::<i64>(con)
        .unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let e = cmd("INCR").arg(k("g")).query::<i64>(con).unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");

    // CAS (this server's own).
    let n: i64 = cmd("CAS").arg(k("a")).arg("2").arg("3").query(con)?;
    assert_eq!(n, 1);
    let n: i64 = cmd("CAS").arg(k("a")).arg("2").arg("4").query(con)?;
    assert_eq!(n, 0);

    // SCAN with MATCH and COUNT visits every key of the prefix once.
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    for _ in 0..1000 {
        let (next, batch): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{p}*"))
            .arg("COUNT")
            .arg(2)
            .query(con)?;
        for key in batch {
            assert!(keys.insert(key.clone()), "{key} twice");
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "the scan ends");
    let expected: BTreeSet<String> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|s| k(s))
        .collect();
    assert_eq!(keys, expected);
    let total: i64 = cmd("DBSIZE").query(con)?;
    assert!(total >= 8, "{total}");

    // DEL of several keys counts those that existed.
    let n: i64 = cmd("DEL")
        .arg(k("a"))
        .arg(k("b"))
        .arg(k("c"))
        .arg(k("none"))
        .query(con)?;
    assert_eq!(n, 3);
    let n: i64 = cmd("EXISTS").arg(k("a")).arg(k("d")).query(con)?;
    assert_eq!(n, 1);
    Ok(())
}

#[test]
fn every_data_command_on_the_leader_and_a_follower_in_resp2_and_resp3() {
    let c = cluster();
    for (role, i) in [("leader", c.leader), ("follower", c.follower)] {
        for resp3 in [false, true] {
            let mut con = connect(c.nodes[i].resp, resp3);
            let prefix = format!("{role}-{}-", if resp3 { 3 } else { 2 });
            exercise(&mut con, &prefix).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        }
    }
}

/// `/status`'s `applied` on a node: every slot below it is applied there.
fn applied(admin: u16) -> u64 {
    status(admin).expect("/status")["applied"].as_u64().unwrap()
}

#[test]
fn a_pipeline_reads_its_writes_and_100_sets_commit_in_a_few_slots() {
    let c = cluster();
    for (role, i) in [("leader", c.leader), ("follower", c.follower)] {
        let node = &c.nodes[i];
        let mut con = connect(node.resp, false);

        // Read-your-writes within one pipeline: each read group starts after the writes
        // before it are applied.
        let key = format!("ryw-{role}");
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&key).arg("1");
        pipe.cmd("GET").arg(&key);
        pipe.cmd("INCR").arg(&key);
        pipe.cmd("INCRBY").arg(&key).arg(10);
        pipe.cmd("GET").arg(&key);
        pipe.cmd("PING");
        pipe.cmd("MGET").arg(&key).arg("nothing");
        pipe.cmd("DEL").arg(&key);
        pipe.cmd("EXISTS").arg(&key);
        #[allow(clippy::type_complexity)]
        let got: (
            String,
            String,
            i64,
            i64,
            String,
            String,
            Vec<Option<String>>,
            i64,
            i64,
        ) = pipe.query(&mut con).unwrap();
        assert_eq!(
            got,
            (
                "OK".into(),
                "1".into(),
                2,
                12,
                "12".into(),
                "PONG".into(),
                vec![Some("12".into()), None],
                1,
                0
            ),
            "{role}"
        );

        // 100 SETs in one pipeline: one batch, so a few slots (one, unless the batch
        // meets other traffic), not 100. Everything is applied when the replies arrive.
        let before = applied(node.admin);
        let mut pipe = redis::pipe();
        for j in 0..100 {
            pipe.cmd("SET")
                .arg(format!("pipe-{role}-{j}"))
                .arg(j)
                .ignore();
        }
        let () = pipe.query(&mut con).unwrap();
        // `/status` is refreshed at the end of the driver's cycle, maybe just after the
        // replies went out.
        let slots = poll("/status to show the pipeline applied", WAIT, || {
            let slots = applied(node.admin) - before;
            (slots > 0).then_some(slots)
        });
        assert!(
            (1..10).contains(&slots),
            "{role}: 100 pipelined SETs took {slots} slots"
        );
        let keys: Vec<String> = (0..100).map(|j| format!("pipe-{role}-{j}")).collect();
        let values: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
        assert_eq!(values, (0..100).collect::<Vec<i64>>(), "{role}");
    }
}
