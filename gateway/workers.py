"""Several uvicorn workers on one listening socket, each new connection taken by a worker that
has the fewest open: load spread evenly, whatever the kernel's wake-ups do.

With uvicorn's own supervisor every worker accepts from the shared socket whenever its event
loop is free, and the least busy one wins every race: 256 streams landed 32, 60, 68 and 96 on
4 workers. One SO_REUSEPORT socket per worker makes the kernel hash connections over the
workers instead, which is even only on average: 256 connections over 4 sockets were within
±20% of the mean in 80 of 100 trials (`bench/worker_spread.py --model reuseport`).

Here the workers share one socket and a small table in shared memory: each worker publishes
how many connections it has open (and when it last did), and accepts only while no live
worker has fewer. A worker that has taken a connection, and so is ahead, waits until the
others catch up or its own connections close; the ones behind keep accepting. A worker that
has not published for `STALE_S` (stuck, or gone) does not count, so it cannot stop the
others. 256 streams over 4 workers: 62 to 65 each (bench/results/worker_spread.md).

The supervisor also makes the file through which the workers share the fair queue's reserve
(gateway/isolation/reserve.py), and removes it at the end.

The supervisor keeps uvicorn's worker processes (spawned, pinged, killed and started again
when they hang or die, `STARTUP_FAILURE` ending it all); SIGINT and SIGTERM stop every worker
gracefully. uvicorn's SIGHUP restart and SIGTTIN/SIGTTOU resizing are not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from gateway.isolation.reserve import RESERVE_FILE_ENV
from gateway.peers import WORKER_INDEX_ENV

logger = logging.getLogger("uvicorn.error")

STALE_S = 1.0  # a worker silent this long is left out of the comparison
PUBLISH_INTERVAL_S = 0.05  # how often an idle worker publishes its count (closed connections)
WAIT_S = 0.005  # how often a worker that is ahead looks again
CHECK_INTERVAL_S = 0.5  # how often the supervisor checks its workers
_ACCEPT_ERROR_PAUSE_S = 0.1  # after accept fails (out of file descriptors ...)


class Board:
    """Each worker's open connections and the time it published them, in shared memory."""

    def __init__(self, workers: int) -> None:
        # uvicorn spawns its workers, which inherit this as they start; no lock: a worker
        # writes only its own cells, and a count read a moment late does no harm.
        self._cells: ctypes.Array[ctypes.c_double] = multiprocessing.get_context("spawn").RawArray(
            ctypes.c_double, 2 * workers
        )
        self._workers = workers

    def publish(self, index: int, connections: int) -> None:
        self._cells[2 * index] = connections
        self._cells[2 * index + 1] = time.monotonic()

    def leave(self, index: int) -> None:
        self._cells[2 * index + 1] = 0.0

    def may_accept(self, index: int) -> bool:
        """Whether no live worker has fewer connections open than worker `index`."""
        cells, now = self._cells, time.monotonic()
        mine = cells[2 * index]
        return all(
            cells[2 * other] >= mine or now - cells[2 * other + 1] > STALE_S
            for other in range(self._workers)
            if other != index
        )


class BalancedServer(uvicorn.Server):
    """A worker's server that accepts from the shared socket only while `Board` says so."""

    def __init__(self, config: uvicorn.Config, board: Board, index: int) -> None:
        super().__init__(config)
        self._board = board
        self._index = index
        # built in this worker's process, before the app loads: its share of what is divided
        os.environ[WORKER_INDEX_ENV] = str(index)
        self._opening = 0  # accepted, their protocol not yet set up (a TLS handshake)
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # No sockets for uvicorn: it runs the app's startup and serves what is accepted here.
        await super().startup(sockets=[])
        assert sockets, "a balanced worker needs the shared socket"
        self._tasks = [
            asyncio.create_task(self._accept_forever(sockets[0])),
            asyncio.create_task(self._publish_forever()),
        ]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._board.leave(self._index)
        await super().shutdown(sockets=sockets)

    def _publish(self) -> None:
        self._board.publish(self._index, len(self.server_state.connections) + self._opening)

    async def _publish_forever(self) -> None:
        while True:
            self._publish()
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        while True:
            self._publish()
            if not self._board.may_accept(self._index):
                await asyncio.sleep(WAIT_S)
                continue
            try:
                connection, _ = await loop.sock_accept(listener)
            except OSError as error:
                logger.warning("accepting a connection failed: %r", error)
                await asyncio.sleep(_ACCEPT_ERROR_PAUSE_S)
                continue
            self._opening += 1
            opened = loop.create_task(
                loop.connect_accepted_socket(protocol, connection, ssl=config.ssl)
            )
            opened.add_done_callback(self._opened)

    def _opened(self, opened: asyncio.Task[object]) -> None:
        self._opening -= 1
        if not opened.cancelled() and opened.exception() is not None:
            logger.debug("a connection failed before it was served: %r", opened.exception())


class _Worker(Process):
    """uvicorn's worker process, serving through a `BalancedServer`."""

    def __init__(
        self, config: uvicorn.Config, listener: socket.socket, board: Board, index: int
    ) -> None:
        self._board = board
        self._index = index
        super().__init__(config, [listener])

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = BalancedServer(self.config, self._board, self._index)
        return self._server


def serve_workers(config: uvicorn.Config) -> None:
    """Run `config.workers` balanced workers until SIGINT or SIGTERM."""
    # the fair queue's reserve, one for all workers (gateway/isolation/reserve.py); spawned
    # workers inherit the environment
    reserve_fd, reserve_file = tempfile.mkstemp(prefix="vllm-gateway-reserve-")
    os.close(reserve_fd)
    os.environ[RESERVE_FILE_ENV] = reserve_file
    try:
        _supervise(config)
    finally:
        os.unlink(reserve_file)


def _supervise(config: uvicorn.Config) -> None:
    listener = config.bind_socket()
    listener.listen(config.backlog)  # connections wait in the queue while workers start
    board = Board(config.workers)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("Received %s, exiting.", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    logger.info("Started parent process [%d]", os.getpid())
    workers = [_Worker(config, listener, board, index) for index in range(config.workers)]
    for worker in workers:
        worker.start()
    while not stopping.wait(CHECK_INTERVAL_S):
        for index, worker in enumerate(workers):
            if worker.is_alive(timeout=config.timeout_worker_healthcheck):
                continue
            worker.kill()  # it may be hung
            worker.join()
            if worker.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping.", worker.pid)
                stopping.set()
                break
            logger.info("Child process [%s] died", worker.pid)
            workers[index] = _Worker(config, listener, board, index)
            workers[index].start()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join()
    listener.close()
    logger.info("Stopping parent process [%d]", os.getpid())
