//! A parser for Jepsen register logs, such as the etcd histories Porcupine tests against.
//!
//! # Format
//!
//! One event per line, `INFO  jepsen.util - PROCESS KIND F VALUE`, fields separated by tabs or
//! spaces, for example `INFO  jepsen.util - 3 :invoke :cas [1 4]`. `KIND` is `:invoke`,
//! `:ok`, `:fail` or `:info`; `F` is `:read`, `:write` or `:cas`; `VALUE` is `nil`, a number,
//! `[FROM TO]` or an error keyword such as `:timed-out`. The events of one process never
//! overlap: a process invokes, then completes, then may invoke again.
//!
//! Lines whose process is not a number (the nemesis) or that are not `jepsen.util` events are
//! not operations and are skipped. A line that names a numeric process but cannot be read is an
//! error: silently dropping an operation could turn a violation into a pass.
//!
//! # Mapping to [`Operation`]
//!
//! Time is the line number, all operations use key 0 and the process is the client.
//!
//! | completion                    | operation                                               |
//! |-------------------------------|---------------------------------------------------------|
//! | `:ok :read V` (`nil` = absent) | `Read` returning `V`                                    |
//! | `:ok :write V`                | `Write(V)` completed                                    |
//! | `:ok :cas [A B]`              | `Cas { expected: A, new: B }` returning `true`          |
//! | `:fail :cas [A B]`            | the same cas returning `false`: the value was not `A`   |
//! | `:fail :read ...`, `:fail :write ...` | dropped: no result and no effect           |
//! | `:info ...`, or no completion | unknown outcome (`output: None`, `ret: None`)           |
//!
//! Reading `:fail :cas` as "returned false" (an observation that the value differed from
//! `FROM`) rather than "had no effect, observed nothing" is what etcd's compare-and-set
//! failure means, and it is how Porcupine's etcd model reads it; the verdicts of the etcd
//! corpus depend on it (see this crate's `tests/jepsen_etcd.rs`).

use std::collections::HashMap;

use crate::{Input, Operation, Output};

/// Why a Jepsen log could not be parsed. Line numbers start at 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The event kind is not `:invoke`, `:ok`, `:fail` or `:info`.
    #[error("line {line}: unknown event kind `{kind}`")]
    UnknownKind {
        /// The offending line.
        line: usize,
        /// The kind as written.
        kind: String,
    },
    /// The operation is not `:read`, `:write` or `:cas`.
    #[error("line {line}: unknown operation `{f}`")]
    UnknownOperation {
        /// The offending line.
        line: usize,
        /// The operation as written.
        f: String,
    },
    /// The value does not fit the operation (`nil`, a number, `[FROM TO]`).
    #[error("line {line}: bad value `{value}` for {f}")]
    BadValue {
        /// The offending line.
        line: usize,
        /// The operation.
        f: String,
        /// The value as written.
        value: String,
    },
    /// The line has too few fields.
    #[error("line {line}: truncated event")]
    Truncated {
        /// The offending line.
        line: usize,
    },
    /// A process invoked an operation while its previous one was still open.
    #[error("line {line}: process {process} invokes while its operation from line {open} is open")]
    Overlap {
        /// The offending line.
        line: usize,
        /// The process.
        process: u64,
        /// The line of the operation still open.
        open: usize,
    },
    /// A process completed an operation it never invoked.
    #[error("line {line}: process {process} completes an operation it did not invoke")]
    NoInvocation {
        /// The offending line.
        line: usize,
        /// The process.
        process: u64,
    },
    /// A completion names another operation or value than its invocation.
    #[error("line {line}: process {process} completes something other than it invoked")]
    Mismatch {
        /// The offending line.
        line: usize,
        /// The process.
        process: u64,
    },
}

