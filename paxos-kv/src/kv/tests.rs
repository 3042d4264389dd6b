//! The state machine's behaviour: sessions, each command's Redis semantics, reads, SCAN.
//! Encodings, sizes and snapshots are in `encoding_tests.rs`.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::store::Key;
use super::*;

fn req(client: u64, seq: u64, command: KvCommand) -> Bytes {
    KvRequest {
        id: RequestId {
            client,
            born_slot: client,
            seq,
        },
        command,
    }
    .encode()
}

fn born(client: u64, born_slot: u64, seq: u64, command: KvCommand) -> Bytes {
    KvRequest {
        id: RequestId {
            client,
            born_slot,
            seq,
        },
        command,
    }
    .encode()
}

fn set(k: &str, v: &str) -> KvCommand {
    KvCommand::Set {
        key: k.into(),
        value: v.into(),
    }
}

fn incr(k: &str) -> KvCommand {
    KvCommand::Incr { key: k.into() }
}

fn get(sm: &KvStateMachine, k: &str) -> Option<Vec<u8>> {
    sm.state().map.get(&Key::new(k.into())).cloned()
}

#[test]
fn retried_request_applies_once_and_replays_its_output() {
    let mut sm = KvStateMachine::default();
    assert_eq!(sm.apply_one(&req(7, 1, incr("n"))), KvOutput::Integer(1));
    assert_eq!(sm.apply_one(&req(7, 1, incr("n"))), KvOutput::Integer(1));
    assert_eq!(get(&sm, "n").as_deref(), Some(&b"1"[..]));
    assert_eq!(sm.apply_one(&req(7, 2, incr("n"))), KvOutput::Integer(2));
    // An older request is refused without effect.
    assert!(matches!(
        sm.apply_one(&req(7, 1, incr("n"))),
        KvOutput::Error(_)
    ));
    // Another client has its own sequence.
    assert_eq!(sm.apply_one(&req(8, 1, incr("n"))), KvOutput::Integer(3));
}

#[test]
fn sessions_are_bounded_and_evict_the_least_recent() {
    let mut sm = KvStateMachine::new(2);
    sm.apply_one(&req(1, 1, set("a", "1")));
    sm.apply_one(&req(2, 1, set("a", "2")));
    sm.apply_one(&req(1, 2, set("a", "3"))); // client 1 is now the most recent
    sm.apply_one(&req(3, 1, set("a", "4"))); // evicts client 2
    assert_eq!(sm.sessions(), 2);
    assert!(sm.state().sessions.contains_key(&1));
    assert!(!sm.state().sessions.contains_key(&2));
    assert_eq!(sm.state().by_age.len(), 2);
}

#[test]
fn evicted_session_retry_is_not_applied_twice() {
    let mut sm = KvStateMachine::new(1);
    assert_eq!(sm.apply_one(&req(1, 1, incr("n"))), KvOutput::Integer(1));
    sm.apply_one(&req(2, 1, set("x", "y"))); // evicts client 1
    assert_eq!(sm.eviction_floor(), Some(1));
    // A retry of client 1's request (its reply was lost) arrives late.
    let again = sm.apply_one(&req(1, 1, incr("n")));
    assert_eq!(
        get(&sm, "n").as_deref(),
        Some(&b"1"[..]),
        "applied twice: {again:?}"
    );
    assert_eq!(again, KvOutput::SessionExpired);
    // Refused requests do not create a session.
    assert_eq!(sm.sessions(), 1);
    assert!(!sm.state().sessions.contains_key(&1));
}

#[test]
fn evicted_session_never_moves_backwards() {
    let mut sm = KvStateMachine::new(1);
    sm.apply_one(&req(1, 1, set("k", "a")));
    sm.apply_one(&req(1, 2, set("k", "b")));
    sm.apply_one(&req(2, 1, set("x", "y"))); // evicts client 1
    // A duplicate of client 1's first request, delayed in the network.
    let stale = sm.apply_one(&req(1, 1, set("k", "a")));
    assert_eq!(
        get(&sm, "k").as_deref(),
        Some(&b"b"[..]),
        "stale applied: {stale:?}"
    );
    assert_eq!(stale, KvOutput::SessionExpired);
    // And its next request too: the client must start over under a new id.
    assert_eq!(
        sm.apply_one(&req(1, 3, set("k", "c"))),
        KvOutput::SessionExpired
    );
    assert_eq!(get(&sm, "k").as_deref(), Some(&b"b"[..]));
}

