"""An inference request as the pipeline carries it: which route, the bytes, the parsed body."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Endpoint(Enum):
    """The inference routes, each with the field that carries its input."""

    CHAT = ("/v1/chat/completions", "messages")
    COMPLETIONS = ("/v1/completions", "prompt")
    EMBEDDINGS = ("/v1/embeddings", "input")

    def __init__(self, path: str, input_field: str) -> None:
        self.path = path
        self.input_field = input_field


@dataclass(slots=True)
class InferenceRequest:
    endpoint: Endpoint
    raw: bytes
    body: dict[str, Any]
    model: str | None
    stream: bool
    client_wants_usage: bool
    changed: bool = False  # a stage rewrote `body`: send it re-serialised, not `raw`
