#!/usr/bin/env bash
# Captures what each client of the suite sends when it connects, and what the server answers.
#
#   capture_connects.sh DEPS_DIR HOST:PORT [PROXY_PORT]
#
# For each client (redis-py and ioredis with default settings, redis-cli, redis-cli -3,
# redis-benchmark) runs one PING (one tiny run for redis-benchmark) through capture_proxy.py
# on 127.0.0.1:PROXY_PORT (default 16400) in front of HOST:PORT, and prints every frame each
# way. Runs `redis-cli MONITOR` on HOST:PORT meanwhile and prints what it saw, which on a
# real Redis leaves out the commands it refused (CLIENT SETINFO on Redis 7.0, for one).
# Every step is bounded; the proxy and MONITOR are stopped at the end.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -ge 2 ]] || { echo "usage: capture_connects.sh DEPS_DIR HOST:PORT [PROXY_PORT]" >&2; exit 2; }
DEPS=$(cd "$1" && pwd) TARGET=$2 PP=${3:-16400}
H=${TARGET%:*} P=${TARGET##*:}
[[ $H =~ ^(127\.|localhost$) ]] || { echo "capture_connects.sh: loopback addresses only" >&2; exit 2; }
TMP=$(mktemp -d)
MON_PID=
cleanup() { [[ -n $MON_PID ]] && kill "$MON_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

timeout 120 redis-cli -h "$H" -p "$P" MONITOR >"$TMP/monitor.txt" 2>&1 &
MON_PID=$!
sleep 0.3

N=0
capture() { # NAME CMD...: runs CMD against the proxy and prints the proxy's log
    local name=$1 pid i log; shift
    N=$((N + 1)) log=$TMP/proxy-$N.txt
    timeout 30 python3 "$HERE/capture_proxy.py" --listen "127.0.0.1:$PP" --target "$TARGET" --seconds 25 \
        >"$log" 2>&1 &
    pid=$!
    for i in $(seq 50); do grep -q '^-- listening' "$log" 2>/dev/null && break; sleep 0.1; done
    redis-cli -h "$H" -p "$P" ECHO "---- capture: $name" >/dev/null
    timeout 20 "$@" >"$TMP/client.txt" 2>&1
    sleep 0.5
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    printf '\n### %s\n\nThe client printed: %s\n\n```\n' "$name" "$(tr '\r\n' '  ' <"$TMP/client.txt" | sed 's/.*SET:/SET:/' | cut -c1-200)"
    grep -v '^-- listening' "$log"
    printf '```\n'
}

echo "## Connect sequences through capture_proxy.py (C> from the client, S< from the server)"
capture "redis-py $(PYTHONPATH=$DEPS/py python3 -c 'import redis; print(redis.__version__)'): redis.Redis(host, port).ping()" \
    env PYTHONPATH="$DEPS/py" python3 -c "import redis; r = redis.Redis('127.0.0.1', $PP); print(r.ping()); r.close()"
capture "ioredis $(node -p "require('$DEPS/node/node_modules/ioredis/package.json').version"): new Redis(port, host).ping()" \
    env NODE_PATH="$DEPS/node/node_modules" node -e "
const Redis = require('ioredis'); const r = new Redis($PP, '127.0.0.1');
r.ping().then((x) => { console.log(x); r.disconnect(); }, (e) => { console.log(e.message); r.disconnect(); });"
capture "redis-cli PING" redis-cli -h 127.0.0.1 -p "$PP" PING
capture "redis-cli -3 PING" redis-cli -3 -h 127.0.0.1 -p "$PP" PING
capture "redis-benchmark -t set -n 2 -c 1 -q" redis-benchmark -h 127.0.0.1 -p "$PP" -t set -n 2 -c 1 -q

redis-cli -h "$H" -p "$P" DEL key:__rand_int__ >/dev/null  # redis-benchmark's key
sleep 0.3
kill "$MON_PID" 2>/dev/null; wait "$MON_PID" 2>/dev/null; MON_PID=
printf '\n## redis-cli MONITOR on %s meanwhile\n\n```\n' "$TARGET"
grep -v '"MONITOR"\|^OK$' "$TMP/monitor.txt" | sed -E 's/^[0-9]+\.[0-9]+ \[0 [0-9.:]+\] //'
printf '```\n'