#[test]
fn the_floor_is_the_highest_evicted_birth_and_newer_clients_are_served() {
    let mut sm = KvStateMachine::new(2);
    sm.apply_one(&born(10, 50, 1, incr("n")));
    sm.apply_one(&born(11, 20, 1, incr("n")));
    sm.apply_one(&born(12, 60, 1, incr("n"))); // evicts 10 (least recent): floor 50
    assert_eq!(sm.eviction_floor(), Some(50));
    sm.apply_one(&born(13, 70, 1, incr("n"))); // evicts 11, born earlier: floor stays
    assert_eq!(sm.eviction_floor(), Some(50));
    // A client never seen, born at or below the floor: it might be 10 or 11 retrying.
    assert_eq!(
        sm.apply_one(&born(14, 50, 1, incr("n"))),
        KvOutput::SessionExpired
    );
    // Born above the floor: no session of it was ever evicted, so it is served, even
    // with a later sequence number (its earlier requests were never applied).
    assert_eq!(
        sm.apply_one(&born(15, 51, 4, incr("n"))),
        KvOutput::Integer(5)
    );
    // A live session is served whatever its birth.
    assert_eq!(
        sm.apply_one(&born(15, 0, 5, incr("n"))),
        KvOutput::Integer(6)
    );
    assert_eq!(get(&sm, "n").as_deref(), Some(&b"6"[..]));
}

#[test]
fn replicas_applying_the_same_log_agree() {
    let log: Vec<Bytes> = (0..200u64)
        .map(|i| born(i % 37, i % 37, i / 37 + 1, incr("n")))
        .chain((0..50).map(|i| req(i % 5, 1, incr("n"))))
        .collect();
    let run = || {
        let mut sm = KvStateMachine::new(8);
        let outputs: Vec<KvOutput> = log.iter().map(|c| sm.apply_one(c)).collect();
        (outputs, sm.state().clone())
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.1.sessions.len() <= 8 && a.1.by_age.len() == a.1.sessions.len());
}

