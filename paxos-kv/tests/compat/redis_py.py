#!/usr/bin/env python3
"""Redis compatibility checks through redis-py, with the client's default settings.

    PYTHONPATH=DEPS/py python3 redis_py.py --follower HOST:PORT --leader HOST:PORT

Connects with `redis.Redis(host, port)` to each address (redis-py 8 then speaks RESP3:
it sends HELLO 3 on connect), runs the same script of commands through the follower and
through the leader, then checks that writes through either are read through the other.
Every reply is checked exactly as real Redis 7.0 gives it through redis-py. Keys carry a
prefix unique to the run and are deleted at the end, so runs can repeat on one server.

Prints one line per failed check (the command, what was expected, what came back), and a
closing line `redis-py: N passed, N failed`. Exits 0 only when every check passed.
See README.md for the list of checks.
"""
import argparse
import os
import sys
import time
import uuid

try:
    import redis
    from redis.exceptions import ResponseError
except ImportError as e:  # pragma: no cover
    sys.exit(f"redis_py.py: cannot import redis-py ({e}); run install.sh DIR and set PYTHONPATH=DIR/py")

CLIENT = "redis-py"
MAX_FAILURES = 40
LOOPBACK = ("127.", "localhost", "::1", "[::1]")


def address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    if not host.startswith(LOOPBACK) and not os.environ.get("COMPAT_ALLOW_NONLOOPBACK"):
        raise argparse.ArgumentTypeError(f"{host}: only loopback addresses (set COMPAT_ALLOW_NONLOOPBACK=1 to override)")
    return host.strip("[]"), int(port)


# --- matchers --------------------------------------------------------------------------------

class Err:
    """An error reply: redis-py raises ResponseError (and strips a leading `ERR `)."""

    def __init__(self, message, prefix=False):
        self.message, self.prefix = message, prefix

    def matches(self, got):
        if not isinstance(got, Raised) or got.cls is not ResponseError:
            return False
        return got.message.startswith(self.message) if self.prefix else got.message == self.message

    def __repr__(self):
        return f"ResponseError({self.message!r}{'...' if self.prefix else ''})"


class Pred:
    def __init__(self, description, fn):
        self.description, self.fn = description, fn

    def matches(self, got):
        if isinstance(got, Raised):
            return False
        try:
            return bool(self.fn(got))
        except Exception:
            return False

    def __repr__(self):
        return self.description


class OneOf:
    def __init__(self, *options):
        self.options = options

    def matches(self, got):
        return any(matches(o, got) for o in self.options)

    def __repr__(self):
        return " or ".join(map(repr, self.options))


class Raised:
    def __init__(self, exc):
        self.cls, self.message = type(exc), str(exc)

    def __repr__(self):
        return f"{self.cls.__name__}({self.message!r})"


def matches(expected, got):
    if hasattr(expected, "matches"):
        return expected.matches(got)
    if isinstance(got, Raised):
        return False
    return type(got) is type(expected) and got == expected


def short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


