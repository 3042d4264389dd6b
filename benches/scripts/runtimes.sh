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

source "$(dirname "$0")/lib.sh"
EXE=$(node_exe)

echo "runtime,storage,test,pipeline,clients,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms"
for storage in memory file; do
    for runtime in tokio smol; do
        start_cluster "$EXE" "$storage" "$runtime"
        for pipeline in 1 16; do
            bench_csv "$runtime,$storage" "$pipeline" "$CLIENTS" "$REQUESTS"
        done
        stop_cluster
    done
done