#[test]
fn incr_parses_like_redis() {
    for (text, ok) in [
        ("0", Some(0)),
        ("-5", Some(-5)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("+1", None),
        (" 1", None),
        ("01", None),
        ("-0", None),
        ("", None),
        ("-", None),
        ("1.5", None),
    ] {
        assert_eq!(parse_redis_integer(text.as_bytes()), ok, "{text:?}");
    }
    let mut sm = KvStateMachine::default();
    sm.apply_one(&req(1, 1, set("s", "abc")));
    assert!(matches!(
        sm.apply_one(&req(1, 2, incr("s"))),
        KvOutput::Error(_)
    ));
    sm.apply_one(&req(1, 3, set("m", "9223372036854775807")));
    assert!(matches!(
        sm.apply_one(&req(1, 4, incr("m"))),
        KvOutput::Error(_)
    ));
}

#[test]
fn cas_and_del() {
    let mut sm = KvStateMachine::default();
    let cas = |e: &str, n: &str| KvCommand::Cas {
        key: b"k".to_vec(),
        expected: e.into(),
        new: n.into(),
    };
    assert_eq!(sm.apply_one(&req(1, 1, cas("", "x"))), KvOutput::Integer(0));
    sm.apply_one(&req(1, 2, set("k", "a")));
    assert_eq!(
        sm.apply_one(&req(1, 3, cas("b", "x"))),
        KvOutput::Integer(0)
    );
    assert_eq!(
        sm.apply_one(&req(1, 4, cas("a", "x"))),
        KvOutput::Integer(1)
    );
    assert_eq!(get(&sm, "k").as_deref(), Some(&b"x"[..]));
    let del = KvCommand::Del {
        keys: vec![b"k".to_vec(), b"zz".to_vec()],
    };
    assert_eq!(sm.apply_one(&req(1, 5, del)), KvOutput::Integer(1));
    assert!(sm.is_empty());
    assert!(matches!(sm.apply_one(b"\xff\xff"), KvOutput::Error(_)));
}

/// One client sending commands one at a time, as a connection does.
struct Client {
    id: u64,
    seq: u64,
}

impl Client {
    fn new(id: u64) -> Self {
        Self { id, seq: 0 }
    }

    fn send(&mut self, sm: &mut KvStateMachine, command: KvCommand) -> KvOutput {
        self.seq += 1;
        sm.apply_one(&req(self.id, self.seq, command))
    }

    /// The last request again, as the server retries it.
    fn retry(&self, sm: &mut KvStateMachine, command: KvCommand) -> KvOutput {
        sm.apply_one(&req(self.id, self.seq, command))
    }
}

fn read(sm: &KvStateMachine, query: KvQuery) -> KvAnswer {
    sm.answer(&query.encode())
}

fn bulk(v: &str) -> KvOutput {
    KvOutput::Bulk(Some(v.into()))
}

fn set_with(k: &str, v: &str, condition: SetCondition, get: bool) -> KvCommand {
    KvCommand::SetWith {
        key: k.into(),
        value: v.into(),
        condition,
        get,
    }
}

fn incr_by(k: &str, delta: i64) -> KvCommand {
    KvCommand::IncrBy {
        key: k.into(),
        delta,
    }
}

/// `SET k new [NX|XX] [GET]` on an absent and on a present key (`old`), as Redis 7.0
/// answered each of the twelve cases.
#[test]
fn set_with_follows_redis() {
    use SetCondition::{Always, IfAbsent, IfPresent};
    let nil = KvOutput::Bulk(None);
    for (present, condition, with_get, output, after) in [
        (false, Always, false, KvOutput::Ok, Some("new")),
        (false, Always, true, nil.clone(), Some("new")),
        (false, IfAbsent, false, KvOutput::Ok, Some("new")),
        (false, IfAbsent, true, nil.clone(), Some("new")),
        (false, IfPresent, false, nil.clone(), None),
        (false, IfPresent, true, nil.clone(), None),
        (true, Always, false, KvOutput::Ok, Some("new")),
        (true, Always, true, bulk("old"), Some("new")),
        (true, IfAbsent, false, nil.clone(), Some("old")),
        (true, IfAbsent, true, bulk("old"), Some("old")),
        (true, IfPresent, false, KvOutput::Ok, Some("new")),
        (true, IfPresent, true, bulk("old"), Some("new")),
    ] {
        let mut sm = KvStateMachine::default();
        let mut c = Client::new(1);
        if present {
            c.send(&mut sm, set("k", "old"));
        }
        let case = format!("present={present} {condition:?} get={with_get}");
        assert_eq!(
            c.send(&mut sm, set_with("k", "new", condition, with_get)),
            output,
            "{case}"
        );
        assert_eq!(get(&sm, "k"), after.map(Vec::from), "{case}");
    }
}

/// `SETNX` and `GETSET` as the server maps them.
#[test]
fn setnx_and_getset() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    let setnx = |v: &str| set_with("k", v, SetCondition::IfAbsent, false);
    assert_eq!(c.send(&mut sm, setnx("a")), KvOutput::Ok); // SETNX's 1
    assert_eq!(c.send(&mut sm, setnx("b")), KvOutput::Bulk(None)); // SETNX's 0
    let getset = |k: &str, v: &str| set_with(k, v, SetCondition::Always, true);
    assert_eq!(c.send(&mut sm, getset("k", "c")), bulk("a"));
    assert_eq!(c.send(&mut sm, getset("n", "d")), KvOutput::Bulk(None));
    assert_eq!(get(&sm, "k").as_deref(), Some(&b"c"[..]));
    assert_eq!(get(&sm, "n").as_deref(), Some(&b"d"[..]));
}

#[test]
fn mset_sets_every_pair_and_the_last_of_a_repeated_key_wins() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    let pairs = [("a", "1"), ("b", "2"), ("a", "3")]
        .map(|(k, v)| (k.into(), v.into()))
        .to_vec();
    assert_eq!(c.send(&mut sm, KvCommand::MSet { pairs }), KvOutput::Ok);
    assert_eq!(get(&sm, "a").as_deref(), Some(&b"3"[..]));
    assert_eq!(get(&sm, "b").as_deref(), Some(&b"2"[..]));
    assert_eq!(sm.len(), 2);
    let empty = KvCommand::MSet { pairs: vec![] };
    assert_eq!(c.send(&mut sm, empty), KvOutput::Ok);
}

