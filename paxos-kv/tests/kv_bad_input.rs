//! Bad input to a running `paxos-node serve`: garbage, oversized and malformed RESP
//! requests get an error reply and a closed connection (never a crash, never a hang), bad
//! commands get an error reply on a connection that stays usable, oversized values are
//! refused (the largest accepted one is stored and read back), bad admin requests get 4xx,
//! HEAD gets no body; the node keeps serving throughout.

mod proc;

use std::io::{Read, Write};
use std::net::TcpStream;

use proc::{WAIT, http_get, layout, serve, wait_writable};

/// Sends `bytes` and reads until the server closes the connection (bounded by a timeout).
fn send_and_read_to_close(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proc::local(port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // The server may close before reading everything: ignore a failed write.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `bytes` and reads exactly `n` bytes back.
fn exchange(s: &mut TcpStream, bytes: &[u8], n: usize) -> String {
    s.write_all(bytes).unwrap();
    let mut out = vec![0; n];
    s.read_exact(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_requests_are_refused_and_the_node_keeps_serving() {
    let dir = proc::tempdir();
    let nodes = layout(1);
    let _node = serve(&nodes, 0, dir.path(), &["--storage", "memory"]);
    let resp = nodes[0].resp;
    let mut con = wait_writable(resp);

    // Closed with an error: garbage, bad lengths, oversized declarations (refused from the
    // header alone: the 1 GiB body is never sent).
    for bad in [
        &b"*abc\r\n"[..],
        b"*1\r\n:5\r\n",
        b"*1\r\n$3\r\nabcde\r\n",
        b"*1\r\n$-7\r\n",
        b"*1000000\r\n",
        b"*2\r\n$3\r\nSET\r\n$1073741824\r\n",
        &[b'*'; 100],
    ] {
        let reply = send_and_read_to_close(resp, bad);
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{bad:?} -> {reply:?}"
        );
    }
    // An inline line longer than 64 KiB with no newline.
    let reply = send_and_read_to_close(resp, &vec![b'a'; 70_000]);
    assert!(reply.starts_with("-ERR Protocol error"), "{reply:?}");
    // Random bytes.
    let noise: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = send_and_read_to_close(resp, &[b"*3\r\n", &noise[..]].concat());

    // Errors that keep the connection: unknown command, wrong arity, expiry.
    let mut s = TcpStream::connect(proc::local(resp)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let unknown = "-ERR unknown command 'FLUSHALL', with args beginning with: 'now' \r\n";
    let r = exchange(&mut s, b"FLUSHALL now\r\n", unknown.len());
    assert_eq!(r, unknown);
    let expected = "-ERR wrong number of arguments for 'get' command\r\n";
    assert_eq!(exchange(&mut s, b"GET\r\n", expected.len()), expected);
    let expiry = "-ERR expiry is not supported: keys never expire (replicas applying the log at \
                  different times would not agree on when a key expires)\r\n";
    let r = exchange(
        &mut s,
        b"SET k v EX 10\r\nPING\r\n",
        expiry.len() + "+PONG\r\n".len(),
    );
    assert_eq!(r, format!("{expiry}+PONG\r\n"));

    // Sizes (see the server's module docs): the largest value for a key is accepted and
    // read back; one byte more, or a round 1 MiB, is refused before anything is proposed,
    // on a connection that stays usable; a bulk string too large to buffer closes it.
    let (_, status) = http_get(nodes[0].admin, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let max_set = status["max_set_bytes"].as_u64().unwrap() as usize;
    let max_command = status["max_command_bytes"].as_u64().unwrap() as usize;
    assert_eq!(max_set, max_command - 50, "{status}");
    let largest = vec![b'x'; max_set - 3];
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&largest[..])
        .query(&mut con)
        .unwrap();
    let v: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(v == largest, "GET returned {} bytes", v.len());
    for len in [max_set - 2, 1 << 20, 2 * max_command] {
        let err = redis::cmd("SET")
            .arg("big")
            .arg(vec![b'y'; len])
            .query::<()>(&mut con)
            .unwrap_err();
        let expected = format!(
            "value of {len} bytes exceeds the largest accepted ({} bytes for a key of 3 bytes)",
            max_set - 3
        );
        assert!(err.to_string().contains(&expected), "{err}");
    }
    let v: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(v == largest, "GET returned {} bytes", v.len());
    let mut too_big =
        format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 2 * max_command + 1).into_bytes();
    too_big.extend_from_slice(&[b'z'; 4096]);
    let reply = send_and_read_to_close(resp, &too_big);
    assert_eq!(
        reply,
        format!(
            "-ERR Protocol error: bulk string of {} bytes exceeds the largest accepted ({} bytes)\r\n",
            2 * max_command + 1,
            2 * max_command
        )
    );

    // A long pipeline in one write is answered in order.
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend_from_slice(format!("SET k{i} {i}\r\nGET k{i}\r\n").as_bytes());
    }
    let mut expected = String::new();
    for i in 0..1000 {
        let v = i.to_string();
        expected.push_str(&format!("+OK\r\n${}\r\n{v}\r\n", v.len()));
    }
    assert_eq!(exchange(&mut s, &batch, expected.len()), expected);

    // Admin: bad request, unknown path, wrong method, an endless head.
    let admin = nodes[0].admin;
    assert_eq!(http_get(admin, "/nope").unwrap().0, 404);
    let raw = send_and_read_to_close(admin, b"POST /status HTTP/1.1\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw:?}");
    // HEAD: the headers of GET, no body.
    let raw = send_and_read_to_close(admin, b"HEAD /health HTTP/1.1\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw:?}");
    assert!(raw.contains("Content-Length: 3\r\n"), "{raw:?}");
    assert!(raw.ends_with("\r\n\r\n"), "HEAD sent a body: {raw:?}");
    let raw = send_and_read_to_close(admin, b"GET\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw:?}");
    // A head over 8 KiB.
    let raw = send_and_read_to_close(admin, &vec![b'G'; 20_000]);
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw:?}");

    // Still serving, and it counted the protocol errors.
    let () = redis::cmd("SET")
        .arg("after")
        .arg("ok")
        .query(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("after").query(&mut con).unwrap();
    assert_eq!(v, "ok");
    assert_eq!(http_get(admin, "/health").unwrap().0, 200);
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("paxos_resp_protocol_errors_total"))
        .unwrap();
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 9, "{line}");
}
