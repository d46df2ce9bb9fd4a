"""Property-based requests from the admin OpenAPI schema, valid and invalid, against a real
gateway on each store (SQLite, Redis): no input may cause a 5xx, and every error is in the
OpenAI format.

Each operation is drawn from on its own, so that every one gets its examples; those that take
a body and name a record in their path are drawn from again with the ids of records that
exist, so that what they are sent reaches the stores (drawn ids name no record: 404). The
schema is read from the running gateway inside the test and drawn from with `@given`
(schemathesis' fixture-based parametrisation does not run on this pytest version).

In the suite the examples are few and derandomized: the same requests on every run, so the
suite cannot fail on one run and pass on the next. `make fuzz-admin` sets
ADMIN_FUZZ_EXAMPLES for a long randomized run of as many examples per operation.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation

from tests.fixtures.gateway import ADMIN_KEY, Gateway

FUZZ_EXAMPLES_ENV = "ADMIN_FUZZ_EXAMPLES"
SUITE_EXAMPLES = 10
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def examples_settings() -> settings:
    fuzz_examples = int(os.environ.get(FUZZ_EXAMPLES_ENV, "0"))
    return settings(
        max_examples=fuzz_examples or SUITE_EXAMPLES,
        derandomize=not fuzz_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def existing_ids(store_gateway: Gateway) -> dict[str, dict[str, str]]:
    """Path parameter values naming records that exist, by the path's first segment after
    /admin/v1 (`name` means an adapter under /adapters and a policy under /safety)."""
    key = store_gateway.admin(
        "POST", "/keys", json={"tenant_id": store_gateway.tenant_id, "name": "fuzz"}
    )
    adapter = {"name": "fuzz-adapter", "path": "/srv/fuzz", "base_model": "base"}
    policy = store_gateway.admin("PUT", "/safety/policies/fuzz-policy", json={})
    for response in (key, store_gateway.admin("POST", "/adapters", json=adapter), policy):
        assert response.status_code in (200, 201), response.text
    return {
        "tenants": {"tenant_id": store_gateway.tenant_id},
        "keys": {"key_id": key.json()["id"]},
        "adapters": {"name": adapter["name"]},
        "safety": {"name": "fuzz-policy"},
    }


def operations(gateway: Gateway) -> Iterator[APIOperation]:
    schema = schemathesis.openapi.from_url(gateway.url + "/admin/v1/openapi.json")
    for result in schema.get_all_operations():
        yield result.ok()


def ids_of_records(
    operation: APIOperation, existing_ids: dict[str, dict[str, str]]
) -> dict[str, str] | None:
    """The path parameters naming existing records, for an operation with a body that takes
    them; else None."""
    if not operation.path_parameters or not list(operation.body):
        return None
    return existing_ids[operation.path.removeprefix("/admin/v1/").split("/")[0]]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_causes_a_server_error(
    store_gateway: Gateway, existing_ids: dict[str, dict[str, str]], mode: GenerationMode
) -> None:
    sent: Counter[str] = Counter()
    for operation in operations(store_gateway):
        strategies = [operation.as_strategy(mode)]
        path_ids = ids_of_records(operation, existing_ids)
        if path_ids is not None:
            strategies.append(operation.as_strategy(mode, path_parameters=path_ids))
        for strategy in strategies:

            @given(case=strategy)
            @examples_settings()
            def call(case: schemathesis.Case) -> None:
                sent[case.operation.label] += 1
                response = case.call_and_validate(
                    base_url=store_gateway.url, headers=ADMIN, checks=[not_a_server_error]
                )
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert set(error) == {"message", "type", "param", "code"}

            call()
    print(
        f"{mode.value}: {sum(sent.values())} requests to {len(sent)} operations, "
        f"{min(sent.values())} to {max(sent.values())} each"
    )
