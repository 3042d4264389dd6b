//! Process-level faults: three `paxos-node serve` processes with file storage, clients on
//! every node issuing GET, SET and CAS over RESP while, in each of several rounds, a
//! follower is killed with SIGKILL and restarted and the leader is paused with SIGSTOP and
//! resumed. Each fault is checked to hit what it claims: the paused node was the leader
//! every live node followed (per `/status`), and during the pause another node was elected
//! at a higher ballot; the killed node was one of its followers. Every client's history, plus a final read of every key on every node, is
//! checked for linearizability (writes that failed in any way count as unknown outcomes):
//! an acknowledged write that was lost, or a node that diverged, fails the check. The
//! nodes then converge to the same applied slot.
//!
//! The test runs with the nodes on tokio and on smol (`serve --runtime`), each over plain
//! TCP and over QUIC (`serve --transport quic`, mutual TLS with certificates from
//! `paxos-node certs`). Over QUIC a killed node comes back on the same UDP port while its
//! peers still hold connections to the dead process, and a paused one stops answering
//! without closing anything. Each round prints how long the restarted node took to follow
//! the leader again: over QUIC today that is about the transport's idle timeout (10 s),
//! since no peer learns that its connection to the dead process is gone before then.

mod proc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use paxos_lincheck::{CheckOptions, Input, Operation, Output, Verdict, check};
use proc::{NodeAddrs, Proc, Transport, WAIT, http_get, layout, poll, serve_over};

const KEYS: u64 = 3;
const CLIENTS_PER_NODE: u64 = 2;
/// Rounds of each fault.
const ROUNDS: u32 = 3;
/// One round: a follower killed then restarted, then the leader paused then resumed.
const ROUND: Duration = Duration::from_millis(2600);
const RUN: Duration = Duration::from_millis(1000 + 2600 * ROUNDS as u64 + 500);
const EXTRA: &[&str] = &[
    "--request-timeout-ms",
    "1000",
    "--client-deadline-ms",
    "3000",
];

