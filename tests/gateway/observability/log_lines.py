"""Read the JSON lines a gateway child process wrote to its log file."""

from __future__ import annotations

import time

import orjson

from tests.fixtures.processes import ServerProcess


def json_lines(server: ServerProcess) -> list[dict]:
    """Every line of the server's output that is a JSON object (others are skipped)."""
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                entries.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return entries


def wait_for_line(
    server: ServerProcess, request_id: str, hint: str, event: str = "request", timeout: float = 10
) -> dict:
    """The one line of `event` for `request_id`; the gateway writes it after the last byte,
    so it may land just after the client has its answer."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            entry
            for entry in json_lines(server)
            if entry.get("request_id") == request_id and entry.get("event") == event
        ]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event} line for {request_id} in the gateway's log {hint}")
        time.sleep(0.05)
