#!/usr/bin/env bash
# The routing comparison on the GPU machine: REPLICAS stock vLLM 0.26 servers (by default two on
# the one GPU, each --gpu-memory-utilization 0.4, --max-loras 4), 12 LoRA adapters over 6
# tenants loaded at runtime by the gateway, and bench/gpu/routing_compare.py sending the same
# multi-tenant conversations through a fresh gateway per routing policy. Results to $OUT.
#
#   bash bench/gpu/replicas_run.sh                 # on the GPU machine, as the last device call
#   DRY_RUN=1 bash bench/gpu/replicas_run.sh       # here: stand-ins instead of vLLM
#
# Parameters (environment): REPLICAS (2), GPUS (the CUDA device of each replica in turn, "0":
# all on GPU 0; "0 1" on a two-GPU machine), GPU_MEMORY (0.4 each), MAX_LORAS (4), ADAPTERS
# (12), POLICIES ("round_robin affinity prefix"), USERS (96), LOAD_SECONDS (60 per policy), TURNS (5),
# SYSTEM_CHARS (3000), QUESTION_WORDS (40), OUTPUT_LEN (128), WORKERS (gateway workers;
# default: bench/gpu/gateway.env's). Replicas start one after the other (each once the one before
# has taken its GPU memory), from a folder outside the checkout (bench/gpu/start_replica.sh),
# and every wait on one ends with its log's tail if it exits.
#
# Scenarios (routing_compare.py's docstring says what each records): REPEATS (1: every policy
# once; N: the list of policies N times), HOT_SHARE (share of the users on one tenant's one
# model, e.g. 0.75; unset: spread evenly), KILL_AT_S (unset: no kill; else replica KILL_REPLICA,
# default 1, is SIGKILLed that many seconds into each policy's load and started again
# RESTART_AFTER_S, default 5, after its processes are gone: LOAD_SECONDS must leave it time to
# start and be re-admitted, minutes for vLLM on a GPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
DRY_RUN=${DRY_RUN:-0}
# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh

REPLICAS=${REPLICAS:-2}
read -r -a GPU_LIST <<<"${GPUS:-0}"
GPU_MEMORY=${GPU_MEMORY:-0.4}
MAX_LORAS=${MAX_LORAS:-4}
ADAPTER_COUNT=${ADAPTERS:-12}
read -r -a POLICY_LIST <<<"${POLICIES:-round_robin affinity prefix}"
if [[ $DRY_RUN == 1 ]]; then
    WORK=${WORK:-/tmp/gpu-routing-dry}
    OUT=${OUT:-$WORK/out}
    PY=$REPO/.venv/bin/python
    TORCH_PYTHON=$REPO/.venv-vllm/bin/python
    MODEL_ARGS=(--tiny)
    USERS=${USERS:-12}
    SECONDS_PER_POLICY=${LOAD_SECONDS:-8}
    # the stand-in's context is 512 tokens
    SYSTEM_CHARS=${SYSTEM_CHARS:-600} QUESTION_WORDS=${QUESTION_WORDS:-8} OUTPUT_LEN=${OUTPUT_LEN:-16}
else
    WORK=/tmp/gpu-routing
    OUT=${OUT:?the device tool sets OUT}
    PY=python3
    TORCH_PYTHON=python3
    MODEL_ARGS=()
    USERS=${USERS:-96}
    SECONDS_PER_POLICY=${LOAD_SECONDS:-60}
fi
mkdir -p "$WORK" "$OUT"
exec > >(tee "$OUT/routing-run.log") 2>&1
# what bench/gpu/start_replica.sh reads, here and when routing_compare.py restarts a replica
GPU_LIST_TEXT="${GPU_LIST[*]}"
export DRY_RUN WORK PY GPU_LIST_TEXT GPU_MEMORY MAX_LORAS
rm -f "$WORK"/replica-*.pid "$WORK"/replica-*.log  # an earlier run's, not to be mistaken for this one's

# The replicas' process groups, and those routing_compare.py restarted (replica-N.pid).
stop_started() {
    for file in "$WORK"/replica-*.pid; do
        [[ -f $file ]] && kill -TERM -- "-$(cat "$file")" 2>/dev/null || true
    done
}
trap stop_started EXIT

[[ $DRY_RUN == 1 ]] || install_carried_wheels "$REPO"
# The gateway imports as it will start (from outside the checkout): a missing wheel fails here,
# before minutes of vLLM starts.
(cd "$WORK" && "$PY" -c "import gateway.cli, gateway.app")

