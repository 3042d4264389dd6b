//! The Redis protocol as clients see it, on a running `paxos-node serve`: the connection
//! commands clients open with (`HELLO`, `CLIENT`, `INFO`, `COMMAND`...), byte for byte in
//! RESP2 and RESP3 where Redis's replies are stable (the expected bytes of `COMMAND INFO`
//! and `COMMAND DOCS` were recorded from `redis-server` 7.0.15); the command table driving
//! every arity check; inline commands with Redis's quoting; and the refusal of expiry.

mod proc;

use proc::raw::{Raw, Reply};
use proc::{layout, serve, wait_writable};

/// A single node on memory storage: the process, its RESP port, its directory.
fn node() -> (proc::Proc, u16, tempfile::TempDir) {
    let dir = proc::tempdir();
    let nodes = layout(1);
    let node = serve(&nodes, 0, dir.path(), &["--storage", "memory"]);
    drop(wait_writable(nodes[0].resp));
    (node, nodes[0].resp, dir)
}

/// `HELLO`'s reply in `protocol` for connection `id` on the leader.
fn hello(protocol: u8, id: i64) -> String {
    let head = if protocol == 3 { "%7" } else { "*14" };
    format!(
        "{head}\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n\
         $5\r\nproto\r\n:{protocol}\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
         $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    )
}

const NO_PASSWORD: &str = "-ERR AUTH <password> called without any password configured for the \
     default user. Are you sure your configuration is correct?\r\n";

const NAMES: &str = "cannot contain spaces, newlines or special characters.";

