//! From a request to what to do with it: a write for the log, a read, a command answered on
//! this node, or an error found before anything is proposed; and from the state machine's
//! outputs and answers back to Redis replies.
//!
//! Arguments are checked the way Redis checks them, in Redis's order, with Redis's error
//! messages (arity first, from the [command table](crate::server::commands), then syntax, then
//! values), so that a client sees the same error from this server as from Redis 7 for
//! the same mistake. Expiry is the exception: `EXPIRE`, `PEXPIRE`, `TTL`, `PTTL`,
//! `SETEX`, `PSETEX` and `SET`'s `EX`/`PX`/`EXAT`/`PXAT`/`KEEPTTL` are refused with
//! [`EXPIRY_UNSUPPORTED`] once their syntax is valid: keys never expire here, because
//! replicas applying the log at different times could not agree on when a key expires.

use crate::kv::{
    KvAnswer, KvCommand, KvOutput, KvQuery, MAX_SCAN_PATTERN_BYTES, SetCondition,
    parse_redis_integer,
};
use crate::resp::Encoder;
use bytes::Bytes;

use crate::server::commands::{self, Cmd, Spec};
use crate::server::too_large;

/// The refusal of every expiry command and option.
pub(crate) const EXPIRY_UNSUPPORTED: &str = "ERR expiry is not supported: keys never expire \
     (replicas applying the log at different times would not agree on when a key expires)";

