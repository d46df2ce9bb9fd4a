"""Run the calls against one column (a server, a key and a model name) and record outcomes."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

from bench.clients.calls import Call

CALL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Column:
    """One way to reach the model: vLLM direct or a gateway, with the name it serves it by."""

    name: str
    base_url: str
    api_key: str
    model: str
    note: str


@dataclass
class Outcome:
    """What one call did in one column: it worked (with its answer) or why it did not."""

    ok: bool
    seconds: float
    answer: str = ""
    error_type: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def run_call(call: Call, column: Column, timeout: float = CALL_TIMEOUT_S) -> Outcome:
    """Make `call` against `column` in a thread of its own (a hung call cannot stall the
    matrix); it works when it returns a non-empty string without raising."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["answer"] = call.function(column.base_url, column.api_key, column.model)
        except BaseException as error:  # a client may raise anything, SystemExit included
            box["error"] = error

    started = time.perf_counter()
    thread = threading.Thread(target=target, name=call.id, daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = round(time.perf_counter() - started, 3)
    if thread.is_alive():
        return Outcome(False, seconds, error_type="Timeout", error=f"no answer in {timeout:.0f}s")
    error = box.get("error")
    if isinstance(error, BaseException):
        return Outcome(False, seconds, error_type=type(error).__name__, error=first_line(error))
    result = box.get("answer")
    if not isinstance(result, str) or not result.strip():
        return Outcome(False, seconds, error_type="WrongAnswer", error=f"returned {result!r:.80}")
    return Outcome(True, seconds, answer=result[:120])