class Suite:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, where, command, expected, call):
        """Runs call() and compares what it returns (or raises) with expected."""
        try:
            got = call()
        except (ResponseError, redis.RedisError, OSError) as e:
            got = Raised(e)
        if matches(expected, got):
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {CLIENT} via {where}: {command}\n    expected: {short(expected)}\n    actual:   {short(got)}",
                  flush=True)
            if self.failed >= MAX_FAILURES:
                self.finish(f"stopped after {MAX_FAILURES} failures")
        return got

    def finish(self, note=""):
        if note:
            print(f"{CLIENT}: {note}")
        print(f"{CLIENT}: {self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(0 if self.failed == 0 else 1)


def raw(r, *args):
    """One command on a pooled connection with no response callback: the reply as parsed
    by redis-py's RESP parser (a map is a dict, a verbatim string is bytes)."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        r.connection_pool.release(conn)


def pairs(flat):
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


HELLO_KEYS = {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}


def hello_ok(reply, proto, client_id=None):
    """HELLO's reply: a map in RESP3, a flat array of pairs in RESP2, with Redis 7.0's fields."""
    if proto == 3 and not isinstance(reply, dict):
        return False
    if proto == 2:
        if not isinstance(reply, list) or len(reply) % 2:
            return False
        reply = pairs(reply)
    return (set(reply) == HELLO_KEYS
            and reply[b"proto"] == proto
            and type(reply[b"id"]) is int and reply[b"id"] > 0
            and (client_id is None or reply[b"id"] == client_id)
            and isinstance(reply[b"server"], bytes) and reply[b"server"]
            and isinstance(reply[b"version"], bytes) and reply[b"version"]
            and reply[b"mode"] in (b"standalone", b"cluster", b"sentinel")
            and reply[b"role"] in (b"master", b"replica", b"slave")
            and isinstance(reply[b"modules"], list))


def info_lines(text):
    return text.decode("utf-8", "replace").split("\r\n") if isinstance(text, bytes) else None


def info_ok(text, must, must_not=()):
    """INFO text: CRLF lines, each a `# Section` header, blank, or `field:value`; the given
    section headers present (and the others absent); a role: line of master or slave."""
    lines = info_lines(text)
    if lines is None or "\n" in text.decode("latin-1").replace("\r\n", ""):
        return False
    headers = {line[2:].strip().lower() for line in lines if line.startswith("# ")}
    if not all(s in headers for s in must) or any(s in headers for s in must_not):
        return False
    if any(line and not line.startswith("# ") and ":" not in line for line in lines):
        return False
    if "replication" in must:
        roles = [line[5:] for line in lines if line.startswith("role:")]
        if len(roles) != 1 or roles[0] not in ("master", "slave"):
            return False
    if any(line.startswith("loading:") and line != "loading:0" for line in lines):
        return False
    return True


# --- the script -------------------------------------------------------------------------------

def session(s, where, r, host, port):
    """Connection-level commands, on this node."""
    c = s.check
    conn = r.connection_pool.get_connection()
    try:
        c(where, "connect: HELLO 3 sent by redis.Redis(host, port) on connect (handshake_metadata)",
          Pred("a RESP3 map with proto 3", lambda m: hello_ok(m, 3)), lambda: conn.handshake_metadata)
    finally:
        r.connection_pool.release(conn)
    c(where, "PING", True, r.ping)
    c(where, "PING hello (raw)", b"hello", lambda: raw(r, "PING", "hello"))
    c(where, "ECHO 'hello world'", b"hello world", lambda: r.echo("hello world"))
    c(where, "ECHO '' (empty)", b"", lambda: r.echo(""))
    cid = c(where, "CLIENT ID", Pred("an integer > 0", lambda v: type(v) is int and v > 0), r.client_id)
    cid = cid if type(cid) is int else None
    c(where, "HELLO 3", Pred("a map {server, version, proto: 3, id: CLIENT ID, mode, role, modules}",
                             lambda m: hello_ok(m, 3, cid)), lambda: r.execute_command("HELLO", 3))
    c(where, "HELLO (no protover: the current one)", Pred("a map with proto 3", lambda m: hello_ok(m, 3, cid)),
      lambda: r.execute_command("HELLO"))
    c(where, "HELLO 2", Pred("a flat array of 7 pairs with proto 2 and id = CLIENT ID",
                             lambda m: hello_ok(m, 2, cid)), lambda: r.execute_command("HELLO", 2))
    # (redis-py's RESP3 parser cannot read RESP2's null bulk `$-1`: it would wait for -1 bytes,
    # so nothing that may answer a null is sent before going back to RESP3)
    c(where, "PING (in RESP2)", True, r.ping)
    c(where, "HELLO 3 (back to RESP3)", Pred("a map with proto 3", lambda m: hello_ok(m, 3, cid)),
      lambda: r.execute_command("HELLO", 3))
    c(where, "HELLO 4", Err("NOPROTO unsupported protocol version"), lambda: r.execute_command("HELLO", 4))
    c(where, "CLIENT ID (unchanged on the connection)", cid, r.client_id)
    c(where, "CLIENT GETNAME (none set)", None, r.client_getname)
    c(where, "CLIENT SETNAME compat-py", True, lambda: r.client_setname("compat-py"))
    c(where, "CLIENT GETNAME", "compat-py", r.client_getname)
    c(where, "CLIENT SETNAME 'a b'", Err("Client names cannot contain spaces, newlines or special characters."),
      lambda: r.client_setname("a b"))
    # Redis 7.2 added CLIENT SETINFO (+OK); Redis 7.0 refuses it, naming the subcommand as sent.
    c(where, "CLIENT SETINFO LIB-NAME compat", OneOf(True, Err("unknown subcommand 'SETINFO'. Try CLIENT HELP.")),
      lambda: r.client_setinfo("LIB-NAME", "compat"))
    c(where, "CLIENT SETINFO LIB-VER 1.0", OneOf(True, Err("unknown subcommand 'SETINFO'. Try CLIENT HELP.")),
      lambda: r.client_setinfo("LIB-VER", "1.0"))
    c(where, "SELECT 0", True, lambda: r.execute_command("SELECT", 0))
    # Redis has 16 databases (SELECT 1 is OK); a one-database server refuses it with an ERR error.
    c(where, "SELECT 1", OneOf(True, Err("", prefix=True)), lambda: r.execute_command("SELECT", 1))
    c(where, "SELECT 0 (back)", True, lambda: r.execute_command("SELECT", 0))
    c(where, "SELECT 16", Err("DB index is out of range"), lambda: r.execute_command("SELECT", 16))
    c(where, "SELECT abc", Err("value is not an integer or out of range"), lambda: r.execute_command("SELECT", "abc"))
    c(where, "COMMAND COUNT", Pred("an integer > 0", lambda v: type(v) is int and v > 0), r.command_count)
    c(where, "COMMAND DOCS GET (raw)", Pred("a map, {get: map} or empty",
                                            lambda m: isinstance(m, dict) and set(m) <= {b"get"}
                                            and all(isinstance(v, dict) for v in m.values())),
      lambda: raw(r, "COMMAND", "DOCS", "GET"))
    c(where, "COMMAND DOCS (raw)", Pred("a map", lambda m: isinstance(m, dict)), lambda: raw(r, "COMMAND", "DOCS"))
    c(where, "INFO (raw)", Pred("text with # Server, # Clients, # Replication, # Keyspace and role:master|slave",
                                lambda t: info_ok(t, ("server", "clients", "replication", "keyspace"))),
      lambda: raw(r, "INFO"))
    c(where, "INFO replication (raw)", Pred("only # Replication, with role:master|slave",
                                            lambda t: info_ok(t, ("replication",), ("server", "clients", "keyspace"))),
      lambda: raw(r, "INFO", "replication"))
    c(where, "INFO server (raw)", Pred("only # Server", lambda t: info_ok(t, ("server",), ("replication", "keyspace"))),
      lambda: raw(r, "INFO", "server"))
    c(where, "INFO (r.info(): parsed)", Pred("a dict with role master|slave",
                                             lambda d: isinstance(d, dict) and d.get("role") in ("master", "slave")),
      r.info)
    c(where, "GET (no key)", Err("wrong number of arguments for 'get' command"), lambda: r.execute_command("GET"))
    c(where, "GET a b", Err("wrong number of arguments for 'get' command"), lambda: r.execute_command("GET", "a", "b"))
    c(where, "FOOBAR x", Err("unknown command", prefix=True), lambda: r.execute_command("FOOBAR", "x"))
    c(where, "PING after errors", True, r.ping)


class Closed:
    def matches(self, got):
        return isinstance(got, Raised) and issubclass(got.cls, (redis.ConnectionError, OSError))

    def __repr__(self):
        return "ConnectionError (closed by the server)"


def lifecycle(s, where, host, port):
    """RESET and QUIT, each on a connection of its own that is closed afterwards."""
    c = s.check
    r = redis.Redis(host, port)
    try:
        conn = r.connection_pool.get_connection()
        def cmd(*args):
            conn.send_command(*args)
            return conn.read_response()
        c(where, "CLIENT SETNAME before-reset", b"OK", lambda: cmd("CLIENT", "SETNAME", "before-reset"))
        c(where, "RESET", b"RESET", lambda: cmd("RESET"))
        c(where, "HELLO after RESET (back to RESP2)", Pred("a flat array with proto 2", lambda m: hello_ok(m, 2)),
          lambda: cmd("HELLO"))
        # back to RESP3 before a command that may answer a null (see HELLO 2 in session())
        c(where, "HELLO 3 after RESET", Pred("a map with proto 3", lambda m: hello_ok(m, 3)), lambda: cmd("HELLO", "3"))
        c(where, "CLIENT GETNAME after RESET (the name is cleared)", None, lambda: cmd("CLIENT", "GETNAME"))
        conn.disconnect()
        r.connection_pool.release(conn)
        conn = r.connection_pool.get_connection()
        c(where, "QUIT", b"OK", lambda: cmd("QUIT"))
        c(where, "PING after QUIT (the server has closed the connection)", Closed(), lambda: cmd("PING"))
        conn.disconnect()
        r.connection_pool.release(conn)
        c(where, "PING on a new connection after QUIT", True, r.ping)
    finally:
        r.close()


def data(s, where, r, p, keys):
    """String commands on this node, with keys under prefix p; every key created is added to keys."""
    c = s.check
    k, miss = p + "str", p + "missing"
    keys.add(k)
    c(where, f"SET {k} v1", True, lambda: r.set(k, "v1"))
    c(where, f"GET {k}", b"v1", lambda: r.get(k))
    c(where, f"GET {miss}", None, lambda: r.get(miss))
    c(where, f"SET {k} v2 NX (exists)", None, lambda: r.set(k, "v2", nx=True))
    c(where, f"GET {k} (unchanged)", b"v1", lambda: r.get(k))
    keys.add(p + "nx")
    c(where, f"SET {p}nx n1 NX (new)", True, lambda: r.set(p + "nx", "n1", nx=True))
    c(where, f"GET {p}nx", b"n1", lambda: r.get(p + "nx"))
    c(where, f"SET {k} v3 XX (exists)", True, lambda: r.set(k, "v3", xx=True))
    c(where, f"GET {k}", b"v3", lambda: r.get(k))
    c(where, f"SET {p}xx x XX (missing)", None, lambda: r.set(p + "xx", "x", xx=True))
    c(where, f"EXISTS {p}xx (not created)", 0, lambda: r.exists(p + "xx"))
    c(where, f"SET {k} v4 GET", b"v3", lambda: r.set(k, "v4", get=True))
    keys.add(p + "getnew")
    c(where, f"SET {p}getnew g GET (missing)", None, lambda: r.set(p + "getnew", "g", get=True))
    c(where, f"GET {p}getnew", b"g", lambda: r.get(p + "getnew"))
    c(where, f"SET {k} v5 NX GET (exists: old value, not set)", b"v4", lambda: r.set(k, "v5", nx=True, get=True))
    c(where, f"GET {k} (unchanged)", b"v4", lambda: r.get(k))
    c(where, f"SET {k} v5 XX GET", b"v4", lambda: r.set(k, "v5", xx=True, get=True))
    c(where, f"GET {k}", b"v5", lambda: r.get(k))
    c(where, f"SET {k} x NX XX", Err("syntax error"), lambda: r.execute_command("SET", k, "x", "NX", "XX"))
    c(where, f"SET {k} x BADOPTION", Err("syntax error"), lambda: r.execute_command("SET", k, "x", "BADOPTION"))
    c(where, f"SET {k} (no value)", Err("wrong number of arguments for 'set' command"),
      lambda: r.execute_command("SET", k))
    c(where, f"GET {k} (unchanged by refused SETs)", b"v5", lambda: r.get(k))

    c(where, f"SETNX {k} x (exists)", False, lambda: r.setnx(k, "x"))
    keys.add(p + "setnx")
    c(where, f"SETNX {p}setnx a (new)", True, lambda: r.setnx(p + "setnx", "a"))
    c(where, f"GET {p}setnx", b"a", lambda: r.get(p + "setnx"))
    c(where, f"GETSET {k} gs", b"v5", lambda: r.getset(k, "gs"))
    c(where, f"GET {k}", b"gs", lambda: r.get(k))
    keys.add(p + "getset")
    c(where, f"GETSET {p}getset n (missing)", None, lambda: r.getset(p + "getset", "n"))
    c(where, f"GET {p}getset", b"n", lambda: r.get(p + "getset"))

    a = p + "append"
    keys.add(a)
    c(where, f"APPEND {a} abc (missing)", 3, lambda: r.append(a, "abc"))
    c(where, f"APPEND {a} def", 6, lambda: r.append(a, "def"))
    c(where, f"GET {a}", b"abcdef", lambda: r.get(a))
    c(where, f"STRLEN {a}", 6, lambda: r.strlen(a))
    c(where, f"STRLEN {miss}", 0, lambda: r.strlen(miss))

    n = p + "counter"
    keys.add(n)
    c(where, f"INCR {n} (missing)", 1, lambda: r.incr(n))
    c(where, f"INCRBY {n} 10", 11, lambda: r.incrby(n, 10))
    c(where, f"DECR {n}", 10, lambda: r.decr(n))
    c(where, f"DECRBY {n} 3", 7, lambda: r.decrby(n, 3))
    c(where, f"INCRBY {n} -8", -1, lambda: r.incrby(n, -8))
    c(where, f"GET {n}", b"-1", lambda: r.get(n))
    c(where, f"STRLEN {n}", 2, lambda: r.strlen(n))
    c(where, f"INCR {k} (value 'gs')", Err("value is not an integer or out of range"), lambda: r.incr(k))
    c(where, f"INCRBY {n} abc", Err("value is not an integer or out of range"),
      lambda: r.execute_command("INCRBY", n, "abc"))
    f = p + "float"
    keys.add(f)
    c(where, f"SET {f} 1.5", True, lambda: r.set(f, "1.5"))
    c(where, f"INCR {f}", Err("value is not an integer or out of range"), lambda: r.incr(f))
    big = p + "big"
    keys.add(big)
    c(where, f"SET {big} 9223372036854775807", True, lambda: r.set(big, "9223372036854775807"))
    c(where, f"INCR {big}", Err("increment or decrement would overflow"), lambda: r.incr(big))
    c(where, f"DECRBY {big} -1", Err("increment or decrement would overflow"), lambda: r.decrby(big, -1))
    c(where, f"GET {big} (unchanged)", b"9223372036854775807", lambda: r.get(big))
    c(where, f"INCR {n} (-1 to 0)", 0, lambda: r.incr(n))

    c(where, f"EXISTS {k} {k} {miss} {n}", 3, lambda: r.exists(k, k, miss, n))
    m1, m2, m3 = p + "m1", p + "m2", p + "m3"
    keys.update((m1, m2, m3))
    c(where, f"MSET {m1} 1 {m2} 2 {m3} 3", True, lambda: r.mset({m1: "1", m2: "2", m3: "3"}))
    c(where, f"MGET {m1} {miss} {m2} {m3}", [b"1", None, b"2", b"3"], lambda: r.mget(m1, miss, m2, m3))
    c(where, f"MSET {m1} x {m2} y (overwrite)", True, lambda: r.mset({m1: "x", m2: "y"}))
    c(where, f"MGET {m1} {m2} {m3}", [b"x", b"y", b"3"], lambda: r.mget(m1, m2, m3))
    c(where, f"MSET {m1} 1 {m2} (odd)", Err("wrong number of arguments for 'mset' command"),
      lambda: r.execute_command("MSET", m1, "1", m2))
    c(where, f"DEL {m1} {m2} {miss} {m1}", 2, lambda: r.delete(m1, m2, miss, m1))
    keys.discard(m1), keys.discard(m2)
    c(where, f"EXISTS {m1} {m2} {m3}", 1, lambda: r.exists(m1, m2, m3))
    c(where, f"MGET {m1} {m3}", [None, b"3"], lambda: r.mget(m1, m3))

    e = p + "empty"
    keys.add(e)
    c(where, f"SET {e} '' (empty value)", True, lambda: r.set(e, ""))
    c(where, f"GET {e}", b"", lambda: r.get(e))
    c(where, f"STRLEN {e}", 0, lambda: r.strlen(e))
    c(where, f"EXISTS {e}", 1, lambda: r.exists(e))
    bk = (p + "bin:\r\n\x00").encode() + b"\xff"
    bv = b"\x00\r\n$-1\r\n\xff\xfe binary"
    keys.add(bk.decode("latin-1"))
    c(where, "SET <binary key> <binary value>", True, lambda: r.set(bk, bv))
    c(where, "GET <binary key>", bv, lambda: r.get(bk))
    large = p + "large"
    keys.add(large)
    lv = os.urandom(32 * 1024).hex().encode()  # 64 KiB
    c(where, f"SET {large} <64 KiB>", True, lambda: r.set(large, lv))
    c(where, f"GET {large}", lv, lambda: r.get(large))
    c(where, f"STRLEN {large}", len(lv), lambda: r.strlen(large))

    pipe_keys = [f"{p}pipe:{i:03}" for i in range(100)]
    keys.update(pipe_keys)

    def pipeline():
        pl = r.pipeline(transaction=False)
        for i, key in enumerate(pipe_keys):
            pl.set(key, f"value-{i}")
        for key in pipe_keys:
            pl.get(key)
        return pl.execute()
    c(where, "pipeline(transaction=False): 100 SET then 100 GET",
      [True] * 100 + [f"value-{i}".encode() for i in range(100)], pipeline)

    tx_key, tx_n = f"{p}tx", f"{p}tx:n"
    keys.update([tx_key, tx_n])

    def transaction():
        # redis-py's default pipeline is a transaction: MULTI ... EXEC.
        pl = r.pipeline()
        pl.set(tx_key, "a")
        pl.get(tx_key)
        pl.append(tx_key, "b")
        pl.get(tx_key)
        pl.incr(tx_n)
        pl.incr(tx_n)
        pl.ping()
        return pl.execute()
    c(where, "pipeline() (MULTI/EXEC): SET GET APPEND GET INCR INCR PING",
      [True, b"a", 2, b"ab", 1, 2, True], transaction)

    def failing_inside():
        pl = r.pipeline()
        pl.incr(tx_key)
        pl.set(tx_n, "10")
        return pl.execute(raise_on_error=False)
    c(where, "pipeline() (MULTI/EXEC) with INCR of a non-integer: the rest still runs",
      Pred("[ResponseError('value is not an integer or out of range'), True]",
           lambda v: len(v) == 2 and isinstance(v[0], ResponseError)
           and str(v[0]) == "value is not an integer or out of range" and v[1] is True),
      failing_inside)
    c(where, f"GET {tx_n} after that transaction", b"10", lambda: r.get(tx_n))

    def reads_only():
        pl = r.pipeline()
        pl.get(tx_key)
        pl.strlen(tx_key)
        pl.exists(tx_key, tx_n)
        return pl.execute()
    c(where, "pipeline() (MULTI/EXEC) of reads only", [b"ab", 2, 2], reads_only)

    # paxos-node takes key + value <= 1,048,525 bytes (see README); Redis takes more.
    at_limit = 1048525 - len(tx_key.encode())

    def largest():
        pl = r.pipeline()
        pl.set(tx_key, b"v" * at_limit)
        return pl.execute()
    c(where, f"pipeline() (MULTI/EXEC) of one SET of the largest value ({at_limit} bytes)", [True], largest)
    c(where, f"STRLEN {tx_key} after it", at_limit, lambda: r.strlen(tx_key))

    c(where, "DBSIZE", Pred(f"an integer >= {len(keys)}", lambda v: type(v) is int and v >= len(keys)), r.dbsize)
    c(where, f"SCAN 0 MATCH {p}* COUNT 10 .. until cursor 0", scanned_set(k2 for k2 in keys if k2.startswith(p)),
      lambda: scan_all(r, p + "*", 10))
    c(where, "SCAN 0 COUNT 10 (raw reply shape)",
      Pred("[cursor as a bulk string of digits, array]", lambda v: isinstance(v, list) and len(v) == 2
           and isinstance(v[0], bytes) and v[0].isdigit() and isinstance(v[1], list)),
      lambda: raw(r, "SCAN", "0", "COUNT", "10"))


def scanned_set(keys):
    return {k.encode("latin-1") if isinstance(k, str) else k for k in keys}


def scan_all(r, match, count, limit=100000):
    cursor, found, rounds = 0, set(), 0
    while True:
        cursor, batch = r.scan(cursor, match=match, count=count)
        if type(cursor) is not int:
            raise AssertionError(f"SCAN cursor {cursor!r} is not an integer")
        found.update(batch)
        rounds += 1
        if cursor == 0:
            return found
        if rounds >= limit:
            raise AssertionError(f"SCAN did not return cursor 0 after {limit} calls")


def cross(s, fw, ld, p, keys):
    """Writes through one node read through the other, both ways."""
    c = s.check
    for (wn, w), (rn, rd) in (((f"follower", fw), ("leader", ld)), (("leader", ld), ("follower", fw))):
        where = f"{wn}, read via {rn}"
        q = f"{p}{wn[0]}2{rn[0]}:"
        k = q + "k"
        keys.add(k)
        c(where, f"SET {k} from-{wn} (on {wn})", True, lambda: w.set(k, f"from-{wn}"))
        c(where, f"GET {k} (on {rn})", f"from-{wn}".encode(), lambda: rd.get(k))
        n = q + "n"
        keys.add(n)
        c(where, f"INCR {n} (on {wn})", 1, lambda: w.incr(n))
        c(where, f"INCR {n} (on {rn})", 2, lambda: rd.incr(n))
        c(where, f"INCRBY {n} 5 (on {wn})", 7, lambda: w.incrby(n, 5))
        c(where, f"GET {n} (on {rn})", b"7", lambda: rd.get(n))
        a, b = q + "a", q + "b"
        keys.update((a, b))
        c(where, f"MSET {a} 1 {b} 2 (on {wn})", True, lambda: w.mset({a: "1", b: "2"}))
        c(where, f"MGET {a} {b} {q}none (on {rn})", [b"1", b"2", None], lambda: rd.mget(a, b, q + "none"))
        c(where, f"APPEND {a} 23 (on {rn})", 3, lambda: rd.append(a, "23"))
        c(where, f"GET {a} (on {wn})", b"123", lambda: w.get(a))
        c(where, f"DEL {a} {b} (on {rn})", 2, lambda: rd.delete(a, b))
        keys.discard(a), keys.discard(b)
        c(where, f"EXISTS {a} {b} (on {wn})", 0, lambda: w.exists(a, b))
        c(where, f"SETNX {k} x (on {rn}, exists)", False, lambda: rd.setnx(k, "x"))
        c(where, f"SET {k} again XX GET (on {rn})", f"from-{wn}".encode(), lambda: rd.set(k, "again", xx=True, get=True))
        c(where, f"GET {k} (on {wn})", b"again", lambda: w.get(k))
        pk = [f"{q}pipe:{i:03}" for i in range(100)]
        keys.update(pk)

        def write():
            pl = w.pipeline(transaction=False)
            for i, key in enumerate(pk):
                pl.set(key, f"{wn}-{i}")
            return pl.execute()

        def read():
            pl = rd.pipeline(transaction=False)
            for key in pk:
                pl.get(key)
            return pl.execute()
        c(where, f"pipeline of 100 SET (on {wn})", [True] * 100, write)
        c(where, f"pipeline of 100 GET (on {rn})", [f"{wn}-{i}".encode() for i in range(100)], read)
        c(where, f"SCAN MATCH {q}* (on {rn}) finds every key written on {wn}",
          scanned_set(k2 for k2 in keys if k2.startswith(q)), lambda: scan_all(rd, q + "*", 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--follower", required=True, type=address)
    ap.add_argument("--leader", required=True, type=address)
    a = ap.parse_args()
    run = f"compat:py:{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}:"
    print(f"{CLIENT} {redis.__version__}: follower {a.follower[0]}:{a.follower[1]}, "
          f"leader {a.leader[0]}:{a.leader[1]}, keys {run}*", flush=True)
    s = Suite()
    clients = {"follower": redis.Redis(*a.follower), "leader": redis.Redis(*a.leader)}
    keys = set()
    try:
        for where, r in clients.items():
            if isinstance(s.check(where, "connect (HELLO 3 ...) and PING", True, r.ping), Raised):
                s.finish(f"cannot go on without the {where}")
        for where, (host, port) in (("follower", a.follower), ("leader", a.leader)):
            r = clients[where]
            session(s, where, r, host, port)
            data(s, where, r, f"{run}{where}:", keys)
            lifecycle(s, where, host, port)
        cross(s, clients["follower"], clients["leader"], run + "x:", keys)
        # clean up, checking DEL's count and that nothing of this run is left
        encoded = sorted(scanned_set(keys))
        for where in ("leader", "follower"):
            if where == "leader":
                c_keys = encoded
                s.check(where, f"DEL <the {len(c_keys)} keys of this run>", len(c_keys),
                        lambda: sum(clients[where].delete(*c_keys[i:i + 100]) for i in range(0, len(c_keys), 100)))
            s.check(where, f"SCAN MATCH {run}* after the DEL", set(), lambda: scan_all(clients[where], run + "*", 100))
    finally:
        for r in clients.values():
            r.close()
    s.finish()


if __name__ == "__main__":
    main()
