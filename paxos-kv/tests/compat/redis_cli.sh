#!/usr/bin/env bash
# Redis compatibility checks through redis-cli (RESP2 by default, and -3 for RESP3) and
# through raw bytes on a socket (inline commands and Redis's quoting rules, protocol errors,
# the wire types of RESP2 and RESP3 replies).
#
#   redis_cli.sh --follower HOST:PORT --leader HOST:PORT
#
# Runs the same checks through the follower and through the leader, then checks that writes
# through either are read through the other. Expected outputs are what redis-cli 7.0 prints
# against a real Redis 7.0 with --no-raw (types shown: "str", (integer) 1, (nil), (error) ERR
# ...) and, for a few, its default output when stdout is not a terminal (what shell scripts
# see). Keys carry a prefix unique to the run and are deleted at the end. Every redis-cli call
# is bounded by `timeout 10`, every socket read by 5 s.
#
# Prints one line per failed check and closes with `redis-cli: N passed, N failed`. Exits 0
# only when every check passed. Needs redis-cli and python3 (for rawsock.py) on PATH.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENT=redis-cli
PASS=0
FAIL=0
MAX_FAILURES=60

usage() { echo "usage: redis_cli.sh --follower HOST:PORT --leader HOST:PORT" >&2; exit 2; }
FOLLOWER= LEADER=
while [[ $# -gt 0 ]]; do
    case $1 in
        --follower) FOLLOWER=${2:-}; shift 2 ;;
        --leader) LEADER=${2:-}; shift 2 ;;
        *) usage ;;
    esac
done
[[ -n $FOLLOWER && -n $LEADER ]] || usage
for a in "$FOLLOWER" "$LEADER"; do
    [[ $a =~ ^(.+):([0-9]+)$ ]] || { echo "redis_cli.sh: $a is not HOST:PORT" >&2; exit 2; }
    host=${BASH_REMATCH[1]}
    if [[ ! $host =~ ^(127\.|localhost$|::1$|\[::1\]$) && -z ${COMPAT_ALLOW_NONLOOPBACK:-} ]]; then
        echo "redis_cli.sh: $host: only loopback addresses (set COMPAT_ALLOW_NONLOOPBACK=1 to override)" >&2
        exit 2
    fi
