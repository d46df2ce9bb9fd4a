"""A minimal pipelined Redis connection, for the limiter's script calls on the hot path.

redis-py checks a connection out of a pool, packs and parses in pure Python, and gives each
call its own request/response turn on that connection; on this machine that costs two to
three times the Redis round trip itself, per request, more than the limiter's whole budget
(0.25 ms). Here every caller shares one connection: a call writes its command at once
(RESP2) and waits for the reply that the single reader matches to it in order, so concurrent
requests are pipelined for free.

A caller that stops waiting (its timeout expired, or it was cancelled) leaves its slot in the
queue and the reply is dropped when it comes, which keeps the connection in step; a reply
that has not come for `stall_after_s` means a dead peer, and the connection is dropped. A
lost connection fails every waiting call and is opened again by the next call. Supports the
URL forms redis-py does: redis://, rediss:// (the system's default TLS checks) and unix://,
with username, password and database.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

Arg = bytes | str | int


class RedisReplyError(Exception):
    """Redis answered with an error (``-ERR ...``, ``-NOSCRIPT ...``)."""

    @property
    def is_noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


class IncompleteReply(Exception):
    """The buffer ends inside a reply: wait for more data."""


def encode_command(args: tuple[Arg, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def parse_reply(buffer: bytes | bytearray, start: int) -> tuple[Any, int]:
    """One reply from `buffer` at `start`: (value, end); raises IncompleteReply if cut short.
    Errors come back as RedisReplyError values, for the caller to raise."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise IncompleteReply
    kind, line, position = buffer[start], buffer[start + 1 : end], end + 2
    if kind == 0x3A:  # ':' integer
        return int(line), position
    if kind == 0x2A:  # '*' array
        items = []
        for _ in range(int(line)):
            item, position = parse_reply(buffer, position)
            items.append(item)
        return items, position
    if kind == 0x24:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, position
        if len(buffer) < position + size + 2:
            raise IncompleteReply
        return bytes(buffer[position : position + size]), position + size + 2
    if kind == 0x2B:  # '+' simple string
        return bytes(line), position
    if kind == 0x2D:  # '-' error
        return RedisReplyError(bytes(line).decode(errors="replace")), position
    raise ConnectionError(f"unexpected reply from Redis: {bytes(buffer[start:end])!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        position = 0
        try:
            while position < len(buffer):
                value, position_after = parse_reply(buffer, position)
                position = position_after
                future, _ = self.waiting.popleft()
                if not future.done():
                    future.set_result(value)
        except IncompleteReply:
            pass
        except (ConnectionError, IndexError) as error:  # garbage, or a reply nobody asked for
            self.fail(ConnectionError(f"Redis protocol out of step: {error!r}"))
            return
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection to Redis lost: {exc!r}"))

    def fail(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedRedis:
    def __init__(self, url: str, connect_timeout_s: float, stall_after_s: float) -> None:
        self._options = parse_url(url)
        self._connect_timeout_s = connect_timeout_s
        self._stall_after_s = stall_after_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def call(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connected()
        elif protocol.waiting and time.monotonic() - protocol.waiting[0][1] > self._stall_after_s:
            protocol.fail(ConnectionError("Redis stopped answering"))
            protocol = await self._connected()
        return await self._send(protocol, encode_command(args))

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.fail(ConnectionError("closed"))
            self._protocol = None

    @staticmethod
    async def _send(protocol: _Protocol, command: bytes) -> Any:
        if protocol.transport is None:
            raise ConnectionError("connection to Redis lost")
        future = asyncio.get_running_loop().create_future()
        protocol.waiting.append((future, time.monotonic()))
        protocol.transport.write(command)
        reply = await future
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def _connected(self) -> _Protocol:
        """The live connection, opened once however many callers ask at the same time."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
            # every caller may have stopped waiting by the time it fails: mark it seen
            self._connecting.add_done_callback(lambda task: task.cancelled() or task.exception())
        protocol = await asyncio.shield(self._connecting)
        self._protocol = protocol
        return protocol

    async def _connect(self) -> _Protocol:
        options = self._options
        loop = asyncio.get_running_loop()
        connection_class = options.get("connection_class")
        async with asyncio.timeout(self._connect_timeout_s):
            if connection_class is UnixDomainSocketConnection:
                _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
            else:
                tls = ssl.create_default_context() if connection_class is SSLConnection else None
                host, port = options.get("host", "localhost"), options.get("port", 6379)
                _, protocol = await loop.create_connection(_Protocol, host, port, ssl=tls)
            handshake = []
            if options.get("password"):
                credentials = [options["password"]]
                if options.get("username"):
                    credentials.insert(0, options["username"])
                handshake.append(self._send(protocol, encode_command(("AUTH", *credentials))))
            if options.get("db"):
                handshake.append(self._send(protocol, encode_command(("SELECT", options["db"]))))
            try:
                await asyncio.gather(*handshake)
            except BaseException:
                protocol.fail(ConnectionError("Redis handshake failed"))
                raise
        return protocol
