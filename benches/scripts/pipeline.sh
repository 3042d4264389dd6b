#!/usr/bin/env bash
# What pipelining buys one connection: `redis-benchmark -c 1` SETs and GETs against the
# leader of a fresh local 3-node cluster (`paxos-node cluster`), one request per round trip
# (-P 1) against pipelines of 16 and 100. Prints CSV: storage, test, pipeline, requests per
# second, latency percentiles. Compare the rows of one run.
#
#   benches/scripts/pipeline.sh [REQUESTS] [RUNTIME]
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${1:-50000}
RUNTIME=${2:-tokio}
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (redis-tools)" >&2; exit 1; }
source "$(dirname "$0")/lib.sh"
EXE=$(node_exe)

echo "runtime,storage,test,pipeline,clients,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms"
for storage in memory file; do
    start_cluster "$EXE" "$storage" "$RUNTIME"
    for pipeline in 1 16 100; do
        bench_csv "$RUNTIME,$storage" "$pipeline" 1 "$REQUESTS"
    done
    stop_cluster
done
