"""The echo upstream (see echo_upstream.py) as a real child process, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.processes import PYTHON, ServerProcess, free_port, start_server


@pytest.fixture(scope="module")
def echo_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    argv = [PYTHON, "-m", "tests.gateway.safety.echo_upstream", "--port", str(port)]
    server = start_server(argv, port, tmp_path_factory.mktemp("echo") / f"echo-{port}.log")
    yield server
    server.stop()


def echoed_requests(server: ServerProcess) -> list[dict]:
    """Every request body the echo upstream has received, oldest first."""
    response = httpx.get(server.url + "/echo/requests", timeout=5.0)
    response.raise_for_status()
    return response.json()
