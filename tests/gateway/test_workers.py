"""`serve --workers N`: connections spread evenly over the workers (the fewest open accepts),
a worker that dies is started again, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from gateway.workers import STALE_S, Board
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.workers import connections_per_worker, worker_pids

WORKERS = 2
CONNECTIONS = 40


def test_only_a_worker_with_the_fewest_connections_may_accept() -> None:
    board = Board(3)
    for index, connections in enumerate((4, 2, 2)):
        board.publish(index, connections)
    assert [board.may_accept(index) for index in range(3)] == [False, True, True]
    board.publish(2, 3)
    assert [board.may_accept(index) for index in range(3)] == [False, True, False]
    board.leave(1)  # gone: the others compare among themselves
    assert [board.may_accept(index) for index in range(3)] == [False, True, True]


def test_a_silent_worker_does_not_hold_up_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    board = Board(2)
    board.publish(0, 0)
    board.publish(1, 5)
    assert not board.may_accept(1)
    later = time.monotonic() + STALE_S + 0.1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert board.may_accept(1)


@pytest.fixture
def workers_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        standin.url, tmp_path_factory.mktemp("workers"), server__workers=str(WORKERS)
    )
    yield gateway
    gateway.stop()


def every_worker_started(gateway: Gateway, pids: int = WORKERS) -> list[int]:
    """The workers' PIDs once each has finished its startup (the first one up answers
    /healthz while the others still start)."""
    deadline = time.monotonic() + 30
    while gateway.server.log().count("Application startup complete") < pids:
        assert time.monotonic() < deadline, gateway.server.log()
        time.sleep(0.1)
    return worker_pids(gateway.server.process.pid)


def held_connections(port: int, count: int) -> list[socket.socket]:
    """`count` keep-alive connections that each had one answer, opened one after another."""
    held = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        held.append(connection)
    return held


def test_connections_spread_evenly_and_a_killed_worker_is_replaced(
    workers_gateway: Gateway,
) -> None:
    pids = every_worker_started(workers_gateway)
    assert len(pids) == WORKERS
    port = int(workers_gateway.url.rsplit(":", 1)[1])
    held = held_connections(port, CONNECTIONS)
    try:
        counts = connections_per_worker(pids, port)
        assert sum(counts) == CONNECTIONS
        assert max(counts) - min(counts) <= 2, counts
    finally:
        for connection in held:
            connection.close()

    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (now := worker_pids(workers_gateway.server.process.pid)) == pids or len(now) != WORKERS:
        assert time.monotonic() < deadline, f"no new worker: {now}"
        time.sleep(0.1)
    assert pids[0] not in now
    every_worker_started(workers_gateway, WORKERS + 1)  # the new one too
    assert workers_gateway.stop() == 0
