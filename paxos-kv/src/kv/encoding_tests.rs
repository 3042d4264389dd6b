//! Encodings: round trips of every type, garbage and hostile nesting never panicking, the
//! size rule of [`KvCommand::max_request_bytes`], and snapshots.

use proptest::prelude::*;

use super::*;

fn req(client: u64, seq: u64, command: KvCommand) -> Bytes {
    let id = RequestId {
        client,
        born_slot: client,
        seq,
    };
    KvRequest { id, command }.encode()
}

fn set(k: &str, v: &str) -> KvCommand {
    KvCommand::Set {
        key: k.into(),
        value: v.into(),
    }
}

fn bytes_of_len(len: usize) -> Vec<u8> {
    vec![b'x'; len]
}

/// Lengths across the varint boundaries of a length prefix (1, 2 and 3 bytes).
fn length() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![
        8 => 0usize..40,
        1 => Just(127usize),
        1 => Just(128usize),
        1 => Just(16_383usize),
        1 => Just(16_384usize),
    ]
}

fn string() -> impl Strategy<Value = Vec<u8>> + Clone {
    length().prop_map(bytes_of_len)
}

fn small_string() -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(any::<u8>(), 0..12)
}

fn condition() -> impl Strategy<Value = SetCondition> {
    prop_oneof![
        Just(SetCondition::Always),
        Just(SetCondition::IfAbsent),
        Just(SetCondition::IfPresent),
    ]
}

/// Every command but `Batch`, with arguments of `s`.
fn leaf_command<S>(s: S) -> impl Strategy<Value = KvCommand>
where
    S: Strategy<Value = Vec<u8>> + Clone + 'static,
{
    let many = || proptest::collection::vec(s.clone(), 0..4);
    prop_oneof![
        (s.clone(), s.clone()).prop_map(|(key, value)| KvCommand::Set { key, value }),
        many().prop_map(|keys| KvCommand::Del { keys }),
        s.clone().prop_map(|key| KvCommand::Incr { key }),
        (s.clone(), s.clone(), s.clone()).prop_map(|(key, expected, new)| KvCommand::Cas {
            key,
            expected,
            new
        }),
        (s.clone(), s.clone(), condition(), any::<bool>()).prop_map(
            |(key, value, condition, get)| KvCommand::SetWith {
                key,
                value,
                condition,
                get
            }
        ),
        proptest::collection::vec((s.clone(), s.clone()), 0..4)
            .prop_map(|pairs| KvCommand::MSet { pairs }),
        (s.clone(), s.clone()).prop_map(|(key, value)| KvCommand::Append { key, value }),
        (s.clone(), any::<i64>()).prop_map(|(key, delta)| KvCommand::IncrBy { key, delta }),
        leaf_query().prop_map(KvCommand::Read),
    ]
}

/// Any command that decodes: a leaf, or a batch of leaves.
fn command<S>(s: S) -> impl Strategy<Value = KvCommand>
where
    S: Strategy<Value = Vec<u8>> + Clone + 'static,
{
    prop_oneof![
        3 => leaf_command(s.clone()),
        1 => proptest::collection::vec(leaf_command(s), 0..6).prop_map(KvCommand::Batch),
    ]
}

fn request_id() -> impl Strategy<Value = RequestId> {
    let n = || prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)];
    (n(), n(), n()).prop_map(|(client, born_slot, seq)| RequestId {
        client,
        born_slot,
        seq,
    })
}

fn leaf_output() -> impl Strategy<Value = KvOutput> {
    prop_oneof![
        Just(KvOutput::Ok),
        any::<i64>().prop_map(KvOutput::Integer),
        ".{0,20}".prop_map(KvOutput::Error),
        Just(KvOutput::SessionExpired),
        proptest::option::of(small_string()).prop_map(KvOutput::Bulk),
        leaf_answer().prop_map(KvOutput::Answer),
    ]
}

fn output() -> impl Strategy<Value = KvOutput> {
    prop_oneof![
        3 => leaf_output(),
        1 => proptest::collection::vec(leaf_output(), 0..6).prop_map(KvOutput::Many),
    ]
}

