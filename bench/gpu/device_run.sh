#!/usr/bin/env bash
# The GPU benchmark's last device call: stock vLLM 0.26 with 4 LoRA adapters on the GPU, our
# gateway on the same machine's CPUs, and the same streaming load sent to each (16, 64 and 256
# streams of 128 tokens); raw JSON and a Markdown table go to $OUT.
#
#   bash bench/gpu/device_run.sh                 # on the GPU machine, as the last device call
#   DRY_RUN=1 bash bench/gpu/device_run.sh       # here: the stand-in instead of vLLM
#
# Earlier device calls left the vllm wheel's pieces in /tmp/ch; this call carries the last one
# (.gpu/call-N) and .gpu/small (see bench/gpu/fetch_wheels.sh). A vLLM that an earlier run of
# this script left on the same warm machine is reused, which saves its ~130 s start; the
# gateway is started afresh every time.
#
# DRY_RUN=1 tries every step but the GPU ones on this machine: a tiny model from .venv-vllm,
# the stand-in (pausing DRY_ITL_MS, default 5, between tokens) as the upstream, the gateway
# from GATEWAY_PYTHON (default .venv/bin/python), `vllm bench serve` from LOAD_PYTHON (default
# .venv-vllm/bin/python; a python without vllm makes the load go through bench/streams.py,
# STREAMS_SECONDS a run), CONCURRENCY (default "4 16") and results in OUT (default
# /tmp/gpu-bench-dry/out).
# Anything started here is stopped on the way out, except a real vLLM (see above).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
DRY_RUN=${DRY_RUN:-0}

# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh

