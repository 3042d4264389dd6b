//! Hand-made histories with known verdicts, and generated histories that are linearizable by
//! construction.

use super::*;
use crate::{Input, Output};

const KEY: u64 = 0;

fn done(client: u64, input: Input, output: Output, call: u64, ret: u64) -> Operation {
    Operation {
        client,
        key: KEY,
        input,
        output: Some(output),
        call,
        ret: Some(ret),
    }
}

fn timed_out(client: u64, input: Input, call: u64) -> Operation {
    Operation {
        client,
        key: KEY,
        input,
        output: None,
        call,
        ret: None,
    }
}

fn read(client: u64, seen: Option<u64>, call: u64, ret: u64) -> Operation {
    done(client, Input::Read, Output::Read(seen), call, ret)
}

fn write(client: u64, v: u64, call: u64, ret: u64) -> Operation {
    done(client, Input::Write(v), Output::Write, call, ret)
}

fn cas(client: u64, expected: u64, new: u64, ok: bool, call: u64, ret: u64) -> Operation {
    done(
        client,
        Input::Cas { expected, new },
        Output::Cas(ok),
        call,
        ret,
    )
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default())
}

fn assert_linearizable(history: &[Operation]) {
    assert_eq!(verdict(history), Verdict::Linearizable, "{history:#?}");
}

fn assert_not_linearizable(history: &[Operation]) {
    assert!(
        matches!(verdict(history), Verdict::NotLinearizable { .. }),
        "{history:#?}"
    );
}

#[test]
fn rejects_stale_read() {
    let history = [
        write(1, 1, 0, 10),
        write(1, 2, 20, 30),
        read(2, Some(1), 40, 50),
    ];
    let Verdict::NotLinearizable { key, detail } = verdict(&history) else {
        panic!("a stale read passed");
    };
    assert_eq!(key, KEY);
    assert!(
        detail.contains("client 2: read() = 1, [40, 50]"),
        "{detail}"
    );
}

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&[]);
}

#[test]
fn accepts_concurrent_overlapping_ops() {
    // Two overlapping writes and reads that see them in either order.
    assert_linearizable(&[
        write(1, 1, 0, 100),
        write(2, 2, 10, 90),
        read(3, Some(1), 20, 30),
        read(4, Some(2), 40, 95),
        read(5, Some(2), 110, 120),
    ]);
    // A read overlapping a write may see the old or the new value...
    assert_linearizable(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 40),
        read(2, Some(1), 30, 50),
    ]);
    assert_linearizable(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 40),
        read(2, Some(2), 30, 50),
    ]);
    // ...but two sequential reads must not go back in time.
    assert_not_linearizable(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 100),
        read(2, Some(2), 30, 40),
        read(3, Some(1), 50, 60),
    ]);
    // Touching intervals (ret == call) count as concurrent.
    assert_linearizable(&[write(1, 1, 0, 10), read(2, None, 10, 20)]);
}

#[test]
fn a_write_of_the_current_value_still_changes_the_register_later() {
    // After write(1), the concurrent write(1) by client 3 leaves the value as it is if placed
    // at once; but it must go after write(2) for the final read to see 1.
    assert_linearizable(&[
        write(1, 1, 0, 10),
        write(2, 2, 20, 30),
        write(3, 1, 15, 40),
        read(4, Some(1), 50, 60),
    ]);
}

#[test]
fn reads_and_failed_cas_observe_without_branching() {
    // Many concurrent observers of one value, then a change: all of them go before it.
    let mut history = vec![write(0, 1, 0, 10)];
    for client in 1..40 {
        history.push(read(client, Some(1), 20 + client, 1_000));
        history.push(cas(100 + client, 7, 8, false, 20 + client, 1_000));
    }
    history.push(write(200, 2, 500, 1_000));
    history.push(read(201, Some(2), 1_001, 1_002));
    assert_linearizable(&history);
    history.push(read(202, Some(1), 1_003, 1_004));
    assert_not_linearizable(&history);
}

#[test]
fn read_of_a_never_written_value_is_rejected() {
    assert_not_linearizable(&[write(1, 1, 0, 10), read(2, Some(7), 5, 20)]);
}

