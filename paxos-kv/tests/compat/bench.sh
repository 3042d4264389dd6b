#!/usr/bin/env bash
# A redis-benchmark smoke run through the follower and through the leader.
#
#   bench.sh --follower HOST:PORT --leader HOST:PORT [-n REQUESTS]
#
# Runs `redis-benchmark -h H -p P -t set,get,mset,incr -P 16 -n 20000 -q --csv` (50 clients,
# redis-benchmark's default) against each address, each run bounded by `timeout 25` (so both fit in run_all.sh's 60 s), and
# checks that it exits 0 (it exits 1 on the first error reply, and hangs when it cannot
# connect, hence a PING first) and prints a rate > 0 for each of SET, GET, INCR and
# MSET (10 keys). Then checks that its writes are there through the other node:
# counter:__rand_int__ (the key every INCR of redis-benchmark hits when -r is not given)
# grew by exactly -n per run, counted through the other node, and key:__rand_int__ holds a
# 3-byte value. The INCR count is exact only while no other redis-benchmark runs against
# the same server. Deletes the two keys at the end.
#
# Prints the rates, one line per failed check, and `bench: N passed, N failed`.
set -uo pipefail

CLIENT=bench
PASS=0
FAIL=0
N=20000
usage() { echo "usage: bench.sh --follower HOST:PORT --leader HOST:PORT [-n REQUESTS]" >&2; exit 2; }
FOLLOWER= LEADER=
while [[ $# -gt 0 ]]; do
    case $1 in
        --follower) FOLLOWER=${2:-}; shift 2 ;;
        --leader) LEADER=${2:-}; shift 2 ;;
        -n) N=${2:-}; shift 2 ;;
        *) usage ;;
    esac
done
[[ -n $FOLLOWER && -n $LEADER && $N =~ ^[1-9][0-9]*$ ]] || usage
for a in "$FOLLOWER" "$LEADER"; do
    [[ $a =~ ^(.+):([0-9]+)$ ]] || { echo "bench.sh: $a is not HOST:PORT" >&2; exit 2; }
    if [[ ! ${BASH_REMATCH[1]} =~ ^(127\.|localhost$|::1$|\[::1\]$) && -z ${COMPAT_ALLOW_NONLOOPBACK:-} ]]; then
        echo "bench.sh: ${BASH_REMATCH[1]}: only loopback addresses (set COMPAT_ALLOW_NONLOOPBACK=1 to override)" >&2
        exit 2
    fi
done
command -v redis-benchmark >/dev/null || { echo "bench.sh: redis-benchmark is not on PATH (install.sh installs it)" >&2; exit 2; }

host_of() { local h=${1%:*}; h=${h#[}; echo "${h%]}"; }
port_of() { echo "${1##*:}"; }
cli() { local a=$1; shift; timeout 10 redis-cli -h "$(host_of "$a")" -p "$(port_of "$a")" "$@" 2>&1; }
ok() { PASS=$((PASS + 1)); }
fail() {
    FAIL=$((FAIL + 1))
    printf 'FAIL %s via %s: %s\n    expected: %s\n    actual:   %s\n' "$CLIENT" "$1" "$2" "$3" \
        "$(printf '%s' "$4" | head -c 1500 | sed '2,$s/^/              /')"
}
check() { if [[ $4 == "$3" ]]; then ok; else fail "$@"; fi; }

counter() { # the value of counter:__rand_int__ through ADDR, 0 when missing
    local v
    v=$(cli "$1" GET counter:__rand_int__)
    echo "${v:-0}"
}

echo "$CLIENT: redis-benchmark $(redis-benchmark --version | awk '{print $2}'), follower $FOLLOWER, leader $LEADER"
for pair in "follower $FOLLOWER leader $LEADER" "leader $LEADER follower $FOLLOWER"; do
    read -r where a other b <<<"$pair"
    out=$(cli "$a" PING)
    check "$where" "PING (before redis-benchmark, which hangs when it cannot connect)" PONG "$out"
    if [[ $out != PONG ]]; then
        echo "$CLIENT via $where: redis-benchmark not run"
        FAIL=$((FAIL + 1))
        continue
    fi
    before=$(counter "$b")
    start=$(date +%s.%N)
    out=$(timeout 25 redis-benchmark -h "$(host_of "$a")" -p "$(port_of "$a")" -t set,get,mset,incr -P 16 -n "$N" -q --csv 2>&1)
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    check "$where" "redis-benchmark -t set,get,mset,incr -P 16 -n $N -q --csv: exit status" 0 "$rc$([[ $rc -eq 124 ]] && echo ' (timed out after 25 s)')"
    [[ $rc -eq 0 ]] || echo "$out" | head -n 20 | sed 's/^/    | /'
    rates=
    for t in SET GET INCR "MSET (10 keys)"; do
        rps=$(awk -F'","' -v t="$t" '{ gsub(/^"|"$/, "") } $1 == t { print $2 }' <<<"$out")
        if [[ $rps =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v r="$rps" 'BEGIN { exit !(r > 0) }'; then
            ok
            rates+=" $t ${rps%.*}/s,"
        else
            fail "$where" "redis-benchmark --csv: the rate of $t" "a row \"$t\",\"<requests per second > 0>\",..." "$out"
        fi
    done
    echo "$CLIENT via $where:${rates%,} (${secs} s)"
    # exactly N INCRs of one key, pipelined by 50 clients through $where, counted through $other
    check "$where, read via $other" "GET counter:__rand_int__ (was $before, then $N INCRs through $where)" \
        "$((before + N))" "$(counter "$b")"
    check "$where, read via $other" "STRLEN key:__rand_int__ (SET and MSET through $where)" 3 \
        "$(cli "$b" STRLEN key:__rand_int__)"
done
check leader "DEL counter:__rand_int__ key:__rand_int__" 2 "$(cli "$LEADER" DEL counter:__rand_int__ key:__rand_int__)"
echo "$CLIENT: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