fn client_id(c: &mut Raw) -> i64 {
    match c.parsed(&["CLIENT", "ID"]) {
        Reply::Integer(id) => id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn hello_switches_the_protocol_and_refuses_what_redis_refuses() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    let id = client_id(&mut c);

    assert_eq!(c.call_text(&["HELLO"]), hello(2, id));
    assert_eq!(c.call_text(&["GET", "nothing"]), "$-1\r\n");
    assert_eq!(c.call_text(&["HELLO", "3"]), hello(3, id));
    assert_eq!(c.call_text(&["GET", "nothing"]), "_\r\n");
    assert_eq!(c.call_text(&["MGET", "n1", "n2"]), "*2\r\n_\r\n_\r\n");
    assert_eq!(
        c.call_text(&["HELLO"]),
        hello(3, id),
        "HELLO alone keeps it"
    );
    assert_eq!(c.call_text(&["PING"]), "+PONG\r\n");
    assert_eq!(c.call_text(&["PING", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(c.call_text(&["ECHO", "x y"]), "$3\r\nx y\r\n");
    let names = format!("-ERR Client names {NAMES}\r\n");
    for (words, reply) in [
        (
            &["HELLO", "4"][..],
            "-NOPROTO unsupported protocol version\r\n",
        ),
        (&["HELLO", "1"], "-NOPROTO unsupported protocol version\r\n"),
        (
            &["HELLO", "x"],
            "-ERR Protocol version is not an integer or out of range\r\n",
        ),
        (
            &["HELLO", "3", "FOO"],
            "-ERR Syntax error in HELLO option 'FOO'\r\n",
        ),
        (
            &["HELLO", "3", "AUTH", "default"],
            "-ERR Syntax error in HELLO option 'AUTH'\r\n",
        ),
        (&["HELLO", "2", "AUTH", "default", "secret"], NO_PASSWORD),
        (&["AUTH", "secret"], NO_PASSWORD),
        (&["HELLO", "2", "SETNAME", "a b"], &names),
        (
            &["PING", "a", "b"],
            "-ERR wrong number of arguments for 'ping' command\r\n",
        ),
    ] {
        assert_eq!(c.call_text(words), reply, "{words:?}");
    }
    // None of the refused HELLOs changed anything.
    assert_eq!(c.call_text(&["GET", "nothing"]), "_\r\n");
    assert_eq!(c.call_text(&["CLIENT", "GETNAME"]), "_\r\n");

    // SETNAME with HELLO; RESET goes back to RESP2 and forgets the name.
    assert_eq!(
        c.call_text(&["HELLO", "3", "SETNAME", "worker"]),
        hello(3, id)
    );
    assert_eq!(c.call_text(&["CLIENT", "GETNAME"]), "$6\r\nworker\r\n");
    assert_eq!(c.call_text(&["RESET"]), "+RESET\r\n");
    assert_eq!(c.call_text(&["GET", "nothing"]), "$-1\r\n");
    assert_eq!(c.call_text(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(
        c.call_text(&["RESET", "x"]),
        "-ERR wrong number of arguments for 'reset' command\r\n"
    );

    // SELECT: one database.
    assert_eq!(c.call_text(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        c.call_text(&["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        c.call_text(&["SELECT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );

    // QUIT answers, then closes, whatever follows it.
    c.send(&proc::raw::request(&[b"QUIT", b"now"]));
    c.send(&proc::raw::request(&[b"PING"]));
    assert_eq!(c.reply(), b"+OK\r\n");
    assert!(c.closed(), "QUIT closes the connection");
}

#[test]
fn client_commands_name_and_list_connections() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    let id = client_id(&mut c);
    let names = format!("-ERR Client names {NAMES}\r\n");
    let lib_name = format!("-ERR lib-name {NAMES}\r\n");
    let id_reply = format!(":{id}\r\n");
    for (words, reply) in [
        (&["CLIENT", "GETNAME"][..], "$-1\r\n"),
        (&["CLIENT", "SETNAME", "worker"], "+OK\r\n"),
        (&["CLIENT", "GETNAME"], "$6\r\nworker\r\n"),
        (&["CLIENT", "SETNAME", "tab\there"], &names),
        (&["CLIENT", "SETNAME", "caf\u{e9}"], &names),
        (&["CLIENT", "GETNAME"], "$6\r\nworker\r\n"),
        (&["CLIENT", "SETINFO", "lib-name", "redis-py"], "+OK\r\n"),
        (&["client", "setinfo", "LIB-VER", "8.0.0"], "+OK\r\n"),
        (
            &["CLIENT", "SETINFO", "lib-foo", "x"],
            "-ERR Unrecognized option 'lib-foo'\r\n",
        ),
        (&["CLIENT", "SETINFO", "lib-name", "a b"], &lib_name),
        (
            &["CLIENT", "SETNAME", "a", "b"],
            "-ERR wrong number of arguments for 'client|setname' command\r\n",
        ),
        (
            &["CLIENT", "FOO"],
            "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n",
        ),
        (
            &["CLIENT"],
            "-ERR wrong number of arguments for 'client' command\r\n",
        ),
        (&["CLIENT", "ID"], &id_reply),
        (
            &["CLIENT", "LIST", "TYPE", "nope"],
            "-ERR Unknown client type 'nope'\r\n",
        ),
        (&["CLIENT", "LIST", "ID", "x"], "-ERR Invalid client ID\r\n"),
        (&["CLIENT", "LIST", "FOO"], "-ERR syntax error\r\n"),
        (&["CLIENT", "LIST", "TYPE", "pubsub"], "$0\r\n\r\n"),
    ] {
        assert_eq!(c.call_text(words), reply, "{words:?}");
    }
    // CLIENT INFO: a bulk string in RESP2, a verbatim string in RESP3, one line.
    let info = c.parsed(&["CLIENT", "INFO"]).text();
    assert!(
        info.starts_with(&format!("id={id} addr=127.0.0.1:")),
        "{info}"
    );
    for field in [
        " name=worker ",
        " cmd=client|info ",
        " resp=2 ",
        " lib-name=redis-py lib-ver=8.0.0\n",
    ] {
        assert!(
            info.ends_with('\n') && info.contains(field),
            "{field} in {info:?}"
        );
    }
    assert_eq!(c.call_text(&["HELLO", "3"]), hello(3, id));
    let verbatim = c.call_text(&["CLIENT", "INFO"]);
    let (head, text) = verbatim.split_once("\r\n").unwrap();
    assert_eq!(head, format!("={}", text.len() - 2));
    assert!(
        text.starts_with("txt:id=") && text.contains(" resp=3 "),
        "{text}"
    );

    // CLIENT LIST: every connection, and by id.
    let mut other = Raw::connect(port);
    let other_id = client_id(&mut other);
    let list = other.parsed(&["CLIENT", "LIST"]).text();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains(" name=worker "), "{list}");
    let mine = other
        .parsed(&["CLIENT", "LIST", "ID", &other_id.to_string(), "999999"])
        .text();
    assert_eq!(mine.lines().count(), 1, "{mine}");
    assert!(mine.starts_with(&format!("id={other_id} ")), "{mine}");
    assert!(mine.contains(" cmd=client|list "), "{mine}");
    drop(c);
    // The registry forgets a closed connection (polled: the server notices the close).
    proc::poll(
        "the closed connection to leave CLIENT LIST",
        proc::WAIT,
        || (other.parsed(&["CLIENT", "LIST"]).text().lines().count() == 1).then_some(()),
    );
}

/// `COMMAND INFO get` and `COMMAND DOCS get`, as redis-server 7.0.15 sends them.
const INFO_GET_RESP2: &[u8] = b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n";
const INFO_MSET_RESP3: &[u8] = b"*1\r\n*10\r\n$4\r\nmset\r\n:-3\r\n~2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n~3\r\n+@write\r\n+@string\r\n+@slow\r\n~2\r\n$26\r\nrequest_policy:multi_shard\r\n$29\r\nresponse_policy:all_succeeded\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+OW\r\n+update\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:2\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";
const DOCS_GET_RESP2: &[u8] = b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n";
const DOCS_MGET_RESP3: &[u8] = b"%1\r\n$4\r\nmget\r\n%5\r\n$7\r\nsummary\r\n$36\r\nGet the values of all the given keys\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$47\r\nO(N) where N is the number of keys to retrieve.\r\n$9\r\narguments\r\n*1\r\n%4\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n$5\r\nflags\r\n~1\r\n+multiple\r\n";

#[test]
fn command_reports_the_table_that_checks_every_request() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    assert_eq!(c.call(&["COMMAND", "INFO", "get"]), INFO_GET_RESP2);
    assert_eq!(c.call(&["COMMAND", "DOCS", "get"]), DOCS_GET_RESP2);
    assert_eq!(c.call_text(&["COMMAND", "INFO", "nosuch"]), "*1\r\n$-1\r\n");
    assert_eq!(c.call_text(&["COMMAND", "DOCS", "nosuch"]), "*0\r\n");
    assert_eq!(
        c.call_text(&["COMMAND", "FOO"]),
        "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n"
    );
    assert_eq!(
        c.call_text(&["COMMAND", "COUNT", "x"]),
        "-ERR wrong number of arguments for 'command|count' command\r\n"
    );
    c.call(&["HELLO", "3"]);
    assert_eq!(c.call(&["COMMAND", "INFO", "mset"]), INFO_MSET_RESP3);
    assert_eq!(c.call(&["COMMAND", "DOCS", "mget"]), DOCS_MGET_RESP3);
    assert_eq!(c.call_text(&["COMMAND", "INFO", "nosuch"]), "*1\r\n_\r\n");
    c.call(&["HELLO", "2"]);

    // Every command COMMAND lists, and every subcommand, is checked against the arity it
    // reports: one word too few or too many gets Redis's arity error. (Requests of the
    // wrong arity have no effect, so the whole table can be tried.)
    let all = c.parsed(&["COMMAND"]);
    let count = match c.parsed(&["COMMAND", "COUNT"]) {
        Reply::Integer(n) => n as usize,
        other => panic!("{other:?}"),
    };
    assert_eq!(all.items().len(), count);
    let mut checked = 0;
    for entry in all.items() {
        let entries = std::iter::once(entry).chain(entry.items()[9].items());
        for entry in entries {
            let fields = entry.items();
            let name = fields[0].text();
            let Reply::Integer(arity) = fields[1] else {
                panic!("{fields:?}")
            };
            if !fields[9].items().is_empty() {
                continue; // a container: its subcommands are checked
            }
            let words: Vec<String> = name.split('|').map(str::to_uppercase).collect();
            let base = words.len() as i64;
            let wrong: Vec<i64> = if arity > 0 {
                vec![arity - 1, arity + 1]
            } else {
                vec![-arity - 1]
            };
            for n in wrong.into_iter().filter(|&n| n >= base) {
                let mut request: Vec<String> = words.clone();
                request.extend((base..n).map(|i| format!("arg{i}")));
                let request: Vec<&str> = request.iter().map(String::as_str).collect();
                assert_eq!(
                    c.call_text(&request),
                    format!("-ERR wrong number of arguments for '{name}' command\r\n"),
                    "{request:?} (arity {arity})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");

    // Unknown commands, as Redis words them (arguments cut at 128 bytes in all).
    for (words, reply) in [
        (
            &["FOO"][..],
            "-ERR unknown command 'FOO', with args beginning with: \r\n",
        ),
        (
            &["Foo", "a", "b c"],
            "-ERR unknown command 'Foo', with args beginning with: 'a' 'b c' \r\n",
        ),
        (
            &["FOO", "a\r\nb"],
            "-ERR unknown command 'FOO', with args beginning with: 'a  b' \r\n",
        ),
    ] {
        assert_eq!(c.call_text(words), reply, "{words:?}");
    }
    let long = "x".repeat(200);
    let reply = c.call_text(&["FLUSHALL", &long, "y"]);
    assert_eq!(
        reply,
        format!(
            "-ERR unknown command 'FLUSHALL', with args beginning with: '{}' \r\n",
            "x".repeat(128)
        )
    );
    let many: Vec<&str> = std::iter::once("NOPE")
        .chain(std::iter::repeat_n("abcdefghij", 40))
        .collect();
    let reply = c.call_text(&many);
    assert_eq!(reply.matches("'abcdefghij'").count(), 10, "{reply}");
}

/// The `# Section` headers of an INFO text.
fn headers(text: &str) -> Vec<&str> {
    text.split("\r\n").filter(|l| l.starts_with('#')).collect()
}

#[test]
fn info_has_redis_sections_and_the_paxos_view() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    let all = c.parsed(&["INFO"]).text();
    assert_eq!(
        headers(&all),
        [
            "# Server",
            "# Clients",
            "# Persistence",
            "# Replication",
            "# Cluster",
            "# Keyspace"
        ]
    );
    assert!(
        all.split_inclusive('\n').all(|l| l.ends_with("\r\n")),
        "CRLF line ends: {all:?}"
    );
    assert!(
        all.contains("\r\n\r\n# Clients\r\n"),
        "sections apart: {all}"
    );
    for line in [
        "redis_version:7.2.0\r\n",
        "redis_mode:standalone\r\n",
        "loading:0\r\n",
        "role:master\r\n",
        "paxos_leader_id:1\r\n",
        "paxos_role:leader\r\n",
        "cluster_enabled:0\r\n",
        "connected_clients:",
    ] {
        assert!(all.contains(line), "{line:?} in {all}");
    }
    // Sections in Redis's order whatever the order asked; unknown ones are left out.
    let two = c.parsed(&["INFO", "keyspace", "SERVER", "nosuch"]).text();
    assert_eq!(headers(&two), ["# Server", "# Keyspace"]);
    assert_eq!(c.call_text(&["INFO", "nosuch"]), "$0\r\n\r\n");
    // The keyspace: one key (the `__ready` of wait_writable), then none (no line).
    assert_eq!(
        c.call_text(&["INFO", "keyspace"]),
        "$44\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n\r\n"
    );
    assert_eq!(c.call_text(&["DEL", "__ready"]), ":1\r\n");
    assert_eq!(
        c.call_text(&["INFO", "keyspace"]),
        "$12\r\n# Keyspace\r\n\r\n"
    );
    // RESP3: a verbatim string, as Redis 7 sends it.
    c.call(&["HELLO", "3"]);
    assert_eq!(
        c.call_text(&["INFO", "Keyspace"]),
        "=16\r\ntxt:# Keyspace\r\n\r\n"
    );
}

#[test]
fn inline_commands_follow_redis_quoting() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    c.send(b"SET \"a key\" \"two\\nlines\\x00\\x41\"\r\n");
    assert_eq!(c.reply(), b"+OK\r\n");
    c.send(b"GET 'a key'\r\n");
    assert_eq!(c.reply(), b"$11\r\ntwo\nlines\0A\r\n");
    c.send(b"ECHO 'it\\'s'\n");
    assert_eq!(c.reply(), b"$4\r\nit's\r\n");
    c.send(b"  \r\nPING\r\n");
    assert_eq!(c.reply(), b"+PONG\r\n", "a blank line is skipped");
    c.send(b"FOO \"x\"\t'y'\r\n");
    assert_eq!(
        c.reply(),
        b"-ERR unknown command 'FOO', with args beginning with: 'x' 'y' \r\n"
    );
    // Unbalanced: an error, and the connection is closed.
    for bad in [
        &b"SET k \"open\r\n"[..],
        b"SET 'a'b c\r\n",
        b"ECHO \"a\"b\r\n",
    ] {
        let mut c = Raw::connect(port);
        c.send(bad);
        assert_eq!(
            c.reply(),
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
            "{bad:?}"
        );
        assert!(c.closed(), "{bad:?}");
    }
}

#[test]
fn expiry_is_refused_and_nothing_is_written() {
    let (_node, port, _dir) = node();
    let mut c = Raw::connect(port);
    for words in [
        &["SET", "k", "v", "EX", "10"][..],
        &["SET", "k", "v", "px", "10", "NX"],
        &["SET", "k", "v", "KEEPTTL"],
        &["SETEX", "k", "10", "v"],
        &["PSETEX", "k", "10", "v"],
        &["EXPIRE", "k", "10"],
        &["PEXPIRE", "k", "10"],
        &["TTL", "k"],
        &["PTTL", "k"],
    ] {
        let reply = c.call_text(words);
        assert!(
            reply.starts_with("-ERR expiry is not supported: keys never expire"),
            "{words:?}: {reply}"
        );
    }
    // Syntax errors still come first, as in Redis.
    assert_eq!(
        c.call_text(&["SET", "k", "v", "EX", "10", "PX", "5"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(c.call_text(&["EXISTS", "k"]), ":0\r\n");
}
