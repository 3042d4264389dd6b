//! End to end: `paxos-node cluster --nodes 3` driven by a real Redis client (the `redis`
//! crate): writes and reads on every node, pipelining, the admin port, a clean stop on
//! SIGTERM, and a restart on the same directory that keeps the data. The supervisor: a
//! node killed with SIGKILL is started again, and when the supervisor itself is killed
//! with SIGKILL every node exits.

mod proc;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proc::{Proc, WAIT, http_get, poll, wait_writable};

/// A running `cluster` command and the ports it printed.
struct Cluster {
    proc: Proc,
    resp: Vec<u16>,
    admin: Vec<u16>,
}

fn start_cluster(dir: &std::path::Path) -> Cluster {
    let mut child = Command::new(proc::EXE)
        .args(["cluster", "--nodes", "3", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc { child };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut resp, mut admin) = (Vec::new(), Vec::new());
    // The banner is a handful of lines; bounded by count and by WAIT.
    for _ in 0..16 {
        let line = rx.recv_timeout(WAIT).expect("cluster banner");
        if line.starts_with("Ctrl-C") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "-p") {
            resp.push(words[i + 1].parse().unwrap());
        }
        if let Some(url) = words.iter().find(|w| w.starts_with("http://")) {
            let port = url
                .trim_start_matches("http://127.0.0.1:")
                .trim_end_matches("/status");
            admin.push(port.parse().unwrap());
        }
    }
    assert_eq!(resp.len(), 3, "three redis-cli lines");
    assert_eq!(admin.len(), 3, "three admin lines");
    Cluster { proc, resp, admin }
}

fn stop_cluster(mut cluster: Cluster) {
    cluster.proc.signal(Signal::SIGTERM);
    let status = cluster
        .proc
        .wait_exit(WAIT)
        .expect("cluster exits on SIGTERM");
    assert!(status.success(), "cluster exit status {status:?}");
    // Its children are gone too: nothing answers on their ports.
    for &port in &cluster.admin {
        poll("a node to stop", WAIT, || {
            std::net::TcpStream::connect(proc::local(port))
                .is_err()
                .then_some(())
        });
    }
}

#[test]
fn cluster_serves_redis_clients_on_every_node() {
    let dir = proc::tempdir();
    let cluster = start_cluster(dir.path());
    let mut cons: Vec<redis::Connection> = cluster.resp.iter().map(|&p| wait_writable(p)).collect();

    // A write on one node is read on every node (followers forward).
    let () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut cons[0])
        .unwrap();
    for con in &mut cons {
        let v: String = redis::cmd("GET").arg("greeting").query(con).unwrap();
        assert_eq!(v, "hello");
    }
    let missing: Option<String> = redis::cmd("GET")
        .arg("nothing")
        .query(&mut cons[1])
        .unwrap();
    assert_eq!(missing, None);

    // INCR from different nodes counts once per call.
    for con in &mut cons {
        let _: i64 = redis::cmd("INCR").arg("counter").query(con).unwrap();
    }
    let n: i64 = redis::cmd("INCR")
        .arg("counter")
        .query(&mut cons[2])
        .unwrap();
    assert_eq!(n, 4);
    let err = redis::cmd("INCR")
        .arg("greeting")
        .query::<i64>(&mut cons[1])
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");

    // CAS key expected new.
    let swapped: i64 = redis::cmd("CAS")
        .arg("greeting")
        .arg("hello")
        .arg("bye")
        .query(&mut cons[1])
        .unwrap();
    assert_eq!(swapped, 1);
    let swapped: i64 = redis::cmd("CAS")
        .arg("greeting")
        .arg("hello")
        .arg("again")
        .query(&mut cons[2])
        .unwrap();
    assert_eq!(swapped, 0);
    let v: String = redis::cmd("GET")
        .arg("greeting")
        .query(&mut cons[0])
        .unwrap();
    assert_eq!(v, "bye");

    // A pipeline is answered in order.
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let got: Vec<i64> = pipe.query(&mut cons[2]).unwrap();
    assert_eq!(got, (0..50).collect::<Vec<i64>>());

    // DEL counts existing keys.
    let removed: i64 = redis::cmd("DEL")
        .arg("p0")
        .arg("p1")
        .arg("nope")
        .query(&mut cons[0])
        .unwrap();
    assert_eq!(removed, 2);

    // Admin: one leader among the three, every node agrees on it.
    let mut leaders = Vec::new();
    for &port in &cluster.admin {
        let (code, body) = http_get(port, "/status").unwrap();
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        leaders.push(status["leader"].as_u64().expect("a leader"));
        assert!(status["lease_held"].is_boolean(), "{body}");
        for key in ["id", "role", "ballot", "commit", "applied"] {
            assert!(!status[key].is_null(), "/status lacks {key}: {body}");
        }
        let peers = status["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 2, "{body}");
        let leader = status["leader"].as_u64();
        assert!(
            peers
                .iter()
                .filter(|p| status["role"] == "leader" || p["id"].as_u64() == leader)
                .all(|p| p["last_contact_ms_ago"].is_u64()),
            "a leader hears from its followers, a follower from its leader: {body}"
        );
        let (code, body) = http_get(port, "/metrics").unwrap();
        assert_eq!(code, 200);
        for name in [
            "paxos_resp_commands_total",
            "paxos_proposals_total",
            "paxos_committed_commands_total",
            "paxos_largest_batch",
            "paxos_persist_seconds_bucket",
            "paxos_lease_reads_total",
            "paxos_read_index_reads_total",
            "paxos_elections_started_total",
            "paxos_messages_sent_total{",
            "paxos_is_leader{",
            "paxos_driver_cycles_total{",
        ] {
            assert!(body.contains(name), "/metrics lacks {name}: {body}");
        }
        // Each family once, whichever source it comes from.
        let mut families: Vec<_> = body.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let all = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), all, "a family shows twice: {body}");
        assert_eq!(http_get(port, "/health").unwrap().0, 200);
    }
    assert!(leaders.iter().all(|&l| l == leaders[0]), "{leaders:?}");
    // The leader holds its lease: heartbeats renew it even when the cluster is idle.
    // Polled (bounded) because the admin page is read from outside the process.
    let mut held = false;
    for _ in 0..100 {
        let lease = cluster.admin.iter().find_map(|&port| {
            let (_, body) = http_get(port, "/status").ok()?;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status["role"] == "leader").then(|| status["lease_held"] == true)
        });
        if lease == Some(true) {
            held = true;
            break;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    assert!(held, "the leader reports its lease");

    drop(cons);
    stop_cluster(cluster);

    // Same directory: same ports, same data.
    let again = start_cluster(dir.path());
    let mut con = wait_writable(again.resp[1]);
    let v: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(v, "bye");
    let n: i64 = redis::cmd("GET").arg("counter").query(&mut con).unwrap();
    assert_eq!(n, 4);
    drop(con);
    stop_cluster(again);
}

