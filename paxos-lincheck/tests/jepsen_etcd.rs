//! The checker against the 102 Jepsen etcd histories Porcupine is tested with: every verdict
//! in `expected.tsv` must come out exactly, none may be `Unknown`.
//!
//! The corpus is not in this repository. It is read from `$PAXOS_JEPSEN_DIR` if set, else from
//! `shared/testdata/jepsen-etcd` beside the workspace. Without it the test fails on CI
//! (`CI=true`) and is skipped with a note elsewhere.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paxos_lincheck::{CheckOptions, Verdict, check, jepsen};

fn corpus_dir() -> PathBuf {
    std::env::var_os("PAXOS_JEPSEN_DIR").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/testdata/jepsen-etcd"
            ))
        },
        PathBuf::from,
    )
}

#[test]
fn jepsen_etcd_verdicts() {
    let dir = corpus_dir();
    let expected_path = dir.join("expected.tsv");
    let Ok(expected) = std::fs::read_to_string(&expected_path) else {
        let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!on_ci, "jepsen-etcd corpus missing at {}", dir.display());
        eprintln!(
            "jepsen-etcd: corpus not found at {} (set PAXOS_JEPSEN_DIR); skipping",
            dir.display()
        );
        return;
    };

    // Generous: the whole corpus needs a small fraction of this; `Unknown` fails the test.
    let opts = CheckOptions {
        max_steps_per_key: 1_000_000_000,
        ..CheckOptions::default()
    };
    let mut total = Duration::ZERO;
    let (mut histories, mut correct, mut parse_only) = (0, 0, 0);
    let mut wrong = Vec::new();
    for row in expected.lines().filter(|l| !l.trim().is_empty()) {
        let (file, want) = row
            .split_once('\t')
            .unwrap_or_else(|| panic!("bad row `{row}`"));
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let history = jepsen::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        if want == "no-verdict" {
            parse_only += 1;
            continue;
        }
        histories += 1;
        let start = Instant::now();
        let verdict = check(&history, &opts);
        let took = start.elapsed();
        total += took;
        let got = match verdict {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable { .. } => "not-linearizable",
            Verdict::Unknown { .. } => "unknown",
        };
        if got == want {
            correct += 1;
        } else {
            wrong.push(format!(
                "{file}: expected {want}, got {got} ({} ops, {took:?})",
                history.len()
            ));
        }
    }
    eprintln!(
        "jepsen-etcd: {histories} histories, {correct} verdicts correct, \
         total check time {:.2}s ({parse_only} parsed only)",
        total.as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    assert_eq!(
        histories, 102,
        "expected.tsv should list 102 histories with a verdict"
    );
    assert_eq!(
        parse_only, 1,
        "expected.tsv should list one no-verdict history"
    );
}