#[test]
fn append_returns_the_new_length() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    let append = |k: &str, v: &str| KvCommand::Append {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(c.send(&mut sm, append("k", "abc")), KvOutput::Integer(3));
    assert_eq!(c.send(&mut sm, append("k", "de")), KvOutput::Integer(5));
    assert_eq!(get(&sm, "k").as_deref(), Some(&b"abcde"[..]));
    // Appending nothing to an absent key creates it, empty (as Redis does).
    assert_eq!(c.send(&mut sm, append("e", "")), KvOutput::Integer(0));
    assert_eq!(get(&sm, "e").as_deref(), Some(&b""[..]));
    // Appending to a number appends to its digits.
    c.send(&mut sm, incr("n"));
    assert_eq!(c.send(&mut sm, append("n", "0")), KvOutput::Integer(2));
    assert_eq!(c.send(&mut sm, incr("n")), KvOutput::Integer(11));
}

/// INCRBY, DECR and DECRBY, with the cases Redis 7.0 answered.
#[test]
fn incr_by_follows_redis() {
    const MAX: i64 = i64::MAX;
    const MIN: i64 = i64::MIN;
    let not_integer = KvOutput::Error("ERR value is not an integer or out of range".into());
    let overflow = KvOutput::Error("ERR increment or decrement would overflow".into());
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    assert_eq!(c.send(&mut sm, incr_by("n", 5)), KvOutput::Integer(5));
    assert_eq!(c.send(&mut sm, incr_by("n", -7)), KvOutput::Integer(-2)); // DECRBY 7
    assert_eq!(c.send(&mut sm, incr_by("n", -1)), KvOutput::Integer(-3)); // DECR
    assert_eq!(c.send(&mut sm, incr_by("n", 0)), KvOutput::Integer(-3));
    assert_eq!(c.send(&mut sm, incr_by("c", MAX)), KvOutput::Integer(MAX));
    assert_eq!(c.send(&mut sm, incr_by("c", 1)), overflow);
    assert_eq!(c.send(&mut sm, incr("c")), overflow);
    assert_eq!(c.send(&mut sm, incr_by("c", MIN)), KvOutput::Integer(-1));
    assert_eq!(c.send(&mut sm, incr_by("c", MIN)), overflow);
    assert_eq!(c.send(&mut sm, incr_by("c", -MAX)), KvOutput::Integer(MIN));
    assert_eq!(c.send(&mut sm, incr_by("c", -1)), overflow);
    assert_eq!(get(&sm, "c").as_deref(), Some(&b"-9223372036854775808"[..]));
    for text in ["abc", " 1", "01", "+1", "1.0", "", "-0"] {
        c.send(&mut sm, set("s", text));
        assert_eq!(c.send(&mut sm, incr_by("s", 1)), not_integer, "{text:?}");
        assert_eq!(get(&sm, "s").as_deref(), Some(text.as_bytes()));
    }
}

#[test]
fn a_batch_applies_in_order_each_with_its_output_under_one_request() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    c.send(&mut sm, set("s", "text"));
    let batch = KvCommand::Batch(vec![
        set("a", "1"),
        incr("a"),
        incr("s"), // fails; the others still apply
        set_with("a", "x", SetCondition::Always, true),
        KvCommand::Del {
            keys: vec!["a".into(), "s".into(), "none".into()],
        },
        incr_by("a", 3),
    ]);
    let outputs = KvOutput::Many(vec![
        KvOutput::Ok,
        KvOutput::Integer(2),
        KvOutput::Error("ERR value is not an integer or out of range".into()),
        bulk("2"),
        KvOutput::Integer(2),
        KvOutput::Integer(3),
    ]);
    assert_eq!(c.send(&mut sm, batch.clone()), outputs);
    assert_eq!(get(&sm, "a").as_deref(), Some(&b"3"[..]));
    // One request: a retry replays the whole output and applies nothing.
    assert_eq!(c.retry(&mut sm, batch.clone()), outputs);
    assert_eq!(get(&sm, "a").as_deref(), Some(&b"3"[..]));
    assert_eq!(sm.state().next_stamp, 2, "one session update per request");
    // Refused as a whole: one output, not a Many.
    assert!(matches!(
        sm.apply_one(&req(1, 1, batch.clone())),
        KvOutput::Error(e) if e.contains("stale")
    ));
    assert_eq!(
        c.send(&mut sm, KvCommand::Batch(vec![])),
        KvOutput::Many(vec![])
    );
}

