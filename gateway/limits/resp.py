"""A minimal pipelined Redis client, for the limiter's script calls on the hot path.

redis-py checks a connection out of a pool, packs and parses in pure Python, and gives each
call its own request/response turn on that connection; on this machine that costs two to
three times the Redis round trip itself, per request, more than the limiter's whole budget
(0.25 ms). Here every caller shares one connection: a call queues its command (RESP2) and
waits for the reply that the single reader matches to it in order, so concurrent requests are
pipelined for free; the commands queued in one turn of the event loop go out right after it,
together, in one write (one system call and one wake-up of Redis for all of them).

A caller that stops waiting (its timeout expired, or it was cancelled) leaves its slot in the
queue and the reply is dropped when it comes, which keeps the connection in step; a reply
that has not come for `stall_after_s` means a dead peer, and the connection is dropped. A
lost connection fails every waiting call and is opened again by the next call. Supports the
URL forms redis-py does: redis://, rediss:// (the system's default TLS checks) and unix://,
with username, password and database.

`open_servers` reads the URL as `gateway.redis_client` does and gives what the limiter calls:
`SingleServer`, `SentinelServer` (the primary the sentinels name, asked again when its
connection fails or it answers READONLY) or `ClusterServers` (a connection per primary, the
slot map from CLUSTER SLOTS, MOVED and ASK followed once, the map read again after a
redirection or a failed node). Each call names a key, `route`, whose slot says where it goes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from gateway.redis_client import RedisAddress, Topology, parse_redis_url

Arg = bytes | str | int
T = TypeVar("T")
# How often the Cluster's slot map may be read again while nodes fail or redirect.
MIN_REFRESH_INTERVAL_S = 0.1


class RedisReplyError(Exception):
    """Redis answered with an error (``-ERR ...``, ``-NOSCRIPT ...``)."""

    @property
    def is_noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")

    @property
    def is_readonly(self) -> bool:
        return str(self).startswith("READONLY")

    def redirection(self) -> tuple[str, str, int] | None:
        """("MOVED" or "ASK", host, port) when Redis Cluster sent the call elsewhere."""
        kind, _, rest = str(self).partition(" ")
        if kind not in ("MOVED", "ASK"):
            return None
        host, _, port = rest.partition(" ")[2].rpartition(":")
        return kind, host, int(port)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server, and how to log in to it."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host and port
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """redis-py's URL forms: redis://, rediss://, unix://."""
        options = parse_url(url)
        connection_class = options.get("connection_class")
        return cls(
            host=options.get("host", "localhost"),
            port=int(options.get("port", 6379)),
            path=options["path"] if connection_class is UnixDomainSocketConnection else None,
            tls=connection_class is SSLConnection,
            username=options.get("username"),
            password=options.get("password"),
            db=int(options.get("db") or 0),
        )

    @classmethod
    def of(cls, address: RedisAddress, host: str, port: int) -> Endpoint:
        """A data server of a Cluster or Sentinel deployment: the URL's credentials and TLS."""
        return cls(host, port, None, address.tls, address.username, address.password, address.db)


class ConnectFailed(ConnectionError):
    """The connection could not be opened: nothing was sent, so the call may go elsewhere."""


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


