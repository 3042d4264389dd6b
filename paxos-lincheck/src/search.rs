//! The Wing-Gong-Lowe search over one key's history, as in Porcupine, adapted to operations of
//! unknown outcome.
//!
//! # Known outcomes: the event list
//!
//! The operations of known outcome become a doubly linked list of call and return events
//! sorted by time (calls before returns at equal times, so touching intervals count as
//! concurrent). The search walks the list from its head:
//!
//! - at a call event it tries to *linearize* that operation now: if the register model accepts
//!   the observed output and the resulting configuration (linearized set, register state) has
//!   not been seen before, the operation's events are unlinked, the choice is pushed on a
//!   stack, and the walk restarts from the head;
//! - at the first return event it has also tried the pending operations of unknown outcome (see
//!   below); the returning operation could not be placed before it returned, so the last choice
//!   is undone (events relinked, state restored) and the walk resumes after that choice; with
//!   nothing to undo, the history is not linearizable.
//!
//! *Observers do not branch.* A read, a failed cas, or a cas that puts back the value it
//! expected never changes the register wherever it is placed. If such an operation is callable
//! and possible now, placing it now can only help: everything that must precede it in real
//! time is already placed, and nothing after it can tell. So it is placed *forced*: if that
//! leads nowhere, the configuration before it leads nowhere either, and its siblings are not
//! tried. (A write that happens to leave the value as it is now is *not* an observer: placed
//! later, it would change it.) Without this, every concurrent read multiplies the search.
//!
//! The search succeeds once every operation of known outcome is linearized. Every move of the
//! walk is one step; a search that runs out of steps answers `OutOfBudget`, never a guess.
//!
//! # Unknown outcomes: twin classes
//!
//! An operation of unknown outcome has no return event: once called it may be linearized at any
//! later point, or never, so it never forces a backtrack. Kept in the event list, thousands of
//! them would be walked over at every restart. Instead they are grouped into classes of
//! identical input, each class offering only its earliest-invoked member not yet linearized;
//! the classes whose offered member was called before the first return event are tried there.
//! Using twins in call order loses nothing: a linearization using some members of a class can be
//! rewritten to use the earliest-invoked ones (the `k`-th used member is preceded in time by at
//! least `k` calls of the class).
//!
//! Two more reductions keep timed-out operations from multiplying the search:
//!
//! - *Values nobody observes are one value.* A value that no read returned and no cas compares
//!   against can only be told apart from another such value by nothing at all, so all of them
//!   are replaced by one stand-in before the search. Timed-out writes of never-read values then
//!   fall into one class.
//! - *An unknown operation that would leave the state unchanged is never tried*: leaving it
//!   pending is equivalent and keeps more options open (see `history::step`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use crate::cache::{Cache, LinearizedSet};
use crate::checker::CheckOptions;
use crate::history::{Input, Operation, Output, step};

/// The outcome of one key's search.
pub(crate) enum KeyVerdict {
    Linearizable,
    NotLinearizable(String),
    OutOfBudget,
}

/// No event: the end of the list.
const NIL: usize = usize::MAX;

/// One key's history, prepared for the search.
pub(crate) struct Search<'a> {
    /// Operations that can matter: `known` of known outcome, then the unknown ones, each part
    /// in call order. (Unknown reads, and unknown cas that would not change the value, are
    /// dropped.)
    ops: Vec<&'a Operation>,
    /// Inputs of `ops` with the values nobody observes replaced by `unobserved`.
    inputs: Vec<Input>,
    known: usize,
    /// Bit of each operation in the [`LinearizedSet`].
    bit: Vec<usize>,
    /// Event list of the known operations: event `2 * i` calls `ops[i]`, `2 * i + 1` returns;
    /// event `head` is the sentinel before the first.
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    /// Unknown operations grouped by input, each class in call order.
    classes: Vec<Vec<usize>>,
    /// Class of each unknown operation (indexed by `op - known`).
    class_of: Vec<usize>,
    /// The stand-in for every value no operation observes.
    unobserved: u64,
}