#[test]
fn a_batch_refused_as_a_whole_gets_one_output() {
    let mut sm = KvStateMachine::new(1);
    let batch = || KvCommand::Batch(vec![incr("n"), incr("n")]);
    assert_eq!(
        sm.apply_one(&req(1, 1, batch())),
        KvOutput::Many(vec![KvOutput::Integer(1), KvOutput::Integer(2)])
    );
    sm.apply_one(&req(2, 1, set("x", "y"))); // evicts client 1
    assert_eq!(sm.apply_one(&req(1, 2, batch())), KvOutput::SessionExpired);
    assert_eq!(get(&sm, "n").as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_batch_in_a_batch_is_refused() {
    let mut sm = KvStateMachine::default();
    let nested = KvCommand::Batch(vec![set("a", "1"), KvCommand::Batch(vec![set("b", "2")])]);
    // It encodes, but does not decode: refused as malformed, with no effect and no session.
    let encoded = req(1, 1, nested.clone());
    assert_eq!(KvRequest::decode(&encoded), None);
    assert_eq!(
        sm.apply_one(&encoded),
        KvOutput::Error("ERR malformed command".into())
    );
    assert!(sm.is_empty());
    assert_eq!(sm.sessions(), 0);
    // Built in memory and executed all the same, the inner batch gets an error output.
    let outputs = commands::execute(&mut sm.state().map, nested);
    assert_eq!(
        outputs,
        KvOutput::Many(vec![
            KvOutput::Ok,
            KvOutput::Error("ERR a batch cannot hold a batch".into())
        ])
    );
    assert_eq!(get(&sm, "b"), None);
    // Same for reads.
    let nested = KvQuery::Batch(vec![KvQuery::DbSize, KvQuery::Batch(vec![])]);
    assert_eq!(KvQuery::decode(&nested.encode()), None);
    assert_eq!(read(&sm, nested), KvAnswer::Bulk(None));
}

#[test]
fn reads_in_a_batch_see_the_writes_before_them_and_none_after() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    let get = |k: &str| KvCommand::Read(KvQuery::Get { key: k.into() });
    let batch = KvCommand::Batch(vec![
        get("k"),
        set("k", "1"),
        get("k"),
        incr("k"),
        KvCommand::Read(KvQuery::MGet {
            keys: vec![b"k".to_vec(), b"absent".to_vec()],
        }),
        KvCommand::Read(KvQuery::DbSize),
    ]);
    assert_eq!(
        c.send(&mut sm, batch),
        KvOutput::Many(vec![
            KvOutput::Answer(KvAnswer::Bulk(None)),
            KvOutput::Ok,
            KvOutput::Answer(KvAnswer::Bulk(Some(b"1".to_vec()))),
            KvOutput::Integer(2),
            KvOutput::Answer(KvAnswer::Values(vec![Some(b"2".to_vec()), None])),
            KvOutput::Answer(KvAnswer::Integer(1)),
        ])
    );
    // A read alone through the log changes nothing but the session.
    assert_eq!(
        c.send(&mut sm, get("k")),
        KvOutput::Answer(KvAnswer::Bulk(Some(b"2".to_vec())))
    );
    assert_eq!(sm.len(), 1);
    // Its query cannot be a batch, and its answer cannot be a `Many`: neither decodes.
    let nested = KvCommand::Read(KvQuery::Batch(vec![KvQuery::DbSize]));
    assert_eq!(KvRequest::decode(&req(2, 1, nested)), None);
    let nested = KvOutput::Answer(KvAnswer::Many(vec![]));
    assert_eq!(KvOutput::decode(&nested.encode()), None);
    // Nor does a `Many` of an `Answer` of a `Many`, nor a `Batch` tag in a `Batch`.
    let nested = KvOutput::Many(vec![KvOutput::Answer(KvAnswer::Many(vec![]))]);
    assert_eq!(KvOutput::decode(&nested.encode()), None);
    let ok = KvOutput::Many(vec![KvOutput::Answer(KvAnswer::Integer(3))]);
    assert_eq!(KvOutput::decode(&ok.encode()), Some(ok));
}

#[test]
fn outputs_larger_than_their_request_are_not_kept_for_a_retry() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    let large = "v".repeat(2 * MIN_KEPT_OUTPUT_BYTES);
    c.send(&mut sm, set("big", &large));
    let getset = set_with("big", "small", SetCondition::Always, true);
    // The first reply is whole; a retry learns the command was applied, not its reply.
    assert_eq!(c.send(&mut sm, getset.clone()), bulk(&large));
    assert_eq!(
        c.retry(&mut sm, getset),
        KvOutput::Error(OUTPUT_NOT_KEPT.into())
    );
    assert_eq!(get(&sm, "big").as_deref(), Some(&b"small"[..]));
    // An output no larger than MIN_KEPT_OUTPUT_BYTES is kept, whatever the request.
    c.send(&mut sm, set("mid", &"m".repeat(MIN_KEPT_OUTPUT_BYTES - 10)));
    let get_mid = set_with("mid", "x", SetCondition::IfAbsent, true);
    let first = c.send(&mut sm, get_mid.clone());
    assert!(matches!(&first, KvOutput::Bulk(Some(v)) if v.len() == MIN_KEPT_OUTPUT_BYTES - 10));
    assert_eq!(c.retry(&mut sm, get_mid), first);
    // And one no larger than its request.
    let value = "w".repeat(3 * MIN_KEPT_OUTPUT_BYTES);
    let swap = KvCommand::Batch(vec![
        set("w", &value),
        set_with("w", &value, SetCondition::Always, true),
    ]);
    let first = c.send(&mut sm, swap.clone());
    assert_eq!(first, KvOutput::Many(vec![KvOutput::Ok, bulk(&value)]));
    assert_eq!(c.retry(&mut sm, swap), first);
}

