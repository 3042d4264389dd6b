#!/usr/bin/env bash
# The transfer rate of a large snapshot, and the leader's write latency while it goes on.
# Starts three `paxos-node serve` processes (file storage, `--compact-every-entries 1000
# --compact-keep-entries 10`, TCP or QUIC), SIGKILLs one follower, writes SNAPSHOT_MIB MiB
# to the other two as ~900 KB values (`redis-cli -x SET`), then `POST /compact` on the
# leader and on the other follower, so that their snapshots hold all of it and neither
# keeps the slots the killed node misses in its log. Measures the leader's SET latency with
# `redis-benchmark -t set -c 1 -n 5000 -d 64 -r 1000` once before, then restarts the killed
# follower on its old directory (its log ends far below the others' compaction point, so
# it must fetch a snapshot) and runs the same benchmark at once, concurrently with the
# transfer. Prints: the snapshot's bytes, seconds from the restart to `snapshots_installed`
# >= 1 on the restarted node (process start, transfer, install), the rate (MB/s = 10^6
# bytes/s, and MiB/s), p50/p99 before and during, whether the install finished while the
# benchmark ran, and the nodes' "took a snapshot" / "installed a snapshot" log lines.
# Snapshots are sent at most at `snapshot_send_rate` (128 MiB/s per sender).
#
#   benches/scripts/snapshot_transfer.sh [SNAPSHOT_MIB] [TRANSPORT]   # default 256 tcp
#
# TRANSPORT quic writes development certificates (`paxos-node certs`) into the temporary
# directory and starts mutual-TLS QUIC. EXTRA_FLAGS is passed to every `serve`;
# PAXOS_NODE_EXE picks the binary (else this tree's release build, built now); BASE_PORT
# (default 28200) places the ports: transport BASE+1..3, RESP BASE+11..13, admin
# BASE+21..23; KEEP_DIR=1 keeps the temporary directory (data and node logs).
#
# SNAPSHOT_MIB should exceed 64: each transport queues up to 64 MiB of messages for a peer
# that is down (`max_outbound_queue_bytes`), and delivers them when it comes back, so
# after a smaller write the restarted node gets the Accepts it missed from that queue and
# catches up through the log without fetching a snapshot (the script then says so and
# exits 1, printing the nodes' counters).
#
# Note: each benchmark is 5000 log slots, but of small commands; the compaction policy
# takes no new snapshot until the commands applied since the last one outweigh it, so the
# big snapshot is not retaken during the measurements (it would be written in the
# background, but would still compete for the disk and the CPU).
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
cd "$SCRIPTS/../.."
SNAPSHOT_MIB=${1:-256}
TRANSPORT=${2:-tcp}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
BASE_PORT=${BASE_PORT:-28200}
VALUE_BYTES=900000
[[ $TRANSPORT == tcp || $TRANSPORT == quic ]] || { echo "TRANSPORT is tcp or quic" >&2; exit 1; }
for tool in redis-benchmark redis-cli curl base64; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
source "$SCRIPTS/lib.sh"
EXE=$(node_exe)
if ((SNAPSHOT_MIB <= 64)); then
    echo "warning: at $SNAPSHOT_MIB MiB the restarted node may catch up from the peers' 64 MiB send queues, not by a snapshot" >&2
fi

DIR=$(mktemp -d)
declare -A PIDS=()
BENCH_PID=
# shellcheck disable=SC2206 # EXTRA_FLAGS is a list of flags
NODE_FLAGS=(--compact-every-entries 1000 --compact-keep-entries 10 $EXTRA_FLAGS)
cleanup() {
    if [[ -n $BENCH_PID ]]; then kill "$BENCH_PID" 2>/dev/null || true; wait "$BENCH_PID" 2>/dev/null || true; fi
    stop_nodes
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ $TRANSPORT == quic ]]; then # QUIC is always mutual TLS: a development CA
    "$EXE" certs --nodes 3 --out "$DIR/certs" >/dev/null
fi

seconds() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }

# latency FILE: "p50 p99" (ms) from a redis-benchmark --csv output.
latency() {
    local row
    row=$(grep '^"SET"' "$1" | tr -d '"' || true)
    [[ -n $row ]] || { echo "? ?"; return; }
    IFS=, read -r _ _ _ _ p50 _ p99 _ <<<"$row"
    echo "$p50 $p99"
}
BENCH=(-t set -c 1 -n 5000 -d 64 -r 1000 --csv -q)

for i in 1 2 3; do start_node "$i"; done
find_leader
VICTIM=$((LEADER % 3 + 1))
OTHER=$((VICTIM % 3 + 1))
# The victim must be a follower that has run: one write that all three apply.
timeout 10 redis-cli -p "$(resp_port "$LEADER")" SET warm 1 >/dev/null
for _ in $(seq 100); do
    [[ $(field "$(status "$VICTIM")" applied) == "$(field "$(status "$LEADER")" applied)" ]] && break
    sleep 0.1
done
stop_node "$VICTIM" KILL
echo "transport=$TRANSPORT leader=$LEADER killed follower=$VICTIM"

head -c $((VALUE_BYTES * 3 / 4 + 4)) /dev/urandom | base64 -w0 | head -c "$VALUE_BYTES" >"$DIR/value"
count=$(((SNAPSHOT_MIB * 1048576 + VALUE_BYTES - 1) / VALUE_BYTES))
t0=$(date +%s.%N)
for k in $(seq "$count"); do
    reply=$(timeout 30 redis-cli -p "$(resp_port "$LEADER")" -x SET "big$k" <"$DIR/value" || true)
    [[ $reply == OK ]] || { echo "SET big$k: ${reply:-no reply}" >&2; KEEP_DIR=1; exit 1; }
