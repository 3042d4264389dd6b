#!/usr/bin/env bash
# Installs the clients of the Redis compatibility suite into one directory.
#
#   install.sh DIR        e.g. install.sh target/compat
#
#   DIR/py    the latest redis-py from PyPI   (pip --target: use it with PYTHONPATH=DIR/py)
#   DIR/node  the latest ioredis from npm     (use it with NODE_PATH=DIR/node/node_modules)
#   redis-cli, redis-benchmark and redis-server from Debian's redis-server package, only when
#             one is not on PATH (needs root, as CI is; apt-get is never run otherwise).
#             redis-server is the reference: the suite runs against it too.
#
# Idempotent: running it again upgrades to the latest releases in place. Quiet: it prints
# the versions installed and nothing else unless something fails, and then it exits non-zero
# with the failing step named and that step's output shown.
set -euo pipefail

die() { echo "install.sh: FAILED: $*" >&2; exit 1; }
[[ $# -eq 1 && -n $1 ]] || die "usage: install.sh DIR"
mkdir -p "$1" || die "cannot create $1"
DIR=$(cd "$1" && pwd)
LOG="$DIR/install.log"
: >"$LOG"

# run STEP CMD...: runs CMD with its output in the log; on failure shows the log and stops.
run() {
    local step=$1; shift
    echo "== $step: $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "---- output of the failed step ($LOG) ----" >&2
        sed -n '/^== '"$step"':/,$p' "$LOG" | tail -n 40 >&2
        die "$step (exit status of: $*)"
    fi
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else echo "not root and no sudo: cannot run $*" >&2; return 1; fi
}

apt_install() {
    command -v apt-get >/dev/null || { echo "no apt-get on this machine to install $*" >&2; return 1; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- redis-cli / redis-benchmark -------------------------------------------------------------
if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null ||
    ! command -v redis-server >/dev/null; then
    run redis-server apt_install redis-server redis-tools
fi
command -v redis-server >/dev/null || die "redis-server is still not on PATH after installing it"
command -v redis-cli >/dev/null || die "redis-cli is still not on PATH after installing redis-tools"
command -v redis-benchmark >/dev/null || die "redis-benchmark is still not on PATH after installing redis-tools"

# --- redis-py ---------------------------------------------------------------------------------
command -v python3 >/dev/null || run python3 apt_install python3 python3-pip
if ! python3 -m pip --version >/dev/null 2>&1; then run python3-pip apt_install python3-pip; fi
# --target keeps the install out of the system's site-packages (and so out of PEP 668's way).
run redis-py env PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-input \
    --upgrade --target "$DIR/py" redis
PY_VER=$(PYTHONPATH="$DIR/py" python3 -c 'import redis; print(redis.__version__)' 2>>"$LOG") \
    || die "redis-py does not import from $DIR/py (see $LOG)"

# --- ioredis ----------------------------------------------------------------------------------
command -v node >/dev/null && command -v npm >/dev/null || run nodejs apt_install nodejs npm
mkdir -p "$DIR/node"
run ioredis npm install --prefix "$DIR/node" --no-audit --no-fund --loglevel=error ioredis@latest
NODE_VER=$(node -e 'console.log(require(process.argv[1] + "/ioredis/package.json").version)' \
    "$DIR/node/node_modules" 2>>"$LOG") || die "ioredis does not load from $DIR/node (see $LOG)"

printf '%-24s %s\n' \
    "redis-py $PY_VER" "$DIR/py (python $(python3 -c 'import platform; print(platform.python_version())'))" \
    "ioredis $NODE_VER" "$DIR/node (node $(node --version))" \
    "redis-cli $(redis-cli --version | awk '{print $2}')" "$(command -v redis-cli)" \
    "redis-benchmark $(redis-benchmark --version | awk '{print $2}')" "$(command -v redis-benchmark)"