fn leaf_query() -> impl Strategy<Value = KvQuery> {
    let keys = || proptest::collection::vec(small_string(), 0..4);
    prop_oneof![
        small_string().prop_map(|key| KvQuery::Get { key }),
        keys().prop_map(|keys| KvQuery::MGet { keys }),
        keys().prop_map(|keys| KvQuery::Exists { keys }),
        small_string().prop_map(|key| KvQuery::StrLen { key }),
        Just(KvQuery::DbSize),
        (
            any::<u64>(),
            proptest::option::of(small_string()),
            any::<usize>()
        )
            .prop_map(|(cursor, pattern, count)| KvQuery::Scan {
                cursor,
                pattern,
                count
            }),
    ]
}

fn query() -> impl Strategy<Value = KvQuery> {
    prop_oneof![
        3 => leaf_query(),
        1 => proptest::collection::vec(leaf_query(), 0..6).prop_map(KvQuery::Batch),
    ]
}

fn leaf_answer() -> impl Strategy<Value = KvAnswer> {
    prop_oneof![
        proptest::option::of(small_string()).prop_map(KvAnswer::Bulk),
        any::<i64>().prop_map(KvAnswer::Integer),
        proptest::collection::vec(proptest::option::of(small_string()), 0..4)
            .prop_map(KvAnswer::Values),
        (
            any::<u64>(),
            proptest::collection::vec(small_string(), 0..4)
        )
            .prop_map(|(cursor, keys)| KvAnswer::Scan { cursor, keys }),
    ]
}

fn answer() -> impl Strategy<Value = KvAnswer> {
    prop_oneof![
        3 => leaf_answer(),
        1 => proptest::collection::vec(leaf_answer(), 0..6).prop_map(KvAnswer::Many),
    ]
}

/// Leaf commands inside a `Batch`, and `IncrBy`s, and `Batch`es inside a `Batch` (which
/// encode but do not decode): what the size bound counts besides the arguments.
fn counts(command: &KvCommand) -> (usize, usize) {
    match command {
        KvCommand::Batch(commands) => commands.iter().fold((0, 0), |(b, i), c| {
            let (cb, ci) = counts(c);
            (b + 1 + cb, i + ci)
        }),
        KvCommand::IncrBy { .. } => (0, 1),
        KvCommand::Read(KvQuery::Scan { .. }) => (0, 2),
        _ => (0, 0),
    }
}

/// Checks the size rule for one command: the bound holds for any request id, and it is
/// not loose by more than the varints it assumes at their longest.
fn check_bound(command: &KvCommand, id: RequestId) -> Result<(), TestCaseError> {
    let bound = command.max_request_bytes();
    let len = KvRequest {
        id,
        command: command.clone(),
    }
    .encode()
    .len();
    prop_assert!(len <= bound, "{len} > {bound} for {command:?}");
    let (count, bytes) = command.arguments();
    let (batched, integers) = counts(command);
    prop_assert!(len >= bytes);
    // The smallest possible encoding of the fixed parts is 3 (id) + 1 (tag) + 1 per
    // argument + 1 per batched command + 1 per integer.
    prop_assert!(
        bound - len
            <= REQUEST_OVERHEAD_BYTES - 4
                + (ARGUMENT_OVERHEAD_BYTES - 1) * count
                + (BATCH_COMMAND_OVERHEAD_BYTES - 1) * batched
                + (INTEGER_ARGUMENT_BYTES - 1) * integers,
        "{len} vs {bound}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn requests_round_trip(id in request_id(), command in command(small_string())) {
        let request = KvRequest { id, command };
        prop_assert_eq!(KvRequest::decode(&request.encode()), Some(request));
    }

    #[test]
    fn outputs_round_trip(output in output()) {
        prop_assert_eq!(KvOutput::decode(&output.encode()), Some(output));
    }

    #[test]
    fn queries_round_trip(query in query()) {
        prop_assert_eq!(KvQuery::decode(&query.encode()), Some(query));
    }

    #[test]
    fn answers_round_trip(answer in answer()) {
        prop_assert_eq!(KvAnswer::decode(&answer.encode()), Some(answer));
    }

    /// Random bytes, and valid encodings with bytes changed, never panic anywhere.
    #[test]
    fn garbage_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        valid in command(small_string()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut mutated = KvRequest { id: RequestId { client: 1, born_slot: 1, seq: 1 }, command: valid }
            .encode()
            .to_vec();
        for (at, byte) in flips {
            let at = at % mutated.len();
            mutated[at] = byte;
        }
        let mut sm = KvStateMachine::default();
        for input in [&bytes[..], &mutated[..]] {
            let _ = KvRequest::decode(input);
            let _ = KvOutput::decode(input);
            let _ = KvQuery::decode(input);
            let _ = KvAnswer::decode(input);
            let _ = decode_get_answer(input);
            let _ = sm.apply_one(input);
            let _ = sm.answer(input);
        }
    }

    /// The size rule at the varint boundaries of every length, for every command, batches
    /// included, and batches in batches (which encode, though they do not decode).
    #[test]
    fn max_request_bytes_bounds_every_encoding(
        id in request_id(),
        command in command(string()),
        nested in proptest::collection::vec(command(small_string()), 0..3),
    ) {
        check_bound(&command, id)?;
        let mut outer = nested;
        outer.push(command);
        check_bound(&KvCommand::Batch(outer), id)?;
    }
}

