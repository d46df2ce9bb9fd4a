"""Turn the configured upstream URLs into replica URLs, resolving host names to addresses.

A name that resolves to several addresses (a Kubernetes headless service, a DNS round-robin
record) is one replica per address, so the gateway balances across them itself rather than
leaving it to whichever address a connection happens to get. A name with a single address
stays a name (TLS and virtual hosts keep working). IPv4 addresses are preferred: a
dual-stack name such as `localhost` would otherwise count twice, once per address family,
for one server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from gateway.settings import UpstreamSettings

Resolver = Callable[[str, int], Awaitable[list[str]]]


def configured_urls(upstream: UpstreamSettings) -> list[str]:
    """`upstream.url` (one replica, as before replicas existed) and `upstream.replicas`."""
    urls = [upstream.url] if upstream.url is not None else []
    urls.extend(upstream.replicas)
    return list(dict.fromkeys(str(url).rstrip("/") for url in urls))


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The host's addresses (IPv4 when it has any), in the resolver's order, no repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # A host name's addresses are IPv4 or IPv6 ones, whose socket address begins with the IP.
    addresses = [(family, cast(str, sockaddr[0])) for family, _, _, _, sockaddr in infos]
    ipv4 = [address for family, address in addresses if family == socket.AF_INET]
    chosen = ipv4 or [address for _, address in addresses]
    return list(dict.fromkeys(chosen))


async def replica_urls(configured: list[str], resolve: Resolver = resolve_addresses) -> list[str]:
    """Each configured URL, or one URL per address of its host name; no repeats.

    Raises OSError (socket.gaierror) when a name does not resolve, so the caller can keep
    the replicas it had instead of dropping them on a passing DNS failure.
    """
    urls: list[str] = []
    for url in configured:
        urls.extend(await _expand(url.rstrip("/"), resolve))
    return list(dict.fromkeys(urls))


async def _expand(url: str, resolve: Resolver) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname
    if host is None or _is_address(host):
        return [url]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if len(addresses) <= 1:
        return [url]
    return [urlunsplit(parts._replace(netloc=_netloc(address, port))) for address in addresses]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _netloc(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