/// A choice on the search stack.
struct Choice {
    op: usize,
    /// Register state before the operation.
    before: Option<u64>,
    /// Where the walk resumes if the choice is undone.
    resume: Cursor,
    /// Whether the choice was forced (see [`Search::try_linearize`]): undoing it undoes the
    /// choice before it too.
    forced: bool,
}

/// What [`Search::try_linearize`] did.
enum Tried {
    Linearized,
    /// Not possible, or already explored: try the next candidate.
    Skipped,
    /// The current configuration leads nowhere: backtrack.
    DeadEnd,
}

/// The mutable state of the search besides the event list.
struct Walk {
    linearized: LinearizedSet,
    cache: Cache,
    /// Scratch space for the encoding of `linearized`.
    encoding: Vec<u64>,
    pool: Pool,
    stack: Vec<Choice>,
    /// The register state after the operations on `stack`.
    state: Option<u64>,
    /// Known operations not yet linearized.
    known_left: usize,
    deepest: Deepest,
}

/// Where the walk is. It visits the known operations' events in list order merged, by time,
/// with the candidates of the unknown classes (an unknown call sorts before a known event at
/// the same time), so operations are tried in call order, as in Porcupine.
#[derive(Clone, Copy)]
struct Cursor {
    /// The next list event to visit.
    event: usize,
    /// The last class candidate visited, as its `(call, class)` key (`None`: none yet).
    class_after: Option<(u64, usize)>,
}

/// Mutable state of the walk over the classes of unknown operations.
struct Pool {
    /// Members of each class linearized so far (always the earliest-invoked ones).
    taken: Vec<usize>,
    /// `(call, class)` of each class's next member.
    candidates: BTreeSet<(u64, usize)>,
}

impl<'a> Search<'a> {
    pub(crate) fn new(key_ops: &[&'a Operation]) -> Self {
        let mut observed = HashSet::new();
        for op in key_ops {
            match (op.input, op.output) {
                (_, Some(Output::Read(Some(v)))) | (Input::Cas { expected: v, .. }, _) => {
                    observed.insert(v);
                }
                _ => {}
            }
        }
        let unobserved = (0..).find(|v| !observed.contains(v)).unwrap_or(u64::MAX);
        let canon = |v: u64| if observed.contains(&v) { v } else { unobserved };
        let canonical = |input: Input| match input {
            Input::Read => Input::Read,
            Input::Write(v) => Input::Write(canon(v)),
            Input::Cas { expected, new } => Input::Cas {
                expected,
                new: canon(new),
            },
        };
        let matters = |op: &&&Operation| match canonical(op.input) {
            Input::Read => op.output.is_some(),
            Input::Write(_) => true,
            Input::Cas { expected, new } => op.output.is_some() || expected != new,
        };
        let mut ops: Vec<&Operation> = key_ops.iter().filter(matters).copied().collect();
        ops.sort_by_key(|op| (op.ret.is_none(), op.call));
        let inputs: Vec<Input> = ops.iter().map(|op| canonical(op.input)).collect();
        let known = ops.iter().take_while(|op| op.ret.is_some()).count();
        let known_words = known.div_ceil(64);
        let bit = (0..ops.len())
            .map(|i| {
                if i < known {
                    i
                } else {
                    known_words * 64 + (i - known)
                }
            })
            .collect();

        let mut class_by_input: HashMap<Input, usize> = HashMap::new();
        let mut classes: Vec<Vec<usize>> = Vec::new();
        let mut class_of = Vec::with_capacity(ops.len() - known);
        for (i, &input) in inputs.iter().enumerate().skip(known) {
            let class = *class_by_input.entry(input).or_insert_with(|| {
                classes.push(Vec::new());
                classes.len() - 1
            });
            classes[class].push(i);
            class_of.push(class);
        }

        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * known);
        for (i, op) in ops[..known].iter().enumerate() {
            let ret = op.ret.expect("known operations have a return time");
            events.push((op.call, false, 2 * i));
            events.push((ret, true, 2 * i + 1));
        }
        events.sort_unstable();
        let head = 2 * known;
        let mut next = vec![NIL; 2 * known + 1];
        let mut prev = vec![NIL; 2 * known + 1];
        let mut last = head;
        for &(_, _, event) in &events {
            next[last] = event;
            prev[event] = last;
            last = event;
        }
        Self {
            ops,
            inputs,
            known,
            bit,
            next,
            prev,
            head,
            classes,
            class_of,
            unobserved,
        }
    }