#[test]
fn reads_answer_like_redis() {
    let mut sm = KvStateMachine::default();
    let mut c = Client::new(1);
    c.send(&mut sm, set("a", "hello"));
    c.send(&mut sm, set("b", ""));
    let keys = |ks: &[&str]| ks.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(
        read(&sm, KvQuery::Get { key: "a".into() }),
        KvAnswer::Bulk(Some("hello".into()))
    );
    assert_eq!(
        read(&sm, KvQuery::Get { key: "z".into() }),
        KvAnswer::Bulk(None)
    );
    assert_eq!(
        read(
            &sm,
            KvQuery::MGet {
                keys: keys(&["a", "z", "b", "a"])
            }
        ),
        KvAnswer::Values(vec![
            Some("hello".into()),
            None,
            Some(vec![]),
            Some("hello".into())
        ])
    );
    // EXISTS counts a repeated key each time.
    assert_eq!(
        read(
            &sm,
            KvQuery::Exists {
                keys: keys(&["a", "a", "z", "b"])
            }
        ),
        KvAnswer::Integer(3)
    );
    assert_eq!(
        read(&sm, KvQuery::StrLen { key: "a".into() }),
        KvAnswer::Integer(5)
    );
    assert_eq!(
        read(&sm, KvQuery::StrLen { key: "z".into() }),
        KvAnswer::Integer(0)
    );
    assert_eq!(read(&sm, KvQuery::DbSize), KvAnswer::Integer(2));
    let batch = KvQuery::Batch(vec![
        KvQuery::DbSize,
        KvQuery::Get { key: "b".into() },
        KvQuery::Scan {
            cursor: 0,
            pattern: Some("a*".into()),
            count: 100,
        },
    ]);
    assert_eq!(
        read(&sm, batch),
        KvAnswer::Many(vec![
            KvAnswer::Integer(2),
            KvAnswer::Bulk(Some(vec![])),
            KvAnswer::Scan {
                cursor: 0,
                keys: keys(&["a"])
            },
        ])
    );
    // A malformed query is answered as an absent key, as before.
    assert_eq!(sm.answer(b"\xff\xff\xff"), KvAnswer::Bulk(None));
}

#[test]
fn decode_get_answer_reads_a_bulk_answer_only() {
    let some = KvAnswer::Bulk(Some(b"v".to_vec())).encode();
    assert_eq!(decode_get_answer(&some), Some(Some(b"v".to_vec())));
    assert_eq!(
        decode_get_answer(&KvAnswer::Bulk(None).encode()),
        Some(None)
    );
    assert_eq!(decode_get_answer(&KvAnswer::Integer(1).encode()), None);
    assert_eq!(decode_get_answer(b""), None);
}

