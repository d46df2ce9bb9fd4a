# Sourced by the GPU benchmark's device scripts (bench/gpu/device_run.sh, replicas_run.sh):
# logging, detached starts, and installing the carried wheels on the GPU machine.
#
# Earlier device calls left the vllm wheel's pieces in /tmp/ch; the last call carries the last
# one (.gpu/call-N) and .gpu/small (see bench/gpu/fetch_wheels.sh).

log() { echo "$(date +%H:%M:%S)  $*"; }

# Start "$@" in its own session with output to LOG, from the folder DIR (outside the checkout:
# a later device call replaces the checkout, and a server whose working directory is gone dies
# at its next import); print its PID.
start_detached_in() {
    local dir=$1 log_file=$2
    shift 2
    (
        cd "$dir" || exit 1
        setsid nohup "$@" >"$log_file" 2>&1 </dev/null &
        echo $!
    )
}

# Join the vllm wheel's pieces, check it, and install it with the small wheels into /tmp/site;
# export what vLLM 0.26 needs on that machine (../shared/notes/gpu-vllm.md).
install_carried_wheels() {
    local repo=$1 wheel
    log "joining the vllm wheel and installing the carried wheels into /tmp/site"
    mkdir -p /tmp/ch
    cp "$repo"/.gpu/call-*/vllm-part-* /tmp/ch/ 2>/dev/null || true
    wheel=$(awk '{print $2}' "$repo/.gpu/small/vllm.sha256")
    cat /tmp/ch/vllm-part-* >"/tmp/$wheel"
    (cd /tmp && sha256sum -c "$repo/.gpu/small/vllm.sha256")
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "/tmp/$wheel" "$repo"/.gpu/small/*.whl
    export PYTHONPATH=/tmp/site
    export VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 \
        TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

# Whether a Redis answers PING on 127.0.0.1:PORT (bash's /dev/tcp: no client needed).
redis_answers() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [[ $reply == +PONG* ]]
    ) 2>/dev/null
}
