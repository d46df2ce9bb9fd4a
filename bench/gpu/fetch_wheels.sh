#!/usr/bin/env bash
# Download, into the git-ignored folder .gpu/, every wheel the GPU benchmark installs on the
# lent GPU machine, which reaches no package registry (see ../shared/notes/gpu-vllm.md).
#
#   bash bench/gpu/fetch_wheels.sh        # from the repository root; re-run before each GPU run
#   bash bench/gpu/fetch_wheels.sh --gateway-only     # or GATEWAY_ONLY=1: for fairness_run.sh
#
# --gateway-only skips vllm and its pieces (.gpu/vllm and .gpu/call-* are left as they are) and
# fills .gpu/small/ with the wheels the gateway, the stand-in and bench/ need on the device
# image and nothing else, no gateway wheel either (what runs there is the carried working tree:
# `python3 -m ...` from the repository root imports gateway/, vllm_server/ and bench/ from it
# before /tmp/site); and .gpu/redis/: this machine's redis-server with every shared library it
# loads but glibc's, which it checks here by starting it. Both go in one device call (64 MiB
# with the working tree). A later default run rebuilds .gpu/small for vLLM.
#
# A device call carries at most 64 MiB, the working tree included, so the vllm wheel (304 MB)
# travels cut in pieces, one per call: .gpu/call-1/ ... .gpu/call-N/. The last
# call also carries .gpu/small/: vLLM's small dependencies that the device image lacks, the
# gateway's own (for Python 3.12), the gateway as a wheel, and vllm.sha256 to check the join.
# One version of each package: two versions of one stop pip's install there. The gateway
# wheel is rebuilt on every run, so the device runs the code of the moment.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh  # redis_answers

GATEWAY_ONLY=${GATEWAY_ONLY:-0}
for arg in "$@"; do
    case $arg in
        --gateway-only) GATEWAY_ONLY=1 ;;
        *) echo "usage: bash bench/gpu/fetch_wheels.sh [--gateway-only]" >&2; exit 2 ;;
    esac
done

OUT=.gpu
VLLM_SPEC="vllm==0.26.0"
# 55 MiB pieces make six calls, each with room for a working tree of up to 9 MiB (2 MiB in
# November 2026, growing); 62 MiB pieces make five, but leave room for 2 MiB only.
PIECE_SIZE=${PIECE_SIZE:-55M}
# What the device image (KINDS.md, "Python packages already there") lacks.
# For vLLM 0.26, as listed in ../shared/notes/gpu-vllm.md:
VLLM_SMALL=(
    annotated_types==0.8.0 apache_tvm_ffi==0.1.15.post2 blake3==1.0.11 cachetools==8.0.2
    cbor2==6.3.0 distro==1.9.0 fastapi==0.136.3 jiter==0.19.0 jmespath==1.1.0
    llguidance==1.7.6 model_hosting_container_standards==0.1.16 msgspec==0.22.0
    openai==2.54.0 openai_harmony==0.0.8 partial_json_parser==0.2.1.1.post7
    prometheus_fastapi_instrumentator==8.1.0 pybase64==1.5.1 pydantic==2.14.4
    pydantic_core==2.50.5 python_multipart==0.0.34 pyzmq==27.3.0 setproctitle==1.3.8
    sniffio==1.3.1 starlette==1.10.0 typing_inspection==0.4.5 uvicorn==0.54.0
    watchfiles==1.3.0 xgrammar==0.2.8
)
# For the gateway (pyproject.toml), beyond those and the image's aiohttp, httpx,
# prometheus-client, pyyaml, uvloop, anyio, h11, click and annotated-doc; the versions are
# the gateway venv's. redis, re2, psycopg and OpenTelemetry's API and SDK are imported at start
# even with the SQLite store and tracing off (the OTLP exporter only with tracing on).
GATEWAY_SMALL=(
    httptools==0.9.0 orjson==3.13.0 pydantic_settings==2.16.3 python_dotenv==1.2.4
    redis==8.1.0 google_re2==1.1.20251105 psycopg==3.3.9 psycopg_binary==3.3.9
    psycopg_pool==3.3.3 opentelemetry_api==1.45.2 opentelemetry_sdk==1.45.2
    opentelemetry_semantic_conventions==0.66b2
)
# --gateway-only: GATEWAY_SMALL and what the gateway takes from VLLM_SMALL, at the versions of
# requirements.lock (the gateway's tests'; fastapi there is newer than vLLM's pin).
GATEWAY_ONLY_SMALL=(
    annotated_types==0.8.0 fastapi==0.165.0 pydantic==2.14.4 pydantic_core==2.50.5
    python_multipart==0.0.34 starlette==1.10.0 typing_inspection==0.4.5 uvicorn==0.54.0
)
PLATFORMS=(manylinux1_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64
    manylinux_2_26_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64)

