"""CPU stand-in for a vLLM 0.32 OpenAI server: same routes, shapes, errors and metrics,
deterministic fake answers, configurable latency and faults.

Runtime faults: POST /standin/faults with any of {"ttft_ms", "itl_ms", "stall_ms",
"fail_rate", "cut_after_chunks"} changes them for later requests (GET reads them back).
"""

from vllm_server.standin.app import create_app
from vllm_server.standin.cli import add_arguments, run
from vllm_server.standin.config import Faults, StandinConfig

__all__ = ["Faults", "StandinConfig", "add_arguments", "create_app", "run"]
