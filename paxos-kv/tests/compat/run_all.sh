#!/usr/bin/env bash
# Runs every client script of the compatibility suite against a follower and a leader.
#
#   run_all.sh DEPS_DIR --follower HOST:PORT --leader HOST:PORT
#   run_all.sh DEPS_DIR FOLLOWER LEADER            (the same, positionally)
#
# DEPS_DIR is the directory install.sh installed into. Each script runs under `timeout 60`,
# with its output in DEPS_DIR/logs/NAME.log (or $COMPAT_LOGS/NAME.log). Prints one PASS/FAIL line per client with the
# count of checks passed (and for a FAIL the failed checks, from the log), then the closing
# line `compat: N passed, N failed` over all checks. Exits 0 only when every client passed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: run_all.sh DEPS_DIR --follower HOST:PORT --leader HOST:PORT" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
DEPS=$1; shift
FOLLOWER= LEADER=
if [[ $# -eq 2 && $1 != --* ]]; then
    FOLLOWER=$1 LEADER=$2
else
    while [[ $# -gt 0 ]]; do
        case $1 in
            --follower) FOLLOWER=${2:-}; shift 2 ;;
            --leader) LEADER=${2:-}; shift 2 ;;
            *) usage ;;
        esac
    done
fi
[[ -n $FOLLOWER && -n $LEADER ]] || usage
[[ -d $DEPS/py/redis && -d $DEPS/node/node_modules/ioredis ]] ||
    { echo "run_all.sh: $DEPS has no redis-py or ioredis: run install.sh $DEPS first" >&2; exit 2; }
DEPS=$(cd "$DEPS" && pwd)
LOGS=${COMPAT_LOGS:-$DEPS/logs}
mkdir -p "$LOGS"
TIMEOUT=${COMPAT_TIMEOUT:-60}

TOTAL_PASS=0 TOTAL_FAIL=0 BAD=0
# run NAME LABEL CMD...: runs one client script and prints its PASS/FAIL line
run() {
    local name=$1 label=$2 log=$LOGS/$1.log start rc secs summary passed failed
    shift 2
    start=$(date +%s.%N)
    timeout "$TIMEOUT" "$@" --follower "$FOLLOWER" --leader "$LEADER" >"$log" 2>&1
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    summary=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [[ $summary =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
    else
        passed=0 failed=1
    fi
    TOTAL_PASS=$((TOTAL_PASS + passed))
    if [[ $rc -eq 0 && $failed -eq 0 && -n $summary ]]; then
        printf 'PASS %-24s %4d checks passed (%s s)\n' "$label" "$passed" "$secs"
    else
        [[ $failed -eq 0 ]] && failed=1
        TOTAL_FAIL=$((TOTAL_FAIL + failed)) BAD=$((BAD + 1))
        local why="exit status $rc"
        [[ $rc -eq 124 ]] && why="timed out after $TIMEOUT s"
        [[ -z $summary ]] && why+=", no summary line"
        printf 'FAIL %-24s %4d checks passed, %d failed (%s s, %s; log %s)\n' \
            "$label" "$passed" "$failed" "$secs" "$why" "$log"
        # the failed checks (each a FAIL line and its indented expected/actual lines), or the log's end
        { awk '/^FAIL/ { on = 1; print; next } on && /^    / { print; next } { on = 0 }' "$log" | grep . ||
            tail -n 15 "$log"; } | head -n 45 | sed 's/^/    /'
    fi
}

PYVER=$(PYTHONPATH=$DEPS/py python3 -c 'import redis; print(redis.__version__)' 2>/dev/null || echo '?')
NODEVER=$(node -p "require('$DEPS/node/node_modules/ioredis/package.json').version" 2>/dev/null || echo '?')
CLIVER=$(redis-cli --version 2>/dev/null | awk '{print $2}')
echo "compat: follower $FOLLOWER, leader $LEADER (logs in $LOGS)"
run redis_py "redis-py $PYVER" env PYTHONPATH="$DEPS/py" python3 "$HERE/redis_py.py"
run ioredis "ioredis $NODEVER" env NODE_PATH="$DEPS/node/node_modules" node "$HERE/ioredis.js"
run redis_cli "redis-cli $CLIVER" bash "$HERE/redis_cli.sh"
run bench "redis-benchmark $CLIVER" bash "$HERE/bench.sh"
echo "compat: $TOTAL_PASS passed, $TOTAL_FAIL failed"
[[ $BAD -eq 0 ]]
