//! The Redis protocol: a bounded parser for client requests and the reply encoder the
//! `paxos-node` binary uses, for RESP2 and RESP3.
//!
//! Clients send either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every
//! client library, `redis-cli` and `redis-benchmark` send) or an inline command (`PING\r\n`,
//! as typed into telnet; quoted the way Redis splits them, see [`split_args`]).
//! [`parse_request`] takes one complete request off the front of a buffer. Every bound
//! ([`Limits`]) is checked as soon as the header that declares a size arrives, before
//! anything is buffered for it, so a request declaring a 1 GiB bulk string or a million
//! elements is refused at once.
//!
//! Replies go through an [`Encoder`], which knows the connection's [`Protocol`]: RESP2
//! until the client switches with `HELLO 3`. The two differ only in the reply types RESP3
//! added (null, map, set, verbatim string); each has a RESP2 rendering, the one Redis 7
//! uses.
//!
//! Why not a RESP crate: a general RESP decoder parses every frame type a *server* can send
//! and reports an incomplete frame only as "need more bytes"; refusing an oversized request
//! early needs its headers parsed anyway, which is most of this small parser.

mod encode;
mod inline;

pub use encode::{Encoder, Protocol};
pub use inline::{quote_arg, split_args};

use bytes::{Buf, Bytes, BytesMut};

/// Bounds on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest bulk string (a key or a value).
    pub max_bulk_bytes: usize,
    /// The most elements in one request array.
    pub max_array_len: usize,
    /// The largest request, headers included.
    pub max_request_bytes: usize,
    /// The longest inline command line.
    pub max_inline_bytes: usize,
}

impl Default for Limits {
    /// Bulk strings up to 1 MiB, 1024 elements, 2 MiB per request, 64 KiB inline lines.
    fn default() -> Self {
        Self {
            max_bulk_bytes: 1 << 20,
            max_array_len: 1024,
            max_request_bytes: 2 << 20,
            max_inline_bytes: 64 << 10,
        }
    }
}

/// Why a request was refused. The connection cannot be resynchronised after either: reply
/// with the error and close it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// The bytes are not a RESP request.
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    /// A header line starts with the wrong byte: `want` was due, `got` came (Redis's
    /// wording).
    #[error("Protocol error: expected '{}', got '{}'", char::from(*want), got.escape_ascii())]
    Expected {
        /// The type byte due (`$` or `*`).
        want: u8,
        /// The byte that came instead.
        got: u8,
    },
    /// The request exceeds a [`Limits`] bound: `len` (declared, or buffered so far) is
    /// above `max`, both counted in `unit`s.
    #[error("Protocol error: {what} of {len} {unit} exceeds the largest accepted ({max} {unit})")]
    TooLarge {
        /// What is too large: "bulk string", "request", "inline request".
        what: &'static str,
        /// Its size.
        len: u64,
        /// The bound.
        max: usize,
        /// "bytes" or "elements".
        unit: &'static str,
    },
}

impl RespError {
    fn too_large(what: &'static str, len: usize, max: usize, unit: &'static str) -> Self {
        Self::TooLarge {
            what,
            len: u64::try_from(len).unwrap_or(u64::MAX),
            max,
            unit,
        }
    }
}

/// The longest header line (`*1024\r\n`, `$1048576\r\n`) accepted.
const MAX_HEADER_BYTES: usize = 32;

