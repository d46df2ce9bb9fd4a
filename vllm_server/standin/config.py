"""What a stand-in serves and how it misbehaves, fixed at start or (faults) tuned at runtime."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields

# The vLLM release whose API the stand-in speaks; /version reports it so clients that
# branch on the version take the same path as against the real server.
VLLM_API_VERSION = "0.32.0"


@dataclass
class Faults:
    """Latency and failure knobs. They live apart from the rest of the config because one
    running stand-in is shared by a whole test module: each test may change them through
    POST /standin/faults and the fixture resets them to zero between tests."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    stall_ms: float = 0.0
    fail_rate: float = 0.0
    cut_after_chunks: int = 0

    def update(self, changes: dict[str, object]) -> None:
        """Apply a partial update, all or nothing; raise ValueError naming the bad key."""
        validated: dict[str, float | int] = {}
        for key, value in changes.items():
            if key not in FAULT_NAMES:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(FAULT_NAMES)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a non-negative number")
            if key == "fail_rate" and value > 1:
                raise ValueError("fail_rate is a share between 0 and 1")
            if key == "cut_after_chunks" and not isinstance(value, int):
                raise ValueError("cut_after_chunks must be an integer")
            validated[key] = value
        for key, value in validated.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in FAULT_NAMES}


FAULT_NAMES = tuple(f.name for f in fields(Faults))


@dataclass
class StandinConfig:
    """Everything fixed for the life of one stand-in process."""

    served_model_name: str = "base"
    lora_modules: dict[str, str] = field(default_factory=dict)
    max_loras: int = 4
    max_model_len: int = 512
    max_tokens: int = 16
    kv_cache_tokens: int = 8192
    seed: int = 0
    faults: Faults = field(default_factory=Faults)


def system_fingerprint(config: StandinConfig) -> str:
    """`vllm-<version>-<hash8>`, as vLLM's default fingerprint: fixed for one configuration."""
    served = (config.served_model_name, config.max_model_len, config.seed)
    digest = hashlib.blake2b(repr(served).encode(), digest_size=4).hexdigest()
    return f"vllm-{VLLM_API_VERSION}-{digest}"
