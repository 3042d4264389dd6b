# Shared by the benchmark scripts: start a local cluster and find its leader, run
# redis-benchmark and print its CSV rows with a prefix.

# node_exe: the binary to measure: PAXOS_NODE_EXE (another build, say of an older commit),
# else this tree's release build, built now.
node_exe() {
    if [[ -n ${PAXOS_NODE_EXE:-} ]]; then
        echo "$PAXOS_NODE_EXE"
    else
        cargo build --release -q -p paxos-kv >&2
        echo "$PWD/target/release/paxos-node"
    fi
}

# start_cluster EXE STORAGE RUNTIME: a fresh 3-node cluster in a temporary directory; sets
# CLUSTER_PID, CLUSTER_DIR and LEADER_PORT (the leader's RESP port).
start_cluster() {
    local exe=$1 storage=$2 runtime=$3 status admin
    CLUSTER_DIR=$(mktemp -d)
    "$exe" cluster --nodes 3 --storage "$storage" --runtime "$runtime" --dir "$CLUSTER_DIR" \
        >"$CLUSTER_DIR/cluster.out" 2>&1 &
    CLUSTER_PID=$!
    LEADER_PORT=
    for _ in $(seq 200); do
        for admin in $(grep -o 'http://[0-9.:]*' "$CLUSTER_DIR/cluster.out" 2>/dev/null | sed 's|http://||'); do
            status=$(curl -s --max-time 1 "http://$admin/status" || true)
            if [[ $status == *'"role":"leader"'* ]]; then
                LEADER_PORT=$(sed -E 's/.*"resp":"[0-9.]+:([0-9]+)".*/\1/' <<<"$status")
            fi
        done
        [[ -n $LEADER_PORT ]] && return 0
        sleep 0.1
    done
    echo "no leader in $CLUSTER_DIR" >&2
    stop_cluster
    return 1
}

stop_cluster() {
    kill "$CLUSTER_PID" 2>/dev/null || true
    wait "$CLUSTER_PID" 2>/dev/null || true
    rm -rf "$CLUSTER_DIR"
}

# bench_csv PREFIX PIPELINE CLIENTS REQUESTS: SET and GET rows against the leader.
bench_csv() {
    local prefix=$1 pipeline=$2 clients=$3 requests=$4
    redis-benchmark -p "$LEADER_PORT" -c "$clients" -n "$requests" -P "$pipeline" \
        -t set,get --csv -q 2>/dev/null | tail -n +2 | tr -d '"' |
        while IFS=, read -r test rps avg min p50 p95 p99 max; do
            echo "$prefix,$test,$pipeline,$clients,$rps,$avg,$min,$p50,$p95,$p99,$max"
        done
}