free_port() {
    "$LOAD_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

STARTED_PIDS=()
stop_started() {
    for pid in "${STARTED_PIDS[@]}"; do
        # Each was started with setsid: its process group is its own, children included.
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
}
trap stop_started EXIT

if [[ $DRY_RUN == 1 ]]; then
    WORK=${WORK:-/tmp/gpu-bench-dry}
    OUT=${OUT:-$WORK/out}
    TORCH_PYTHON=$REPO/.venv-vllm/bin/python
    GATEWAY_PYTHON=${GATEWAY_PYTHON:-$REPO/.venv/bin/python}
    LOAD_PYTHON=${LOAD_PYTHON:-$REPO/.venv-vllm/bin/python}
    CONCURRENCY=${CONCURRENCY:-4 16}
    PROMPTS_PER_STREAM=${PROMPTS_PER_STREAM:-2}
    MODEL_ARGS=(--tiny)
else
    WORK=/tmp/gpu-bench
    OUT=${OUT:?the device tool sets OUT}
    TORCH_PYTHON=python3
    GATEWAY_PYTHON=python3
    LOAD_PYTHON=python3
    CONCURRENCY=${CONCURRENCY:-16 64 256}
    PROMPTS_PER_STREAM=${PROMPTS_PER_STREAM:-8}
    MODEL_ARGS=()
fi
ADAPTERS=(tenant-a tenant-b tenant-c tenant-d)
mkdir -p "$WORK" "$OUT"
exec > >(tee "$OUT/run.log") 2>&1

if [[ $DRY_RUN != 1 ]]; then
    install_carried_wheels "$REPO"
fi

MODEL=$WORK/model
if [[ ! -f $MODEL/.complete ]]; then
    log "building the random-weight model, its tokenizer and ${#ADAPTERS[@]} adapters"
    rm -rf "$MODEL"
    "$TORCH_PYTHON" -m bench.gpu.build_model "$MODEL" --adapters ${#ADAPTERS[@]} "${MODEL_ARGS[@]}"
    touch "$MODEL/.complete"
fi

if [[ $DRY_RUN == 1 ]]; then
    UPSTREAM_PORT=$(free_port)
    lora_args=()
    for name in "${ADAPTERS[@]}"; do lora_args+=(--lora "$name=$MODEL/$name"); done
    log "starting the stand-in on port $UPSTREAM_PORT"
    UPSTREAM_LOG=$OUT/upstream.log
    UPSTREAM_PID=$(start_detached_in "$REPO" "$UPSTREAM_LOG" "$GATEWAY_PYTHON" -m vllm_server.cli \
        standin --port "$UPSTREAM_PORT" --max-loras ${#ADAPTERS[@]} "${lora_args[@]}" \
        --itl-ms "${DRY_ITL_MS:-5}")
    STARTED_PIDS+=("$UPSTREAM_PID")
    UPSTREAM_ARGS="stand-in, ${DRY_ITL_MS:-5} ms between tokens"
else
    UPSTREAM_PORT=8000
    lora_args=()
    for name in "${ADAPTERS[@]}"; do lora_args+=("$name=$MODEL/$name"); done
    VLLM_ARGS=(--model "$MODEL/base" --served-model-name base --enable-lora
        --lora-modules "${lora_args[@]}" --max-loras ${#ADAPTERS[@]} --max-lora-rank 16
        --gpu-memory-utilization 0.5 --disable-uvicorn-access-log
        --enable-log-requests --max-log-len 0
        --host 127.0.0.1 --port "$UPSTREAM_PORT")
    UPSTREAM_ARGS="vllm serve ${VLLM_ARGS[*]}"
    if [[ -f $WORK/vllm.pid ]] && kill -0 "$(cat "$WORK/vllm.pid")" 2>/dev/null; then
        log "vLLM from an earlier run is still up (or starting): reusing it"
    else
        log "starting vLLM (about 130 s to /health)"
        # Not stopped on exit: a later run on the same warm machine reuses it.
        # Every line stamped with its epoch time: bench/gpu/timelines.py reads when each
        # request entered vLLM's queue ("Added request").
        cp bench/gpu/vllm-logging.json "$WORK/vllm-logging.json"
        start_detached_in "$WORK" "$WORK/vllm.log" env VLLM_ALLOW_RUNTIME_LORA_UPDATING=True \
            VLLM_LOGGING_CONFIG_PATH="$WORK/vllm-logging.json" python3 -m vllm.entrypoints.openai.api_server "${VLLM_ARGS[@]}" >"$WORK/vllm.pid"
    fi
    UPSTREAM_PID=$(cat "$WORK/vllm.pid")
    UPSTREAM_LOG=$WORK/vllm.log
fi

GATEWAY_PORT=$(free_port)
ADMIN_KEY="gpu-bench-admin-$(date +%s%N)"
rm -rf "$WORK/gateway"
mkdir -p "$WORK/gateway"
log "starting the gateway on port $GATEWAY_PORT (settings: bench/gpu/gateway.env)"
gateway_env=()
while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] || gateway_env+=("$line")
done <bench/gpu/gateway.env
# From its own folder: on the GPU machine the gateway then runs from its installed wheel.
GATEWAY_PID=$(start_detached_in "$WORK/gateway" "$OUT/gateway.log" env \
    "${gateway_env[@]}" \
    VLLM_GATEWAY_ADMIN__KEYS="[\"$ADMIN_KEY\"]" \
    VLLM_GATEWAY_STORE__SQLITE_PATH="$WORK/gateway/gateway.db" \
    "$GATEWAY_PYTHON" -m gateway.cli serve --host 127.0.0.1 --port "$GATEWAY_PORT" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT")
STARTED_PIDS+=("$GATEWAY_PID")

REVISION=$(cat .gpu/small/revision.txt 2>/dev/null || git describe --always --dirty 2>/dev/null ||
    echo unknown)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
status=0
# shellcheck disable=SC2086  # CONCURRENCY is a list of numbers
"$LOAD_PYTHON" -m bench.gpu.compare \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" --gateway "http://127.0.0.1:$GATEWAY_PORT" \
    --admin-key "$ADMIN_KEY" --tokenizer "$MODEL/base" --gateway-pid "$GATEWAY_PID" \
    --upstream-pid "$UPSTREAM_PID" --upstream-log "$UPSTREAM_LOG" \
    --out-dir "$OUT" --concurrency $CONCURRENCY --prompts-per-stream "$PROMPTS_PER_STREAM" \
    --streams-seconds "${STREAMS_SECONDS:-15}" --repeats "${REPEATS:-2}" \
    --gateway-log "$OUT/gateway.log" \
    --context "GPU=${GPU:-none (dry run)}" --context "Gateway revision=$REVISION" \
    --context "Upstream=$UPSTREAM_ARGS" \
    --context "Gateway settings=$(IFS=' '; echo "${gateway_env[*]:-defaults}")" || status=$?

if [[ $DRY_RUN != 1 ]]; then
    cp "$WORK/vllm.log" "$OUT/vllm.log"
fi
# What comes back from the device: at most 16 MiB a file (run.log, still being written, stays
# small).
for file in "$OUT"/gateway.log "$OUT"/vllm.log "$OUT"/upstream.log; do
    [[ -f $file ]] || continue
    tail -c 15000000 "$file" >"$file.tmp" && mv "$file.tmp" "$file"
done
log "done (compare exited $status)"
exit "$status"