done
command -v redis-cli >/dev/null || { echo "redis_cli.sh: redis-cli is not on PATH (install.sh installs it)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "redis_cli.sh: python3 is not on PATH" >&2; exit 2; }
# the interpreter itself, not a version manager's shim: rawsock.py runs some 80 times
PY=$(python3 -c 'import sys; print(sys.executable)') || exit 2

finish() {
    [[ -n ${1:-} ]] && echo "$CLIENT: $1"
    echo "$CLIENT: $PASS passed, $FAIL failed"
    [[ $FAIL -eq 0 && -z ${1:-} ]] && exit 0
    exit 1
}

fail() { # WHERE COMMAND EXPECTED ACTUAL
    FAIL=$((FAIL + 1))
    printf 'FAIL %s via %s: %s\n    expected: %s\n    actual:   %s\n' "$CLIENT" "$1" "$2" \
        "$(printf '%s' "$3" | head -c 600 | sed '2,$s/^/              /')" \
        "$(printf '%s' "$4" | head -c 600 | sed '2,$s/^/              /')"
    [[ $FAIL -ge $MAX_FAILURES ]] && finish "stopped after $MAX_FAILURES failures"
    return 0
}

# check WHERE COMMAND EXPECTED ACTUAL: the exact text
check() { if [[ $4 == "$3" ]]; then PASS=$((PASS + 1)); else fail "$@"; fi; }
# check_prefix WHERE COMMAND PREFIX ACTUAL: the text begins with PREFIX (taken literally)
check_prefix() { if [[ $4 == "$3"* ]]; then PASS=$((PASS + 1)); else fail "$1" "$2" "text beginning with $3" "$4"; fi; }
# check_true WHERE COMMAND DESCRIPTION ACTUAL TEST...: the test command succeeds
check_true() {
    local where=$1 cmd=$2 desc=$3 actual=$4; shift 4
    if "$@"; then PASS=$((PASS + 1)); else fail "$where" "$cmd" "$desc" "$actual"; fi
}

host_of() { local h=${1%:*}; h=${h#[}; echo "${h%]}"; }
port_of() { echo "${1##*:}"; }
cli() { local a=$1; shift; timeout 10 redis-cli -h "$(host_of "$a")" -p "$(port_of "$a")" --no-raw "$@" 2>&1; }
cli3() { local a=$1; shift; timeout 10 redis-cli -3 -h "$(host_of "$a")" -p "$(port_of "$a")" --no-raw "$@" 2>&1; }
# the default output when stdout is not a terminal (raw replies, no types)
cli_plain() { local a=$1; shift; timeout 10 redis-cli -h "$(host_of "$a")" -p "$(port_of "$a")" "$@" 2>&1; }
raw() { local a=$1; shift; timeout 40 "$PY" -S -B "$HERE/rawsock.py" "$a" "$@" 2>&1; }

# HELLO's fields as sorted key=value lines, from redis-cli's flat array (RESP2:
# ` 1) "server"` ` 2) "redis"` ...) or map (RESP3: `1# "server" => "redis"`).
hello_fields() {
    awk '
        /^ *[0-9]+\) / { sub(/^ *[0-9]+\) /, ""); item[n++] = $0; next }
        /^ *[0-9]+# /  { sub(/^ *[0-9]+# /, ""); split($0, kv, " => "); item[n++] = kv[1]; item[n++] = kv[2]; next }
        { item[n++] = "?" $0 }
        END { for (i = 0; i + 1 < n; i += 2) { k = item[i]; gsub(/"/, "", k); print k "=" item[i + 1] } }
    ' | sort
}

# hello_ok PROTO TEXT: Redis 7.0's seven fields, proto PROTO, an id, known mode and role.
hello_ok() {
    local proto=$1 fields
    fields=$(hello_fields <<<"$2")
    [[ $(cut -d= -f1 <<<"$fields" | tr '\n' ' ') == "id mode modules proto role server version " ]] &&
        grep -qx "proto=(integer) $proto" <<<"$fields" &&
        grep -qE '^id=\(integer\) [1-9][0-9]*$' <<<"$fields" &&
        grep -qE '^mode="(standalone|cluster|sentinel)"$' <<<"$fields" &&
        grep -qE '^role="(master|replica|slave)"$' <<<"$fields" &&
        grep -qE '^server=".+"$' <<<"$fields" &&
        grep -qE '^version=".+"$' <<<"$fields" &&
        grep -qx 'modules=(empty array)' <<<"$fields"
}

# info_ok TEXT SECTION...: the section headers are there and role: is master or slave
info_ok() {
    local text=$1 s; shift
    for s in "$@"; do grep -qiE "^# $s"$'\r?$' <<<"$text" || return 1; done
    [[ $(grep -c '^role:' <<<"$text") -eq 1 ]] && grep -qE $'^role:(master|slave)\r?$' <<<"$text"
}

# --- the script, on one node ----------------------------------------------------------------

node_suite() {
    local w=$1 a=$2 p=$3 out

    # connection commands
    check "$w" "PING" "PONG" "$(cli "$a" PING)"
    check "$w" "PING hello" '"hello"' "$(cli "$a" PING hello)"
    check "$w" "ECHO 'hello world'" '"hello world"' "$(cli "$a" ECHO "hello world")"
    check "$w" "-3 PING" "PONG" "$(cli3 "$a" PING)"
    out=$(cli "$a" HELLO 2)
    check_true "$w" "HELLO 2" "a flat array of 7 pairs, proto (integer) 2" "$out" hello_ok 2 "$out"
    out=$(cli "$a" HELLO 3)
    check_true "$w" "HELLO 3 (without -3)" "a flat array of 7 pairs, proto (integer) 3 (redis-cli still reads it)" \
        "$out" hello_ok 3 "$out"
    out=$(cli3 "$a" HELLO 3)
    check_true "$w" "-3 HELLO 3" "a map of 7 fields, proto (integer) 3" "$out" hello_ok 3 "$out"
    out=$(cli3 "$a" HELLO)
    check_true "$w" "-3 HELLO (the connection's protocol)" "a map with proto (integer) 3" "$out" hello_ok 3 "$out"
    check "$w" "HELLO 4" "(error) NOPROTO unsupported protocol version" "$(cli "$a" HELLO 4)"
    out=$(cli "$a" CLIENT ID)
    check_true "$w" "CLIENT ID" "(integer) N, N > 0" "$out" eval '[[ $out =~ ^\(integer\)\ [1-9][0-9]*$ ]]'
    # several commands on one connection: redis-cli reads them from stdin, one a line, split
    # with the same quoting rules as inline commands
    check "$w" "CLIENT GETNAME; CLIENT SETNAME compat-cli; CLIENT GETNAME; CLIENT SETNAME \"a b\"; RESET; CLIENT GETNAME" \
        "$(printf '%s\n' '(nil)' OK '"compat-cli"' \
            '(error) ERR Client names cannot contain spaces, newlines or special characters.' RESET '(nil)')" \
        "$(printf '%s\n' 'CLIENT GETNAME' 'CLIENT SETNAME compat-cli' 'CLIENT GETNAME' 'CLIENT SETNAME "a b"' \
            RESET 'CLIENT GETNAME' | cli "$a")"
    check "$w" "-3: CLIENT SETNAME x; RESET; CLIENT GETNAME; HELLO (RESET goes back to RESP2)" \
        "$(printf '%s\n' OK RESET '(nil)' ' 1) "server"')" \
        "$(printf '%s\n' 'CLIENT SETNAME x' RESET 'CLIENT GETNAME' HELLO | cli3 "$a" | head -n 4)"
    # Redis 7.2 added CLIENT SETINFO (+OK); Redis 7.0 refuses it, naming the subcommand as sent.
    out=$(cli "$a" CLIENT SETINFO LIB-NAME compat)
    check_true "$w" "CLIENT SETINFO LIB-NAME compat" "OK or (error) ERR unknown subcommand 'SETINFO'. Try CLIENT HELP." \
        "$out" test "$out" = OK -o "$out" = "(error) ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."
    check "$w" "SELECT 0" "OK" "$(cli "$a" SELECT 0)"
    out=$(cli "$a" SELECT 1)
    check_true "$w" "SELECT 1 (OK with 16 databases, an ERR error with one)" "OK or (error) ERR ..." "$out" \
        eval '[[ $out == OK || $out == "(error) ERR "* ]]'
    check "$w" "SELECT 16" "(error) ERR DB index is out of range" "$(cli "$a" SELECT 16)"
    check "$w" "SELECT abc" "(error) ERR value is not an integer or out of range" "$(cli "$a" SELECT abc)"
    out=$(cli "$a" COMMAND COUNT)
    check_true "$w" "COMMAND COUNT" "(integer) N, N > 0" "$out" eval '[[ $out =~ ^\(integer\)\ [1-9][0-9]*$ ]]'
    out=$(cli "$a" COMMAND DOCS GET)
    check_true "$w" "COMMAND DOCS GET" "(empty array), or an array of pairs beginning 1) \"get\"" "$out" \
        eval '[[ $out == "(empty array)" || $out == "1) \"get\""$'"'"'\n'"'"'* ]]'
    out=$(cli3 "$a" COMMAND DOCS GET)
    check_true "$w" "-3 COMMAND DOCS GET" "(empty hash), or a map beginning 1# \"get\" =>" "$out" \
        eval '[[ $out == "(empty hash)" || $out == "1# \"get\" =>"* ]]'
    out=$(cli "$a" INFO)
    check_true "$w" "INFO" "text with # Server, # Clients, # Replication, # Keyspace and one role:master|slave" \
        "$(head -c 300 <<<"$out")" info_ok "$out" server clients replication keyspace
    out=$(cli3 "$a" INFO)
    check_true "$w" "-3 INFO (a verbatim string, printed as text)" "the same sections and role line" \
        "$(head -c 300 <<<"$out")" info_ok "$out" server clients replication keyspace
    out=$(cli "$a" INFO replication)
    check_true "$w" "INFO replication" "# Replication with role:master|slave, and no # Server" \
        "$(head -c 300 <<<"$out")" eval 'info_ok "$out" replication && ! grep -q "^# Server" <<<"$out"'
    check "$w" "GET (no key)" "(error) ERR wrong number of arguments for 'get' command" "$(cli "$a" GET)"
    check_prefix "$w" "FOOBAR x" "(error) ERR unknown command" "$(cli "$a" FOOBAR x)"

    # strings
    local k=${p}str miss=${p}missing n=${p}counter
    check "$w" "SET $k v1" "OK" "$(cli "$a" SET "$k" v1)"
    check "$w" "GET $k" '"v1"' "$(cli "$a" GET "$k")"
    check "$w" "GET $miss" "(nil)" "$(cli "$a" GET "$miss")"
    check "$w" "SET $k v2 NX (exists)" "(nil)" "$(cli "$a" SET "$k" v2 NX)"
    check "$w" "SET $k v3 XX GET" '"v1"' "$(cli "$a" SET "$k" v3 XX GET)"
    check "$w" "SET $k v4 NX GET (exists: not set)" '"v3"' "$(cli "$a" SET "$k" v4 NX GET)"
    check "$w" "SET ${p}nx n NX" "OK" "$(cli "$a" SET "${p}nx" n NX)"
    check "$w" "SET ${p}xx x XX (missing)" "(nil)" "$(cli "$a" SET "${p}xx" x XX)"
    check "$w" "SET $k x NX XX" "(error) ERR syntax error" "$(cli "$a" SET "$k" x NX XX)"
    check "$w" "SET $k (no value)" "(error) ERR wrong number of arguments for 'set' command" "$(cli "$a" SET "$k")"
    check "$w" "SETNX $k x (exists)" "(integer) 0" "$(cli "$a" SETNX "$k" x)"
    check "$w" "SETNX ${p}setnx x" "(integer) 1" "$(cli "$a" SETNX "${p}setnx" x)"
    check "$w" "GETSET $k g" '"v3"' "$(cli "$a" GETSET "$k" g)"
    check "$w" "GETSET ${p}getset g (missing)" "(nil)" "$(cli "$a" GETSET "${p}getset" g)"
    check "$w" "APPEND $k zz" "(integer) 3" "$(cli "$a" APPEND "$k" zz)"
    check "$w" "STRLEN $k" "(integer) 3" "$(cli "$a" STRLEN "$k")"
    check "$w" "STRLEN $miss" "(integer) 0" "$(cli "$a" STRLEN "$miss")"
    check "$w" "INCR $n" "(integer) 1" "$(cli "$a" INCR "$n")"
    check "$w" "INCRBY $n 9" "(integer) 10" "$(cli "$a" INCRBY "$n" 9)"
    check "$w" "DECR $n" "(integer) 9" "$(cli "$a" DECR "$n")"
    check "$w" "DECRBY $n 10" "(integer) -1" "$(cli "$a" DECRBY "$n" 10)"
    check "$w" "INCR $k (value 'gzz')" "(error) ERR value is not an integer or out of range" "$(cli "$a" INCR "$k")"
    check "$w" "SET ${p}big 9223372036854775807; INCR ${p}big" \
        "$(printf '%s\n' OK '(error) ERR increment or decrement would overflow')" \
        "$(printf '%s\n' "SET ${p}big 9223372036854775807" "INCR ${p}big" | cli "$a")"
    check "$w" "EXISTS $k $k $miss $n" "(integer) 3" "$(cli "$a" EXISTS "$k" "$k" "$miss" "$n")"
    check "$w" "MSET ${p}a 1 ${p}b 2" "OK" "$(cli "$a" MSET "${p}a" 1 "${p}b" 2)"
    check "$w" "MGET ${p}a $miss ${p}b" "$(printf '%s\n' '1) "1"' '2) (nil)' '3) "2"')" \
        "$(cli "$a" MGET "${p}a" "$miss" "${p}b")"
    check "$w" "MSET ${p}a 1 ${p}b (odd)" "(error) ERR wrong number of arguments for 'mset' command" \
        "$(cli "$a" MSET "${p}a" 1 "${p}b")"
    check "$w" "DEL ${p}a ${p}b $miss ${p}a" "(integer) 2" "$(cli "$a" DEL "${p}a" "${p}b" "$miss" "${p}a")"
    check "$w" "SET ${p}bin \$'a\\nb\\x01\"\\\\'" "OK" "$(cli "$a" SET "${p}bin" $'a\nb\x01"\\')"
    check "$w" "GET ${p}bin" '"a\nb\x01\"\\"' "$(cli "$a" GET "${p}bin")"
    # -3: the same replies in RESP3 (a null is `_`, which redis-cli also shows as (nil))
    check "$w" "-3 GET $miss" "(nil)" "$(cli3 "$a" GET "$miss")"
    check "$w" "-3 SET $k v NX (exists)" "(nil)" "$(cli3 "$a" SET "$k" v NX)"
    check "$w" "-3 MGET $k $miss" "$(printf '%s\n' '1) "gzz"' '2) (nil)')" "$(cli3 "$a" MGET "$k" "$miss")"
    check "$w" "-3 EXISTS $k $miss" "(integer) 1" "$(cli3 "$a" EXISTS "$k" "$miss")"
    check "$w" "-3 INCR $n" "(integer) 0" "$(cli3 "$a" INCR "$n")"
    # default output to a pipe, as shell scripts use redis-cli
    check "$w" "(plain) GET $k" "gzz" "$(cli_plain "$a" GET "$k")"
    check "$w" "(plain) GET $miss" "" "$(cli_plain "$a" GET "$miss")"
    check "$w" "(plain) INCR $n" "1" "$(cli_plain "$a" INCR "$n")"
    check "$w" "(plain) SET $k x NX XX" "ERR syntax error" "$(cli_plain "$a" SET "$k" x NX XX)"
    check "$w" "(plain) GET ${p}bin (the bytes)" "$(printf 'a\nb\x01"\\')" "$(cli_plain "$a" GET "${p}bin")"
    local expected="${p}big ${p}bin ${p}counter ${p}getset ${p}nx ${p}setnx ${p}str "
    check "$w" "--scan --pattern '${p}*' (redis-cli's SCAN loop)" "$expected" \
        "$(timeout 20 redis-cli -h "$(host_of "$a")" -p "$(port_of "$a")" --scan --pattern "${p}*" 2>&1 |
            sort | tr '\n' ' ')"
    out=$(cli "$a" DBSIZE)
    check_true "$w" "DBSIZE" "(integer) >= 7" "$out" eval '[[ $out =~ ^\(integer\)\ ([0-9]+)$ ]] && (( BASH_REMATCH[1] >= 7 ))'

    # inline commands on a raw socket: Redis's quoting rules (sdssplitargs)
    check "$w" "raw: PING\\r\\n; ping\\n (LF only); \\r\\n (empty line: no reply); PING\\r\\n" \
        "$(printf '%s\n' +PONG +PONG +PONG)" \
        "$(raw "$a" 1 $'PING\r\n' 1 $'ping\n' 0 $'\r\n' 1 $'PING\r\n')"
    check "$w" "raw: ECHO \\t  hello   (blanks around words)" '$"hello"' "$(raw "$a" 1 $'ECHO \t  hello   \r\n')"
    check "$w" "raw: EcHo Hi (any case)" '$"Hi"' "$(raw "$a" 1 $'EcHo Hi\r\n')"
    check "$w" 'raw: ECHO ""' '$""' "$(raw "$a" 1 $'ECHO ""\r\n')"
    check "$w" "raw: SET \"${p}a b\" \"c\\\"d\"; GET \"${p}a b\"" "$(printf '%s\n' +OK '$"c\"d"')" \
        "$(raw "$a" 1 "SET \"${p}a b\" \"c\\\"d\""$'\r\n' 1 "GET \"${p}a b\""$'\r\n')"
    check "$w" "GET '${p}a b' (multibulk, of the key set inline)" '"c\"d"' "$(cli "$a" GET "${p}a b")"
    check "$w" 'raw: ECHO "a\nb\tc\r\x41\x7a\\\"\q" (escapes in double quotes)' '$"a\nb\tc\rAz\\\"q"' \
        "$(raw "$a" 1 $'ECHO "a\\nb\\tc\\r\\x41\\x7a\\\\\\"\\q"\r\n')"
    check "$w" 'raw: ECHO "\xZZ" (not hex: \x is x)' '$"xZZ"' "$(raw "$a" 1 $'ECHO "\\xZZ"\r\n')"
    check "$w" "raw: ECHO 'a b\\'c' (single quotes, \\' inside)" "\$\"a b'c\"" "$(raw "$a" 1 $'ECHO \'a b\\\'c\'\r\n')"
    check "$w" "raw: ECHO 'a\\nb' (no other escapes in single quotes)" '$"a\\nb"' "$(raw "$a" 1 $'ECHO \'a\\nb\'\r\n')"
    check "$w" "raw: PING\\r\\nECHO x\\r\\n (two inline commands in one write)" "$(printf '%s\n' +PONG '$"x"')" \
        "$(raw "$a" 2 $'PING\r\nECHO x\r\n')"
    check_prefix "$w" "raw: FOO bar" "-ERR unknown command" "$(raw "$a" 1 $'FOO bar\r\n')"
    check "$w" "raw: GET" "-ERR wrong number of arguments for 'get' command" "$(raw "$a" 1 $'GET\r\n')"
    tx="${p}tx"
    check "$w" "raw: MULTI/EXEC: EXECABORT, without MULTI, nested, WATCH inside, INCR GET, DISCARD, empty" \
        "$(printf '%s\n' '+OK' '+QUEUED' "-ERR unknown command 'FOO', with args beginning with: " \
            '-EXECABORT Transaction discarded because of previous errors.' '-ERR EXEC without MULTI' \
            '-ERR DISCARD without MULTI' '+OK' '-ERR MULTI calls can not be nested' \
            '-ERR WATCH inside MULTI is not allowed' '+QUEUED' '+QUEUED' '*[:1, $"1"]' '+OK' '+QUEUED' \
            '+OK' '$"1"' '+OK' '+OK' '*[]' ':1')" \
        "$(raw "$a" 1 $'MULTI\r\n' 1 "SET $tx 1"$'\r\n' 1 $'FOO\r\n' 1 $'EXEC\r\n' 1 $'EXEC\r\n' \
            1 $'DISCARD\r\n' 1 $'MULTI\r\n' 1 $'MULTI\r\n' 1 $'WATCH x\r\n' 1 "INCR $tx"$'\r\n' \
            1 "GET $tx"$'\r\n' 1 $'EXEC\r\n' 1 $'MULTI\r\n' 1 "SET $tx 5"$'\r\n' 1 $'DISCARD\r\n' \
            1 "GET $tx"$'\r\n' 1 $'UNWATCH\r\n' 1 $'MULTI\r\n' 1 $'EXEC\r\n' 1 "DEL $tx"$'\r\n')"
    local bad
    for bad in $'SET "a b\r\n' $'ECHO "a"b\r\n' $'ECHO \'abc\r\n' $'ECHO "a"\'b\'\r\n'; do
        check "$w" "raw: $(printf %q "$bad") (then the server closes the connection)" \
            "$(printf '%s\n' '-ERR Protocol error: unbalanced quotes in request' EOF)" "$(raw "$a" 1 "$bad" eof)"
    done
    # multibulk framing
    check "$w" 'raw: *0\r\n and *-1\r\n (ignored), then *1\r\n$4\r\nPING\r\n' "$(printf '%s\n' +PONG OPEN)" \
        "$(raw "$a" 0 $'*0\r\n' 0 $'*-1\r\n' 1 $'*1\r\n$4\r\nPING\r\n' eof)"
    check "$w" 'raw: *a\r\n' "$(printf '%s\n' '-ERR Protocol error: invalid multibulk length' EOF)" \
        "$(raw "$a" 1 $'*a\r\n' eof)"
    check "$w" 'raw: *1\r\n$a\r\n' "$(printf '%s\n' '-ERR Protocol error: invalid bulk length' EOF)" \
        "$(raw "$a" 1 $'*1\r\n$a\r\n' eof)"
    check "$w" 'raw: *1\r\nfoo\r\n' "$(printf '%s\n' "-ERR Protocol error: expected '\$', got 'f'" EOF)" \
        "$(raw "$a" 1 $'*1\r\nfoo\r\n' eof)"
    # the wire types of RESP2 and RESP3 replies
    out=$(raw "$a" 1 $'HELLO 3\r\n' 1 "GET $miss"$'\r\n' 1 "MGET $miss"$'\r\n' 1 $'INFO server\r\n' \
        1 $'HELLO 2\r\n' 1 "GET $miss"$'\r\n' 1 "MGET $miss"$'\r\n' 1 $'INFO server\r\n' 1 $'QUIT\r\n' eof)
    local lines
    mapfile -t lines <<<"$out"
    local l0=${lines[0]:-}
    check_true "$w" "raw: HELLO 3 (a RESP3 map)" '%{$"server": ..., $"proto": :3, ...}' "$l0" \
        eval '[[ $l0 == "%{"*"}" && $l0 == *"\$\"proto\": :3,"* && $l0 == *"\$\"server\": "* ]]'
    check "$w" "raw: GET $miss in RESP3 (the null _)" "_" "${lines[1]:-}"
    check "$w" "raw: MGET $miss in RESP3" "*[_]" "${lines[2]:-}"
    check_prefix "$w" "raw: INFO server in RESP3 (a verbatim string, format txt)" '=txt:"# Server\r\n' "${lines[3]:-}"
    local l4=${lines[4]:-}
    check_true "$w" "raw: HELLO 2 (a RESP2 flat array)" '*[$"server", ..., $"proto", :2, ...]' "$l4" \
        eval '[[ $l4 == "*["*"]" && $l4 == *"\$\"proto\", :2,"* && $l4 == *"\$\"server\", "* ]]'
    check "$w" "raw: GET $miss in RESP2 (the null bulk \$-1)" '$-1' "${lines[5]:-}"
    check "$w" "raw: MGET $miss in RESP2" '*[$-1]' "${lines[6]:-}"
    check_prefix "$w" "raw: INFO server in RESP2 (a bulk string)" '$"# Server\r\n' "${lines[7]:-}"
    check "$w" "raw: QUIT (+OK, then the server closes the connection)" "$(printf '%s\n' +OK EOF)" \
        "$(printf '%s\n' "${lines[8]:-}" "${lines[9]:-}")"

    check "$w" "DEL <the 8 keys of this node>" "(integer) 8" \
        "$(cli "$a" DEL "$k" "$n" "${p}nx" "${p}setnx" "${p}getset" "${p}big" "${p}bin" "${p}a b")"
}

# --- writes through one node, read through the other ---------------------------------------

cross_suite() {
    local wn=$1 w=$2 rn=$3 r=$4 p=$5 where="$1, read via $3"
    check "$where" "SET ${p}k from-$wn (on $wn)" "OK" "$(cli "$w" SET "${p}k" "from-$wn")"
    check "$where" "GET ${p}k (on $rn)" "\"from-$wn\"" "$(cli "$r" GET "${p}k")"
    check "$where" "INCR ${p}n (on $wn)" "(integer) 1" "$(cli "$w" INCR "${p}n")"
    check "$where" "INCR ${p}n (on $rn)" "(integer) 2" "$(cli "$r" INCR "${p}n")"
    check "$where" "MSET ${p}a 1 ${p}b 2 (on $wn)" "OK" "$(cli "$w" MSET "${p}a" 1 "${p}b" 2)"
    check "$where" "-3 MGET ${p}a ${p}b ${p}none (on $rn)" "$(printf '%s\n' '1) "1"' '2) "2"' '3) (nil)')" \
        "$(cli3 "$r" MGET "${p}a" "${p}b" "${p}none")"
    check "$where" "raw: SET \"${p}q q\" 'x\\'y' (inline, on $wn)" "+OK" "$(raw "$w" 1 "SET \"${p}q q\" 'x\\'y'"$'\r\n')"
    check "$where" "GET '${p}q q' (on $rn)" "\"x'y\"" "$(cli "$r" GET "${p}q q")"
    check "$where" "--scan --pattern '${p}*' (on $rn)" "${p}a ${p}b ${p}k ${p}n ${p}q q " \
        "$(timeout 20 redis-cli -h "$(host_of "$r")" -p "$(port_of "$r")" --scan --pattern "${p}*" 2>&1 | sort | tr '\n' ' ')"
    check "$where" "DEL <5 keys> (on $rn)" "(integer) 5" "$(cli "$r" DEL "${p}a" "${p}b" "${p}k" "${p}n" "${p}q q")"
    check "$where" "EXISTS <the 5 keys> (on $wn)" "(integer) 0" "$(cli "$w" EXISTS "${p}a" "${p}b" "${p}k" "${p}n" "${p}q q")"
}

RUN="compat:cli:$(date +%Y%m%d%H%M%S)-$$-$RANDOM:"
echo "$CLIENT $(redis-cli --version | awk '{print $2}'): follower $FOLLOWER, leader $LEADER, keys $RUN*"
for where_addr in "follower $FOLLOWER" "leader $LEADER"; do
    set -- $where_addr
    out=$(cli "$2" PING)
    check "$1" "PING (can the suite reach the $1?)" PONG "$out"
    [[ $out == PONG ]] || finish "cannot go on without the $1"
done
node_suite follower "$FOLLOWER" "${RUN}follower:"
node_suite leader "$LEADER" "${RUN}leader:"
cross_suite follower "$FOLLOWER" leader "$LEADER" "${RUN}f2l:"
cross_suite leader "$LEADER" follower "$FOLLOWER" "${RUN}l2f:"
for where_addr in "leader $LEADER" "follower $FOLLOWER"; do
    set -- $where_addr
    check "$1" "--scan --pattern '${RUN}*' at the end (nothing of this run is left)" "" \
        "$(timeout 20 redis-cli -h "$(host_of "$2")" -p "$(port_of "$2")" --scan --pattern "${RUN}*" 2>&1)"
done
finish