#[test]
fn a_batch_bound_adds_up_its_commands() {
    let commands = vec![
        KvCommand::Set {
            key: b"k".to_vec(),
            value: bytes_of_len(300),
        },
        KvCommand::IncrBy {
            key: b"n".to_vec(),
            delta: i64::MIN,
        },
        KvCommand::Del { keys: vec![] },
    ];
    let sum: usize = commands.iter().map(KvCommand::max_batched_bytes).sum();
    let batch = KvCommand::Batch(commands.clone());
    assert_eq!(batch.max_request_bytes(), REQUEST_OVERHEAD_BYTES + sum);
    for c in &commands {
        assert_eq!(
            c.max_batched_bytes(),
            c.max_request_bytes() - REQUEST_OVERHEAD_BYTES + BATCH_COMMAND_OVERHEAD_BYTES
        );
    }
    // The formula, spelled out for this batch: 3 arguments of 302 bytes, 1 IncrBy, 3
    // batched commands.
    assert_eq!(batch.max_request_bytes(), 40 + 5 * 3 + 302 + 10 + 6 * 3);
}

/// What the server does with the rule: fill a batch up to a node's bound `m` by adding up
/// `max_batched_bytes`; whatever it builds, with the largest request id, fits.
#[test]
fn batches_filled_to_the_bound_fit() {
    let id = RequestId {
        client: u64::MAX,
        born_slot: u64::MAX,
        seq: u64::MAX,
    };
    for m in [200, 4096, 70_000, 1_048_575] {
        let mut commands = Vec::new();
        let mut bound = REQUEST_OVERHEAD_BYTES;
        for i in 0usize.. {
            let command = match i % 3 {
                0 => KvCommand::IncrBy {
                    key: bytes_of_len(i % 200),
                    delta: i64::MIN,
                },
                1 => KvCommand::SetWith {
                    key: bytes_of_len(i % 130),
                    value: bytes_of_len(i * 7 % 20_000),
                    condition: SetCondition::IfPresent,
                    get: true,
                },
                _ => KvCommand::Del {
                    keys: vec![bytes_of_len(128); i % 5],
                },
            };
            if bound + command.max_batched_bytes() > m {
                break;
            }
            bound += command.max_batched_bytes();
            commands.push(command);
        }
        let batch = KvCommand::Batch(commands);
        assert_eq!(batch.max_request_bytes(), bound);
        let len = KvRequest { id, command: batch }.encode().len();
        assert!(len <= m, "{len} > {m}");
    }
    // One command whose bound is exactly m fits m too.
    let m = 1_048_575;
    let set = KvCommand::Set {
        key: b"key".to_vec(),
        value: bytes_of_len(m - 3 - 50),
    };
    assert_eq!(set.max_request_bytes(), m);
    let len = KvRequest { id, command: set }.encode().len();
    assert!(len <= m);
}