/// Runs a whole scan, returning the keys of each call.
fn scan_all(sm: &KvStateMachine, pattern: Option<&str>, count: usize) -> Vec<Vec<Vec<u8>>> {
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let query = KvQuery::Scan {
            cursor,
            pattern: pattern.map(Vec::from),
            count,
        };
        let KvAnswer::Scan { cursor: next, keys } = read(sm, query) else {
            panic!("not a scan answer");
        };
        pages.push(keys);
        if next == 0 {
            return pages;
        }
        assert!(next > cursor, "the cursor goes forward");
        cursor = next;
        assert!(pages.len() <= 100_000, "the scan does not end");
    }
}

fn fill(sm: &mut KvStateMachine, n: usize) -> BTreeSet<Vec<u8>> {
    let pairs: Vec<_> = (0..n)
        .map(|i| (format!("key:{i}").into_bytes(), vec![]))
        .collect();
    let keys = pairs.iter().map(|(k, _)| k.clone()).collect();
    Client::new(99).send(sm, KvCommand::MSet { pairs });
    keys
}

#[test]
fn scan_returns_every_key_once_count_at_a_time() {
    let mut sm = KvStateMachine::default();
    let keys = fill(&mut sm, 1000);
    for count in [1, 10, 333, 1000, 5000] {
        let pages = scan_all(&sm, None, count);
        let all: Vec<_> = pages.iter().flatten().cloned().collect();
        assert_eq!(all.len(), keys.len(), "count {count}: no key twice");
        assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), keys);
        // No two keys share a hash here, so each call visits exactly `count` keys.
        assert_eq!(pages.len(), 1000usize.div_ceil(count));
        assert!(pages.iter().all(|p| p.len() <= count));
    }
    // A huge COUNT is capped: the map is never visited whole by one call.
    let mut sm = KvStateMachine::default();
    fill(&mut sm, MAX_SCAN_COUNT + 5);
    let pages = scan_all(&sm, None, usize::MAX);
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [MAX_SCAN_COUNT, 5]
    );
    // COUNT 0 (which the server refuses anyway) counts as 1.
    assert_eq!(scan_all(&sm, None, 0).len(), MAX_SCAN_COUNT + 5);
}

#[test]
fn scan_match_filters_the_keys_visited() {
    let mut sm = KvStateMachine::default();
    let keys = fill(&mut sm, 200);
    let pages = scan_all(&sm, Some("key:1?"), 10);
    // Every call still visits 10 keys: most return none, with a nonzero cursor.
    assert_eq!(pages.len(), 20);
    assert!(pages.iter().filter(|p| p.is_empty()).count() > 5);
    let found: BTreeSet<_> = pages.into_iter().flatten().collect();
    let expected: BTreeSet<_> = (10..20).map(|i| format!("key:{i}").into_bytes()).collect();
    assert_eq!(found, expected);
    assert!(found.is_subset(&keys));
    // The longest pattern taken, and one byte more.
    let long = |n: usize| KvQuery::Scan {
        cursor: 0,
        pattern: Some([&b"key:1"[..], &vec![b'*'; n - 5]].concat()),
        count: 1000,
    };
    let KvAnswer::Scan { keys, .. } = read(&sm, long(MAX_SCAN_PATTERN_BYTES)) else {
        panic!("refused");
    };
    assert_eq!(keys.len(), 111);
    assert_eq!(
        read(&sm, long(MAX_SCAN_PATTERN_BYTES + 1)),
        KvAnswer::Bulk(None)
    );
    // `*` alone matches everything, the empty key too.
    Client::new(5).send(&mut sm, set("", "empty"));
    assert_eq!(scan_all(&sm, Some("*"), 1000).concat().len(), 201);
    assert_eq!(scan_all(&sm, Some("**"), 1000).concat().len(), 200);
}

