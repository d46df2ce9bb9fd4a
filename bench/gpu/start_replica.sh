#!/usr/bin/env bash
# Start replica INDEX of bench/gpu/replicas_run.sh, detached, in its own session (so that a
# SIGKILL to its process group ends its engine too), with output to LOG_FILE; print its PID and
# write it to $WORK/replica-INDEX.pid (replicas_run.sh stops every replica named there).
#
#   bash bench/gpu/start_replica.sh INDEX LOG_FILE
#
# replicas_run.sh runs it for each replica, and bench/gpu/routing_compare.py again to restart
# the replica it killed (KILL_AT_S), on the same port and GPU. It reads the settings that
# replicas_run.sh exports: DRY_RUN, WORK, MODEL, PY, GPU_LIST_TEXT, GPU_MEMORY, MAX_LORAS
# (and PYTHONPATH on the GPU machine). Replica INDEX listens on port 8100+INDEX.
set -euo pipefail
# shellcheck source=bench/gpu/common.sh
source "$(dirname "$0")/common.sh"

index=$1
log_file=$2
port=$((8100 + index))
read -r -a gpus <<<"$GPU_LIST_TEXT"
gpu=${gpus[$((index % ${#gpus[@]}))]}
if [[ $DRY_RUN == 1 ]]; then
    pid=$(start_detached_in "$WORK" "$log_file" "$PY" -m vllm_server.cli standin \
        --port "$port" --max-loras "$MAX_LORAS" --itl-ms 5)
else
    pid=$(start_detached_in "$WORK" "$log_file" env CUDA_VISIBLE_DEVICES="$gpu" \
        VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_SERVER_DEV_MODE=1 \
        python3 -m vllm.entrypoints.openai.api_server --model "$MODEL/base" \
        --served-model-name base --enable-lora --max-loras "$MAX_LORAS" \
        --max-lora-rank 16 --gpu-memory-utilization "$GPU_MEMORY" \
        --disable-uvicorn-access-log --host 127.0.0.1 --port "$port")
fi
echo "$pid" >"$WORK/replica-$index.pid"
echo "$pid"