/// Takes one complete request off the front of `buf`: its words (command name first).
/// `Ok(None)` means more bytes are needed (nothing is consumed). An empty request (`*0`,
/// a blank inline line) is consumed and returned as an empty vector, which callers skip.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// Reads the header line `<prefix><integer>\r\n` at `at`: the integer and the offset after
/// the line, or `None` if incomplete.
fn header(buf: &[u8], at: usize, prefix: u8) -> Result<Option<(i64, usize)>, RespError> {
    let rest = &buf[at..];
    match rest.first() {
        None => return Ok(None),
        Some(&got) if got != prefix => {
            return Err(RespError::Expected { want: prefix, got });
        }
        Some(_) => {}
    }
    let window = &rest[..rest.len().min(MAX_HEADER_BYTES)];
    let Some(end) = window.iter().position(|&b| b == b'\r') else {
        return if rest.len() >= MAX_HEADER_BYTES {
            Err(RespError::Protocol("header line too long"))
        } else {
            Ok(None)
        };
    };
    if rest.len() < end + 2 {
        return Ok(None);
    }
    if rest[end + 1] != b'\n' {
        return Err(RespError::Protocol("expected CRLF"));
    }
    let n = std::str::from_utf8(&rest[1..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(RespError::Protocol(if prefix == b'$' {
            "invalid bulk length"
        } else {
            "invalid multibulk length"
        }))?;
    Ok(Some((n, at + end + 2)))
}

fn parse_array(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    let Some((count, mut at)) = header(buf, 0, b'*')? else {
        return Ok(None);
    };
    if count <= 0 {
        buf.advance(at);
        return Ok(Some(Vec::new()));
    }
    let count =
        usize::try_from(count).map_err(|_| RespError::Protocol("invalid multibulk length"))?;
    if count > limits.max_array_len {
        return Err(RespError::too_large(
            "request",
            count,
            limits.max_array_len,
            "elements",
        ));
    }
    // First pass: check every bound and that the request is complete, without copying.
    let mut spans = Vec::with_capacity(count);
    for _ in 0..count {
        let Some((len, body)) = header(buf, at, b'$')? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| RespError::Protocol("invalid bulk length"))?;
        if len > limits.max_bulk_bytes {
            return Err(RespError::too_large(
                "bulk string",
                len,
                limits.max_bulk_bytes,
                "bytes",
            ));
        }
        let end = body + len + 2;
        if end > limits.max_request_bytes {
            return Err(RespError::too_large(
                "request",
                end,
                limits.max_request_bytes,
                "bytes",
            ));
        }
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[body + len..end] != b"\r\n" {
            return Err(RespError::Protocol("expected CRLF after bulk string"));
        }
        spans.push((body, len));
        at = end;
    }
    let request = buf.split_to(at).freeze();
    Ok(Some(
        spans
            .into_iter()
            .map(|(start, len)| request.slice(start..start + len))
            .collect(),
    ))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    let window = &buf[..buf.len().min(limits.max_inline_bytes + 1)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_inline_bytes {
            Err(RespError::too_large(
                "inline request",
                buf.len(),
                limits.max_inline_bytes,
                "bytes",
            ))
        } else {
            Ok(None)
        };
    };
    let line = buf.split_to(newline + 1);
    // Redis takes the line up to `\n`, less one `\r` before it.
    let line = line[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&line[..newline]);
    let words: Vec<Bytes> = split_args(line)?.into_iter().map(Bytes::from).collect();
    if words.len() > limits.max_array_len {
        return Err(RespError::too_large(
            "request",
            words.len(),
            limits.max_array_len,
            "elements",
        ));
    }
    Ok(Some(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, RespError> {
        parse_request(&mut BytesMut::from(input), &Limits::default())
    }

    #[test]
    fn arrays_inline_and_pipelines() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nPI"[..]);
        let l = Limits::default();
        assert_eq!(
            parse_request(&mut buf, &l).unwrap().unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        assert_eq!(
            parse_request(&mut buf, &l).unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        // Incomplete: nothing consumed.
        assert_eq!(parse_request(&mut buf, &l).unwrap(), None);
        assert_eq!(buf.len(), 10);
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(
            parse_request(&mut buf, &l).unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert!(buf.is_empty());
        assert_eq!(parse(b"*0\r\n").unwrap(), Some(vec![]));
        assert_eq!(parse(b"\r\n").unwrap(), Some(vec![]));
    }

    #[test]
    fn refuses_garbage_and_oversize_before_buffering() {
        // Redis's own wording for each.
        let message = |bytes: &[u8]| parse(bytes).unwrap_err().to_string();
        assert_eq!(
            message(b"*x\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            message(b"*1\r\n$x\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            message(b"*1\r\n:1\r\n"),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            message(b"*1\r\n\x01\r\n"),
            "Protocol error: expected '$', got '\\x01'"
        );
        assert!(matches!(
            parse(b"*1\r\n$1\r\nab\r\n"),
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b"*1\r\n$-5\r\n"),
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(parse(&[b'*'; 64]), Err(RespError::Protocol(_))));
        assert!(matches!(
            parse(b"*1000000\r\n"),
            Err(RespError::TooLarge { .. })
        ));
        assert!(matches!(
            parse(b"*1\r\n$1073741824\r\n"),
            Err(RespError::TooLarge { .. })
        ));
        // Three 1 MiB bulk strings exceed the 2 MiB request bound on the third header.
        let mut big = b"*3\r\n".to_vec();
        for _ in 0..3 {
            big.extend_from_slice(b"$1048576\r\n");
            big.extend(std::iter::repeat_n(b'a', 1 << 20));
            big.extend_from_slice(b"\r\n");
        }
        assert!(matches!(parse(&big), Err(RespError::TooLarge { .. })));
        assert!(matches!(
            parse(&vec![b'a'; (64 << 10) + 2]),
            Err(RespError::TooLarge { .. })
        ));
        // The error says how large, and what the bound is.
        assert_eq!(
            parse(b"*2\r\n$3\r\nSET\r\n$2000000\r\n")
                .unwrap_err()
                .to_string(),
            "Protocol error: bulk string of 2000000 bytes exceeds the largest accepted \
             (1048576 bytes)"
        );
    }

    #[test]
    fn inline_commands_are_split_like_redis() {
        let words = |list: &[&str]| Some(list.iter().map(|w| Bytes::from(w.to_string())).collect());
        assert_eq!(
            parse(b"SET k \"a b\"\r\n").unwrap(),
            words(&["SET", "k", "a b"])
        );
        assert_eq!(parse(b"ECHO 'it\\'s'\n").unwrap(), words(&["ECHO", "it's"]));
        assert_eq!(
            parse(b"ECHO \"\\x41\"\r\r\n").unwrap(),
            words(&["ECHO", "A"])
        );
        assert_eq!(parse(b"   \r\n").unwrap(), words(&[]));
        assert_eq!(parse(b"SET k \"v").unwrap(), None, "no line end yet");
        assert_eq!(
            parse(b"SET k \"v\r\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            parse(b"SET k 'v'x\r\n").unwrap_err(),
            RespError::Protocol("unbalanced quotes in request")
        );
        let many = "a ".repeat(1025) + "\r\n";
        assert!(matches!(
            parse(many.as_bytes()),
            Err(RespError::TooLarge { .. })
        ));
    }
}