const SYNTAX: &str = "ERR syntax error";
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// What one request becomes.
#[derive(Debug)]
pub(crate) enum Step {
    /// A write, and how to render its output.
    Write(KvCommand, WriteShape),
    /// A read, and how to render its answer.
    Read(KvQuery, ReadShape),
    /// A connection or server command, answered on this node by [`crate::server::local`].
    Local(&'static Spec),
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH` or `UNWATCH`, handled by
    /// [`crate::server::transaction`].
    Tx(Cmd),
    /// An error reply (no `-`), answered at once.
    Refuse(String),
}

/// How a write's [`KvOutput`] becomes a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteShape {
    /// `Ok` is `+OK`, `Integer` `:n`, `Bulk` a bulk string or null, `Error` an error.
    Plain,
    /// `SETNX`: `Ok` (it set) is `:1`, `Bulk(None)` (it did not) `:0`.
    SetNx,
    /// A read inside a transaction ([`KvCommand::Read`]): its `Answer` is rendered as the
    /// read's would be.
    Read(ReadShape),
}

/// How a read's [`KvAnswer`] becomes a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadShape {
    /// `Bulk` a bulk string or null, `Integer` `:n`, `Values` an array of bulk strings or
    /// nulls, `Scan` `[cursor as a bulk string, [keys]]`.
    Plain,
    /// `SCAN ... TYPE t` for a type other than `string`: the cursor, and no key (every
    /// key here is a string).
    ScanNoKeys,
}

/// Plans one request (command name first): its command's full name (`NULL` if unknown,
/// as Redis's `CLIENT LIST` shows it) and what to do. `max_command_bytes` is the node's
/// bound ([`NodeHandle::max_command_bytes`](paxos_node::NodeHandle::max_command_bytes)): a
/// write over it is refused here, before anything is proposed.
pub(crate) fn plan(words: &[Bytes], max_command_bytes: usize) -> (&'static str, Step) {
    match commands::lookup(words) {
        Ok(spec) => (
            spec.name,
            plan_command(spec, &words[1..], max_command_bytes),
        ),
        Err(refusal) => ("NULL", Step::Refuse(refusal)),
    }
}

fn plan_command(spec: &'static Spec, args: &[Bytes], max_command_bytes: usize) -> Step {
    let key = || args[0].to_vec();
    let write = |command: KvCommand, shape| match too_large(&command, max_command_bytes) {
        Some(refusal) => Step::Refuse(refusal),
        None => Step::Write(command, shape),
    };
    let plain = |command| write(command, WriteShape::Plain);
    let read = |query| Step::Read(query, ReadShape::Plain);
    let keys = || args.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    match spec.cmd {
        Cmd::Get => read(KvQuery::Get { key: key() }),
        Cmd::MGet => read(KvQuery::MGet { keys: keys() }),
        Cmd::Exists => read(KvQuery::Exists { keys: keys() }),
        Cmd::StrLen => read(KvQuery::StrLen { key: key() }),
        Cmd::DbSize => read(KvQuery::DbSize),
        Cmd::Scan => scan(args),
        Cmd::Set => match set(args) {
            Ok(command) => plain(command),
            Err(refusal) => Step::Refuse(refusal.into()),
        },
        Cmd::SetNx => write(
            set_with(args, SetCondition::IfAbsent, false),
            WriteShape::SetNx,
        ),
        Cmd::GetSet => plain(set_with(args, SetCondition::Always, true)),
        Cmd::MSet if args.len() % 2 != 0 => Step::Refuse(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )),
        Cmd::MSet => plain(KvCommand::MSet {
            pairs: args
                .chunks_exact(2)
                .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
                .collect(),
        }),
        Cmd::Append => plain(KvCommand::Append {
            key: key(),
            value: args[1].to_vec(),
        }),
        Cmd::Del => plain(KvCommand::Del { keys: keys() }),
        Cmd::Incr => plain(KvCommand::Incr { key: key() }),
        Cmd::Decr => plain(KvCommand::IncrBy {
            key: key(),
            delta: -1,
        }),
        Cmd::IncrBy | Cmd::DecrBy => match parse_redis_integer(&args[1]) {
            None => Step::Refuse(NOT_AN_INTEGER.into()),
            // Redis refuses to negate the smallest integer before looking at the key.
            Some(i64::MIN) if spec.cmd == Cmd::DecrBy => {
                Step::Refuse("ERR decrement would overflow".into())
            }
            Some(n) => plain(KvCommand::IncrBy {
                key: key(),
                delta: if spec.cmd == Cmd::DecrBy { -n } else { n },
            }),
        },
        Cmd::Cas => plain(KvCommand::Cas {
            key: key(),
            expected: args[1].to_vec(),
            new: args[2].to_vec(),
        }),
        Cmd::Expire | Cmd::PExpire | Cmd::Ttl | Cmd::PTtl | Cmd::SetEx | Cmd::PSetEx => {
            Step::Refuse(EXPIRY_UNSUPPORTED.into())
        }
        Cmd::Auth
        | Cmd::Client
        | Cmd::ClientGetName
        | Cmd::ClientHelp
        | Cmd::ClientId
        | Cmd::ClientInfo
        | Cmd::ClientList
        | Cmd::ClientSetInfo
        | Cmd::ClientSetName
        | Cmd::Command
        | Cmd::CommandCount
        | Cmd::CommandDocs
        | Cmd::CommandHelp
        | Cmd::CommandInfo
        | Cmd::CommandList
        | Cmd::Config
        | Cmd::ConfigGet
        | Cmd::ConfigHelp
        | Cmd::Echo
        | Cmd::Hello
        | Cmd::Info
        | Cmd::Ping
        | Cmd::Quit
        | Cmd::Reset
        | Cmd::Select => Step::Local(spec),
        Cmd::Multi | Cmd::Exec | Cmd::Discard | Cmd::Watch | Cmd::Unwatch => Step::Tx(spec.cmd),
    }
}

fn set_with(args: &[Bytes], condition: SetCondition, get: bool) -> KvCommand {
    KvCommand::SetWith {
        key: args[0].to_vec(),
        value: args[1].to_vec(),
        condition,
        get,
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`, checked as Redis
/// 7.0's `parseExtendedStringArgumentsOrReply` does: `NX` with `XX`, two different expiry
/// options, `KEEPTTL` with one, an expiry option without its value or an unknown word is
/// a syntax error; repeating an option is not. A valid expiry is then refused.
fn set(args: &[Bytes]) -> Result<KvCommand, &'static str> {
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expiry: Option<&'static str> = None;
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_uppercase();
        let has_value = i + 1 < args.len();
        match option.as_slice() {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" if expiry.is_none() => keep_ttl = true,
            timed @ (b"EX" | b"PX" | b"EXAT" | b"PXAT")
                if !keep_ttl && has_value && expiry.is_none_or(|e| e.as_bytes() == timed) =>
            {
                expiry = Some(match timed {
                    b"EX" => "EX",
                    b"PX" => "PX",
                    b"EXAT" => "EXAT",
                    _ => "PXAT",
                });
                i += 1;
            }
            _ => return Err(SYNTAX),
        }
        i += 1;
    }
    if keep_ttl || expiry.is_some() {
        return Err(EXPIRY_UNSUPPORTED);
    }
    let condition = match (nx, xx) {
        (true, _) => SetCondition::IfAbsent,
        (_, true) => SetCondition::IfPresent,
        _ => SetCondition::Always,
    };
    if condition == SetCondition::Always && !get {
        return Ok(KvCommand::Set {
            key: args[0].to_vec(),
            value: args[1].to_vec(),
        });
    }
    Ok(set_with(args, condition, get))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`, checked as Redis 7.0's
/// `scanGenericCommand`.
fn scan(args: &[Bytes]) -> Step {
    let Some(cursor) = parse_cursor(&args[0]) else {
        return Step::Refuse("ERR invalid cursor".into());
    };
    let (mut pattern, mut count, mut shape) = (None, 10usize, ReadShape::Plain);
    let mut options = args[1..].chunks(2);
    for option in options.by_ref() {
        let [name, value] = option else {
            return Step::Refuse(SYNTAX.into());
        };
        match name.to_ascii_uppercase().as_slice() {
            b"COUNT" => match parse_redis_integer(value) {
                None => return Step::Refuse(NOT_AN_INTEGER.into()),
                Some(n) if n < 1 => return Step::Refuse(SYNTAX.into()),
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            },
            // "*" matches everything: no need to match.
            b"MATCH" => pattern = (&value[..] != b"*").then(|| value.to_vec()),
            b"TYPE" => {
                shape = if value.eq_ignore_ascii_case(b"string") {
                    ReadShape::Plain
                } else {
                    ReadShape::ScanNoKeys
                };
            }
            _ => return Step::Refuse(SYNTAX.into()),
        }
    }
    // The state machine bounds one key's matching by the pattern's length.
    if let Some(long) = pattern
        .as_ref()
        .filter(|p| p.len() > MAX_SCAN_PATTERN_BYTES)
    {
        return Step::Refuse(format!(
            "ERR MATCH pattern of {} bytes exceeds the largest accepted ({MAX_SCAN_PATTERN_BYTES} bytes)",
            long.len()
        ));
    }
    Step::Read(
        KvQuery::Scan {
            cursor,
            pattern,
            count,
        },
        shape,
    )
}

/// A `SCAN` cursor as Redis reads it (`strtoul` in base 10, then refused if it began with a
/// blank or left anything unread): an optional sign, digits, a negative number wrapping
/// around; the empty string is 0.
fn parse_cursor(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Renders a write's output.
pub(crate) fn render_output(out: &mut Encoder, shape: WriteShape, output: KvOutput) {
    match (shape, output) {
        (WriteShape::SetNx, KvOutput::Ok) => out.integer(1),
        (WriteShape::SetNx, KvOutput::Bulk(None)) => out.integer(0),
        (_, KvOutput::Ok) => out.simple("OK"),
        (_, KvOutput::Integer(n)) => out.integer(n),
        (_, KvOutput::Bulk(value)) => out.bulk_or_null(value.as_deref()),
        (_, KvOutput::Error(e)) => out.error(&e),
        (WriteShape::Read(shape), KvOutput::Answer(answer)) => render_answer(out, shape, answer),
        (_, KvOutput::SessionExpired | KvOutput::Many(_) | KvOutput::Answer(_)) => {
            out.error("ERR malformed output from the state machine");
        }
    }
}

/// Renders a read's answer.
pub(crate) fn render_answer(out: &mut Encoder, shape: ReadShape, answer: KvAnswer) {
    match answer {
        KvAnswer::Bulk(value) => out.bulk_or_null(value.as_deref()),
        KvAnswer::Integer(n) => out.integer(n),
        KvAnswer::Values(values) => {
            out.array(values.len());
            for value in values {
                out.bulk_or_null(value.as_deref());
            }
        }
        KvAnswer::Scan { cursor, keys } => {
            let keys = if shape == ReadShape::ScanNoKeys {
                Vec::new()
            } else {
                keys
            };
            out.array(2);
            out.bulk(cursor.to_string().as_bytes());
            out.array(keys.len());
            for key in keys {
                out.bulk(&key);
            }
        }
        KvAnswer::Many(_) => out.error("ERR malformed answer from the state machine"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: usize = 1_048_575;

    fn words(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect()
    }

    fn plan_of(line: &str) -> Step {
        plan(&words(line), M).1
    }

    fn refusal(line: &str) -> String {
        match plan_of(line) {
            Step::Refuse(e) => e,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn command(line: &str) -> KvCommand {
        match plan_of(line) {
            Step::Write(c, _) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn set_options_follow_redis() {
        assert_eq!(
            command("SET k v"),
            KvCommand::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            }
        );
        let with = |condition, get| KvCommand::SetWith {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            condition,
            get,
        };
        assert_eq!(command("SET k v nx"), with(SetCondition::IfAbsent, false));
        assert_eq!(
            command("SET k v NX NX"),
            with(SetCondition::IfAbsent, false)
        );
        assert_eq!(
            command("SET k v xx GET"),
            with(SetCondition::IfPresent, true)
        );
        assert_eq!(command("SET k v GET get"), with(SetCondition::Always, true));
        assert_eq!(command("GETSET k v"), with(SetCondition::Always, true));
        assert_eq!(command("SETNX k v"), with(SetCondition::IfAbsent, false));
        for bad in [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v FOO",
            "SET k v EX",
            "SET k v EX 10 PX 5",
            "SET k v KEEPTTL EX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v EX 10 FOO",
        ] {
            assert_eq!(refusal(bad), SYNTAX, "{bad}");
        }
        for expiring in [
            "SET k v EX 10",
            "SET k v px 5 NX",
            "SET k v EXAT 1 EXAT 2",
            "SET k v KEEPTTL",
            "SET k v EX x",
            "SETEX k 10 v",
            "PSETEX k 10 v",
            "EXPIRE k 10",
            "PEXPIRE k 10 NX",
            "TTL k",
            "PTTL k",
        ] {
            assert_eq!(refusal(expiring), EXPIRY_UNSUPPORTED, "{expiring}");
        }
        assert_eq!(
            refusal("SETEX k 10"),
            "ERR wrong number of arguments for 'setex' command"
        );
    }

    #[test]
    fn counters_check_their_argument_first() {
        assert_eq!(
            command("DECRBY k 5"),
            KvCommand::IncrBy {
                key: b"k".to_vec(),
                delta: -5
            }
        );
        assert_eq!(
            command("DECR k"),
            KvCommand::IncrBy {
                key: b"k".to_vec(),
                delta: -1
            }
        );
        assert_eq!(refusal("INCRBY k 1.5"), NOT_AN_INTEGER);
        assert_eq!(refusal("INCRBY k +1"), NOT_AN_INTEGER);
        assert_eq!(
            refusal("DECRBY k -9223372036854775808"),
            "ERR decrement would overflow"
        );
        assert_eq!(
            command("INCRBY k -9223372036854775808"),
            KvCommand::IncrBy {
                key: b"k".to_vec(),
                delta: i64::MIN
            }
        );
    }

    #[test]
    fn mset_takes_pairs() {
        assert_eq!(
            command("MSET a 1 b 2"),
            KvCommand::MSet {
                pairs: vec![
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec())
                ]
            }
        );
        assert_eq!(
            refusal("MSET a 1 b"),
            "ERR wrong number of arguments for 'mset' command"
        );
    }

    #[test]
    fn scan_options_and_cursors_follow_redis() {
        let scan = |line: &str| match plan_of(line) {
            Step::Read(
                KvQuery::Scan {
                    cursor,
                    pattern,
                    count,
                },
                shape,
            ) => (cursor, pattern, count, shape),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(scan("SCAN 0"), (0, None, 10, ReadShape::Plain));
        assert_eq!(
            scan("SCAN 7 match a* COUNT 100 MATCH b*"),
            (7, Some(b"b*".to_vec()), 100, ReadShape::Plain)
        );
        assert_eq!(scan("SCAN 0 MATCH *").1, None);
        assert_eq!(scan("SCAN 0 TYPE String").3, ReadShape::Plain);
        assert_eq!(scan("SCAN 0 TYPE hash").3, ReadShape::ScanNoKeys);
        assert_eq!(scan("SCAN -1").0, u64::MAX);
        assert_eq!(scan("SCAN +01").0, 1);
        assert_eq!(scan("SCAN 18446744073709551615").0, u64::MAX);
        // strtoul reads the empty string as 0.
        assert!(matches!(
            plan(&[Bytes::from("SCAN"), Bytes::new()], M).1,
            Step::Read(KvQuery::Scan { cursor: 0, .. }, _)
        ));
        for bad in ["SCAN x", "SCAN 18446744073709551616", "SCAN -", "SCAN 1x"] {
            assert_eq!(refusal(bad), "ERR invalid cursor", "{bad}");
        }
        for bad in [
            "SCAN 0 COUNT 0",
            "SCAN 0 COUNT -1",
            "SCAN 0 COUNT",
            "SCAN 0 MATCH",
            "SCAN 0 FOO x",
        ] {
            assert_eq!(refusal(bad), SYNTAX, "{bad}");
        }
        assert_eq!(refusal("SCAN 0 COUNT x"), NOT_AN_INTEGER);
        let long = format!("SCAN 0 MATCH {}", "*".repeat(MAX_SCAN_PATTERN_BYTES + 1));
        assert_eq!(
            refusal(&long),
            "ERR MATCH pattern of 1025 bytes exceeds the largest accepted (1024 bytes)"
        );
        let longest = format!("SCAN 0 MATCH {}", "?".repeat(MAX_SCAN_PATTERN_BYTES));
        assert!(matches!(plan_of(&longest), Step::Read(..)));
    }

    #[test]
    fn renders_like_redis() {
        let mut out = Encoder::default();
        render_output(&mut out, WriteShape::SetNx, KvOutput::Ok);
        render_output(&mut out, WriteShape::SetNx, KvOutput::Bulk(None));
        render_output(&mut out, WriteShape::Plain, KvOutput::Bulk(None));
        render_output(
            &mut out,
            WriteShape::Plain,
            KvOutput::Bulk(Some(b"v".to_vec())),
        );
        render_answer(
            &mut out,
            ReadShape::Plain,
            KvAnswer::Scan {
                cursor: 42,
                keys: vec![b"a".to_vec()],
            },
        );
        render_answer(
            &mut out,
            ReadShape::ScanNoKeys,
            KvAnswer::Scan {
                cursor: 0,
                keys: vec![b"a".to_vec()],
            },
        );
        render_answer(
            &mut out,
            ReadShape::Plain,
            KvAnswer::Values(vec![None, Some(b"x".to_vec())]),
        );
        assert_eq!(
            out.bytes(),
            b":1\r\n:0\r\n$-1\r\n$1\r\nv\r\n*2\r\n$2\r\n42\r\n*1\r\n$1\r\na\r\n\
              *2\r\n$1\r\n0\r\n*0\r\n*2\r\n$-1\r\n$1\r\nx\r\n"
        );
    }
}
