"""Property-based requests from the admin OpenAPI schema, valid and invalid, against a real
gateway: no input may cause a 5xx, and every error is in the OpenAI format.

The schema is read from the running gateway inside the test and drawn from with `@given`
(schemathesis' fixture-based parametrisation does not run on this pytest version). Bounded to
a few hundred requests in all, so it stays a quick part of the suite.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.fixtures.gateway import ADMIN_KEY, Gateway

EXAMPLES_PER_MODE = 150


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_causes_a_server_error(gateway: Gateway, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(gateway.url + "/admin/v1/openapi.json")
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}

    @given(case=schema.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=gateway.url, headers=admin, checks=[not_a_server_error]
        )
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}

    call()