MODEL=$WORK/model
export MODEL
if [[ ! -f $MODEL/.complete-$ADAPTER_COUNT ]]; then
    log "building the random-weight model, its tokenizer and $ADAPTER_COUNT adapters"
    rm -rf "$MODEL"
    "$TORCH_PYTHON" -m bench.gpu.build_model "$MODEL" --adapters "$ADAPTER_COUNT" "${MODEL_ARGS[@]}"
    touch "$MODEL/.complete-$ADAPTER_COUNT"
fi

replica_args=()
for ((i = 0; i < REPLICAS; i++)); do
    port=$((8100 + i))
    log_file=$WORK/replica-$i.log
    gpu=${GPU_LIST[$((i % ${#GPU_LIST[@]}))]}
    [[ $DRY_RUN == 1 ]] || log "starting vLLM replica $i on GPU $gpu, port $port"
    pid=$(bash bench/gpu/start_replica.sh "$i" "$log_file")
    if [[ $DRY_RUN != 1 ]]; then
        # The next one on the same GPU measures its free memory only once this one holds its
        # KV cache; a replica that dies meanwhile ends the wait.
        for _ in $(seq 300); do
            grep -q "KV cache" "$log_file" 2>/dev/null && break
            kill -0 "$pid" 2>/dev/null || { tail -c 4000 "$log_file"; exit 1; }
            sleep 1
        done
    fi
    replica_args+=(--replica "http://127.0.0.1:$port" "$pid" "$log_file")
done

gateway_settings=()
while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] && continue
    # WORKERS, when given, stands in for gateway.env's line
    [[ -n ${WORKERS:-} && $line == VLLM_GATEWAY_SERVER__WORKERS=* ]] && continue
    gateway_settings+=(--gateway-setting "$line")
done <bench/gpu/gateway.env
[[ -z ${WORKERS:-} ]] || gateway_settings+=(--gateway-setting "VLLM_GATEWAY_SERVER__WORKERS=$WORKERS")

REVISION=$(cat .gpu/small/revision.txt 2>/dev/null || git describe --always --dirty 2>/dev/null ||
    echo unknown)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
scenario_args=(--repeats "${REPEATS:-1}")
[[ -z ${HOT_SHARE:-} ]] || scenario_args+=(--hot-share "$HOT_SHARE")
if [[ -n ${KILL_AT_S:-} ]]; then
    scenario_args+=(--kill-at-s "$KILL_AT_S" --kill-replica "${KILL_REPLICA:-1}"
        --restart-after-s "${RESTART_AFTER_S:-5}" --restart-script bench/gpu/start_replica.sh)
fi
status=0
"$PY" -m bench.gpu.routing_compare "${replica_args[@]}" --adapters-dir "$MODEL" \
    --out-dir "$OUT" --work-dir "$WORK" --policies "${POLICY_LIST[@]}" --users "$USERS" \
    --seconds "$SECONDS_PER_POLICY" --turns "${TURNS:-5}" --system-chars "${SYSTEM_CHARS:-3000}" \
    --question-words "${QUESTION_WORDS:-40}" --output-len "${OUTPUT_LEN:-128}" --gateway-python "$PY" \
    "${gateway_settings[@]}" "${scenario_args[@]}" \
    --context "GPU=${GPU:-none (dry run)}" --context "Gateway revision=$REVISION" \
    --context "Replicas=$REPLICAS on GPUs ${GPU_LIST[*]}, each --gpu-memory-utilization $GPU_MEMORY --max-loras $MAX_LORAS --max-lora-rank 16, $ADAPTER_COUNT adapters loaded at runtime" \
    --context "Re-run=REPLICAS=$REPLICAS GPUS='${GPU_LIST[*]}' USERS=$USERS LOAD_SECONDS=$SECONDS_PER_POLICY WORKERS=${WORKERS:-} REPEATS=${REPEATS:-1} HOT_SHARE=${HOT_SHARE:-} KILL_AT_S=${KILL_AT_S:-} bash bench/gpu/replicas_run.sh" ||
    status=$?
for log_file in "$WORK"/replica-*.log; do
    tail -c 3000000 "$log_file" >"$OUT/$(basename "$log_file")" || true
done
log "done (routing_compare exited $status)"
exit "$status"