/// The bound of each command kind before batches existed is unchanged (the server's
/// documented sizes rest on it), and holds for a three-byte length prefix.
#[test]
fn max_request_bytes_of_the_first_commands_is_unchanged() {
    let id = RequestId {
        client: u64::MAX,
        born_slot: u64::MAX,
        seq: u64::MAX,
    };
    let long = bytes_of_len(2_100_000); // a four-byte length prefix
    let set = KvCommand::Set {
        key: b"key".to_vec(),
        value: vec![0; 1000],
    };
    assert_eq!(set.max_request_bytes(), 3 + 1000 + 50);
    let del = KvCommand::Del {
        keys: vec![vec![0; 1000]; 1100],
    };
    assert_eq!(del.max_request_bytes(), 1_105_540);
    for command in [
        KvCommand::Set {
            key: b"k".to_vec(),
            value: long.clone(),
        },
        KvCommand::Incr { key: long.clone() },
        KvCommand::Cas {
            key: long.clone(),
            expected: long.clone(),
            new: vec![],
        },
        KvCommand::Batch(vec![KvCommand::Append {
            key: long.clone(),
            value: long,
        }]),
    ] {
        check_bound(&command, id).unwrap();
    }
}

/// Hostile bytes that nest batches as deep as they can: decoding stops at the second level
/// instead of recursing (which would overflow the stack long before the end).
#[test]
fn deep_nesting_is_refused_without_recursion() {
    let mut request = vec![1, 1, 1]; // the request id
    for _ in 0..500_000 {
        request.extend([8, 1]); // Batch, one command
    }
    assert_eq!(KvRequest::decode(&request), None);
    let mut sm = KvStateMachine::default();
    assert!(matches!(sm.apply_one(&request), KvOutput::Error(_)));
    let nested = |tag: u8| [tag, 1].repeat(500_000);
    assert_eq!(KvOutput::decode(&nested(5)), None);
    assert_eq!(KvQuery::decode(&nested(6)), None);
    assert_eq!(KvAnswer::decode(&nested(4)), None);
    assert_eq!(sm.answer(&nested(6)), KvAnswer::Bulk(None));
}

/// The encodings of the variants that existed before are unchanged: a log written before
/// the new commands existed decodes as it did.
#[test]
fn existing_tags_keep_their_encoding() {
    let id = RequestId {
        client: 1,
        born_slot: 2,
        seq: 3,
    };
    let encoded = |command| KvRequest { id, command }.encode().to_vec();
    let key = || b"k".to_vec();
    assert_eq!(
        encoded(KvCommand::Set {
            key: key(),
            value: b"v".to_vec()
        }),
        [1, 2, 3, 0, 1, b'k', 1, b'v']
    );
    assert_eq!(
        encoded(KvCommand::Del { keys: vec![key()] }),
        [1, 2, 3, 1, 1, 1, b'k']
    );
    assert_eq!(
        encoded(KvCommand::Incr { key: key() }),
        [1, 2, 3, 2, 1, b'k']
    );
    assert_eq!(
        encoded(KvCommand::IncrBy {
            key: key(),
            delta: -1
        }),
        [1, 2, 3, 7, 1, b'k', 1]
    );
    assert_eq!(encoded(KvCommand::Batch(vec![])), [1, 2, 3, 8, 0]);
    assert_eq!(KvOutput::Integer(-1).encode().to_vec(), [1, 1]);
    assert_eq!(KvOutput::SessionExpired.encode().to_vec(), [3]);
    assert_eq!(KvQuery::Get { key: key() }.encode().to_vec(), [0, 1, b'k']);
}