    pub(crate) fn run(mut self, opts: &CheckOptions) -> KeyVerdict {
        let total_words = self.bit.last().map_or(0, |b| b / 64 + 1);
        let mut walk = Walk {
            linearized: LinearizedSet::new(self.known.div_ceil(64), total_words),
            cache: Cache::new(opts.max_cache_bytes_per_key),
            encoding: Vec::new(),
            pool: Pool {
                taken: vec![0; self.classes.len()],
                candidates: self
                    .classes
                    .iter()
                    .enumerate()
                    .map(|(c, m)| (self.ops[m[0]].call, c))
                    .collect(),
            },
            stack: Vec::new(),
            state: None,
            known_left: self.known,
            deepest: Deepest::default(),
        };
        let start = Cursor {
            event: self.next[self.head],
            class_after: None,
        };
        let mut cursor = start;
        let mut steps: u64 = 0;
        while walk.known_left > 0 {
            steps += 1;
            if steps > opts.max_steps_per_key {
                return KeyVerdict::OutOfBudget;
            }
            let (candidate, resume) = self.advance(cursor, &walk.pool);
            cursor = resume;
            let dead_end = match candidate.map(|i| self.try_linearize(&mut walk, i, resume)) {
                Some(Tried::Linearized) => {
                    cursor = Cursor {
                        event: self.next[self.head],
                        ..start
                    };
                    false
                }
                Some(Tried::Skipped) => false,
                Some(Tried::DeadEnd) | None => true,
            };
            if dead_end {
                walk.deepest
                    .note(walk.stack.len(), cursor.event / 2, walk.state);
                match self.backtrack(&mut walk) {
                    Some(resume) => cursor = resume,
                    None => return KeyVerdict::NotLinearizable(self.explain(&walk.deepest)),
                }
            }
        }
        KeyVerdict::Linearizable
    }

    /// Tries to linearize operation `i` next; `resume` is where the walk goes on if the choice
    /// is undone.
    ///
    /// An observer (see [`Self::is_observer`]) that is possible now is *forced*: placing it now
    /// can only help (it is callable, so everything that must precede it is placed; it changes
    /// nothing for what follows), so if it leads nowhere, neither does the current
    /// configuration, and no sibling is tried.
    fn try_linearize(&mut self, walk: &mut Walk, i: usize, resume: Cursor) -> Tried {
        let Some(after) = step(walk.state, self.inputs[i], self.ops[i].output) else {
            return Tried::Skipped;
        };
        let forced = self.is_observer(i);
        walk.linearized.insert(self.bit[i]);
        walk.linearized.encode(&mut walk.encoding);
        if !walk
            .cache
            .insert(walk.linearized.hash_with(after), &walk.encoding, after)
        {
            // Seen, so explored without success.
            walk.linearized.remove(self.bit[i]);
            return if forced {
                Tried::DeadEnd
            } else {
                Tried::Skipped
            };
        }
        walk.stack.push(Choice {
            op: i,
            before: walk.state,
            resume,
            forced,
        });
        walk.state = after;
        if i < self.known {
            self.lift(i);
            walk.known_left -= 1;
        } else {
            self.take(&mut walk.pool, i);
        }
        Tried::Linearized
    }

    /// Whether operation `i` is known never to change the register wherever it is placed: a
    /// read, a failed cas, or a successful cas that puts back the value it expected. (A write
    /// that happens to leave the value as it is now is not one: placed later, it would not.)
    fn is_observer(&self, i: usize) -> bool {
        match (self.inputs[i], self.ops[i].output) {
            (Input::Read, Some(_)) | (Input::Cas { .. }, Some(Output::Cas(false))) => true,
            (Input::Cas { expected, new }, Some(Output::Cas(true))) => expected == new,
            _ => false,
        }
    }