done
t1=$(date +%s.%N)
echo "wrote $count x $VALUE_BYTES bytes in $(seconds "$t0" "$t1") s"
# Both live nodes: a peer that still held the slots in its log would serve them by catch-up.
for i in "$LEADER" "$OTHER"; do
    compact=$(curl -s --max-time 300 -X POST "http://127.0.0.1:$(admin_port "$i")/compact" || true)
    s=$(status "$i")
    echo "POST /compact on $i: $compact; log_start=$(field "$s" log_start) snapshot_bytes=$(field "$s" snapshot_bytes)"
done

redis-benchmark -p "$(resp_port "$LEADER")" "${BENCH[@]}" >"$DIR/before.csv" 2>"$DIR/before.err" || true
read -r p50_before p99_before < <(latency "$DIR/before.csv")
s=$(status "$LEADER")
leader_snapshot=$(field "$s" snapshot_bytes)

# Restart the victim and, at once, the same benchmark.
target=$(field "$s" applied)
t0=$(date +%s.%N)
start_node "$VICTIM"
redis-benchmark -p "$(resp_port "$LEADER")" "${BENCH[@]}" >"$DIR/during.csv" 2>"$DIR/during.err" &
BENCH_PID=$!
installed= bench_end= via_log=
for _ in $(seq 6000); do # 300 s at most
    vs=$(status "$VICTIM")
    n=$(field "$vs" snapshots_installed) applied=$(field "$vs" applied)
    if [[ $n =~ ^[0-9]+$ ]] && ((n >= 1)); then installed=$(date +%s.%N); break; fi
    # Past the snapshot's point without installing it: it caught up through the log.
    if [[ $applied =~ ^[0-9]+$ ]] && ((applied >= target)); then via_log=1; break; fi
    if [[ -z $bench_end ]] && ! kill -0 "$BENCH_PID" 2>/dev/null; then bench_end=$(date +%s.%N); fi
    sleep 0.05
done
wait "$BENCH_PID" 2>/dev/null || true
while kill -0 "$BENCH_PID" 2>/dev/null; do sleep 0.1; done
BENCH_PID=
[[ -n $bench_end ]] || bench_end=$(date +%s.%N)
read -r p50_during p99_during < <(latency "$DIR/during.csv")
if [[ -z $installed ]]; then
    if [[ -n $via_log ]]; then
        echo "follower $VICTIM reached applied $applied >= $target without installing a snapshot: it caught up through the log" >&2
    else
        echo "follower $VICTIM installed no snapshot within 300 s (last /status: $vs)" >&2
    fi
    for i in 1 2 3; do
        echo "node $i: $(status "$i" | grep -o '"\(role\|applied\|log_start\)":[a-z0-9"]*' | tr '\n' ' ')" >&2
        curl -s --max-time 2 "http://127.0.0.1:$(admin_port "$i")/metrics" |
            grep -E '^paxos_(snapshot|messages_sent_total.*(catch_up|snapshot))' | sed 's/^/  /' >&2 || true
    done
    KEEP_DIR=1
    exit 1
fi
# What was installed (the leader may have taken a newer snapshot meanwhile), from the
# restarted node's log line, else its /status.
line=$(grep -h "installed a snapshot" "$DIR/n$VICTIM.log" | tail -1 || true)
bytes=$(grep -o ' bytes=[0-9]*' <<<"$line" | cut -d= -f2 || true)
upto=$(grep -o ' upto=s[0-9]*' <<<"$line" | cut -d= -f2 || true)
restore_ms=$(grep -o ' ms=[0-9]*' <<<"$line" | cut -d= -f2 || true)
[[ $bytes =~ ^[0-9]+$ ]] || bytes=$(field "$(status "$VICTIM")" snapshot_bytes)
secs=$(seconds "$t0" "$installed")
during=no
[[ $(awk "BEGIN { print ($installed <= $bench_end) }") == 1 ]] && during=yes

echo "leader_snapshot_bytes=$leader_snapshot (after the first benchmark)"
echo "snapshot_bytes=$bytes (installed by follower $VICTIM at ${upto:-?}; its restore took ${restore_ms:-?} ms)"
echo "transfer_s=$secs (restart to snapshots_installed >= 1)"
echo "rate_MB_per_s=$(awk "BEGIN { printf \"%.1f\", $bytes / 1e6 / $secs }") rate_MiB_per_s=$(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 / $secs }")"
echo "set_latency_ms_before p50=$p50_before p99=$p99_before"
echo "set_latency_ms_during p50=$p50_during p99=$p99_during (benchmark ran $(seconds "$t0" "$bench_end") s after the restart; install during it: $during)"
for f in before during; do
    if grep -qi err "$DIR/$f.err" 2>/dev/null; then echo "redis-benchmark ($f) errors: $(sort -u "$DIR/$f.err" | head -3)" >&2; fi
done
echo "follower $VICTIM: $(curl -s --max-time 2 "http://127.0.0.1:$(admin_port "$VICTIM")/metrics" |
    grep -E '^paxos_snapshot_chunks_(received|dropped)_total' | sed -E 's/^paxos_//; s/\{[^}]*\}/=/; s/ //' | tr '\n' ' ')"
echo "log lines:"
for i in 1 2 3; do
    grep -h "installed a snapshot\|took a snapshot" "$DIR/n$i.log" | sed -E "s/^([^ ]+) +[A-Z]+ [^ ]+ /\1 /; s/^/  n$i /" || true
done
