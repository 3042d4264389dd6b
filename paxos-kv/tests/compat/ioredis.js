#!/usr/bin/env node
// Redis compatibility checks through ioredis, with the client's default settings.
//
//   NODE_PATH=DEPS/node/node_modules node ioredis.js --follower HOST:PORT --leader HOST:PORT
//
// Connects with `new Redis(port, host)` to each address (ioredis 6 then sends HELLO 3,
// CLIENT SETINFO LIB-VER / LIB-NAME and INFO for its ready check, and maps RESP3 replies
// to RESP2 shapes: its default replyMapping is "legacy"), runs the same script of commands
// as redis_py.py through the follower and through the leader, then checks that writes
// through either are read through the other. Every reply is checked exactly as real Redis
// 7.0 gives it through ioredis. Keys carry a prefix unique to the run and are deleted at the
// end. Each command is given 10 s and the whole script 55 s (ioredis itself has no command
// timeout by default).
//
// Prints one line per failed check and a closing line `ioredis: N passed, N failed`.
// Exits 0 only when every check passed. See README.md for the list of checks.
"use strict";

const crypto = require("crypto");
let Redis;
try {
  Redis = require("ioredis");
} catch (e) {
  console.error(`ioredis.js: cannot load ioredis (${e.message}); run install.sh DIR and set NODE_PATH=DIR/node/node_modules`);
  process.exit(2);
}
const VERSION = require("ioredis/package.json").version;
const CLIENT = "ioredis";
const MAX_FAILURES = 40;
const COMMAND_MS = 10000;
const SCRIPT_MS = 55000;

function address(text, flag) {
  const m = /^(.*):(\d+)$/.exec(text || "");
  if (!m) usage(`${flag} ${text}: not HOST:PORT`);
  const host = m[1].replace(/^\[|\]$/g, "");
  if (!/^(127\.|localhost$|::1$)/.test(host) && !process.env.COMPAT_ALLOW_NONLOOPBACK)
    usage(`${host}: only loopback addresses (set COMPAT_ALLOW_NONLOOPBACK=1 to override)`);
  return { host, port: Number(m[2]) };
}

function usage(msg) {
  console.error(`ioredis.js: ${msg}\nusage: node ioredis.js --follower HOST:PORT --leader HOST:PORT`);
  process.exit(2);
}

// --- matchers ---------------------------------------------------------------------------

class Raised {
  constructor(e) {
    this.reply = e instanceof Redis.ReplyError;
    this.name = e && e.constructor ? e.constructor.name : typeof e;
    this.message = e && e.message !== undefined ? e.message : String(e);
  }
  toString() {
    return `${this.reply ? "ReplyError" : this.name}(${JSON.stringify(this.message)})`;
  }
}

const err = (message) => ({
  matches: (g) => g instanceof Raised && g.reply && g.message === message,
  toString: () => `ReplyError(${JSON.stringify(message)})`,
});
const errPrefix = (prefix) => ({
  matches: (g) => g instanceof Raised && g.reply && g.message.startsWith(prefix),
  toString: () => `ReplyError(${JSON.stringify(prefix)}...)`,
});
const pred = (description, fn) => ({
  matches: (g) => {
    if (g instanceof Raised) return false;
    try { return !!fn(g); } catch (e) { return false; }
  },
  toString: () => description,
});
const oneOf = (...options) => ({
  matches: (g) => options.some((o) => same(o, g)),
  toString: () => options.map(show).join(" or "),
});

function same(expected, got) {
  if (expected && typeof expected.matches === "function") return expected.matches(got);
  if (got instanceof Raised) return false;
  if (Buffer.isBuffer(expected)) return Buffer.isBuffer(got) && expected.equals(got);
  if (expected instanceof Set) {
    return got instanceof Set && got.size === expected.size && [...expected].every((x) => got.has(x));
  }
  if (Array.isArray(expected)) {
    return Array.isArray(got) && got.length === expected.length && expected.every((x, i) => same(x, got[i]));
  }
  return expected === got;
}