#[test]
fn cas_semantics() {
    // A successful cas needs the expected value and installs the new one.
    assert_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 1, 5, true, 20, 30),
        read(3, Some(5), 40, 50),
    ]);
    assert_not_linearizable(&[write(1, 1, 0, 10), cas(2, 2, 5, true, 20, 30)]);
    assert_not_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 1, 5, true, 20, 30),
        read(3, Some(1), 40, 50),
    ]);
    // A cas on an absent key cannot succeed...
    assert_not_linearizable(&[cas(1, 0, 1, true, 0, 10)]);
    // ...and returning false is then right.
    assert_linearizable(&[cas(1, 0, 1, false, 0, 10), read(2, None, 20, 30)]);
    // A failed cas observes that the value differs from `expected`, and changes nothing.
    assert_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 2, 5, false, 20, 30),
        read(3, Some(1), 40, 50),
    ]);
    assert_not_linearizable(&[write(1, 1, 0, 10), cas(2, 1, 5, false, 20, 30)]);
    // A failed cas concurrent with a write may linearize before it.
    assert_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 1, 5, false, 20, 30),
        write(3, 2, 15, 25),
    ]);
    // Two successful cas from the same value cannot both win.
    assert_not_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 1, 5, true, 20, 30),
        cas(3, 1, 6, true, 20, 30),
    ]);
    // Unless one puts the value back.
    assert_linearizable(&[
        write(1, 1, 0, 10),
        cas(2, 1, 1, true, 20, 30),
        cas(3, 1, 6, true, 20, 30),
    ]);
}

#[test]
fn unknown_write_may_or_may_not_take_effect() {
    let lost = timed_out(1, Input::Write(9), 10);
    // Never seen: it did not happen (or was overwritten).
    assert_linearizable(&[write(2, 1, 0, 5), lost.clone(), read(3, Some(1), 20, 30)]);
    // Seen: it happened.
    assert_linearizable(&[write(2, 1, 0, 5), lost.clone(), read(3, Some(9), 20, 30)]);
    // Seen late, long after: an unknown operation stays pending to the end.
    assert_linearizable(&[
        write(2, 1, 0, 5),
        lost.clone(),
        read(3, Some(1), 20, 30),
        read(3, Some(1), 40, 50),
        read(3, Some(9), 1000, 1010),
    ]);
    // But not before its invocation...
    assert_not_linearizable(&[read(3, Some(9), 0, 5), lost.clone()]);
    // ...and once seen, it cannot be undone.
    assert_not_linearizable(&[
        write(2, 1, 0, 5),
        lost.clone(),
        read(3, Some(9), 20, 30),
        read(3, Some(1), 40, 50),
    ]);
    // Two timed-out writes may apply in either order, or not at all.
    assert_linearizable(&[
        lost,
        timed_out(4, Input::Write(8), 12),
        read(3, Some(8), 20, 30),
        read(3, Some(9), 40, 50),
    ]);
}

#[test]
fn unknown_cas_applies_only_when_it_could_succeed() {
    let maybe = timed_out(
        1,
        Input::Cas {
            expected: 1,
            new: 2,
        },
        10,
    );
    assert_linearizable(&[write(2, 1, 0, 5), maybe.clone(), read(3, Some(2), 20, 30)]);
    assert_linearizable(&[write(2, 1, 0, 5), maybe.clone(), read(3, Some(1), 20, 30)]);
    assert_not_linearizable(&[write(2, 3, 0, 5), maybe.clone(), read(3, Some(2), 20, 30)]);
    // An unknown read constrains nothing.
    assert_linearizable(&[
        write(2, 3, 0, 5),
        timed_out(1, Input::Read, 1),
        read(3, Some(3), 20, 30),
    ]);
}

#[test]
fn keys_are_independent() {
    let on = |key, mut op: Operation| {
        op.key = key;
        op
    };
    // Per key these are fine, though "write 1 to key 1, then read nothing at key 2" would be
    // stale if it were one register.
    assert_linearizable(&[on(1, write(1, 1, 0, 10)), on(2, read(2, None, 20, 30))]);
    let bad_key_5 = [on(5, write(1, 1, 0, 10)), on(5, read(2, None, 20, 30))];
    let bad_key_3 = [on(3, write(1, 1, 0, 10)), on(3, read(2, Some(2), 20, 30))];
    let all: Vec<Operation> = bad_key_5.iter().chain(&bad_key_3).cloned().collect();
    assert!(matches!(
        verdict(&all),
        Verdict::NotLinearizable { key: 3, .. }
    ));
}

