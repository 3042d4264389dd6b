//! Reads with one follower down (regression test of "defect 2"): three `paxos-node serve`
//! processes; a key is written, one follower is paused with SIGSTOP, and after a quiet
//! second with no writes at all, 20 GETs sent one after the other to the leader must each
//! answer correctly and promptly. Two of three nodes are a majority, so the leader can
//! serve reads either under its lease or with a read-index round to the live follower;
//! writes must not be needed to make reads work. It runs over TCP and over QUIC.

mod proc;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use proc::{NodeAddrs, Transport, WAIT, http_get, layout, poll, serve_over, wait_writable};

/// GETs sent to the leader while the follower is paused.
const GETS: usize = 20;
/// How long nothing is written before the GETs: well over a lease period (150 ms by
/// default), so whatever the last write left behind (lease acknowledgements, a recent
/// commit) has expired. Waiting for time to pass is the point here, not a stand-in for
/// synchronization.
const QUIET: Duration = Duration::from_secs(1);
/// Bound on each GET, as a client-side read timeout. A correct leader answers within about
/// one lease period: under its lease at once, or after one heartbeat round trip to the live
/// follower, which takes milliseconds on loopback. The bound adds slack for a loaded
/// 2-core CI machine, and still separates "slow" from the failure this test is about,
/// where a GET gets no answer until the server's client deadline (10 s) runs out.
const GET_BOUND: Duration = Duration::from_secs(1);

fn status(node: &NodeAddrs) -> Option<serde_json::Value> {
    let (code, body) = http_get(node.admin, "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

#[test]
fn leader_reads_do_not_need_writes_when_a_follower_is_down() {
    leader_reads_with_a_follower_down(Transport::Tcp);
}

#[test]
fn leader_reads_do_not_need_writes_when_a_follower_is_down_over_quic() {
    leader_reads_with_a_follower_down(Transport::Quic);
}

fn leader_reads_with_a_follower_down(transport: Transport) {
    let dir = proc::tempdir();
    let nodes = layout(3);
    transport.prepare(&nodes, dir.path());
    let procs: Vec<proc::Proc> = (0..3)
        .map(|i| serve_over(transport, &nodes, i, dir.path(), &["--storage", "memory"]))
        .collect();
    for n in &nodes {
        drop(wait_writable(n.resp));
    }
    transport.assert_listening(&nodes);

    // The leader, as every node sees it, and a follower that agrees.
    let (leader, follower) = poll("a leader known to a follower", WAIT, || {
        let leader = (0..3).find(|&i| status(&nodes[i]).is_some_and(|s| s["role"] == "leader"))?;
        let follower = (0..3).find(|&i| {
            status(&nodes[i]).is_some_and(|s| {
                s["role"] == "follower" && s["leader"].as_u64() == Some(nodes[leader].id)
            })
        })?;
        Some((leader, follower))
    });
    let mut con = proc::redis_conn(nodes[leader].resp, WAIT).expect("connect to the leader");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut con)
        .expect("SET");

    procs[follower].signal(Signal::SIGSTOP);
    std::thread::sleep(QUIET);
    let still = status(&nodes[leader]).expect("leader /status");
    assert_eq!(still["role"], "leader", "leadership moved: {still}");

    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..GETS {
        let t = Instant::now();
        let got = proc::redis_conn(nodes[leader].resp, GET_BOUND)
            .and_then(|mut con| redis::cmd("GET").arg("k").query::<Option<String>>(&mut con));
        let took = t.elapsed();
        slowest = slowest.max(took);
        match got {
            Ok(Some(v)) if v == "v" => {}
            Err(e) if e.is_timeout() => {
                failures.push(format!("GET {i}: no answer within {GET_BOUND:?}"));
            }
            other => failures.push(format!("GET {i}: {other:?} after {took:?}")),
        }
    }
    procs[follower].signal(Signal::SIGCONT);
    eprintln!(
        "{} of {GETS} GETs failed; slowest {slowest:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {GETS} GETs to the leader failed with node {} stopped: {failures:?}",
        failures.len(),
        nodes[follower].id
    );
}
