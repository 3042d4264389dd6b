//! A minimal RESP2 client codec: encode a request, read whole replies off a buffered
//! connection. Just enough for `SET`, `GET` and `PING` against `paxos-node` and
//! `redis-server`; the server's own parser lives in `paxos_kv::resp`.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

/// Appends the RESP array of bulk strings for `args` to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One reply, reduced to what the harness checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`, an integer, a bulk string or a null: a success.
    Ok,
    /// `-ERR ...`: the server refused the command; the text says why.
    Error(String),
}

/// Reads one complete reply from `reader` (nested arrays are read whole).
pub async fn read_reply(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> io::Result<Reply> {
    let mut pending = 1u64;
    let mut reply = Reply::Ok;
    while pending > 0 {
        pending -= 1;
        line.clear();
        let n = reader.read_until(b'\n', line).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let body = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("a reply line without CRLF"))?;
        let (&kind, rest) = body
            .split_first()
            .ok_or_else(|| bad("an empty reply line"))?;
        match kind {
            b'+' | b':' | b'_' | b',' | b'#' => {}
            b'-' => reply = Reply::Error(String::from_utf8_lossy(rest).into_owned()),
            b'$' => {
                let len = number(rest)?;
                if len >= 0 {
                    let mut skip = vec![0u8; len as usize + 2];
                    reader.read_exact(&mut skip).await?;
                }
            }
            b'*' | b'%' => {
                let len = number(rest)?;
                if len > 0 {
                    pending += len as u64 * if kind == b'%' { 2 } else { 1 };
                }
            }
            _ => return Err(bad("an unknown reply type")),
        }
    }
    Ok(reply)
}

fn number(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("a bad length in a reply"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("RESP: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }
}
