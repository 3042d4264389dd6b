//! The harness end to end, small: one combination (TCP, memory, tokio, 2 clients, SET) for
//! 2 seconds, with every floor and (when `redis-server` is installed) the ceiling, so the
//! harness cannot rot. It checks that the run completes and that what it reports is sane
//! (parses, counts commands, floors above zero), never how fast anything is.
//!
//! The `paxos-node` binary: `PAXOS_NODE_EXE` if set, else the one in this test's profile
//! directory (`cargo test --workspace` builds it there for paxos-kv's own tests, so CI
//! never runs a second cargo), else the harness builds it with `cargo build -p paxos-kv
//! --bin paxos-node` into the same target directory (`cargo test -p paxos-benches` alone).
//! A binary already there is used as it is: this test checks the harness, not the node.
//!
//! The in-process variant runs the same combination with `--cluster in-process` (the
//! replicas are `paxos_kv::server::Server`s inside the harness; no `paxos-node` binary is
//! needed) and checks the same numbers, and that every report says which mode it was.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// `--node-exe PATH` for the binary beside this test's profile directory, if there is one
/// (and `PAXOS_NODE_EXE` is not set: the harness reads that itself).
fn node_exe_args() -> Vec<String> {
    if std::env::var_os("PAXOS_NODE_EXE").is_some() {
        return Vec::new();
    }
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_paxos-benches"));
    let node = harness.with_file_name("paxos-node");
    if node.is_file() {
        vec!["--node-exe".into(), node.to_string_lossy().into_owned()]
    } else {
        Vec::new()
    }
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paxos-benches-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn one_combination_runs_end_to_end_and_reports_sane_numbers() {
    let out = out_dir();
    let md = out.join("BENCHMARKS.md");
    let output = Command::new(env!("CARGO_BIN_EXE_paxos-benches"))
        .args([
            "--transport",
            "tcp",
            "--storage",
            "memory",
            "--runtime",
            "tokio",
        ])
        .args(["--clients", "2", "--workload", "set", "--seconds", "2"])
        .args([
            "--warmup",
            "0.5",
            "--floor-seconds",
            "0.3",
            "--op-timeout",
            "10",
        ])
        .args(node_exe_args())
        .arg("--out")
        .arg(&out)
        .arg("--markdown")
        .arg(&md)
        .output()
        .expect("the harness starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "harness failed:\n{stderr}\n{stdout}"
    );

    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let floors: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "floor").collect();
    for name in ["tcp_rtt", "quic_rtt", "fdatasync", "ping"] {
        let floor = floors
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} floor in {jsonl}"));
        assert!(floor["p50_us"].as_f64().unwrap() > 0.0, "{floor}");
        assert!(floor["samples"].as_u64().unwrap() > 0, "{floor}");
    }
    let results: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "result").collect();
    assert_eq!(results.len(), 1, "{jsonl}");
    let r = results[0];
    assert_eq!(r["cluster"], "process");
    assert_eq!(r["transport"], "tcp");
    assert_eq!(r["workload"], "set");
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    let (p50, p99) = (r["p50_us"].as_f64().unwrap(), r["p99_us"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
    let cpu = r["cpu_us_per_op"].as_f64().unwrap();
    assert!(cpu > 0.0, "{r}");
    // The leader is one of the three replica processes, on one thread (tokio:1).
    let leader = r["leader_cpu_us_per_op"].as_f64().unwrap();
    assert!(leader > 0.0 && leader <= cpu, "{r}");
    let busy = r["leader_busy"].as_f64().unwrap();
    assert!(busy > 0.0 && busy <= 1.1, "{r}");
    assert!(r["clients_cpu_us_per_op"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["batch"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["persists_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["floor"], "2xtcp_rtt", "{r}");
    assert!(r["p50_x_floor"].as_f64().unwrap() > 0.0, "{r}");
    if lines.iter().any(|v| v["kind"] == "ceiling") {
        assert!(r["ops_x_ceiling"].as_f64().unwrap() > 0.0, "{r}");
    }

    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    let md = std::fs::read_to_string(&md).unwrap();
    for part in [
        "# Benchmarks",
        "**Commit:**",
        "| tcp/memory/tokio:1 | set | 2 |",
        "plot.svg",
    ] {
        assert!(md.contains(part), "{part:?} missing from:\n{md}");
    }
    assert!(stdout.contains("tcp/memory/tokio:1"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn one_combination_runs_in_process_and_says_so() {
    let out = out_dir().with_extension("in-process");
    let _ = std::fs::remove_dir_all(&out);
    let md = out.join("BENCHMARKS.md");
    let output = Command::new(env!("CARGO_BIN_EXE_paxos-benches"))
        .args(["--cluster", "in-process", "--transport", "tcp"])
        .args(["--storage", "memory", "--runtime", "tokio"])
        .args(["--clients", "2", "--workload", "set", "--seconds", "2"])
        .args(["--warmup", "0.5", "--floor-seconds", "0.3"])
        .args(["--op-timeout", "10", "--no-redis"])
        // No paxos-node binary is needed: a path that does not exist proves it.
        .args(["--node-exe", "/nonexistent/paxos-node"])
        .arg("--out")
        .arg(&out)
        .arg("--markdown")
        .arg(&md)
        .output()
        .expect("the harness starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "harness failed:\n{stderr}\n{stdout}"
    );

    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ping = lines
        .iter()
        .find(|v| v["kind"] == "floor" && v["name"] == "ping")
        .unwrap_or_else(|| panic!("no ping floor in {jsonl}"));
    assert_eq!(ping["cluster"], "tcp/memory/tokio:1 in-process", "{ping}");
    assert!(ping["samples"].as_u64().unwrap() > 0, "{ping}");
    let results: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "result").collect();
    assert_eq!(results.len(), 1, "{jsonl}");
    let r = results[0];
    assert_eq!(r["cluster"], "in-process", "{r}");
    assert_eq!(r["transport"], "tcp");
    assert_eq!(r["storage"], "memory");
    assert_eq!(r["runtime"], "tokio");
    assert_eq!(r["threads"], 1);
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    let (p50, p99) = (r["p50_us"].as_f64().unwrap(), r["p99_us"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
    assert!(r["p999_us"].as_f64().unwrap() >= p99, "{r}");
    assert!(r["cpu_us_per_op"].as_f64().unwrap() > 0.0, "{r}");
    // In-process the replicas share the harness's process: no per-process split.
    assert!(r["leader_cpu_us_per_op"].is_null(), "{r}");
    assert!(r["clients_cpu_us_per_op"].is_null(), "{r}");
    assert!(r["batch"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["persists_per_sec"].as_f64().unwrap() > 0.0, "{r}");

    let md = std::fs::read_to_string(&md).unwrap();
    for part in [
        "the three nodes inside the harness process",
        "| tcp/memory/tokio:1 in-process | set | 2 |",
    ] {
        assert!(md.contains(part), "{part:?} missing from:\n{md}");
    }
    assert!(stdout.contains("tcp/memory/tokio:1 in-process"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}