    /// Undoes choices up to and including the latest unforced one; returns where to resume,
    /// or `None` if the stack ran out (no linearization exists).
    fn backtrack(&mut self, walk: &mut Walk) -> Option<Cursor> {
        loop {
            let choice = walk.stack.pop()?;
            let j = choice.op;
            walk.linearized.remove(self.bit[j]);
            walk.state = choice.before;
            if j < self.known {
                self.unlift(j);
                walk.known_left += 1;
            } else {
                self.untake(&mut walk.pool, j);
            }
            if !choice.forced {
                return Some(choice.resume);
            }
        }
    }

    /// The next operation to try from `cursor`, and the cursor just past it; `None` when the
    /// walk stands at the first return event with no unknown candidate called before it.
    fn advance(&self, cursor: Cursor, pool: &Pool) -> (Option<usize>, Cursor) {
        // Some known operation is still listed, so a return event lies ahead.
        let event = cursor.event;
        debug_assert_ne!(event, NIL);
        let op = self.ops[event / 2];
        let is_return = event % 2 == 1;
        let time = if is_return {
            op.ret.unwrap_or(u64::MAX)
        } else {
            op.call
        };
        let lower = cursor.class_after.map_or(Bound::Unbounded, Bound::Excluded);
        if let Some(&(call, class)) = pool.candidates.range((lower, Bound::Unbounded)).next()
            && call <= time
        {
            let member = self.classes[class][pool.taken[class]];
            return (
                Some(member),
                Cursor {
                    class_after: Some((call, class)),
                    ..cursor
                },
            );
        }
        if is_return {
            return (None, cursor);
        }
        (
            Some(event / 2),
            Cursor {
                event: self.next[event],
                ..cursor
            },
        )
    }

    /// Unlinks the call and return events of known operation `i`.
    fn lift(&mut self, i: usize) {
        self.unlink(2 * i);
        self.unlink(2 * i + 1);
    }

    /// Undoes [`Self::lift`] of operation `i`; lifts must be undone in reverse order.
    fn unlift(&mut self, i: usize) {
        self.relink(2 * i + 1);
        self.relink(2 * i);
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Marks unknown operation `i`, its class's candidate, linearized.
    fn take(&self, pool: &mut Pool, i: usize) {
        let class = self.class_of[i - self.known];
        debug_assert_eq!(self.classes[class][pool.taken[class]], i);
        pool.candidates.remove(&(self.ops[i].call, class));
        pool.taken[class] += 1;
        if let Some(&m) = self.classes[class].get(pool.taken[class]) {
            pool.candidates.insert((self.ops[m].call, class));
        }
    }

    /// Undoes [`Self::take`] of operation `i`.
    fn untake(&self, pool: &mut Pool, i: usize) {
        let class = self.class_of[i - self.known];
        if let Some(&m) = self.classes[class].get(pool.taken[class]) {
            pool.candidates.remove(&(self.ops[m].call, class));
        }
        pool.taken[class] -= 1;
        debug_assert_eq!(self.classes[class][pool.taken[class]], i);
        pool.candidates.insert((self.ops[i].call, class));
    }

    fn explain(&self, deepest: &Deepest) -> String {
        let state = match deepest.state {
            None => "absent".to_owned(),
            Some(v) if v == self.unobserved => "a value no operation observes".to_owned(),
            Some(v) => v.to_string(),
        };
        format!(
            "{} operations ({} of known outcome); the deepest attempt linearized {} of them, \
             with the register then {state}, and could not place [{}] before it returned",
            self.ops.len(),
            self.known,
            deepest.depth,
            self.ops[deepest.blocked],
        )
    }
}

/// The deepest point the search reached before a forced backtrack, for the report.
#[derive(Default)]
struct Deepest {
    depth: usize,
    /// The operation that returned before it could be linearized there.
    blocked: usize,
    state: Option<u64>,
    noted: bool,
}

impl Deepest {
    fn note(&mut self, depth: usize, blocked: usize, state: Option<u64>) {
        if !self.noted || depth > self.depth {
            *self = Self {
                depth,
                blocked,
                state,
                noted: true,
            };
        }
    }
}