function show(v) {
  let s;
  if (v instanceof Raised) s = v.toString();
  else if (v && typeof v.matches === "function") s = v.toString();
  else if (Buffer.isBuffer(v)) s = `<Buffer ${JSON.stringify(v.toString("latin1"))}>`;
  else if (v instanceof Set) s = `Set ${JSON.stringify([...v].sort())}`;
  else if (v instanceof Error) s = `${v.constructor.name}(${JSON.stringify(v.message)})`;
  else s = JSON.stringify(v, (k, x) => (x instanceof Error ? `${x.constructor.name}: ${x.message}` : x));
  if (s === undefined) s = String(v);
  return s.length <= 300 ? s : s.slice(0, 297) + "...";
}

class Suite {
  constructor() { this.passed = 0; this.failed = 0; }

  async check(where, command, expected, call) {
    let got, timer;
    try {
      got = await Promise.race([
        Promise.resolve().then(call),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no reply in ${COMMAND_MS} ms`)), COMMAND_MS);
        }),
      ]);
    } catch (e) {
      got = new Raised(e);
    } finally {
      clearTimeout(timer);
    }
    if (same(expected, got)) {
      this.passed++;
    } else {
      this.failed++;
      console.log(`FAIL ${CLIENT} via ${where}: ${command}\n    expected: ${show(expected)}\n    actual:   ${show(got)}`);
      if (this.failed >= MAX_FAILURES) this.finish(`stopped after ${MAX_FAILURES} failures`);
    }
    return got;
  }

  finish(note) {
    if (note) console.log(`${CLIENT}: ${note}`);
    console.log(`${CLIENT}: ${this.passed} passed, ${this.failed} failed`);
    process.exit(this.failed === 0 && !note ? 0 : 1);
  }
}

// --- reply shapes -----------------------------------------------------------------------

const HELLO_KEYS = ["id", "mode", "modules", "proto", "role", "server", "version"];

function pairs(flat) {
  if (!Array.isArray(flat) || flat.length % 2) return null;
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

// HELLO's reply with Redis 7.0's fields. ioredis's default "legacy" reply mapping turns the
// RESP3 map into the flat array of pairs that RESP2 sends, so both look the same here.
function helloOk(reply, proto, clientId) {
  const m = pairs(reply);
  return m !== null &&
    JSON.stringify(Object.keys(m).sort()) === JSON.stringify(HELLO_KEYS) &&
    m.proto === proto &&
    Number.isInteger(m.id) && m.id > 0 && (clientId === undefined || m.id === clientId) &&
    typeof m.server === "string" && m.server.length > 0 &&
    typeof m.version === "string" && m.version.length > 0 &&
    ["standalone", "cluster", "sentinel"].includes(m.mode) &&
    ["master", "replica", "slave"].includes(m.role) &&
    Array.isArray(m.modules);
}

// INFO text: CRLF lines, each a `# Section` header, blank, or field:value; the given sections
// present and the others absent; one role: line of master or slave; no loading:1 (ioredis's
// ready check waits while INFO says loading:1).
function infoOk(text, must, mustNot = []) {
  if (typeof text !== "string") return false;
  if (text.replace(/\r\n/g, "").includes("\n")) return false;
  const lines = text.split("\r\n");
  const headers = new Set(lines.filter((l) => l.startsWith("# ")).map((l) => l.slice(2).trim().toLowerCase()));
  if (!must.every((s) => headers.has(s)) || mustNot.some((s) => headers.has(s))) return false;
  if (lines.some((l) => l && !l.startsWith("# ") && !l.includes(":"))) return false;
  if (must.includes("replication")) {
    const roles = lines.filter((l) => l.startsWith("role:")).map((l) => l.slice(5));
    if (roles.length !== 1 || !["master", "slave"].includes(roles[0])) return false;
  }
  return !lines.some((l) => l.startsWith("loading:") && l !== "loading:0");
}

async function scanAll(r, match, count, limit = 100000) {
  let cursor = "0";
  const found = new Set();
  for (let rounds = 1; ; rounds++) {
    const [next, batch] = await r.scanBuffer(cursor, "MATCH", match, "COUNT", count);
    cursor = Buffer.isBuffer(next) ? next.toString() : next;
    if (!/^\d+$/.test(cursor)) throw new Error(`SCAN cursor ${show(next)} is not a decimal string`);
    for (const k of batch) found.add(k.toString("latin1"));
    if (cursor === "0") return found;
    if (rounds >= limit) throw new Error(`SCAN did not return cursor 0 after ${limit} calls`);
  }
}

const withPrefix = (keys, p) => new Set([...keys].filter((k) => k.startsWith(p)));

// --- the script -------------------------------------------------------------------------

async function session(s, where, r) {
  const c = s.check.bind(s);
  await c(where, "PING", "PONG", () => r.ping());
  await c(where, "PING hello", "hello", () => r.ping("hello"));
  await c(where, "ECHO 'hello world'", "hello world", () => r.echo("hello world"));
  await c(where, "ECHO '' (empty)", "", () => r.echo(""));
  let cid = await c(where, "CLIENT ID", pred("an integer > 0", (v) => Number.isInteger(v) && v > 0), () => r.client("ID"));
  if (!Number.isInteger(cid)) cid = undefined;
  await c(where, "HELLO (no protover): the connect negotiated RESP3",
    pred("HELLO's pairs with proto 3 and id = CLIENT ID", (m) => helloOk(m, 3, cid)), () => r.call("HELLO"));
  await c(where, "HELLO 3", pred("HELLO's pairs {server, version, proto: 3, id: CLIENT ID, mode, role, modules}",
    (m) => helloOk(m, 3, cid)), () => r.call("HELLO", "3"));
  await c(where, "HELLO 2", pred("a flat array of 7 pairs with proto 2 and id = CLIENT ID", (m) => helloOk(m, 2, cid)),
    () => r.call("HELLO", "2"));
  await c(where, "GET (missing key) in RESP2", null, () => r.get(`compat:node:${crypto.randomUUID()}`));
  await c(where, "HELLO 3 (back to RESP3)", pred("HELLO's pairs with proto 3", (m) => helloOk(m, 3, cid)),
    () => r.call("HELLO", "3"));
  await c(where, "HELLO 4", err("NOPROTO unsupported protocol version"), () => r.call("HELLO", "4"));
  await c(where, "CLIENT ID (unchanged on the connection)", cid, () => r.client("ID"));
  await c(where, "CLIENT GETNAME (none set)", null, () => r.client("GETNAME"));
  await c(where, "CLIENT SETNAME compat-node", "OK", () => r.client("SETNAME", "compat-node"));
  await c(where, "CLIENT GETNAME", "compat-node", () => r.client("GETNAME"));
  await c(where, "CLIENT SETNAME 'a b'", err("ERR Client names cannot contain spaces, newlines or special characters."),
    () => r.client("SETNAME", "a b"));
  // Redis 7.2 added CLIENT SETINFO (+OK); Redis 7.0 refuses it, naming the subcommand as sent.
  await c(where, "CLIENT SETINFO LIB-NAME compat", oneOf("OK", err("ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.")),
    () => r.client("SETINFO", "LIB-NAME", "compat"));
  await c(where, "CLIENT SETINFO LIB-VER 1.0", oneOf("OK", err("ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.")),
    () => r.client("SETINFO", "LIB-VER", "1.0"));
  await c(where, "SELECT 0", "OK", () => r.select(0));
  // Redis has 16 databases (SELECT 1 is OK); a one-database server refuses it with an ERR error.
  await c(where, "SELECT 1", oneOf("OK", errPrefix("ERR")), () => r.select(1));
  await c(where, "SELECT 0 (back)", "OK", () => r.select(0));
  await c(where, "SELECT 16", err("ERR DB index is out of range"), () => r.select(16));
  await c(where, "SELECT abc", err("ERR value is not an integer or out of range"), () => r.call("SELECT", "abc"));
  await c(where, "COMMAND COUNT", pred("an integer > 0", (v) => Number.isInteger(v) && v > 0), () => r.command("COUNT"));
  await c(where, "COMMAND DOCS GET", pred("pairs, [get, [...]] or empty", (v) => {
    const m = pairs(v);
    return m !== null && Object.keys(m).every((k) => k === "get") && Object.values(m).every(Array.isArray);
  }), () => r.command("DOCS", "GET"));
  await c(where, "COMMAND DOCS", pred("an array of pairs", (v) => pairs(v) !== null), () => r.command("DOCS"));
  await c(where, "INFO", pred("text with # Server, # Clients, # Replication, # Keyspace and role:master|slave",
    (t) => infoOk(t, ["server", "clients", "replication", "keyspace"])), () => r.info());
  await c(where, "INFO replication", pred("only # Replication, with role:master|slave",
    (t) => infoOk(t, ["replication"], ["server", "clients", "keyspace"])), () => r.info("replication"));
  await c(where, "INFO server", pred("only # Server", (t) => infoOk(t, ["server"], ["replication", "keyspace"])),
    () => r.info("server"));
  await c(where, "GET (no key)", err("ERR wrong number of arguments for 'get' command"), () => r.call("GET"));
  await c(where, "GET a b", err("ERR wrong number of arguments for 'get' command"), () => r.call("GET", "a", "b"));
  await c(where, "FOOBAR x", errPrefix("ERR unknown command"), () => r.call("FOOBAR", "x"));
  await c(where, "PING after errors", "PONG", () => r.ping());
}

async function lifecycle(s, where, addr) {
  const c = s.check.bind(s);
  const r = new Redis(addr.port, addr.host);
  r.on("error", () => {});
  try {
    await c(where, "CLIENT SETNAME before-reset", "OK", () => r.client("SETNAME", "before-reset"));
    await c(where, "RESET", "RESET", () => r.call("RESET"));
    await c(where, "HELLO after RESET (back to RESP2)", pred("a flat array with proto 2", (m) => helloOk(m, 2)),
      () => r.call("HELLO"));
    await c(where, "CLIENT GETNAME after RESET (the name is cleared)", null, () => r.client("GETNAME"));
    await c(where, "QUIT", "OK", () => r.quit());
    await c(where, "status after QUIT (the server closed the connection; no reconnect)", "end",
      () => new Promise((resolve) => {
        if (r.status === "end") return resolve(r.status);
        r.once("end", () => resolve(r.status));
      }));
  } finally {
    r.disconnect();
  }
  const again = new Redis(addr.port, addr.host);
  again.on("error", () => {});
  try {
    await c(where, "PING on a new connection after QUIT", "PONG", () => again.ping());
  } finally {
    again.disconnect();
  }
}

async function data(s, where, r, p, keys) {
  const c = s.check.bind(s);
  const k = p + "str", miss = p + "missing";
  keys.add(k);
  await c(where, `SET ${k} v1`, "OK", () => r.set(k, "v1"));
  await c(where, `GET ${k}`, "v1", () => r.get(k));
  await c(where, `GET ${miss}`, null, () => r.get(miss));
  await c(where, `SET ${k} v2 NX (exists)`, null, () => r.set(k, "v2", "NX"));
  await c(where, `GET ${k} (unchanged)`, "v1", () => r.get(k));
  keys.add(p + "nx");
  await c(where, `SET ${p}nx n1 NX (new)`, "OK", () => r.set(p + "nx", "n1", "NX"));
  await c(where, `GET ${p}nx`, "n1", () => r.get(p + "nx"));
  await c(where, `SET ${k} v3 XX (exists)`, "OK", () => r.set(k, "v3", "XX"));
  await c(where, `GET ${k}`, "v3", () => r.get(k));
  await c(where, `SET ${p}xx x XX (missing)`, null, () => r.set(p + "xx", "x", "XX"));
  await c(where, `EXISTS ${p}xx (not created)`, 0, () => r.exists(p + "xx"));
  await c(where, `SET ${k} v4 GET`, "v3", () => r.set(k, "v4", "GET"));
  keys.add(p + "getnew");
  await c(where, `SET ${p}getnew g GET (missing)`, null, () => r.set(p + "getnew", "g", "GET"));
  await c(where, `GET ${p}getnew`, "g", () => r.get(p + "getnew"));
  await c(where, `SET ${k} v5 NX GET (exists: old value, not set)`, "v4", () => r.set(k, "v5", "NX", "GET"));
  await c(where, `GET ${k} (unchanged)`, "v4", () => r.get(k));
  await c(where, `SET ${k} v5 XX GET`, "v4", () => r.set(k, "v5", "XX", "GET"));
  await c(where, `GET ${k}`, "v5", () => r.get(k));
  await c(where, `SET ${k} x NX XX`, err("ERR syntax error"), () => r.call("SET", k, "x", "NX", "XX"));
  await c(where, `SET ${k} x BADOPTION`, err("ERR syntax error"), () => r.call("SET", k, "x", "BADOPTION"));
  await c(where, `SET ${k} (no value)`, err("ERR wrong number of arguments for 'set' command"), () => r.call("SET", k));
  await c(where, `GET ${k} (unchanged by refused SETs)`, "v5", () => r.get(k));

  await c(where, `SETNX ${k} x (exists)`, 0, () => r.setnx(k, "x"));
  keys.add(p + "setnx");
  await c(where, `SETNX ${p}setnx a (new)`, 1, () => r.setnx(p + "setnx", "a"));
  await c(where, `GET ${p}setnx`, "a", () => r.get(p + "setnx"));
  await c(where, `GETSET ${k} gs`, "v5", () => r.getset(k, "gs"));
  await c(where, `GET ${k}`, "gs", () => r.get(k));
  keys.add(p + "getset");
  await c(where, `GETSET ${p}getset n (missing)`, null, () => r.getset(p + "getset", "n"));
  await c(where, `GET ${p}getset`, "n", () => r.get(p + "getset"));

  const a = p + "append";
  keys.add(a);
  await c(where, `APPEND ${a} abc (missing)`, 3, () => r.append(a, "abc"));
  await c(where, `APPEND ${a} def`, 6, () => r.append(a, "def"));
  await c(where, `GET ${a}`, "abcdef", () => r.get(a));
  await c(where, `STRLEN ${a}`, 6, () => r.strlen(a));
  await c(where, `STRLEN ${miss}`, 0, () => r.strlen(miss));

  const n = p + "counter";
  keys.add(n);
  await c(where, `INCR ${n} (missing)`, 1, () => r.incr(n));
  await c(where, `INCRBY ${n} 10`, 11, () => r.incrby(n, 10));
  await c(where, `DECR ${n}`, 10, () => r.decr(n));
  await c(where, `DECRBY ${n} 3`, 7, () => r.decrby(n, 3));
  await c(where, `INCRBY ${n} -8`, -1, () => r.incrby(n, -8));
  await c(where, `GET ${n}`, "-1", () => r.get(n));
  await c(where, `STRLEN ${n}`, 2, () => r.strlen(n));
  await c(where, `INCR ${k} (value 'gs')`, err("ERR value is not an integer or out of range"), () => r.incr(k));
  await c(where, `INCRBY ${n} abc`, err("ERR value is not an integer or out of range"), () => r.call("INCRBY", n, "abc"));
  const f = p + "float";
  keys.add(f);
  await c(where, `SET ${f} 1.5`, "OK", () => r.set(f, "1.5"));
  await c(where, `INCR ${f}`, err("ERR value is not an integer or out of range"), () => r.incr(f));
  const big = p + "big";
  keys.add(big);
  await c(where, `SET ${big} 9223372036854775807`, "OK", () => r.set(big, "9223372036854775807"));
  await c(where, `INCR ${big}`, err("ERR increment or decrement would overflow"), () => r.incr(big));
  await c(where, `DECRBY ${big} -1`, err("ERR increment or decrement would overflow"), () => r.decrby(big, -1));
  await c(where, `GET ${big} (unchanged)`, "9223372036854775807", () => r.get(big));
  await c(where, `INCR ${n} (-1 to 0)`, 0, () => r.incr(n));

  await c(where, `EXISTS ${k} ${k} ${miss} ${n}`, 3, () => r.exists(k, k, miss, n));
  const [m1, m2, m3] = [p + "m1", p + "m2", p + "m3"];
  [m1, m2, m3].forEach((x) => keys.add(x));
  await c(where, `MSET ${m1} 1 ${m2} 2 ${m3} 3`, "OK", () => r.mset(m1, "1", m2, "2", m3, "3"));
  await c(where, `MGET ${m1} ${miss} ${m2} ${m3}`, ["1", null, "2", "3"], () => r.mget(m1, miss, m2, m3));
  await c(where, `MSET ${m1} x ${m2} y (overwrite)`, "OK", () => r.mset({ [m1]: "x", [m2]: "y" }));
  await c(where, `MGET ${m1} ${m2} ${m3}`, ["x", "y", "3"], () => r.mget(m1, m2, m3));
  await c(where, `MSET ${m1} 1 ${m2} (odd)`, err("ERR wrong number of arguments for 'mset' command"),
    () => r.call("MSET", m1, "1", m2));
  await c(where, `DEL ${m1} ${m2} ${miss} ${m1}`, 2, () => r.del(m1, m2, miss, m1));
  keys.delete(m1); keys.delete(m2);
  await c(where, `EXISTS ${m1} ${m2} ${m3}`, 1, () => r.exists(m1, m2, m3));
  await c(where, `MGET ${m1} ${m3}`, [null, "3"], () => r.mget(m1, m3));

  const e = p + "empty";
  keys.add(e);
  await c(where, `SET ${e} '' (empty value)`, "OK", () => r.set(e, ""));
  await c(where, `GET ${e}`, "", () => r.get(e));
  await c(where, `STRLEN ${e}`, 0, () => r.strlen(e));
  await c(where, `EXISTS ${e}`, 1, () => r.exists(e));
  const bk = Buffer.concat([Buffer.from(p + "bin:\r\n\x00", "latin1"), Buffer.from([0xff])]);
  const bv = Buffer.concat([Buffer.from("\x00\r\n$-1\r\n", "latin1"), Buffer.from([0xff, 0xfe]), Buffer.from(" binary")]);
  keys.add(bk.toString("latin1"));
  await c(where, "SET <binary key> <binary value>", "OK", () => r.set(bk, bv));
  await c(where, "GET <binary key> (getBuffer)", bv, () => r.getBuffer(bk));
  const large = p + "large";
  keys.add(large);
  const lv = crypto.randomBytes(32 * 1024).toString("hex"); // 64 KiB
  await c(where, `SET ${large} <64 KiB>`, "OK", () => r.set(large, lv));
  await c(where, `GET ${large}`, lv, () => r.get(large));
  await c(where, `STRLEN ${large}`, lv.length, () => r.strlen(large));

  const pipeKeys = Array.from({ length: 100 }, (_, i) => `${p}pipe:${String(i).padStart(3, "0")}`);
  pipeKeys.forEach((x) => keys.add(x));
  await c(where, "pipeline(): 100 SET then 100 GET",
    [...pipeKeys.map(() => [null, "OK"]), ...pipeKeys.map((_, i) => [null, `value-${i}`])],
    () => {
      const pl = r.pipeline();
      pipeKeys.forEach((key, i) => pl.set(key, `value-${i}`));
      pipeKeys.forEach((key) => pl.get(key));
      return pl.exec();
    });

  const txKey = p + "tx";
  const txN = p + "tx:n";
  keys.add(txKey);
  keys.add(txN);
  await c(where, "multi(): SET GET APPEND GET INCR INCR PING",
    [[null, "OK"], [null, "a"], [null, 2], [null, "ab"], [null, 1], [null, 2], [null, "PONG"]],
    () => r.multi().set(txKey, "a").get(txKey).append(txKey, "b").get(txKey)
      .incr(txN).incr(txN).ping().exec());
  await c(where, "multi() with INCR of a non-integer: the rest still runs",
    pred("[[ReplyError 'ERR value is not an integer or out of range'], [null, 'OK']]",
      (v) => v.length === 2 && v[0][0] instanceof Error
        && v[0][0].message === "ERR value is not an integer or out of range"
        && v[1][0] === null && v[1][1] === "OK"),
    () => r.multi().incr(txKey).set(txN, "10").exec());
  await c(where, `GET ${txN} after that transaction`, "10", () => r.get(txN));

  await c(where, "DBSIZE", pred(`an integer >= ${keys.size}`, (v) => Number.isInteger(v) && v >= keys.size),
    () => r.dbsize());
  await c(where, `SCAN 0 MATCH ${p}* COUNT 10 .. until cursor 0`, withPrefix(keys, p), () => scanAll(r, p + "*", 10));
  await c(where, "SCAN 0 COUNT 10 (reply shape)", pred("[cursor as a string of digits, array]",
    (v) => Array.isArray(v) && v.length === 2 && /^\d+$/.test(v[0]) && Array.isArray(v[1])),
    () => r.scan("0", "COUNT", 10));
}

async function cross(s, fw, ld, p, keys) {
  const c = s.check.bind(s);
  for (const [[wn, w], [rn, rd]] of [[["follower", fw], ["leader", ld]], [["leader", ld], ["follower", fw]]]) {
    const where = `${wn}, read via ${rn}`;
    const q = `${p}${wn[0]}2${rn[0]}:`;
    const k = q + "k";
    keys.add(k);
    await c(where, `SET ${k} from-${wn} (on ${wn})`, "OK", () => w.set(k, `from-${wn}`));
    await c(where, `GET ${k} (on ${rn})`, `from-${wn}`, () => rd.get(k));
    const n = q + "n";
    keys.add(n);
    await c(where, `INCR ${n} (on ${wn})`, 1, () => w.incr(n));
    await c(where, `INCR ${n} (on ${rn})`, 2, () => rd.incr(n));
    await c(where, `INCRBY ${n} 5 (on ${wn})`, 7, () => w.incrby(n, 5));
    await c(where, `GET ${n} (on ${rn})`, "7", () => rd.get(n));
    const a = q + "a", b = q + "b";
    keys.add(a); keys.add(b);
    await c(where, `MSET ${a} 1 ${b} 2 (on ${wn})`, "OK", () => w.mset(a, "1", b, "2"));
    await c(where, `MGET ${a} ${b} ${q}none (on ${rn})`, ["1", "2", null], () => rd.mget(a, b, q + "none"));
    await c(where, `APPEND ${a} 23 (on ${rn})`, 3, () => rd.append(a, "23"));
    await c(where, `GET ${a} (on ${wn})`, "123", () => w.get(a));
    await c(where, `DEL ${a} ${b} (on ${rn})`, 2, () => rd.del(a, b));
    keys.delete(a); keys.delete(b);
    await c(where, `EXISTS ${a} ${b} (on ${wn})`, 0, () => w.exists(a, b));
    await c(where, `SETNX ${k} x (on ${rn}, exists)`, 0, () => rd.setnx(k, "x"));
    await c(where, `SET ${k} again XX GET (on ${rn})`, `from-${wn}`, () => rd.set(k, "again", "XX", "GET"));
    await c(where, `GET ${k} (on ${wn})`, "again", () => w.get(k));
    const pk = Array.from({ length: 100 }, (_, i) => `${q}pipe:${String(i).padStart(3, "0")}`);
    pk.forEach((x) => keys.add(x));
    await c(where, `pipeline of 100 SET (on ${wn})`, pk.map(() => [null, "OK"]), () => {
      const pl = w.pipeline();
      pk.forEach((key, i) => pl.set(key, `${wn}-${i}`));
      return pl.exec();
    });
    await c(where, `pipeline of 100 GET (on ${rn})`, pk.map((_, i) => [null, `${wn}-${i}`]), () => {
      const pl = rd.pipeline();
      pk.forEach((key) => pl.get(key));
      return pl.exec();
    });
    await c(where, `SCAN MATCH ${q}* (on ${rn}) finds every key written on ${wn}`, withPrefix(keys, q),
      () => scanAll(rd, q + "*", 10));
  }
}

async function main() {
  const args = process.argv.slice(2);
  const opt = {};
  for (let i = 0; i < args.length; i += 2) {
    if (!["--follower", "--leader"].includes(args[i])) usage(`unknown argument ${args[i]}`);
    opt[args[i].slice(2)] = address(args[i + 1], args[i]);
  }
  if (!opt.follower || !opt.leader) usage("--follower and --leader are required");
  const s = new Suite();
  const watchdog = setTimeout(() => {
    console.log(`FAIL ${CLIENT}: the script did not finish in ${SCRIPT_MS} ms`);
    s.finish("stopped by its watchdog");
  }, SCRIPT_MS);
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const run = `compat:node:${stamp}-${crypto.randomBytes(4).toString("hex")}:`;
  console.log(`${CLIENT} ${VERSION}: follower ${opt.follower.host}:${opt.follower.port}, ` +
    `leader ${opt.leader.host}:${opt.leader.port}, keys ${run}*`);
  const clients = {};
  try {
    for (const where of ["follower", "leader"]) {
      clients[where] = new Redis(opt[where].port, opt[where].host);
      clients[where].on("error", (e) => { clients[where].lastError = e.message; }); // shown by the checks
    }
    const keys = new Set();
    for (const where of ["follower", "leader"]) {
      const r = clients[where];
      const got = await s.check(where, "connect: new Redis(port, host) becomes ready (HELLO 3, CLIENT SETINFO, INFO)",
        "ready", () => r.status === "ready" ? "ready" : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`not ready after ${COMMAND_MS - 1000} ms (status ` +
            `${r.status}; last connection error: ${r.lastError || "none"})`)), COMMAND_MS - 1000);
          r.once("ready", () => { clearTimeout(t); resolve(r.status); });
        }));
      if (got !== "ready") s.finish(`cannot go on without the ${where}`);
    }
    for (const where of ["follower", "leader"]) {
      const r = clients[where];
      await session(s, where, r);
      await data(s, where, r, `${run}${where}:`, keys);
      await lifecycle(s, where, opt[where]);
    }
    await cross(s, clients.follower, clients.leader, run + "x:", keys);
    const all = [...keys].map((k) => Buffer.from(k, "latin1"));
    await s.check("leader", `DEL <the ${all.length} keys of this run>`, all.length, async () => {
      let n = 0;
      for (let i = 0; i < all.length; i += 100) n += await clients.leader.del(...all.slice(i, i + 100));
      return n;
    });
    for (const where of ["leader", "follower"]) {
      await s.check(where, `SCAN MATCH ${run}* after the DEL`, new Set(), () => scanAll(clients[where], run + "*", 100));
    }
  } finally {
    clearTimeout(watchdog);
    for (const r of Object.values(clients)) r.disconnect();
  }
  s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${CLIENT}: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
