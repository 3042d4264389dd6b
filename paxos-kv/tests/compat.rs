//! Redis client compatibility: real clients with their default settings, each run as a real
//! process (the Rust `redis` crate runs in this one) against a real 3-node cluster of
//! `paxos-node serve` processes, through a follower and through the leader.
//!
//! The clients and their scripts are in `tests/compat/` (see its README): redis-py and
//! ioredis, the latest releases from PyPI and npm, `redis-cli` (RESP2, RESP3, raw inline
//! commands) and a `redis-benchmark -t set,get,mset,incr -P 16` smoke run. `.ci/run`
//! installs them once (`tests/compat/install.sh`) and points `PAXOS_COMPAT_DEPS` at them;
//! without that variable this test installs them itself into `target/compat`, from the
//! package registries, and fails if it cannot.
//!
//! Every script checks each reply exactly, against what `redis-server` 7 answers (the
//! scripts were written against a real one), and prints one PASS/FAIL line per client.

mod proc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proc::{NodeAddrs, WAIT, http_get, layout, poll, serve};

/// The scripts' directory.
fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// Where the clients are installed: `PAXOS_COMPAT_DEPS`, or installed now under `target/`
/// (once per test binary: the tests share one install).
fn deps() -> PathBuf {
    static DEPS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEPS.get_or_init(install).clone()
}

fn install() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAXOS_COMPAT_DEPS") {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compat");
    let status = Command::new("bash")
        .arg(compat_dir().join("install.sh"))
        .arg(&dir)
        .status()
        .expect("run install.sh");
    assert!(
        status.success(),
        "installing the compatibility clients failed ({status}); see the output above"
    );
    dir
}

/// The index of the node every live node follows, from `/status`.
fn leader(nodes: &[NodeAddrs]) -> usize {
    poll("one leader that every node follows", WAIT, || {
        let leaders: Vec<u64> = nodes
            .iter()
            .map(|n| {
                let (_, body) = http_get(n.admin, "/status").ok()?;
                serde_json::from_str::<serde_json::Value>(&body).ok()?["leader"].as_u64()
            })
            .collect::<Option<_>>()?;
        let first = leaders[0];
        leaders.iter().all(|&l| l == first).then_some(())?;
        nodes.iter().position(|n| n.id == first)
    })
}

#[test]
fn real_clients_with_default_settings() {
    let deps = deps();
    let dir = proc::tempdir();
    let nodes = layout(3);
    let _procs: Vec<_> = (0..3).map(|i| serve(&nodes, i, dir.path(), &[])).collect();
    proc::wait_all_writable(&nodes, dir.path());
    let l = leader(&nodes);
    let f = (l + 1) % nodes.len();
    let (leader_port, follower_port) = (nodes[l].resp, nodes[f].resp);
    eprintln!(
        "leader: node {} on {leader_port}; follower: node {} on {follower_port}",
        nodes[l].id, nodes[f].id
    );

    let mut failures = Vec::new();
    match redis_rs::run(follower_port, leader_port) {
        Ok(checks) => eprintln!("PASS redis crate (Rust)       {checks:4} checks passed"),
        Err(e) => {
            eprintln!("FAIL redis crate (Rust): {e}");
            failures.push(format!("redis crate: {e}"));
        }
    }
    let status = Command::new("timeout")
        .arg("600")
        .arg("bash")
        .arg(compat_dir().join("run_all.sh"))
        .arg(&deps)
        .env("COMPAT_LOGS", dir.path().join("compat-logs"))
        .args(["--follower", &format!("127.0.0.1:{follower_port}")])
        .args(["--leader", &format!("127.0.0.1:{leader_port}")])
        .status()
        .expect("run run_all.sh");
    if !status.success() {
        failures.push(format!(
            "run_all.sh: {status} (its PASS/FAIL lines are above)"
        ));
    }
    // The cluster is still one cluster: every node still follows one leader.
    leader(&nodes);
    assert!(failures.is_empty(), "compatibility failures: {failures:#?}");
}

