"""A gateway on each store the admin API writes to: the embedded SQLite file, and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.gateway import Gateway, gateways_sharing_redis, start_gateway
from tests.fixtures.processes import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_gateway(
    request: pytest.FixtureRequest,
    standin: ServerProcess,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    log_dir = tmp_path_factory.mktemp(f"gateway-{request.param}")
    if request.param == "redis":
        with gateways_sharing_redis(standin.url, redis_url, log_dir, count=1) as (gateway,):
            yield gateway
        return
    gateway = start_gateway(standin.url, log_dir)
    yield gateway
    gateway.stop()
