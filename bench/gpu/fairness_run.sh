#!/usr/bin/env bash
# bench/fairness.py through real gateway processes on the lent machine's 16 CPU cores (its GPU
# is not used), in one device call: the carried wheels into /tmp/site (no vLLM), the carried
# redis-server on 127.0.0.1:6379 (bench.fairness's REDIS_URL), then
#   python3 -m bench.fairness ARGS
# with ARGS this script's own, plus --through-gateways 1x1 1x4 2x1 and
# --out $OUT/fairness-16core where ARGS name none, e.g. --schedules 3 --through-gateways 1x4.
#
#   bash bench/gpu/fetch_wheels.sh --gateway-only    # here, first: .gpu/small and .gpu/redis
#   bash bench/gpu/fairness_run.sh [ARGS]            # on the device machine, carrying both
#   DRY_RUN=1 bash bench/gpu/fairness_run.sh [ARGS]  # here
#
# The gateway code is the carried working tree's: `python3 -m` from the repository root puts it
# before /tmp/site, and bench.fairness starts the gateways and the stand-in from there too.
# Output: $OUT/fairness-16core.{md,json} and this script's log, $OUT/fairness-run.log.
#
# DRY_RUN=1 runs every step here: PYTHON (default .venv/bin/python), OUT (default
# /tmp/fairness-dry/out), no install unless INSTALL=1 (then into SITE, default
# /tmp/fairness-dry/site, with PYTHON's pip), the carried redis-server started on a free port,
# PINGed and stopped, and for the run the Redis that answers on 6379 if one does (this
# machine's), else the carried one started there.
# Either way bench.fairness gets FAIRNESS_TIMEOUT_S (default 570) before it is stopped, so that
# the log and the cleanup come before the device's 600 s limit. What this script started is
# stopped by PID on the way out; the gateways and the stand-in are bench.fairness's children.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
REPO=$PWD
DRY_RUN=${DRY_RUN:-0}

# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh

REDIS_PORT=6379 # bench.fairness's REDIS_URL
if [[ $DRY_RUN == 1 ]]; then
    WORK=${WORK:-/tmp/fairness-dry}
    OUT=${OUT:-$WORK/out}
    PYTHON=${PYTHON:-$REPO/.venv/bin/python}
    INSTALL=${INSTALL:-0}
    SITE=${SITE:-$WORK/site}
else
    WORK=/tmp/fairness
    OUT=${OUT:?the device tool sets OUT}
    PYTHON=python3
    INSTALL=1
    SITE=/tmp/site
fi
FAIRNESS_TIMEOUT_S=${FAIRNESS_TIMEOUT_S:-570}
REDIS_DIR=$WORK/redis # the carried redis-server, copied outside the checkout
mkdir -p "$WORK" "$OUT"
exec > >(tee "$OUT/fairness-run.log") 2>&1

