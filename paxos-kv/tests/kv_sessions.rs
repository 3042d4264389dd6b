//! Sessions at the client port: a node keeping a single session, two connections writing
//! in turn, so every write of one evicts the other's session. Each write must still apply
//! exactly once and answer normally: a connection whose session was evicted goes on as a
//! new client (see `paxos_kv::kv`, "Exactly once").

mod proc;

use std::time::Duration;

use proc::{WAIT, http_get, layout, serve, wait_writable};

#[test]
fn evicted_sessions_renew_without_double_applying() {
    let dir = proc::tempdir();
    let nodes = layout(1);
    let _node = serve(
        &nodes,
        0,
        dir.path(),
        &["--storage", "memory", "--max-sessions", "1"],
    );
    let port = nodes[0].resp;
    drop(wait_writable(port));
    let mut a = proc::redis_conn(port, WAIT).unwrap();
    let mut b = proc::redis_conn(port, WAIT).unwrap();
    let mut expected = 0;
    for _ in 0..20 {
        for con in [&mut a, &mut b] {
            expected += 1;
            let n: i64 = redis::cmd("INCR").arg("n").query(con).unwrap();
            assert_eq!(n, expected, "each INCR applies once");
        }
    }
    let mut c = proc::redis_conn(port, Duration::from_secs(5)).unwrap();
    let n: i64 = redis::cmd("GET").arg("n").query(&mut c).unwrap();
    assert_eq!(n, expected);
    // Every write after the first two found its session evicted.
    let (_, metrics) = http_get(nodes[0].admin, "/metrics").unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("paxos_resp_sessions_renewed_total"))
        .unwrap();
    let renewed: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(renewed, expected as u64 - 2, "{line}");
}