/// Keys and values go through `serde_bytes` (decoded as one slice, not byte by byte), which
/// postcard writes exactly as it wrote a plain `Vec<u8>`: a varint length, then the bytes.
/// Logs and snapshots written before decode unchanged.
#[test]
fn byte_strings_keep_their_encoding() {
    let id = RequestId {
        client: 1,
        born_slot: 2,
        seq: 3,
    };
    let encoded = |command| KvRequest { id, command }.encode().to_vec();
    // A two-byte length prefix (200 = 0xC8 0x01), in a batch's mirror type too.
    let long = vec![b'v'; 200];
    let mut expected = vec![1, 2, 3, 0, 1, b'k', 0xC8, 0x01];
    expected.extend_from_slice(&long);
    let set = KvCommand::Set {
        key: b"k".to_vec(),
        value: long.clone(),
    };
    assert_eq!(encoded(set.clone()), expected);
    let batch = encoded(KvCommand::Batch(vec![set.clone()]));
    assert_eq!(batch[..5], [1, 2, 3, 8, 1]);
    assert_eq!(batch[5..], expected[3..]);
    assert_eq!(
        KvRequest::decode(&batch).map(|r| r.command),
        Some(KvCommand::Batch(vec![set]))
    );
    assert_eq!(
        encoded(KvCommand::Cas {
            key: b"k".to_vec(),
            expected: b"a".to_vec(),
            new: b"b".to_vec(),
        }),
        [1, 2, 3, 3, 1, b'k', 1, b'a', 1, b'b']
    );
    assert_eq!(
        KvOutput::Bulk(Some(b"ab".to_vec())).encode().to_vec(),
        [4, 1, 2, b'a', b'b']
    );
    assert_eq!(KvOutput::Bulk(None).encode().to_vec(), [4, 0]);
    assert_eq!(
        KvAnswer::Bulk(Some(b"ab".to_vec())).encode().to_vec(),
        [0, 1, 2, b'a', b'b']
    );
    let scan = KvQuery::Scan {
        cursor: 0,
        pattern: Some(b"k*".to_vec()),
        count: 10,
    };
    assert_eq!(scan.encode().to_vec(), [5, 0, 1, 2, b'k', b'*', 10]);
    assert_eq!(KvQuery::decode(&scan.encode()), Some(scan));
}

async fn take(sm: &mut KvStateMachine) -> Vec<u8> {
    let mut out = Vec::new();
    sm.snapshot(&mut out).await.unwrap();
    out
}

async fn restored(bytes: &[u8]) -> Result<KvStateMachine, StateMachineError> {
    let mut sm = KvStateMachine::default();
    let mut input = bytes;
    sm.restore(&mut input).await.map(|()| sm)
}

#[test]
fn snapshot_round_trips_with_sessions_and_the_eviction_floor() {
    futures::executor::block_on(async {
        let mut sm = KvStateMachine::default();
        sm.apply_one(&req(1, 1, set("k", "v")));
        sm.max_sessions = 1;
        sm.apply_one(&req(2, 1, set("k", "w")));
        assert_eq!(sm.eviction_floor(), Some(1));
        let snap = take(&mut sm).await;
        let mut other = restored(&snap).await.unwrap();
        assert_eq!(*other.state(), *sm.state());
        let answer = other
            .query(&KvQuery::Get { key: b"k".to_vec() }.encode())
            .await
            .unwrap();
        assert_eq!(decode_get_answer(&answer), Some(Some(b"w".to_vec())));
        assert_eq!(other.eviction_floor(), Some(1));
        // A retry of client 2's request replays its saved output instead of running
        // again, and client 1 (evicted) is refused, on both.
        other.max_sessions = 1;
        for m in [&mut sm, &mut other] {
            assert_eq!(m.apply_one(&req(2, 1, set("k", "again"))), KvOutput::Ok);
            assert_eq!(get(m, "k"), Some(b"w".to_vec()));
            assert_eq!(
                m.apply_one(&req(1, 2, set("k", "x"))),
                KvOutput::SessionExpired
            );
        }
        assert_eq!(*other.state(), *sm.state());
    });
}