/// The flags of every node: [`EXTRA`] and the runtime.
fn extra(runtime: &'static str) -> Vec<&'static str> {
    let mut flags = EXTRA.to_vec();
    flags.extend(["--runtime", runtime]);
    flags
}

/// A node's `/status`, if it answers. Never asked of a paused node: it would not answer.
fn status(node: &NodeAddrs) -> Option<serde_json::Value> {
    let (code, body) = http_get(node.admin, "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The ballot a `/status` reports, as (round, node): ordered as ballots are.
fn ballot(status: &serde_json::Value) -> Option<(u64, u64)> {
    let b = &status["ballot"];
    Some((b["round"].as_u64()?, b["node"].as_u64()?))
}

/// The leader: a live node whose `/status` says it leads and which every live node names
/// as the leader. Its index and ballot.
fn leader(nodes: &[NodeAddrs], live: &[bool]) -> (usize, (u64, u64)) {
    poll("a leader every live node follows", WAIT, || {
        let statuses: Vec<Option<serde_json::Value>> = (0..nodes.len())
            .map(|i| if live[i] { status(&nodes[i]) } else { None })
            .collect();
        let l = (0..nodes.len())
            .find(|&i| statuses[i].as_ref().is_some_and(|s| s["role"] == "leader"))?;
        let followed = (0..nodes.len()).filter(|&i| live[i]).all(|i| {
            statuses[i]
                .as_ref()
                .is_some_and(|s| s["leader"].as_u64() == Some(nodes[l].id))
        });
        followed.then_some((l, ballot(statuses[l].as_ref()?)?))
    })
}

/// A live node other than `old` that leads at a ballot above `above`: a new election.
fn new_leader(
    nodes: &[NodeAddrs],
    live: &[bool],
    old: usize,
    above: (u64, u64),
) -> (usize, (u64, u64)) {
    let what = format!(
        "a new leader above ballot {above:?} while node {} is paused",
        nodes[old].id
    );
    poll(&what, WAIT, || {
        (0..nodes.len())
            .filter(|&i| live[i] && i != old)
            .find_map(|i| {
                let s = status(&nodes[i])?;
                let b = ballot(&s)?;
                (s["role"] == "leader" && b > above).then_some((i, b))
            })
    })
}

/// A small deterministic generator for the clients' choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One client: issues operations one at a time until `stop`, recording each.
fn client(
    id: u64,
    port: u16,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Operation>>>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut con: Option<redis::Connection> = None;
    let mut counter = 0u64;
    let mut seen = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    // Bounded by time (`stop`, set after RUN) and by count.
    for _ in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let c = match con.as_mut() {
            Some(c) => c,
            None => match proc::redis_conn(port, Duration::from_secs(4)) {
                Ok(c) => con.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let key = rng.next() % KEYS;
        let name = format!("k{key}");
        counter += 1;
        let fresh = id * 1_000_000 + counter;
        let input = match rng.next() % 10 {
            0..=3 => Input::Read,
            4..=7 => Input::Write(fresh),
            _ => Input::Cas {
                expected: seen,
                new: fresh,
            },
        };
        let call = now();
        let result: redis::RedisResult<Output> = match input {
            Input::Read => redis::cmd("GET")
                .arg(&name)
                .query::<Option<u64>>(c)
                .map(Output::Read),
            Input::Write(v) => redis::cmd("SET")
                .arg(&name)
                .arg(v)
                .query::<()>(c)
                .map(|()| Output::Write),
            Input::Cas { expected, new } => redis::cmd("CAS")
                .arg(&name)
                .arg(expected)
                .arg(new)
                .query::<i64>(c)
                .map(|n| Output::Cas(n == 1)),
        };
        let ret = now();
        match result {
            Ok(output) => {
                if let Output::Read(Some(v)) = output {
                    seen = v;
                }
                history.lock().unwrap().push(Operation {
                    client: id,
                    key,
                    input,
                    output: Some(output),
                    call,
                    ret: Some(ret),
                });
            }
            Err(e) => {
                // A failed read observed nothing; a failed write may or may not have applied.
                if input != Input::Read {
                    history.lock().unwrap().push(Operation {
                        client: id,
                        key,
                        input,
                        output: None,
                        call,
                        ret: None,
                    });
                }
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    con = None;
                }
            }
        }
    }
}

#[test]
fn linearizable_under_sigkill_and_sigstop_on_tokio() {
    linearizable_under_sigkill_and_sigstop("tokio", Transport::Tcp);
}

#[test]
fn linearizable_under_sigkill_and_sigstop_on_smol() {
    linearizable_under_sigkill_and_sigstop("smol", Transport::Tcp);
}

#[test]
fn linearizable_under_sigkill_and_sigstop_over_quic_on_tokio() {
    linearizable_under_sigkill_and_sigstop("tokio", Transport::Quic);
}

#[test]
fn linearizable_under_sigkill_and_sigstop_over_quic_on_smol() {
    linearizable_under_sigkill_and_sigstop("smol", Transport::Quic);
}

fn linearizable_under_sigkill_and_sigstop(runtime: &'static str, transport: Transport) {
    let dir = proc::tempdir();
    let nodes = layout(3);
    let flags = extra(runtime);
    transport.prepare(&nodes, dir.path());
    let serve = |i: usize| serve_over(transport, &nodes, i, dir.path(), &flags);
    let mut procs: Vec<Proc> = (0..3).map(serve).collect();
    proc::wait_all_writable(&nodes, dir.path());
    // The peers talk over the transport asked for.
    transport.assert_listening(&nodes);
    // Each node runs on the runtime asked for, and says which transport it uses.
    for n in &nodes {
        let status = poll("a node's /status", WAIT, || status(n));
        assert_eq!(status["runtime"], runtime, "{status}");
        assert_eq!(status["transport"], transport.name(), "{status}");
    }
    let mut live = vec![true; 3];

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..CLIENTS_PER_NODE {
            let id = i as u64 * CLIENTS_PER_NODE + j + 1;
            let (port, stop, history) = (n.resp, stop.clone(), history.clone());
            clients.push(std::thread::spawn(move || {
                client(id, port, start, stop, history)
            }));
        }
    }
    let at = |t: Duration| {
        if let Some(d) = t.checked_sub(start.elapsed()) {
            std::thread::sleep(d); // the fault schedule is by design a timetable
        }
    };

    for round in 0..ROUNDS {
        let t0 = Duration::from_millis(1000) + ROUND * round;
        // A follower dies without warning, and comes back from its files.
        at(t0);
        let (l, _) = leader(&nodes, &live);
        // Not the leader: `leader` saw it follow `l`.
        let victim = (l + 1 + round as usize % 2) % 3;
        procs[victim].signal(Signal::SIGKILL);
        procs[victim].wait_exit(WAIT).expect("killed");
        live[victim] = false;
        at(t0 + Duration::from_millis(800));
        procs[victim] = serve(victim);
        let restarted = Instant::now();
        live[victim] = true;

        // The leader freezes, long enough for the others to elect a new one, then resumes.
        at(t0 + Duration::from_millis(1200));
        let (l, old_ballot) = leader(&nodes, &live);
        // Within this the restarted node followed (`leader` waits past the timetable).
        let rejoin = restarted.elapsed();
        procs[l].signal(Signal::SIGSTOP);
        live[l] = false;
        // The pause hit the leader: while it is frozen the others elect one of them, at a
        // higher ballot (this waits past the timetable if the election is slow).
        let (new, new_ballot) = new_leader(&nodes, &live, l, old_ballot);
        eprintln!(
            "round {round}: node {} killed, restarted, and following within {rejoin:?}; \
             node {} paused as leader at {old_ballot:?}; node {} elected at {new_ballot:?}",
            nodes[victim].id, nodes[l].id, nodes[new].id
        );
        at(t0 + Duration::from_millis(2200));
        procs[l].signal(Signal::SIGCONT);
        live[l] = true;
    }

    at(RUN);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let mut history = std::mem::take(&mut *history.lock().unwrap());
    // Last, every key read on every node: these reads must see every acknowledged write.
    for (i, n) in nodes.iter().enumerate() {
        let mut c = proc::redis_conn(n.resp, WAIT).expect("a connection after the faults");
        for key in 0..KEYS {
            let call = start.elapsed().as_nanos() as u64;
            let value: Option<u64> = poll("a final read", WAIT, || {
                redis::cmd("GET")
                    .arg(format!("k{key}"))
                    .query::<Option<u64>>(&mut c)
                    .ok()
            });
            let ret = start.elapsed().as_nanos() as u64;
            history.push(Operation {
                client: 1000 + i as u64,
                key,
                input: Input::Read,
                output: Some(Output::Read(value)),
                call,
                ret: Some(ret),
            });
        }
    }
    let completed_writes = history
        .iter()
        .filter(|o| o.output.is_some() && o.input != Input::Read)
        .count();
    let completed_reads = history
        .iter()
        .filter(|o| matches!(o.output, Some(Output::Read(_))))
        .count();
    let unknown = history.iter().filter(|o| o.output.is_none()).count();
    eprintln!(
        "history: {} ops, {completed_writes} writes and {completed_reads} reads completed, {unknown} unknown",
        history.len()
    );
    assert!(
        completed_writes >= 50 && completed_reads >= 50,
        "too little progress"
    );
    match check(&history, &CheckOptions::default()) {
        Verdict::Linearizable => {}
        other => panic!(
            "history of {} ops is not linearizable: {other:?}",
            history.len()
        ),
    }

    // Every node catches up to the same applied slot.
    poll("the nodes to converge", WAIT, || {
        let applied: Vec<u64> = nodes
            .iter()
            .map(|n| {
                let (_, body) = http_get(n.admin, "/status").ok()?;
                serde_json::from_str::<serde_json::Value>(&body).ok()?["applied"].as_u64()
            })
            .collect::<Option<_>>()?;
        applied.iter().all(|&a| a == applied[0]).then_some(())
    });
}
