//! The checker against the 102 Jepsen etcd histories Porcupine is tested with: every verdict
//! in `expected.tsv` must come out exactly, none may be `Unknown`.
//!
//! The corpus is not in this repository. It is read from `$PAXOS_JEPSEN_DIR` if set, else from
//! `shared/testdata/jepsen-etcd` beside the workspace.
//!
//! Without the corpus:
//! * **On CI** the test fails. "On CI" means `CI` is set to anything but empty, `false` or
//!   `0` (any case): CI services set `CI=true`, `CI=1` or their own name, and a run there
//!   must never pass by checking nothing.
//! * **Elsewhere** the test passes, and says `SKIPPED` on the terminal. libtest captures
//!   what `println!`/`eprintln!` print in a passing test, so a note printed that way would
//!   only show with `--nocapture`; the note is written to the process's stderr directly
//!   (`std::io::stderr()`, which libtest does not capture), so a plain `cargo test` shows
//!   it next to the `ok`. There is no way to mark a test as skipped in stable libtest, and
//!   `#[ignore]` would hide it on CI too.

use std::ffi::OsStr;
use std::io::Write;
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

/// Whether a `CI` variable with this value (or none) means a CI run, which must have the
/// corpus.
fn is_ci(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| {
        let v = v.to_string_lossy();
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

#[test]
fn ci_values_that_demand_the_corpus() {
    for value in ["true", "TRUE", "1", "yes", "github-actions", "woodpecker"] {
        assert!(is_ci(Some(OsStr::new(value))), "CI={value}");
    }
    for value in ["", " ", "0", "false", "False", "FALSE"] {
        assert!(!is_ci(Some(OsStr::new(value))), "CI={value:?}");
    }
    assert!(!is_ci(None), "CI unset");
}

#[test]
fn jepsen_etcd_verdicts() {
    let dir = corpus_dir();
    let expected_path = dir.join("expected.tsv");
    let Ok(expected) = std::fs::read_to_string(&expected_path) else {
        let ci = std::env::var_os("CI");
        assert!(
            !is_ci(ci.as_deref()),
            "jepsen-etcd corpus missing at {} on CI (CI={:?}); set PAXOS_JEPSEN_DIR",
            dir.display(),
            ci.unwrap_or_default(),
        );
        // Not `eprintln!`: libtest would swallow it in a passing test (see the file docs).
        let _ = writeln!(
            std::io::stderr().lock(),
            "jepsen_etcd_verdicts SKIPPED: corpus not found at {} (set PAXOS_JEPSEN_DIR; \
             on CI a missing corpus fails)",
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