fn get(sm: &KvStateMachine, k: &str) -> Option<Vec<u8>> {
    sm.state().map.get(&store::Key::new(k.into())).cloned()
}

#[test]
fn snapshots_are_a_function_of_the_state_and_hold_large_values() {
    futures::executor::block_on(async {
        let big = vec![7u8; 1 << 20];
        let mut a = KvStateMachine::default();
        let mut b = KvStateMachine::default();
        // The same requests give the same bytes (the maps are ordered).
        for i in 0..200u64 {
            let key = format!("key{i}");
            a.apply_one(&req(i % 7 + 1, i / 7 + 1, set(&key, "x")));
            b.apply_one(&req(i % 7 + 1, i / 7 + 1, set(&key, "x")));
        }
        let big_set = |sm: &mut KvStateMachine| {
            sm.apply_one(
                &KvRequest {
                    id: RequestId {
                        client: 99,
                        born_slot: 0,
                        seq: 1,
                    },
                    command: KvCommand::Set {
                        key: b"big".to_vec(),
                        value: big.clone(),
                    },
                }
                .encode(),
            )
        };
        big_set(&mut a);
        big_set(&mut b);
        let snap = take(&mut a).await;
        assert_eq!(snap, take(&mut b).await);
        assert!(snap.len() > big.len());
        let c = restored(&snap).await.unwrap();
        assert_eq!(*c.state(), *a.state());
        assert_eq!(get(&c, "big"), Some(big.clone()));
    });
}

#[test]
fn a_frozen_state_writes_the_snapshot_of_its_moment() {
    futures::executor::block_on(async {
        let mut sm = KvStateMachine::default();
        for i in 0..3000u64 {
            sm.apply_one(&req(
                i % 5 + 1,
                i / 5 + 1,
                set(&format!("key{i}"), "before"),
            ));
        }
        let expected = take(&mut sm).await;
        let frozen = sm.freeze().expect("the KV store freezes");
        // The node goes on applying while the frozen copy is written: overwrites, new
        // keys, appends and deletes, into nodes the copy shares.
        for i in 0..3000u64 {
            sm.apply_one(&req(i % 5 + 1, 601 + i, set(&format!("key{i}"), "after")));
        }
        sm.apply_one(&req(9, 1, set("new", "x")));
        let mut written = Vec::new();
        frozen.write(&mut written).unwrap();
        assert_eq!(
            written, expected,
            "the same bytes as `snapshot` at the freeze"
        );
        let old = restored(&written).await.unwrap();
        assert_eq!(get(&old, "key7"), Some(b"before".to_vec()));
        assert_eq!(get(&old, "new"), None);
        assert_eq!(get(&sm, "key7"), Some(b"after".to_vec()));
        assert_ne!(take(&mut sm).await, expected);
    });
}

#[test]
fn a_malformed_snapshot_is_an_error_not_a_panic() {
    futures::executor::block_on(async {
        let mut sm = KvStateMachine::default();
        for i in 0..5u64 {
            sm.apply_one(&req(i + 1, 1, set(&format!("k{i}"), "v")));
        }
        let snap = take(&mut sm).await;
        // Cut short anywhere.
        for len in 0..snap.len() {
            assert!(restored(&snap[..len]).await.is_err(), "cut at {len}");
        }
        // A byte too many.
        let mut long = snap.clone();
        long.push(0);
        assert!(restored(&long).await.is_err());
        // Another format version, and another magic.
        for at in [0, 4] {
            let mut other = snap.clone();
            other[at] ^= 1;
            let err = restored(&other).await.unwrap_err();
            assert!(err.message().contains("malformed"), "{err}");
        }
        // A record claiming more than any key and value.
        let mut huge = snap[..5].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(restored(&huge).await.is_err());
        // Every single-byte change decodes to something or fails cleanly.
        for at in 5..snap.len() {
            let mut flipped = snap.clone();
            flipped[at] ^= 0xff;
            let _ = restored(&flipped).await;
        }
    });
}