#[test]
fn scan_edge_cursors() {
    let empty = KvStateMachine::default();
    for cursor in [0, 1, u64::MAX] {
        let query = KvQuery::Scan {
            cursor,
            pattern: None,
            count: 10,
        };
        assert_eq!(
            read(&empty, query),
            KvAnswer::Scan {
                cursor: 0,
                keys: vec![]
            }
        );
    }
    // Any cursor is valid: it starts from that hash. Cursors from 0 and from the middle
    // split the keyspace between them.
    let mut sm = KvStateMachine::default();
    let keys = fill(&mut sm, 100);
    let middle = 1 << 63;
    let mut from_middle = BTreeSet::new();
    let mut cursor = middle;
    loop {
        let query = KvQuery::Scan {
            cursor,
            pattern: None,
            count: 7,
        };
        let KvAnswer::Scan { cursor: next, keys } = read(&sm, query) else {
            panic!()
        };
        from_middle.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let upper: BTreeSet<_> = keys
        .iter()
        .filter(|k| Key::new(k.to_vec()) >= Key::with_hash(middle, vec![]))
        .cloned()
        .collect();
    assert_eq!(from_middle, upper);
    assert!(!upper.is_empty() && upper.len() < keys.len());
}

/// Something a client does to the keyspace between two SCAN calls.
#[derive(Clone, Debug)]
enum Change {
    Insert(u16),
    Delete(u16),
}

fn pool_key(i: u16) -> Vec<u8> {
    format!("p{i}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Redis's guarantee under concurrent writes: a key present from the first call to
    /// the last is returned, and here exactly once; the scan ends; no call visits more than
    /// `count` keys (no two keys share a hash).
    #[test]
    fn scan_returns_every_key_present_throughout(
        initial in proptest::collection::btree_set(0u16..400, 0..200),
        changes in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![(0u16..400).prop_map(Change::Insert), (0u16..400).prop_map(Change::Delete)],
                0..6,
            ),
            0..60,
        ),
        count in 1usize..12,
    ) {
        let mut sm = KvStateMachine::default();
        let mut c = Client::new(1);
        for &i in &initial {
            c.send(&mut sm, KvCommand::Set { key: pool_key(i), value: vec![] });
        }
        let mut throughout: BTreeSet<Vec<u8>> = initial.iter().map(|&i| pool_key(i)).collect();
        let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            let query = KvQuery::Scan { cursor, pattern: None, count };
            let KvAnswer::Scan { cursor: next, keys } = read(&sm, query) else { panic!() };
            prop_assert!(keys.len() <= count);
            for key in keys {
                *seen.entry(key).or_default() += 1;
            }
            if next == 0 {
                break;
            }
            prop_assert!(next > cursor);
            cursor = next;
            for change in changes.get(calls).into_iter().flatten() {
                match *change {
                    Change::Insert(i) => {
                        c.send(&mut sm, KvCommand::Set { key: pool_key(i), value: vec![] });
                    }
                    Change::Delete(i) => {
                        c.send(&mut sm, KvCommand::Del { keys: vec![pool_key(i)] });
                        throughout.remove(&pool_key(i));
                    }
                }
            }
            calls += 1;
            prop_assert!(calls <= 400, "the scan does not end");
        }
        for key in &throughout {
            prop_assert_eq!(seen.get(key), Some(&1), "{:?}", String::from_utf8_lossy(key));
        }
        prop_assert!(seen.values().all(|&n| n == 1), "a key returned twice");
    }
}

#[test]
fn replicas_applying_a_log_of_every_command_agree() {
    let commands = |i: u64| -> KvCommand {
        let k = format!("k{}", i % 7);
        match i % 9 {
            0 => set(&k, &i.to_string()),
            1 => incr(&k),
            2 => incr_by(&k, -3),
            3 => set_with(&k, "x", SetCondition::IfAbsent, i % 2 == 0),
            4 => KvCommand::Append {
                key: k.into(),
                value: b"7".to_vec(),
            },
            5 => KvCommand::MSet {
                pairs: vec![(k.clone().into(), b"1".to_vec()), (b"m".to_vec(), vec![])],
            },
            6 => KvCommand::Del {
                keys: vec![k.into()],
            },
            7 => KvCommand::Batch(vec![
                incr(&k),
                set_with(&k, "9", SetCondition::IfPresent, true),
            ]),
            _ => KvCommand::Cas {
                key: k.into(),
                expected: b"1".to_vec(),
                new: b"2".to_vec(),
            },
        }
    };
    let log: Vec<Bytes> = (0..500u64)
        .map(|i| born(i % 37, i % 37, i / 37 + 1, commands(i)))
        .collect();
    let run = || {
        let mut sm = KvStateMachine::new(8);
        let outputs: Vec<KvOutput> = log.iter().map(|c| sm.apply_one(c)).collect();
        let scan = scan_all(&sm, None, 3);
        (outputs, scan, sm.state().clone())
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.0.iter().any(|o| matches!(o, KvOutput::Many(_))));
}
