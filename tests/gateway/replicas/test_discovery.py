"""Configured URLs -> replica URLs: IP literals as given, a name with many addresses as one
replica per address, a name with one address (or two families of one host) as itself."""

from __future__ import annotations

import socket

import pytest

from gateway.replicas.discovery import configured_urls, replica_urls, resolve_addresses
from gateway.settings import UpstreamSettings


async def test_localhost_resolves_to_one_ipv4_address() -> None:
    assert await resolve_addresses("localhost", 8000) == ["127.0.0.1"]
    assert await replica_urls(["http://localhost:8000/"]) == ["http://localhost:8000"]


async def test_addresses_stay_as_given_without_a_lookup() -> None:
    async def no_lookup(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} looked up")

    urls = ["http://10.0.0.1:8000", "http://[::1]:8000", "http://10.0.0.1:8000/"]
    assert await replica_urls(urls, no_lookup) == ["http://10.0.0.1:8000", "http://[::1]:8000"]


async def test_a_name_with_many_addresses_is_one_replica_per_address() -> None:
    async def headless_service(host: str, port: int) -> list[str]:
        assert (host, port) == ("vllm.ns.svc", 80)
        return ["10.1.0.7", "10.1.0.8", "fd00::9"]

    assert await replica_urls(["http://vllm.ns.svc"], headless_service) == [
        "http://10.1.0.7:80",
        "http://10.1.0.8:80",
        "http://[fd00::9]:80",
    ]


async def test_an_unknown_name_raises_so_the_pool_keeps_what_it_had() -> None:
    with pytest.raises(socket.gaierror):
        await replica_urls(["http://no-such-host.invalid:8000"])


def test_upstream_url_and_replicas_together() -> None:
    upstream = UpstreamSettings(
        url="http://a:8000/", replicas=["http://b:8000", "http://a:8000", "http://c:9000/"]
    )
    assert configured_urls(upstream) == ["http://a:8000", "http://b:8000", "http://c:9000"]
    assert configured_urls(UpstreamSettings()) == []
