#!/usr/bin/env python3
"""Regenerates glob_redis.txt: random MATCH patterns over the special bytes, matched by a
real Redis with KEYS (which runs the same stringmatchlen as SCAN ... MATCH).

    redis-server --port 16400 --save '' &
    python3 gen_glob_redis.py [port]      # writes glob_redis.txt beside this script
    kill %1

The database on that port is flushed. Range bounds above 0x7f are left out of the
patterns: Redis compares them as C char, signed on x86-64 (see glob.rs).
"""
import os, random, socket, sys
random.seed(20240611)
port = int(sys.argv[1]) if len(sys.argv) > 1 else 16400
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        if isinstance(a, str): a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    return read()
def read():
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t in (b"+", b"-", b":"): return rest
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        data = f.read(n + 2)[:-2]
        return data
    if t == b"*":
        return [read() for _ in range(int(rest))]
cmd("FLUSHALL")
key_alpha = [b"a", b"b", b"c", b"]", b"[", b"-", b"^", b"\\", b"*", b"?", b"\xe9", b"z"]
pat_alpha = [b"a", b"b", b"c", b"]", b"[", b"-", b"^", b"\\", b"*", b"?", b"z", b"a-", b"[a", b"[^", b"\\]"]
keys = set([b""])
while len(keys) < 400:
    keys.add(b"".join(random.choice(key_alpha) for _ in range(random.randint(0, 6))))
keys = sorted(keys)
for k in keys: cmd("SET", k, "1")
hand = [b"*", b"", b"**", b"a*", b"a**", b"a*?*", b"[abc", b"[]", b"[]a", b"[^]", b"[a-]", b"[a-]x", b"[\\]]", b"[\\]", b"[\\", b"[", b"[^", b"[*]", b"\\", b"a\\", b"*a*a*b", b"[z-a]", b"[^a-c]*", b"?*?"]
patterns = list(hand)
while len(patterns) < 450:
    patterns.append(b"".join(random.choice(pat_alpha) for _ in range(random.randint(1, 7))))
lines = ["# pattern key matched: generated from Redis 7.0.15 with KEYS (nocase off); see glob.rs"]
for p in patterns:
    matched = set(cmd("KEYS", p))
    yes = sorted(matched); no = [k for k in keys if k not in matched]
    sample = random.sample(yes, min(3, len(yes))) + random.sample(no, min(3, len(no)))
    for k in sample:
        lines.append("%s %s %d" % (p.hex(), k.hex(), 1 if k in matched else 0))
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "glob_redis.txt"), "w").write("\n".join(lines) + "\n")
print(len(lines))