class _Shared(Generic[T]):
    """One run of `attempt` at a time, however many callers wait for it: a caller that stops
    waiting (its own timeout) leaves it running for the others."""

    def __init__(self, attempt: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._attempt = attempt
        self._task: asyncio.Task[T] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._attempt())
            # every caller may have stopped waiting by the time it fails: mark it seen
            self._task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def result(self) -> T:
        self.start()
        assert self._task is not None
        return await asyncio.shield(self._task)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._buffer = bytearray()
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, command: bytes) -> None:
        """Queue `command`: the commands of one turn of the event loop (the requests that
        arrived together) go out in one write, one system call and one wake-up of Redis."""
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._write)
        self._outgoing.append(command)

    def _write(self) -> None:
        commands, self._outgoing = self._outgoing, []
        if self.transport is not None:
            self.transport.write(commands[0] if len(commands) == 1 else b"".join(commands))

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
    """One pipelined connection to one server."""

    def __init__(self, endpoint: Endpoint, connect_timeout_s: float, stall_after_s: float) -> None:
        self.endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._stall_after_s = stall_after_s
        self._protocol: _Protocol | None = None
        self._connecting = _Shared(self._connect)

    async def call(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connected()
        elif protocol.waiting and time.monotonic() - protocol.waiting[0][1] > self._stall_after_s:
            protocol.fail(ConnectionError("Redis stopped answering"))
            protocol = await self._connected()
        return await self._send(protocol, encode_command(args))

    async def call_asking(self, *args: Arg) -> Any:
        """ASKING, then the command, written together so that no other call comes between
        them (Cluster: a slot being moved, where the command is to run once elsewhere)."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connected()
        asking = self._send(protocol, encode_command(("ASKING",)))
        reply = self._send(protocol, encode_command(args))
        return (await asyncio.gather(asking, reply))[1]

    async def close(self) -> None:
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
        protocol.send(command)
        reply = await future
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def _connected(self) -> _Protocol:
        """The live connection, opened once however many callers ask at the same time."""
        try:
            protocol = await self._connecting.result()
        except (OSError, TimeoutError) as error:
            where = self.endpoint.path or f"{self.endpoint.host}:{self.endpoint.port}"
            raise ConnectFailed(f"cannot connect to Redis at {where}: {error!r}") from error
        self._protocol = protocol
        return protocol

    async def _connect(self) -> _Protocol:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout_s):
            if endpoint.path is not None:
                _, protocol = await loop.create_unix_connection(_Protocol, endpoint.path)
            else:
                tls = ssl.create_default_context() if endpoint.tls else None
                _, protocol = await loop.create_connection(
                    _Protocol, endpoint.host, endpoint.port, ssl=tls
                )
            handshake = []
            if endpoint.password:
                credentials = [endpoint.password]
                if endpoint.username:
                    credentials.insert(0, endpoint.username)
                handshake.append(self._send(protocol, encode_command(("AUTH", *credentials))))
            if endpoint.db:
                handshake.append(self._send(protocol, encode_command(("SELECT", endpoint.db))))
            try:
                await asyncio.gather(*handshake)
            except BaseException:
                protocol.fail(ConnectionError("Redis handshake failed"))
                raise
        return protocol


class Servers(Protocol):
    """Where the limiter's calls go: `route` is a key of the call, whose slot decides."""

    async def call(self, route: str, *args: Arg) -> Any: ...

    async def on_every_primary(self, *args: Arg) -> None:
        """Run a command on every primary (SCRIPT LOAD)."""

    async def close(self) -> None: ...


def open_servers(url: str, connect_timeout_s: float, stall_after_s: float) -> Servers:
    address = parse_redis_url(url)
    if address.topology is Topology.CLUSTER:
        return ClusterServers(address, connect_timeout_s, stall_after_s)
    if address.topology is Topology.SENTINEL:
        return SentinelServer(address, connect_timeout_s, stall_after_s)
    return SingleServer(PipelinedRedis(Endpoint.from_url(url), connect_timeout_s, stall_after_s))


class SingleServer:
    def __init__(self, connection: PipelinedRedis) -> None:
        self._connection = connection

    async def call(self, route: str, *args: Arg) -> Any:
        return await self._connection.call(*args)

    async def on_every_primary(self, *args: Arg) -> None:
        await self._connection.call(*args)

    async def close(self) -> None:
        await self._connection.close()


class SentinelServer:
    """The primary that the sentinels name. Its connection is dropped when it fails or the
    server answers READONLY (it was demoted); the next call asks the sentinels again, and
    checks with ROLE that the server they name is a primary by now. A call that could not
    even connect is sent once more at once, should the sentinels name another primary."""

    def __init__(self, address: RedisAddress, connect_timeout_s: float, stall_after_s: float):
        self._address = address
        self._timeouts = (connect_timeout_s, stall_after_s)
        self._sentinels = [
            PipelinedRedis(Endpoint(host, port), connect_timeout_s, stall_after_s)
            for host, port in address.nodes
        ]
        self._primary: PipelinedRedis | None = None
        self._finding = _Shared(self._find)

    async def call(self, route: str, *args: Arg) -> Any:
        primary = self._primary or await self._found()
        try:
            return await primary.call(*args)
        except RedisReplyError as error:
            if error.is_readonly:
                await self._forget(primary)
            raise
        except ConnectFailed:
            await self._forget(primary)
            # nothing was sent: once more, to whichever primary the sentinels name now
            found = await self._found()
            if found.endpoint == primary.endpoint:
                raise
            return await found.call(*args)
        except OSError:
            await self._forget(primary)
            raise

    async def on_every_primary(self, *args: Arg) -> None:
        await self.call("", *args)

    async def close(self) -> None:
        self._finding.cancel()
        for connection in [*self._sentinels, *([self._primary] if self._primary else [])]:
            await connection.close()

    async def _forget(self, primary: PipelinedRedis) -> None:
        if self._primary is primary:
            self._primary = None
            await primary.close()

    async def _found(self) -> PipelinedRedis:
        """The primary, looked for once however many callers ask at the same time."""
        primary = await self._finding.result()
        self._primary = primary
        return primary

    async def _find(self) -> PipelinedRedis:
        failures: list[str] = []
        for sentinel in self._sentinels:
            try:
                named = await sentinel.call(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._address.service
                )
            except (OSError, TimeoutError, RedisReplyError) as error:
                failures.append(f"{sentinel.endpoint.host}:{sentinel.endpoint.port}: {error!r}")
                continue
            if named is None:
                failures.append(f"no primary named {self._address.service!r}")
                continue
            endpoint = Endpoint.of(self._address, named[0].decode(), int(named[1]))
            primary = PipelinedRedis(endpoint, *self._timeouts)
            try:
                role = await primary.call("ROLE")
            except BaseException:
                await primary.close()
                raise
            if role[0] == b"master":
                return primary
            await primary.close()
            failures.append(f"{endpoint.host}:{endpoint.port} is not a primary (yet)")
        raise ConnectionError(f"no Sentinel primary: {'; '.join(failures)}")


class ClusterServers:
    """A Redis Cluster: one pipelined connection per primary, chosen by the call's slot. The
    slot map is read from CLUSTER SLOTS at the first call, and again (at most every
    `MIN_REFRESH_INTERVAL_S`) after a redirection, CLUSTERDOWN/TRYAGAIN or a failed node. MOVED
    and ASK are followed once; a call that could not even connect is sent once more if the
    map read again names another node for its slot."""

    def __init__(self, address: RedisAddress, connect_timeout_s: float, stall_after_s: float):
        self._address = address
        self._timeouts = (connect_timeout_s, stall_after_s)
        self._seeds = [Endpoint.of(address, host, port) for host, port in address.nodes]
        self._slots: list[Endpoint | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._connections: dict[Endpoint, PipelinedRedis] = {}
        self._refreshing = _Shared(self._read_slots)
        self._refreshed_at = -MIN_REFRESH_INTERVAL_S

    async def call(self, route: str, *args: Arg) -> Any:
        slot = key_slot(route.encode())
        endpoint = self._slots[slot]
        if endpoint is None:
            await self._refresh()
            endpoint = self._slots[slot]
            if endpoint is None:
                raise ConnectionError(f"no Cluster node serves slot {slot}")
        try:
            return await self._connection(endpoint).call(*args)
        except RedisReplyError as error:
            redirection = error.redirection()
            if redirection is None:
                if str(error).startswith(("CLUSTERDOWN", "TRYAGAIN")):
                    self._refresh_soon()
                raise
            kind, host, port = redirection
            target = Endpoint.of(self._address, host or endpoint.host, port)
            if kind == "ASK":
                return await self._connection(target).call_asking(*args)
            self._slots[slot] = target
            self._refresh_soon()
            return await self._connection(target).call(*args)
        except ConnectFailed:
            # nothing was sent: once more, should the slot map name another node by now
            await self._refresh()
            owner = self._slots[slot]
            if owner is None or owner == endpoint:
                raise
            return await self._connection(owner).call(*args)
        except OSError:
            self._refresh_soon()
            raise

    async def on_every_primary(self, *args: Arg) -> None:
        await self._refresh()
        primaries = {endpoint for endpoint in self._slots if endpoint is not None}
        await asyncio.gather(*(self._connection(endpoint).call(*args) for endpoint in primaries))

    async def close(self) -> None:
        self._refreshing.cancel()
        for connection in self._connections.values():
            await connection.close()

    def _connection(self, endpoint: Endpoint) -> PipelinedRedis:
        connection = self._connections.get(endpoint)
        if connection is None:
            connection = self._connections[endpoint] = PipelinedRedis(endpoint, *self._timeouts)
        return connection

    def _refresh_soon(self) -> None:
        if time.monotonic() - self._refreshed_at >= MIN_REFRESH_INTERVAL_S:
            self._refreshing.start()

    async def _refresh(self) -> None:
        """Read the slot map again, unless that was done a moment ago."""
        if time.monotonic() - self._refreshed_at >= MIN_REFRESH_INTERVAL_S:
            await self._refreshing.result()

    async def _read_slots(self) -> None:
        """CLUSTER SLOTS from the first node that answers: the known primaries, then the
        seeds. Connections to nodes that no longer serve a slot are closed."""
        known = list(dict.fromkeys(e for e in self._slots if e is not None))
        failures: list[str] = []
        for endpoint in [*known, *(seed for seed in self._seeds if seed not in known)]:
            try:
                ranges = await self._connection(endpoint).call("CLUSTER", "SLOTS")
            except (OSError, TimeoutError, RedisReplyError) as error:
                failures.append(f"{endpoint.host}:{endpoint.port}: {error!r}")
                continue
            slots: list[Endpoint | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            for first, last, primary, *_ in ranges:
                host = primary[0].decode() or endpoint.host  # "": the node asked
                owner = Endpoint.of(self._address, host, int(primary[1]))
                slots[first : last + 1] = [owner] * (last + 1 - first)
            self._slots = slots
            self._refreshed_at = time.monotonic()
            serving = set(slots)
            for stale in [
                e for e in self._connections if e not in serving and e not in self._seeds
            ]:
                await self._connections.pop(stale).close()
            return
        raise ConnectionError(f"no Cluster node answers CLUSTER SLOTS: {'; '.join(failures)}")