STARTED_PIDS=()
# shellcheck disable=SC2317  # called by the trap
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        # Each was started with setsid: its process group is its own.
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    done
    STARTED_PIDS=()
}
trap stop_started EXIT

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Copy .gpu/redis to REDIS_DIR and print the LD_LIBRARY_PATH it loads with: all the carried
# libraries, or (where this glibc is older than theirs, glibc-needed.txt) only those that
# ldconfig does not know here (REDIS_PREFER_SYSTEM_LIBS=1: that second way first).
prepare_redis() {
    local lib known dirs=()
    if [[ ! -x .gpu/redis/redis-server ]]; then
        echo "no .gpu/redis/redis-server: run fetch_wheels.sh --gateway-only, carry .gpu/redis" >&2
        return 1
    fi
    rm -rf "$REDIS_DIR"
    cp -r .gpu/redis "$REDIS_DIR"
    mkdir -p "$REDIS_DIR/lib-missing"
    known=$(ldconfig -p 2>/dev/null | awk '{print $1}' || true)
    for lib in "$REDIS_DIR"/lib/*; do
        grep -qxF "$(basename "$lib")" <<<"$known" || ln -s "$lib" "$REDIS_DIR/lib-missing/"
    done
    dirs=("$REDIS_DIR/lib" "$REDIS_DIR/lib-missing")
    [[ ${REDIS_PREFER_SYSTEM_LIBS:-0} == 1 ]] && dirs=("$REDIS_DIR/lib-missing" "$REDIS_DIR/lib")
    for lib in "${dirs[@]}"; do
        if LD_LIBRARY_PATH=$lib "$REDIS_DIR/redis-server" --version >/dev/null 2>&1; then
            echo "$lib"
            return 0
        fi
    done
    echo "the carried redis-server does not load here (glibc $(getconf GNU_LIBC_VERSION);" \
        "it needs $(cat "$REDIS_DIR/glibc-needed.txt")):" >&2
    LD_LIBRARY_PATH=${dirs[0]} "$REDIS_DIR/redis-server" --version >&2 || true
    return 1
}

# Start the carried redis-server (libraries from LIB_PATH) on 127.0.0.1:PORT, from REDIS_DIR,
# in a session of its own, its PID in REDIS_PID (and STARTED_PIDS); wait until it answers PING.
start_redis() {
    local lib_path=$1 port=$2
    REDIS_PID=$(start_detached_in "$REDIS_DIR" "$REDIS_DIR/redis-$port.log" \
        env LD_LIBRARY_PATH="$lib_path" "$REDIS_DIR/redis-server" --bind 127.0.0.1 \
        --port "$port" --save "" --appendonly no --dir "$REDIS_DIR")
    STARTED_PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do
        redis_answers "$port" && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server (PID $REDIS_PID) did not answer PING on $port:" >&2
    tail -20 "$REDIS_DIR/redis-$port.log" >&2
    return 1
}

stop_pid() {
    local pid=$1 other kept=()
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for other in "${STARTED_PIDS[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
    STARTED_PIDS=("${kept[@]}")
}

# The same fingerprint as fetch_wheels.sh --gateway-only writes to .gpu/small/revision.txt.
tree_fingerprint() {
    find gateway vllm_server bench -name '*.py' -type f | LC_ALL=C sort |
        xargs -d '\n' sha256sum | sha256sum | cut -c1-12
}

log "fairness through gateways: DRY_RUN=$DRY_RUN, $(nproc) cores (nproc), python $PYTHON"
if [[ $INSTALL == 1 ]]; then
    if ! compgen -G ".gpu/small/*.whl" >/dev/null; then
        echo "no .gpu/small/*.whl: run fetch_wheels.sh --gateway-only, carry .gpu/small" >&2
        exit 1
    fi
    log "installing .gpu/small's $(compgen -G '.gpu/small/*.whl' | wc -l) wheels into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .gpu/small/*.whl
    export PYTHONPATH=$SITE
fi
export PYTHONUNBUFFERED=1

if git rev-parse --git-dir >/dev/null 2>&1; then
    revision="git $(git rev-parse --short HEAD)"
    [[ -z $(git status --porcelain) ]] || revision+=" + local changes"
    log "revision: $revision"
fi
if [[ -f .gpu/small/revision.txt ]]; then
    log "revision at the wheels' fetch: $(cat .gpu/small/revision.txt)"
fi
log "tree now: $(tree_fingerprint) (gateway/, vllm_server/, bench/ *.py)"
"$PYTHON" -c 'import sys, gateway, pydantic, fastapi, uvicorn, redis, aiohttp
print("python", sys.version.split()[0], "| gateway from", gateway.__file__)
modules = (pydantic, fastapi, uvicorn, redis, aiohttp)
print(" ".join(f"{m.__name__} {m.__version__}" for m in modules))'
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open files limit: $(ulimit -n)"

lib_path=$(prepare_redis)
version=$(LD_LIBRARY_PATH=$lib_path "$REDIS_DIR/redis-server" --version | cut -d' ' -f1-3)
log "$version, LD_LIBRARY_PATH=$lib_path ($(find -L "$lib_path" -type f | wc -l) libraries)"
if [[ $DRY_RUN == 1 ]]; then
    port=$(free_port)
    start_redis "$lib_path" "$port"
    log "the carried redis-server (PID $REDIS_PID) answered PING on $port; stopping it"
    stop_pid "$REDIS_PID"
fi
if redis_answers "$REDIS_PORT"; then
    log "a Redis already answers on 127.0.0.1:$REDIS_PORT: using it, starting none"
else
    start_redis "$lib_path" "$REDIS_PORT"
    log "the carried redis-server (PID $REDIS_PID) answers PING on 127.0.0.1:$REDIS_PORT"
fi

# The defaults only where ARGS name none, so the report's re-run line is the command given.
args=("$@")
[[ " $* " == *" --through-gateways "* ]] || args=(--through-gateways 1x1 1x4 2x1 "${args[@]}")
[[ " $* " == *" --out "* ]] || args+=(--out "$OUT/fairness-16core")
log "python -m bench.fairness ${args[*]} (at most ${FAIRNESS_TIMEOUT_S} s)"
started=$SECONDS
rc=0
timeout -k 10 "$FAIRNESS_TIMEOUT_S" "$PYTHON" -m bench.fairness "${args[@]}" || rc=$?
log "bench.fairness exited with $rc after $((SECONDS - started)) s"
exit "$rc"