/// The scripts against `redis-server` itself, the reference they were written against: an
/// expectation of ours that real Redis does not meet fails here, not only on our server.
#[test]
fn the_scripts_hold_against_redis_server() {
    let deps = deps();
    let dir = proc::tempdir();
    let port = proc::free_ports(1)[0];
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (install.sh installs it)");
    let _server = proc::Proc { child };
    poll("redis-server to answer", WAIT, || {
        let mut con = proc::redis_conn(port, Duration::from_secs(5)).ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()
    });
    let checks = redis_rs::run(port, port).unwrap_or_else(|e| panic!("redis crate: {e}"));
    eprintln!("PASS redis crate (Rust)       {checks:4} checks passed");
    let address = format!("127.0.0.1:{port}");
    let status = Command::new("timeout")
        .arg("600")
        .arg("bash")
        .arg(compat_dir().join("run_all.sh"))
        .arg(&deps)
        .env("COMPAT_LOGS", dir.path().join("compat-logs"))
        .args(["--follower", &address, "--leader", &address])
        .status()
        .expect("run run_all.sh");
    assert!(
        status.success(),
        "run_all.sh against redis-server: {status}"
    );
}

/// The Rust `redis` crate, with its default settings (RESP2), and with `protocol=resp3`.
mod redis_rs {
    use super::*;
    use redis::{Connection, RedisResult, Value};

    /// A check that failed: the command and what came back.
    fn fail(what: &str, got: impl std::fmt::Debug) -> String {
        format!("{what}: got {got:?}")
    }