/// A node's `/status`, if it answers.
fn status(admin: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(admin, "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// A process's state (`R`, `S`, `Z`...) and parent, from `/proc/<pid>/stat`; `None` once
/// it is gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": the name may hold spaces, so split after the last ')'.
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Alive: neither gone nor a zombie (an orphan's reaper may never reap it).
fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// Kills the node processes still alive if the test fails, so that a failure of "nodes
/// die with their supervisor" leaves nothing running.
struct KillOnPanic(Vec<i32>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in self.0.iter().filter(|&&pid| alive(pid)) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn supervisor_restarts_a_killed_node_and_its_nodes_die_with_it() {
    let dir = proc::tempdir();
    let mut cluster = start_cluster(dir.path());
    let supervisor = cluster.proc.pid().as_raw();
    let pid_of = |admin: u16| {
        poll("a node's /status", WAIT, || {
            i32::try_from(status(admin)?["pid"].as_u64()?).ok()
        })
    };
    let mut pids = KillOnPanic(cluster.admin.iter().map(|&a| pid_of(a)).collect());
    for &pid in &pids.0 {
        assert_eq!(
            proc_stat(pid).map(|(_, parent)| parent),
            Some(supervisor),
            "node process {pid} is a child of the supervisor"
        );
    }

    // A node killed without warning is started again: a new process, on the same ports,
    // healthy (it follows a leader).
    let (victim, admin) = (1, cluster.admin[1]);
    let old = pids.0[victim];
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    pids.0[victim] = poll("the killed node to come back", WAIT, || {
        let pid = i32::try_from(status(admin)?["pid"].as_u64()?).ok()?;
        (pid != old && http_get(admin, "/health").ok()?.0 == 200).then_some(pid)
    });
    assert_eq!(proc_stat(pids.0[victim]).map(|(_, p)| p), Some(supervisor));
    assert!(!alive(old), "the killed process {old} is gone");

    // The supervisor dies without warning: every node exits, none is left orphaned.
    cluster.proc.signal(Signal::SIGKILL);
    cluster
        .proc
        .wait_exit(WAIT)
        .expect("the supervisor dies of SIGKILL");
    for &pid in &pids.0 {
        poll(
            &format!("node process {pid} to exit after its supervisor died"),
            Duration::from_secs(10),
            || (!alive(pid)).then_some(()),
        );
    }
}

#[test]
fn test_ports_are_outside_the_ephemeral_range_and_distinct() {
    use proc::ports::{FIRST, ephemeral_range, free_ports, outside_ephemeral};
    let (low, high) = ephemeral_range();
    let ports = free_ports(8);
    if outside_ephemeral((low, high)).is_some() {
        for p in ports.iter().map(|&p| u32::from(p)) {
            assert!(
                (FIRST..low).contains(&p) || p > high,
                "{p} is in {low}-{high}"
            );
        }
    }
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    let stretch = |range| outside_ephemeral(range).map(|s| (s.start, s.len));
    assert_eq!(stretch((32768, 60999)), Some((1024, 31744)));
    assert_eq!(stretch((1024, 10000)), Some((10001, 55535)));
    assert_eq!(stretch((1024, 65535)), None);
}