#[test]
fn out_of_budget_is_unknown_never_a_guess() {
    let mut rng = Rng(7);
    let history = simulate(&mut rng, 200, 5, 1, 3);
    let tight = CheckOptions {
        max_steps_per_key: 10,
        ..CheckOptions::default()
    };
    assert_eq!(check(&history, &tight), Verdict::Unknown { key: 0 });
    assert_eq!(
        check(&history, &CheckOptions::default()),
        Verdict::Linearizable
    );
    // A definite violation on one key beats an exhausted budget on another.
    let mut stale = vec![write(1, 1, 0, 10), read(2, None, 20, 30)];
    for op in &mut stale {
        op.key = 9;
    }
    let mixed: Vec<Operation> = history.into_iter().chain(stale).collect();
    assert!(matches!(
        check(&mixed, &tight),
        Verdict::NotLinearizable { key: 9, .. }
    ));
}

#[test]
#[should_panic(expected = "malformed operation")]
fn malformed_operation_panics() {
    let mut op = write(1, 1, 10, 20);
    op.ret = None;
    let _ = verdict(&[op]);
}

#[test]
fn random_sequential_histories_are_linearizable() {
    let mut rng = Rng(1);
    for round in 0..200 {
        let history = sequential(&mut rng, 1 + round % 60, 4);
        assert_linearizable(&history);
    }
}

#[test]
fn corrupting_one_read_of_a_sequential_history_is_caught() {
    let mut rng = Rng(2);
    let mut caught = 0;
    for _ in 0..200 {
        let mut history = sequential(&mut rng, 40, 4);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].input == Input::Read)
            .collect();
        if reads.is_empty() {
            continue;
        }
        let i = reads[rng.below(reads.len() as u64) as usize];
        let Some(Output::Read(seen)) = history[i].output else {
            unreachable!()
        };
        // Sequential: the order is forced, so any other value is a violation.
        history[i].output = Some(Output::Read(Some(seen.map_or(0, |v| v + 1))));
        assert_not_linearizable(&history);
        caught += 1;
    }
    assert!(caught > 150);
}

#[test]
fn random_concurrent_histories_are_linearizable() {
    let mut rng = Rng(3);
    for round in 0..300 {
        let clients = 1 + round % 8;
        let history = simulate(&mut rng, 150, clients, 3, 4);
        assert_linearizable(&history);
    }
}

#[test]
fn concurrent_histories_are_linearizable_even_without_a_cache() {
    let mut rng = Rng(4);
    let no_cache = CheckOptions {
        max_cache_bytes_per_key: 0,
        ..CheckOptions::default()
    };
    for _ in 0..100 {
        let history = simulate(&mut rng, 40, 3, 1, 3);
        assert_eq!(
            check(&history, &no_cache),
            Verdict::Linearizable,
            "{history:#?}"
        );
    }
}

#[test]
fn long_concurrent_history_on_one_key() {
    // Thousands of operations on one key, ten clients, some timing out.
    let mut rng = Rng(5);
    let history = simulate(&mut rng, 15_000, 10, 1, 50);
    assert!(history.len() > 4_000);
    assert_linearizable(&history);
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(6);
    let (mut linearizable, mut not) = (0, 0);
    for _ in 0..3_000 {
        let (events, clients) = (3 + rng.below(20), 1 + rng.below(4) as usize);
        let mut history = simulate(&mut rng, events, clients, 1, 3);
        history.truncate(8);
        // Corrupt some outputs, so both verdicts come up.
        for op in &mut history {
            if op.output.is_some() && rng.chance(30) {
                op.output = Some(match op.input {
                    Input::Read => Output::Read(if rng.chance(25) {
                        None
                    } else {
                        Some(rng.below(3))
                    }),
                    Input::Write(_) => Output::Write,
                    Input::Cas { .. } => Output::Cas(rng.chance(50)),
                });
            }
        }
        let expected = brute_force(&history, &mut vec![false; history.len()], None);
        let got = verdict(&history);
        assert_eq!(
            got == Verdict::Linearizable,
            expected,
            "{got:?} for {history:#?}"
        );
        if expected {
            linearizable += 1
        } else {
            not += 1
        }
    }
    assert!(linearizable > 600 && not > 600, "{linearizable} / {not}");
}

