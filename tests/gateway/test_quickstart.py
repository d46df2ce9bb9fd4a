"""`vllm-gateway serve` with nothing configured: the stand-in, a demo tenant, a working key."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.processes import PYTHON, free_port, start_server


def test_quickstart_prints_a_key_that_works(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        [PYTHON, "-m", "gateway.cli", "serve", "--port", str(port)],
        port,
        tmp_path / "quickstart.log",
        "/healthz",
        {"VLLM_GATEWAY_STORE__SQLITE_PATH": str(tmp_path / "gw.db"), "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"API key  : (sk-\S+)", server.log())):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=found.group(1))
        answer = client.chat.completions.create(
            model="tenant-a", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert answer.model == "tenant-a" and answer.choices[0].message.content
        admin_key = re.search(r"admin key: (\S+)", server.log())
        assert admin_key is not None and admin_key.group(1) not in found.group(1)
        upstream = re.search(r"stand-in at http://127.0.0.1:(\d+)", server.log())
        assert upstream is not None
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log()
    with pytest.raises(httpx.ConnectError):  # the stand-in child went with it
        httpx.get(f"http://127.0.0.1:{upstream.group(1)}/health")
