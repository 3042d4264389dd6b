//! [`Encoder`]: replies in the connection's protocol, RESP2 or RESP3.

/// The protocol a connection's replies use. Every connection starts with RESP2; `HELLO 3`
/// switches to RESP3, `HELLO 2` and `RESET` back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: no null, map, set or verbatim types; they are rendered as Redis renders them.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Protocol {
    /// The number `HELLO` takes and reports: 2 or 3.
    pub fn version(self) -> i64 {
        match self {
            Self::Resp2 => 2,
            Self::Resp3 => 3,
        }
    }
}

/// Appends replies to a buffer in one [`Protocol`].
///
/// The RESP3-only types fall back the way Redis 7 renders them for a RESP2 client:
///
/// | call            | RESP3                     | RESP2                    |
/// |-----------------|---------------------------|--------------------------|
/// | [`null`]        | `_`                       | `$-1` (the null bulk)    |
/// | [`map`]`(n)`    | `%n`, then n keys + values | `*2n`, keys and values in turn |
/// | [`set`]`(n)`    | `~n`                      | `*n`                     |
/// | [`verbatim`]    | `=len`, `txt:` + text     | a bulk string of the text |
///
/// Aggregates are written as a header followed by their elements: the caller appends
/// exactly as many elements as the header announces.
///
/// [`null`]: Self::null
/// [`map`]: Self::map
/// [`set`]: Self::set
/// [`verbatim`]: Self::verbatim
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    buf: Vec<u8>,
    protocol: Protocol,
    /// Error replies appended since [`take_errors`](Self::take_errors).
    errors: u64,
}

impl Encoder {
    /// An empty buffer for replies in `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            buf: Vec::new(),
            protocol,
            errors: 0,
        }
    }

    /// The protocol of the replies appended from now on.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Switches the protocol of the replies appended from now on.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    /// The replies appended so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many error replies were appended since the last call (for a counter of error
    /// replies), and starts counting again.
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    /// Forgets the buffered replies (after they are written), keeping the protocol.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// A simple string (`+OK`). CR and LF become spaces, so the reply stays one line.
    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.line(s.as_bytes());
    }

    /// An error (`-ERR message`). CR and LF become spaces, as Redis does.
    pub fn error(&mut self, message: &str) {
        self.errors += 1;
        self.buf.push(b'-');
        self.line(message.as_bytes());
    }

    /// An integer (`:1`).
    pub fn integer(&mut self, n: i64) {
        self.header(b':', n);
    }

    /// A bulk string.
    pub fn bulk(&mut self, value: &[u8]) {
        self.header(b'$', value.len());
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string, or null for `None`.
    pub fn bulk_or_null(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => self.bulk(v),
            None => self.null(),
        }
    }

    /// The null reply: `_` in RESP3, the null bulk string `$-1` in RESP2.
    pub fn null(&mut self) {
        match self.protocol {
            Protocol::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
            Protocol::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
        }
    }

    /// An array header: `n` elements follow.
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A map header: `pairs` keys follow, each followed by its value. RESP2 gets an array of
    /// twice as many elements.
    pub fn map(&mut self, pairs: usize) {
        match self.protocol {
            Protocol::Resp3 => self.header(b'%', pairs),
            Protocol::Resp2 => self.header(b'*', pairs.saturating_mul(2)),
        }
    }

    /// A set header: `n` elements follow. RESP2 gets an array.
    pub fn set(&mut self, n: usize) {
        match self.protocol {
            Protocol::Resp3 => self.header(b'~', n),
            Protocol::Resp2 => self.header(b'*', n),
        }
    }

    /// A verbatim string of plain text (`=len\r\ntxt:...`), as Redis 7 replies to `INFO` and
    /// `CLIENT INFO` in RESP3. RESP2 gets a bulk string of the text.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
            Protocol::Resp2 => self.bulk(text),
        }
    }

    fn header(&mut self, kind: u8, n: impl std::fmt::Display) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(self.buf, "{}{n}\r\n", char::from(kind));
    }

    fn line(&mut self, text: &[u8]) {
        self.buf.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: impl Fn(&mut Encoder)) -> (Vec<u8>, Vec<u8>) {
        let run = |protocol| {
            let mut e = Encoder::new(protocol);
            f(&mut e);
            e.bytes().to_vec()
        };
        (run(Protocol::Resp2), run(Protocol::Resp3))
    }

    #[test]
    fn the_types_both_protocols_share() {
        let (two, three) = both(|e| {
            e.simple("OK");
            e.error("ERR a\r\nb");
            e.integer(-3);
            e.bulk(b"hi");
            e.bulk(b"");
            e.array(0);
        });
        assert_eq!(
            two,
            b"+OK\r\n-ERR a  b\r\n:-3\r\n$2\r\nhi\r\n$0\r\n\r\n*0\r\n"
        );
        assert_eq!(two, three);
        let mut e = Encoder::default();
        e.error("ERR x");
        e.simple("OK");
        e.error("ERR y");
        assert_eq!((e.take_errors(), e.take_errors()), (2, 0));
    }

    #[test]
    fn resp3_types_and_their_resp2_renderings() {
        let (two, three) = both(|e| {
            e.bulk_or_null(None);
            e.map(1);
            e.bulk(b"k");
            e.integer(1);
            e.set(2);
            e.simple("a");
            e.simple("b");
            e.verbatim(b"# Server\r\n");
        });
        assert_eq!(
            two,
            b"$-1\r\n*2\r\n$1\r\nk\r\n:1\r\n*2\r\n+a\r\n+b\r\n$10\r\n# Server\r\n\r\n"
        );
        assert_eq!(
            three,
            b"_\r\n%1\r\n$1\r\nk\r\n:1\r\n~2\r\n+a\r\n+b\r\n=14\r\ntxt:# Server\r\n\r\n"
        );
    }

    #[test]
    fn the_protocol_switches_between_replies() {
        let mut e = Encoder::default();
        assert_eq!(e.protocol(), Protocol::Resp2);
        e.null();
        e.set_protocol(Protocol::Resp3);
        e.null();
        assert_eq!(e.bytes(), b"$-1\r\n_\r\n");
        assert_eq!(e.protocol().version(), 3);
        e.clear();
        assert!(e.is_empty());
        assert_eq!(e.protocol(), Protocol::Resp3);
    }
}