/// The definition, by exhaustive search: some order of all known-outcome operations and some
/// of the unknown ones respects real time and explains every output.
fn brute_force(history: &[Operation], placed: &mut Vec<bool>, value: Option<u64>) -> bool {
    let pending = |i: usize, placed: &[bool]| !placed[i] && history[i].ret.is_some();
    if !(0..history.len()).any(|i| pending(i, placed)) {
        return true;
    }
    for x in 0..history.len() {
        let must_wait = (0..history.len())
            .any(|y| pending(y, placed) && history[y].ret.is_some_and(|r| r < history[x].call));
        if placed[x] || must_wait {
            continue;
        }
        let mut after = value;
        let output = apply(&mut after, history[x].input);
        if history[x].output.is_some_and(|o| o != output) {
            continue;
        }
        placed[x] = true;
        let found = brute_force(history, placed, after);
        placed[x] = false;
        if found {
            return true;
        }
    }
    false
}

/// A tiny deterministic generator (SplitMix64), so the tests need no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        crate::cache::splitmix64(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn input(&mut self, values: u64) -> Input {
        match self.below(3) {
            0 => Input::Read,
            1 => Input::Write(self.below(values)),
            _ => Input::Cas {
                expected: self.below(values),
                new: self.below(values),
            },
        }
    }
}

/// Applies `input` to the register `value`, returning its output.
fn apply(value: &mut Option<u64>, input: Input) -> Output {
    match input {
        Input::Read => Output::Read(*value),
        Input::Write(v) => {
            *value = Some(v);
            Output::Write
        }
        Input::Cas { expected, new } => {
            let ok = *value == Some(expected);
            if ok {
                *value = Some(new);
            }
            Output::Cas(ok)
        }
    }
}

/// `len` operations one after another on a simulated register, values below `values`.
fn sequential(rng: &mut Rng, len: usize, values: u64) -> Vec<Operation> {
    let mut value = None;
    (0..len as u64)
        .map(|i| {
            let input = rng.input(values);
            let output = apply(&mut value, input);
            done(rng.below(4), input, output, 10 * i, 10 * i + 5)
        })
        .collect()
}

/// A client of [`simulate`] in the middle of an operation.
struct Pending {
    client: u64,
    key: u64,
    input: Input,
    call: u64,
    output: Option<Output>,
}

/// `events` steps of `clients` concurrent clients on `keys` simulated registers: each
/// operation takes effect atomically at a random instant between its call and its return, so
/// the history is linearizable by construction. About one operation in ten times out, before
/// or after it took effect; its client is then replaced, as in Jepsen.
fn simulate(rng: &mut Rng, events: u64, clients: usize, keys: u64, values: u64) -> Vec<Operation> {
    let mut registers = vec![None; keys as usize];
    let mut slots: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
    let mut ids: Vec<u64> = (0..clients as u64).collect();
    let mut next_id = clients as u64;
    let mut history = Vec::new();
    for now in 0..events {
        let slot = rng.below(clients as u64) as usize;
        match slots[slot].take() {
            None => {
                let (key, input) = (rng.below(keys), rng.input(values));
                slots[slot] = Some(Pending {
                    client: ids[slot],
                    key,
                    input,
                    call: now,
                    output: None,
                });
            }
            Some(mut p) if p.output.is_none() && !rng.chance(10) => {
                p.output = Some(apply(&mut registers[p.key as usize], p.input));
                slots[slot] = Some(p);
            }
            Some(p) => {
                let timeout = p.output.is_none() || rng.chance(10);
                history.push(Operation {
                    client: p.client,
                    key: p.key,
                    input: p.input,
                    output: if timeout { None } else { p.output },
                    call: p.call,
                    ret: if timeout { None } else { Some(now) },
                });
                if timeout {
                    ids[slot] = next_id;
                    next_id += 1;
                }
            }
        }
    }
    // Still running at the end: outcome unknown.
    for p in slots.into_iter().flatten() {
        history.push(Operation {
            client: p.client,
            key: p.key,
            input: p.input,
            output: None,
            call: p.call,
            ret: None,
        });
    }
    history
}