download() {
    local dest=$1
    shift
    # This machine's pip config names local indexes that lack most of these: pip says so.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]/#/--platform=}" -d "$dest" "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# "git <commit>[ + local changes], WHAT <when>" and EXTRA to .gpu/small/revision.txt.
write_revision() {
    local revision what=$1 extra=${2:-}
    revision="git $(git rev-parse --short HEAD)"
    [[ -z $(git status --porcelain) ]] || revision+=" + local changes"
    echo "$revision, $what $(date -u +%Y-%m-%dT%H:%M:%SZ)$extra" >"$OUT/small/revision.txt"
}

# A fingerprint of the Python files under gateway/, vllm_server/ and bench/: with
# --gateway-only it goes to revision.txt, and bench/gpu/fairness_run.sh prints the same of the
# tree it runs, so a tree changed since the fetch shows.
tree_fingerprint() {
    find gateway vllm_server bench -name '*.py' -type f | LC_ALL=C sort |
        xargs -d '\n' sha256sum | sha256sum | cut -c1-12
}

# One version of each distribution: a wheel name starts with "<name>-<version>-".
check_one_version() {
    local dupes
    dupes=$(find "$OUT/small" -maxdepth 1 -name '*.whl' -printf '%f\n' | cut -d- -f1 |
        tr 'A-Z-' 'a-z_' | sort | uniq -d)
    [[ -z $dupes ]] || { echo "two versions of: $dupes" >&2; exit 1; }
}

working_tree_bytes() {
    git ls-files -co --exclude-standard -z |
        { du -cb --files0-from=- 2>/dev/null || true; } | tail -1 | cut -f1
}

# .gpu/redis: redis-server (REDIS_SERVER, default the one on PATH) and every shared library it
# loads but glibc's own, which must be the device's (its loader's); the newest glibc symbol
# version they need goes to glibc-needed.txt. Then it is started here from there on a free
# port, only the copied libraries on LD_LIBRARY_PATH, and must answer PING.
copy_redis() {
    local server dest=$OUT/redis lib port pid answered=0 here
    server=$(command -v "${REDIS_SERVER:-redis-server}") ||
        { echo "no redis-server here: apt-get install redis-server" >&2; exit 1; }
    rm -rf "$dest"
    mkdir -p "$dest/lib"
    # Debian's redis-server is a link to redis-check-rdb, which acts by the name it is run as.
    cp -L "$server" "$dest/redis-server"
    while read -r lib; do
        case $(basename "$lib") in
            libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | \
                ld-linux*) ;;
            *) cp -L "$lib" "$dest/lib/" ;;
        esac
    done < <(ldd "$dest/redis-server" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
    grep -aoh 'GLIBC_2\.[0-9]*' "$dest/redis-server" "$dest"/lib/* | sort -uV | tail -1 |
        cut -d_ -f2 >"$dest/glibc-needed.txt"
    if LD_LIBRARY_PATH=$dest/lib ldd "$dest/redis-server" | grep -v -e "$dest/lib/" -e linux-vdso |
        grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv)\.so|ld-linux' | grep .; then
        echo "redis-server loads the above from outside $dest/lib" >&2
        exit 1
    fi
    LD_LIBRARY_PATH=$dest/lib "$dest/redis-server" --version >"$dest/version.txt"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
    here=$PWD/$dest
    (cd /tmp && exec env LD_LIBRARY_PATH="$here/lib" "$here/redis-server" \
        --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null 2>&1) &
    pid=$!
    for _ in $(seq 50); do
        redis_answers "$port" && { answered=1; break; }
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ((answered)) || { echo "the copied redis-server did not answer PING on $port" >&2; exit 1; }
    echo "$dest: $(cut -d' ' -f1-3 "$dest/version.txt")," \
        "$(find "$dest/lib" -type f | wc -l) libraries, needs glibc >=" \
        "$(cat "$dest/glibc-needed.txt"); answered PING on port $port here"
}

if ((GATEWAY_ONLY)); then
    rm -rf "$OUT/small"
    mkdir -p "$OUT/small"
    download "$OUT/small" "${GATEWAY_ONLY_SMALL[@]}" "${GATEWAY_SMALL[@]}"
    write_revision "wheels fetched" ", tree $(tree_fingerprint)"
    check_one_version
    copy_redis
    tree_bytes=$(working_tree_bytes)
    small=$(du -sb "$OUT/small" | cut -f1)
    redis=$(du -sb "$OUT/redis" | cut -f1)
    limit=$((64 * 1024 * 1024))
    total=$((tree_bytes + small + redis))
    echo "working tree $tree_bytes + $OUT/small $small + $OUT/redis $redis bytes:" \
        "$total of $limit bytes"
    ((total <= limit)) || { echo "over the 64 MiB a call may carry" >&2; exit 1; }
    exit 0
fi

mkdir -p "$OUT/vllm"
download "$OUT/vllm" "$VLLM_SPEC"
wheel=$(ls "$OUT"/vllm/vllm-*.whl)
[[ $(wc -w <<<"$wheel") == 1 ]] || { echo "expected one vllm wheel in $OUT/vllm" >&2; exit 1; }

rm -rf "$OUT"/call-* "$OUT/small" "$OUT/pieces"
mkdir -p "$OUT/pieces" "$OUT/small"
split -b "$PIECE_SIZE" "$wheel" "$OUT/pieces/vllm-part-"
n=0
for piece in "$OUT"/pieces/vllm-part-*; do
    n=$((n + 1))
    mkdir -p "$OUT/call-$n"
    mv "$piece" "$OUT/call-$n/"
done
rmdir "$OUT/pieces"
(cd "$OUT/vllm" && sha256sum "$(basename "$wheel")") >"$OUT/small/vllm.sha256"

download "$OUT/small" "${VLLM_SMALL[@]}" "${GATEWAY_SMALL[@]}"
# Built from a copy of the working tree: setuptools' build/ folder in the repository could
# hold modules deleted since, and they would end up in the wheel.
source=$(mktemp -d)
# (Files deleted but still in git's index are listed too, hence --ignore-failed-read.)
git ls-files -co --exclude-standard -z | tar -c --null --ignore-failed-read -T - 2>/dev/null |
    tar -x -C "$source"
python3 -m pip wheel -q --no-deps "$source" -w "$OUT/small"
rm -rf "$source"
write_revision "wheel built"
check_one_version

tree_bytes=$(working_tree_bytes)
limit=$((64 * 1024 * 1024))
echo "working tree (travels with every call): $tree_bytes bytes"
for dir in "$OUT"/call-*; do
    carried=$(du -sb "$dir" | cut -f1)
    extra=0
    [[ $dir == "$OUT/call-$n" ]] && extra=$(du -sb "$OUT/small" | cut -f1)
    total=$((tree_bytes + carried + extra))
    echo "$dir$([[ $extra != 0 ]] && echo " + $OUT/small"): $total of $limit bytes"
    ((total <= limit)) || { echo "over the 64 MiB a call may carry: lower PIECE_SIZE" >&2; exit 1; }
done
