#!/usr/bin/env bash
# Bounded resources in a long write run: does log compaction keep memory and disk flat?
# Starts three `paxos-node serve` processes (file storage, TCP, each with its own data
# directory, RESP and admin port on 127.0.0.1) and drives SETs at the leader with
# `redis-benchmark -t set -r 100000 -d 64 -P 16 -c 16 -n STEP`, STEP at a time, until
# WRITES. After each step it prints one CSV row: total writes, the leader's RSS, the data
# directory size of the leader and of each follower (du -sb), the leader's `log_start`,
# `snapshot_bytes` and `snapshots_taken` from /status, and the step's SETs per second.
# At the end it prints the live state (DBSIZE x (key + value bytes)), then the restart
# time of one follower: SIGTERM, wait for the exit, start it again on the same directory
# and time until it answers PING, /status names a leader and its `applied` has reached the
# leader's as noted before the stop (a restart loads the snapshot and replays the log
# after it, so this grows with the log kept, not with the writes ever made).
#
#   benches/scripts/compaction.sh [WRITES] [STEP]          # default 2000000 250000
#   EXTRA_FLAGS="--compact-every-entries 0 --compact-every-bytes 0" \
#       benches/scripts/compaction.sh                      # the same run without compaction
#
# EXTRA_FLAGS is passed to every `serve`; PAXOS_NODE_EXE picks the binary (else this tree's
# release build, built now); BASE_PORT (default 28100) places the ports: transport
# BASE+1..3, RESP BASE+11..13, admin BASE+21..23; KEEP_DIR=1 keeps the temporary directory
# (data and node logs). One write is one SET; a pipeline of 16 is one log entry at most,
# and the leader batches the 16 connections' pipelines further (2,000,000 SETs made about
# 30,000 slots in one run). Directory sizes are apparent sizes: the WAL's segment files
# (up to 32 MiB each here) count whole, and go only once a whole segment is behind the
# compaction point. Run on an idle machine; compare rows of one run.
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
cd "$SCRIPTS/../.."
WRITES=${1:-2000000}
STEP=${2:-250000}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
BASE_PORT=${BASE_PORT:-28100}
KEY_BYTES=16   # redis-benchmark's -r keys: "key:" and 12 digits
VALUE_BYTES=64 # -d 64
for tool in redis-benchmark redis-cli curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
source "$SCRIPTS/lib.sh"
EXE=$(node_exe)

DIR=$(mktemp -d)
declare -A PIDS=()
# shellcheck disable=SC2206 # EXTRA_FLAGS is a list of flags
NODE_FLAGS=($EXTRA_FLAGS)
TRANSPORT=tcp
trap stop_nodes EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do start_node "$i"; done
find_leader
FOLLOWERS=()
for i in 1 2 3; do [[ $i == "$LEADER" ]] || FOLLOWERS+=("$i"); done

echo "writes,leader,leader_rss_kb,leader_dir_bytes,follower${FOLLOWERS[0]}_dir_bytes,follower${FOLLOWERS[1]}_dir_bytes,log_start,snapshot_bytes,snapshots_taken,step_sets_per_s,step_p99_ms"
done_writes=0
while ((done_writes < WRITES)); do
    n=$((WRITES - done_writes < STEP ? WRITES - done_writes : STEP))
    find_leader # follow the leader if it moved
    # The CSV row: "SET",rps,avg,min,p50,p95,p99,max.
    row=$(redis-benchmark -p "$(resp_port "$LEADER")" -t set -r 100000 -d "$VALUE_BYTES" \
        -P 16 -c 16 -n "$n" --csv -q 2>>"$DIR/bench.err" | grep '^"SET"' | tr -d '"' || true)
    [[ -n $row ]] || { echo "redis-benchmark gave no result (see $DIR/bench.err)" >&2; KEEP_DIR=1; exit 1; }
    IFS=, read -r _ rps _ _ _ _ p99 _ <<<"$row"
    done_writes=$((done_writes + n))
    s=$(status "$LEADER")
    rss=$(ps -o rss= -p "${PIDS[$LEADER]}" | tr -d ' ')
    sizes=()
    for i in "$LEADER" "${FOLLOWERS[@]}"; do sizes+=("$(du -sb "$DIR/d$i" | cut -f1)"); done
    echo "$done_writes,$LEADER,$rss,${sizes[0]},${sizes[1]},${sizes[2]},$(field "$s" log_start),$(field "$s" snapshot_bytes),$(field "$s" snapshots_taken),$rps,$p99"
done
if grep -qi err "$DIR/bench.err" 2>/dev/null; then
    echo "redis-benchmark reported errors:" >&2
    sort "$DIR/bench.err" | uniq -c | sort -rn | head -5 >&2
fi

keys=$(timeout 10 redis-cli -p "$(resp_port "$LEADER")" DBSIZE 2>/dev/null || true)
if [[ $keys =~ ^[0-9]+$ ]]; then
    echo "live_keys=$keys live_bytes_est=$((keys * (KEY_BYTES + VALUE_BYTES))) (keys x ($KEY_BYTES + $VALUE_BYTES) bytes)"
else
    echo "live_keys=unknown (DBSIZE answered: ${keys:-nothing})"
fi

# Restart time of one follower, on its own directory.
F=${FOLLOWERS[0]}
target=$(field "$(status "$LEADER")" applied)
fs=$(status "$F")
echo "restarting follower $F: leader applied=$target, follower log_start=$(field "$fs" log_start) snapshot_bytes=$(field "$fs" snapshot_bytes) dir_bytes=$(du -sb "$DIR/d$F" | cut -f1)"
stop_node "$F" TERM
t0=$(date +%s.%N)
start_node "$F"
ready=
for _ in $(seq 6000); do # 300 s at most
    if [[ $(timeout 1 redis-cli -p "$(resp_port "$F")" PING 2>/dev/null) == PONG ]]; then
        fs=$(status "$F")
        leader=$(field "$fs" leader) applied=$(field "$fs" applied)
        if [[ $leader =~ ^[0-9]+$ && $applied =~ ^[0-9]+$ ]] && ((applied >= target)); then
            ready=1
            break
        fi
    fi
    sleep 0.05
done
t1=$(date +%s.%N)
if [[ -n $ready ]]; then
    echo "restart_s=$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }") (follower $F: PONG, leader $leader, applied $applied >= $target)"
else
    echo "restart: follower $F not ready after 300 s (last /status: $fs)" >&2
    KEEP_DIR=1
    exit 1
fi