/// Parses a Jepsen register log into a history on key 0, ordered by invocation.
///
/// # Errors
///
/// A [`ParseError`] for the first line that names a numeric process but is not a well-formed
/// event, or that breaks the one-operation-at-a-time rule of Jepsen processes.
pub fn parse(text: &str) -> Result<Vec<Operation>, ParseError> {
    // process -> (line of the invocation, input)
    let mut open: HashMap<u64, (usize, Input)> = HashMap::new();
    let mut history = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let Some(event) = Event::split(raw, line)? else {
            continue;
        };
        let time = line as u64;
        if event.kind == ":invoke" {
            if let Some(&(open_line, _)) = open.get(&event.process) {
                return Err(ParseError::Overlap {
                    line,
                    process: event.process,
                    open: open_line,
                });
            }
            open.insert(event.process, (line, event.input(line)?));
            continue;
        }
        let Some((call_line, input)) = open.remove(&event.process) else {
            return Err(ParseError::NoInvocation {
                line,
                process: event.process,
            });
        };
        let mut op = Operation {
            client: event.process,
            key: 0,
            input,
            output: None,
            call: call_line as u64,
            ret: None,
        };
        match event.kind {
            ":ok" => {
                op.output = Some(event.ok_output(input, line)?);
                op.ret = Some(time);
            }
            ":fail" => {
                event.check_same_operation(input, line)?;
                match input {
                    Input::Cas { .. } => {
                        event.check_same_cas(input, line)?;
                        op.output = Some(Output::Cas(false));
                        op.ret = Some(time);
                    }
                    // Failed with no result and no effect: not part of the history.
                    Input::Read | Input::Write(_) => continue,
                }
            }
            ":info" => event.check_same_operation(input, line)?,
            _ => unreachable!("Event::split accepts only the four kinds"),
        }
        history.push(op);
    }
    // Invocations never completed: outcome unknown, like `:info`.
    for (process, (call_line, input)) in open {
        history.push(Operation {
            client: process,
            key: 0,
            input,
            output: None,
            call: call_line as u64,
            ret: None,
        });
    }
    history.sort_by_key(|op| op.call);
    Ok(history)
}

/// One event line, split into its fields.
struct Event<'a> {
    process: u64,
    kind: &'a str,
    f: &'a str,
    value: String,
}

impl<'a> Event<'a> {
    /// Splits `raw`; `Ok(None)` if it is not an operation event at all.
    fn split(raw: &'a str, line: usize) -> Result<Option<Self>, ParseError> {
        let mut fields = raw.split_whitespace();
        let prefix: Vec<&str> = fields.by_ref().take(3).collect();
        if prefix.len() < 3 || prefix[1] != "jepsen.util" || prefix[2] != "-" {
            return Ok(None);
        }
        let Some(Ok(process)) = fields.next().map(str::parse::<u64>) else {
            return Ok(None); // the nemesis, or some other non-client actor
        };
        let (Some(kind), Some(f)) = (fields.next(), fields.next()) else {
            return Err(ParseError::Truncated { line });
        };
        if ![":invoke", ":ok", ":fail", ":info"].contains(&kind) {
            return Err(ParseError::UnknownKind {
                line,
                kind: kind.to_owned(),
            });
        }
        if ![":read", ":write", ":cas"].contains(&f) {
            return Err(ParseError::UnknownOperation {
                line,
                f: f.to_owned(),
            });
        }
        let value = fields.collect::<Vec<_>>().join(" ");
        Ok(Some(Self {
            process,
            kind,
            f,
            value,
        }))
    }

    /// The input of an `:invoke` event.
    fn input(&self, line: usize) -> Result<Input, ParseError> {
        Ok(match self.f {
            ":read" => Input::Read,
            ":write" => Input::Write(self.number(line)?),
            _ => {
                let (expected, new) = self.pair(line)?;
                Input::Cas { expected, new }
            }
        })
    }

    /// The output of an `:ok` event completing `input`.
    fn ok_output(&self, input: Input, line: usize) -> Result<Output, ParseError> {
        self.check_same_operation(input, line)?;
        Ok(match input {
            Input::Read => Output::Read(self.nil_or_number(line)?),
            Input::Write(v) => {
                if self.number(line)? != v {
                    return Err(self.mismatch(line));
                }
                Output::Write
            }
            Input::Cas { .. } => {
                self.check_same_cas(input, line)?;
                Output::Cas(true)
            }
        })
    }

    fn check_same_operation(&self, input: Input, line: usize) -> Result<(), ParseError> {
        let invoked = match input {
            Input::Read => ":read",
            Input::Write(_) => ":write",
            Input::Cas { .. } => ":cas",
        };
        if self.f == invoked {
            Ok(())
        } else {
            Err(self.mismatch(line))
        }
    }

    fn check_same_cas(&self, input: Input, line: usize) -> Result<(), ParseError> {
        let (expected, new) = self.pair(line)?;
        if input == (Input::Cas { expected, new }) {
            Ok(())
        } else {
            Err(self.mismatch(line))
        }
    }

