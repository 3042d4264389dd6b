#!/usr/bin/env bash
# Compares the binary's two runtimes (`serve --runtime tokio|smol`) under the same load:
# for each runtime and storage, a fresh local 3-node cluster (`paxos-node cluster`), then
# `redis-benchmark` against the leader with C clients (default 64), one request per
# round trip (-P 1) and pipelined (-P 16). Prints one CSV line per (runtime, storage, test,
# pipeline): requests per second and the latency percentiles redis-benchmark reports.
#
#   benches/scripts/runtimes.sh [CLIENTS] [REQUESTS]
#
# A stopgap until the benches harness (a later issue) measures this with its floors; run
# it on an idle machine and compare the rows of one run, not across runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${1:-64}
REQUESTS=${2:-200000}
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (redis-tools)" >&2; exit 1; }
cargo build --release -q -p paxos-kv
EXE=$PWD/target/release/paxos-node

echo "runtime,storage,test,pipeline,clients,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms"
for storage in memory file; do
    for runtime in tokio smol; do
        dir=$(mktemp -d)
        "$EXE" cluster --nodes 3 --storage "$storage" --runtime "$runtime" --dir "$dir" \
            >"$dir/cluster.out" 2>&1 &
        pid=$!
        # The admin ports, from the cluster's output; then the leader's RESP port.
        leader_port=
        for _ in $(seq 200); do
            for admin in $(grep -o 'http://[0-9.:]*' "$dir/cluster.out" 2>/dev/null | sed 's|http://||'); do
                status=$(curl -s --max-time 1 "http://$admin/status" || true)
                if [[ $status == *'"role":"leader"'* ]]; then
                    leader_port=$(sed -E 's/.*"resp":"[0-9.]+:([0-9]+)".*/\1/' <<<"$status")
                fi
            done
            [[ -n $leader_port ]] && break
            sleep 0.1
        done
        [[ -n $leader_port ]] || { echo "no leader in $dir" >&2; kill "$pid"; exit 1; }
        for pipeline in 1 16; do
            redis-benchmark -p "$leader_port" -c "$CLIENTS" -n "$REQUESTS" -P "$pipeline" \
                -t set,get --csv -q 2>/dev/null | tail -n +2 | tr -d '"' |
                while IFS=, read -r test rps avg min p50 p95 p99 max; do
                    echo "$runtime,$storage,$test,$pipeline,$CLIENTS,$rps,$avg,$min,$p50,$p95,$p99,$max"
                done
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        rm -rf "$dir"
    done
done
