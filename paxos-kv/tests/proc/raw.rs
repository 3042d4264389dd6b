//! A raw RESP client for tests that check reply bytes: it sends requests as written and
//! reads back exactly one reply's bytes (RESP2 or RESP3), with a parsed form for tests
//! that need to look inside.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use super::{WAIT, local};

/// A parsed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// A bulk or verbatim string (a verbatim string keeps its `txt:` prefix).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`.
    Null,
    /// An array, set (`~`) or push.
    Array(Vec<Self>),
    /// A map, as its keys and values in turn.
    Map(Vec<Self>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Self::Simple(s) | Self::Error(s) => s.clone(),
            Self::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Self::Integer(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        }
    }

    pub fn items(&self) -> &[Self] {
        match self {
            Self::Array(items) | Self::Map(items) => items,
            other => panic!("not an aggregate: {other:?}"),
        }
    }
}

pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A request as RESP: an array of bulk strings.
pub fn request(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Raw {
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(local(port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends one request (words as strings) and returns its reply's bytes.
    pub fn call(&mut self, words: &[&str]) -> Vec<u8> {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.send(&request(&words));
        self.reply()
    }

    /// [`call`](Self::call), as text (for comparing with a string literal).
    pub fn call_text(&mut self, words: &[&str]) -> String {
        String::from_utf8(self.call(words)).unwrap()
    }

    /// Sends one request and parses its reply.
    pub fn parsed(&mut self, words: &[&str]) -> Reply {
        parse(&self.call(words))
    }

    /// The bytes of the next reply.
    pub fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_reply(&mut out);
        out
    }

    /// Whether the server closed the connection: end of stream (or a reset) before any
    /// other byte.
    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    fn read_reply(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        let n = self.reader.read_until(b'\n', out).unwrap();
        assert!(
            n >= 3 && out.ends_with(b"\r\n"),
            "bad line: {:?}",
            &out[start..]
        );
        let line = &out[start..out.len() - 2];
        let kind = line[0];
        let count = || -> i64 { std::str::from_utf8(&line[1..]).unwrap().parse().unwrap() };
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' => {}
            b'$' | b'=' => {
                let len = count();
                if len >= 0 {
                    let mut body = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut body).unwrap();
                    out.extend_from_slice(&body);
                }
            }
            b'*' | b'~' | b'>' | b'%' => {
                let n = count();
                let n = if kind == b'%' { 2 * n } else { n };
                for _ in 0..n.max(0) {
                    self.read_reply(out);
                }
            }
            other => panic!("unknown reply type {:?}", char::from(other)),
        }
    }
}

fn aggregate(n: i64, mut rest: &[u8]) -> (Vec<Reply>, &[u8]) {
    let mut items = Vec::new();
    for _ in 0..n {
        let (item, after) = parse_at(rest);
        items.push(item);
        rest = after;
    }
    (items, rest)
}

/// Parses one complete reply.
pub fn parse(bytes: &[u8]) -> Reply {
    let (reply, rest) = parse_at(bytes);
    assert!(rest.is_empty(), "trailing bytes: {rest:?}");
    reply
}

fn parse_at(bytes: &[u8]) -> (Reply, &[u8]) {
    let end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
    let line = std::str::from_utf8(&bytes[1..end]).unwrap();
    let rest = &bytes[end + 2..];
    match bytes[0] {
        b'+' => (Reply::Simple(line.into()), rest),
        b'-' => (Reply::Error(line.into()), rest),
        b':' => (Reply::Integer(line.parse().unwrap()), rest),
        b'_' => (Reply::Null, rest),
        b'$' | b'=' => match line.parse::<i64>().unwrap() {
            -1 => (Reply::Null, rest),
            len => {
                let len = len as usize;
                (Reply::Bulk(rest[..len].to_vec()), &rest[len + 2..])
            }
        },
        b'*' | b'~' | b'>' => match line.parse::<i64>().unwrap() {
            -1 => (Reply::Null, rest),
            n => {
                let (items, rest) = aggregate(n, rest);
                (Reply::Array(items), rest)
            }
        },
        b'%' => {
            let (items, rest) = aggregate(2 * line.parse::<i64>().unwrap(), rest);
            (Reply::Map(items), rest)
        }
        other => panic!("unknown reply type {:?}", char::from(other)),
    }
}