    fn number(&self, line: usize) -> Result<u64, ParseError> {
        self.value.parse().map_err(|_| self.bad_value(line))
    }

    fn nil_or_number(&self, line: usize) -> Result<Option<u64>, ParseError> {
        if self.value == "nil" {
            Ok(None)
        } else {
            self.number(line).map(Some)
        }
    }

    fn pair(&self, line: usize) -> Result<(u64, u64), ParseError> {
        let inner = self
            .value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'));
        let mut parts = inner
            .ok_or_else(|| self.bad_value(line))?
            .split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => Ok((a, b)),
                _ => Err(self.bad_value(line)),
            },
            _ => Err(self.bad_value(line)),
        }
    }

    fn bad_value(&self, line: usize) -> ParseError {
        ParseError::BadValue {
            line,
            f: self.f.to_owned(),
            value: self.value.clone(),
        }
    }

    fn mismatch(&self, line: usize) -> ParseError {
        ParseError::Mismatch {
            line,
            process: self.process,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]
INFO  jepsen.util - 2   :invoke :write  3
INFO  jepsen.util - :nemesis\t:info\t:start\tnil
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]
INFO  jepsen.util - 2   :info   :write  :timed-out
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:fail\t:read\t:timed-out
INFO  jepsen.util - 1\t:invoke\t:cas\t[3 5]
INFO  jepsen.util - 1\t:ok\t:cas\t[3 5]
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:ok\t:read\t5
INFO  jepsen.util - 3\t:invoke\t:write\t7
";

    fn op(
        client: u64,
        input: Input,
        output: Option<Output>,
        call: u64,
        ret: Option<u64>,
    ) -> Operation {
        Operation {
            client,
            key: 0,
            input,
            output,
            call,
            ret,
        }
    }

    #[test]
    fn parses_every_kind_of_event() {
        let cas = |expected, new| Input::Cas { expected, new };
        assert_eq!(
            parse(LOG).unwrap(),
            [
                op(0, Input::Read, Some(Output::Read(None)), 1, Some(5)),
                op(1, cas(1, 4), Some(Output::Cas(false)), 2, Some(6)),
                op(2, Input::Write(3), None, 3, None),
                op(1, cas(3, 5), Some(Output::Cas(true)), 10, Some(11)),
                op(0, Input::Read, Some(Output::Read(Some(5))), 12, Some(13)),
                op(3, Input::Write(7), None, 14, None),
            ]
        );
    }

    #[test]
    fn rejects_broken_logs() {
        let invoke_twice =
            "INFO  jepsen.util - 0 :invoke :read nil\nINFO  jepsen.util - 0 :invoke :read nil";
        assert_eq!(
            parse(invoke_twice),
            Err(ParseError::Overlap {
                line: 2,
                process: 0,
                open: 1
            })
        );
        let orphan = "INFO  jepsen.util - 4 :ok :write 1";
        assert_eq!(
            parse(orphan),
            Err(ParseError::NoInvocation {
                line: 1,
                process: 4
            })
        );
        let other_value =
            "INFO  jepsen.util - 4 :invoke :write 1\nINFO  jepsen.util - 4 :ok :write 2";
        assert_eq!(
            parse(other_value),
            Err(ParseError::Mismatch {
                line: 2,
                process: 4
            })
        );
        let bad = "INFO  jepsen.util - 4 :invoke :cas [1]";
        assert!(matches!(
            parse(bad),
            Err(ParseError::BadValue { line: 1, .. })
        ));
        let kind = "INFO  jepsen.util - 4 :begin :read nil";
        assert!(matches!(
            parse(kind),
            Err(ParseError::UnknownKind { line: 1, .. })
        ));
        let f = "INFO  jepsen.util - 4 :invoke :append 1";
        assert!(matches!(
            parse(f),
            Err(ParseError::UnknownOperation { line: 1, .. })
        ));
        assert_eq!(
            parse("INFO  jepsen.util - 4 :ok"),
            Err(ParseError::Truncated { line: 1 })
        );
    }

    #[test]
    fn empty_and_non_event_text_is_an_empty_history() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(
            parse("INFO  jepsen.core - Run complete\n\nsomething else\n"),
            Ok(vec![])
        );
    }
}