    fn connect(port: u16, query: &str) -> RedisResult<Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{query}"))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(10))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        con.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(con)
    }

    /// Runs the script through the follower, then the leader, then across the two; returns
    /// the number of checks that passed, or the first failure.
    pub(super) fn run(follower: u16, leader: u16) -> Result<usize, String> {
        let mut checks = 0;
        let prefix = format!("rs:{}:", std::process::id());
        for (name, port) in [("follower", follower), ("leader", leader)] {
            for query in ["", "?protocol=resp3"] {
                let mut con = connect(port, query).map_err(|e| fail(name, e))?;
                let p = format!("{prefix}{name}{query}:");
                script(&mut con, &p, &mut checks).map_err(|e| format!("via {name}{query}: {e}"))?;
            }
        }
        // Across nodes: a write through one is read through the other.
        let mut a = connect(follower, "").map_err(|e| fail("follower", e))?;
        let mut b = connect(leader, "").map_err(|e| fail("leader", e))?;
        let key = format!("{prefix}across");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("one")
            .query(&mut a)
            .map_err(|e| fail("SET", e))?;
        let got: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut b)
            .map_err(|e| fail("GET", e))?;
        expect(
            &mut checks,
            "GET across nodes",
            got.as_deref() == Some("one"),
            &got,
        )?;
        let n: i64 = redis::cmd("DEL")
            .arg(&key)
            .query(&mut b)
            .map_err(|e| fail("DEL", e))?;
        expect(&mut checks, "DEL across nodes", n == 1, n)?;
        Ok(checks)
    }

    fn expect(
        checks: &mut usize,
        what: &str,
        ok: bool,
        got: impl std::fmt::Debug,
    ) -> Result<(), String> {
        if ok {
            *checks += 1;
            Ok(())
        } else {
            Err(fail(what, got))
        }
    }

    fn script(con: &mut Connection, p: &str, checks: &mut usize) -> Result<(), String> {
        let k = |s: &str| format!("{p}{s}");
        let pong: String = redis::cmd("PING").query(con).map_err(|e| fail("PING", e))?;
        expect(checks, "PING", pong == "PONG", &pong)?;
        let () = redis::cmd("SET")
            .arg(k("a"))
            .arg("1")
            .query(con)
            .map_err(|e| fail("SET", e))?;
        let v: Option<String> = redis::cmd("GET")
            .arg(k("a"))
            .query(con)
            .map_err(|e| fail("GET", e))?;
        expect(checks, "GET", v.as_deref() == Some("1"), &v)?;
        let v: Option<String> = redis::cmd("GET")
            .arg(k("missing"))
            .query(con)
            .map_err(|e| fail("GET missing", e))?;
        expect(checks, "GET missing", v.is_none(), &v)?;
        let n: i64 = redis::cmd("INCRBY")
            .arg(k("a"))
            .arg(41)
            .query(con)
            .map_err(|e| fail("INCRBY", e))?;
        expect(checks, "INCRBY", n == 42, n)?;
        let n: i64 = redis::cmd("DECR")
            .arg(k("a"))
            .query(con)
            .map_err(|e| fail("DECR", e))?;
        expect(checks, "DECR", n == 41, n)?;
        let n: i64 = redis::cmd("DECRBY")
            .arg(k("a"))
            .arg(40)
            .query(con)
            .map_err(|e| fail("DECRBY", e))?;
        expect(checks, "DECRBY", n == 1, n)?;
        let n: i64 = redis::cmd("APPEND")
            .arg(k("s"))
            .arg("hello")
            .query(con)
            .map_err(|e| fail("APPEND", e))?;
        expect(checks, "APPEND", n == 5, n)?;
        let n: i64 = redis::cmd("APPEND")
            .arg(k("s"))
            .arg(" world")
            .query(con)
            .map_err(|e| fail("APPEND", e))?;
        expect(checks, "APPEND again", n == 11, n)?;
        let n: i64 = redis::cmd("STRLEN")
            .arg(k("s"))
            .query(con)
            .map_err(|e| fail("STRLEN", e))?;
        expect(checks, "STRLEN", n == 11, n)?;
        let set: bool = redis::cmd("SETNX")
            .arg(k("s"))
            .arg("x")
            .query(con)
            .map_err(|e| fail("SETNX", e))?;
        expect(checks, "SETNX on a key that exists", !set, set)?;
        let v: Value = redis::cmd("SET")
            .arg(k("s"))
            .arg("new")
            .arg("NX")
            .query(con)
            .map_err(|e| fail("SET NX", e))?;
        expect(checks, "SET NX on a key that exists", v == Value::Nil, &v)?;
        let old: Option<String> = redis::cmd("SET")
            .arg(k("s"))
            .arg("new")
            .arg("XX")
            .arg("GET")
            .query(con)
            .map_err(|e| fail("SET XX GET", e))?;
        expect(
            checks,
            "SET XX GET",
            old.as_deref() == Some("hello world"),
            &old,
        )?;
        let old: Option<String> = redis::cmd("GETSET")
            .arg(k("s"))
            .arg("newer")
            .query(con)
            .map_err(|e| fail("GETSET", e))?;
        expect(checks, "GETSET", old.as_deref() == Some("new"), &old)?;
        let () = redis::cmd("MSET")
            .arg(k("m1"))
            .arg("v1")
            .arg(k("m2"))
            .arg("v2")
            .query(con)
            .map_err(|e| fail("MSET", e))?;
        let vs: Vec<Option<String>> = redis::cmd("MGET")
            .arg(k("m1"))
            .arg(k("nope"))
            .arg(k("m2"))
            .query(con)
            .map_err(|e| fail("MGET", e))?;
        expect(
            checks,
            "MGET",
            vs == [Some("v1".into()), None, Some("v2".into())],
            &vs,
        )?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(k("m1"))
            .arg(k("m1"))
            .arg(k("nope"))
            .query(con)
            .map_err(|e| fail("EXISTS", e))?;
        expect(checks, "EXISTS counts duplicates", n == 2, n)?;
        let n: i64 = redis::cmd("DBSIZE")
            .query(con)
            .map_err(|e| fail("DBSIZE", e))?;
        expect(checks, "DBSIZE", n >= 4, n)?;
        // SCAN, iterated to the end, finds exactly this run's keys.
        let mut found: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{p}*"))
            .arg("COUNT")
            .arg(2)
            .clone()
            .iter::<String>(con)
            .map_err(|e| fail("SCAN", e))?
            .collect::<RedisResult<_>>()
            .map_err(|e| fail("SCAN", e))?;
        found.sort();
        found.dedup();
        let mut want = vec![k("a"), k("m1"), k("m2"), k("s")];
        want.sort();
        expect(checks, "SCAN MATCH", found == want, &found)?;
        // A pipeline of 100 SETs, then 100 GETs, in one round trip each.
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET").arg(k(&format!("p{i}"))).arg(i).ignore();
        }
        let () = pipe.query(con).map_err(|e| fail("pipelined SETs", e))?;
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("GET").arg(k(&format!("p{i}")));
        }
        let got: Vec<i64> = pipe.query(con).map_err(|e| fail("pipelined GETs", e))?;
        expect(
            checks,
            "pipelined GETs",
            got == (0..100).collect::<Vec<i64>>(),
            &got,
        )?;
        // Errors are errors, and the connection goes on.
        let err = redis::cmd("INCR").arg(k("s")).query::<i64>(con);
        expect(checks, "INCR of a non-integer", err.is_err(), &err)?;
        let err = redis::cmd("GET").query::<Value>(con);
        expect(checks, "GET without a key", err.is_err(), &err)?;
        // Clean up.
        let mut del = redis::cmd("DEL");
        for key in want
            .iter()
            .cloned()
            .chain((0..100).map(|i| k(&format!("p{i}"))))
        {
            del.arg(key);
        }
        let n: i64 = del.query(con).map_err(|e| fail("DEL", e))?;
        expect(checks, "DEL of several keys", n == 104, n)?;
        Ok(())
    }
}
