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

# --- Nodes started one at a time (compaction.sh, snapshot_transfer.sh) ---------------------
# These use the caller's EXE, DIR, BASE_PORT, TRANSPORT (tcp or quic; QUIC wants the
# certificates in $DIR/certs), NODE_FLAGS (an array passed to every `serve`) and the
# associative array PIDS (node id -> pid). Ports: transport BASE+1..3, RESP BASE+11..13,
# admin BASE+21..23.

resp_port() { echo $((BASE_PORT + 10 + $1)); }
admin_port() { echo $((BASE_PORT + 20 + $1)); }

# start_node ID: one file-storage `serve` in the background, its log appended to $DIR/nID.log.
start_node() {
    local i=$1 j peers=() tls=()
    for j in 1 2 3; do peers+=(--peer "$j=127.0.0.1:$((BASE_PORT + j))"); done
    if [[ $TRANSPORT == quic ]]; then
        tls=(--tls-ca "$DIR/certs/ca.pem" --tls-cert "$DIR/certs/node-$i.pem"
            --tls-key "$DIR/certs/node-$i.key")
    fi
    "$EXE" serve --id "$i" "${peers[@]}" --storage file --transport "$TRANSPORT" "${tls[@]}" \
        --data-dir "$DIR/d$i" --resp "127.0.0.1:$(resp_port "$i")" \
        --admin "127.0.0.1:$(admin_port "$i")" "${NODE_FLAGS[@]}" >>"$DIR/n$i.log" 2>&1 &
    PIDS[$i]=$!
    disown "$!" # reaped by the shell; no "Killed" notice when we SIGKILL it
}

# stop_node ID SIGNAL: signal it and wait for the exit (SIGKILL after 30 s).
stop_node() {
    local i=$1 sig=$2 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    unset "PIDS[$i]"
}

# stop_nodes: stops every node started, then removes $DIR unless KEEP_DIR is set.
stop_nodes() {
    local i
    for i in "${!PIDS[@]}"; do stop_node "$i" TERM; done
    if [[ -n ${KEEP_DIR:-} ]]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}

status() { curl -s --max-time 2 "http://127.0.0.1:$(admin_port "$1")/status" || true; }
# field JSON NAME: a top-level number (or null) of /status.
field() { grep -o "\"$2\":[0-9a-z]*" <<<"$1" | head -1 | cut -d: -f2 || true; }

# find_leader: sets LEADER to the id of the node whose /status says leader (60 s at most).
find_leader() {
    local i
    for _ in $(seq 600); do
        for i in "${!PIDS[@]}"; do
            if [[ $(status "$i") == *'"role":"leader"'* ]]; then LEADER=$i; return 0; fi
        done
        sleep 0.1
    done
    echo "no leader after 60 s (logs in $DIR)" >&2
    KEEP_DIR=1
    return 1
}
