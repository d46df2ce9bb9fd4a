"""`vllm-server standin`: the command line onto StandinConfig, served by uvicorn with
uvloop + httptools and no access log, the fastest set-up uvicorn offers."""

from __future__ import annotations

import argparse

import uvicorn

from vllm_server.standin.app import create_app
from vllm_server.standin.config import Faults, StandinConfig


def _lora_module(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def _share(value: str) -> float:
    share = float(value)
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError("expected a share between 0 and 1")
    return share


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = StandinConfig()
    faults = Faults()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model", default=defaults.served_model_name, help="served model name (the base model)"
    )
    parser.add_argument(
        "--lora",
        type=_lora_module,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="adapter loaded at start (repeatable)",
    )
    parser.add_argument(
        "--max-loras",
        type=int,
        default=defaults.max_loras,
        help="adapters that may run at once; others wait for a slot",
    )
    parser.add_argument("--max-model-len", type=int, default=defaults.max_model_len)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=defaults.max_tokens,
        help="tokens generated when a request names no max_tokens",
    )
    parser.add_argument(
        "--kv-cache-tokens",
        type=int,
        default=defaults.kv_cache_tokens,
        help="KV-cache capacity behind vllm:kv_cache_usage_perc",
    )
    parser.add_argument("--ttft-ms", type=float, default=faults.ttft_ms, help="time to first token")
    parser.add_argument("--itl-ms", type=float, default=faults.itl_ms, help="time between tokens")
    parser.add_argument(
        "--stall-ms",
        type=float,
        default=faults.stall_ms,
        help="pause before the first byte of any generation response",
    )
    parser.add_argument(
        "--fail-rate",
        type=_share,
        default=faults.fail_rate,
        help="share of requests answered with a 500",
    )
    parser.add_argument(
        "--cut-after-chunks",
        type=int,
        default=faults.cut_after_chunks,
        help="cut streams after this many token chunks (0: never)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)


def run(args: argparse.Namespace) -> int:
    config = StandinConfig(
        served_model_name=args.model,
        lora_modules=dict(args.lora),
        max_loras=args.max_loras,
        max_model_len=args.max_model_len,
        max_tokens=args.max_tokens,
        kv_cache_tokens=args.kv_cache_tokens,
        seed=args.seed,
        faults=Faults(
            ttft_ms=args.ttft_ms,
            itl_ms=args.itl_ms,
            stall_ms=args.stall_ms,
            fail_rate=args.fail_rate,
            cut_after_chunks=args.cut_after_chunks,
        ),
    )
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    return 0
