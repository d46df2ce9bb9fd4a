"""The isolation fields for the upstream body: salt by tenant, priority by tier, no client's."""

from __future__ import annotations

import pytest

from gateway.isolation.upstream_fields import TenantIsolation, strip_client_fields
from gateway.settings import IsolationSettings
from tests.gateway.isolation.conftest import principal, sample

KEY_SECRET = b"key-hash-secret-0123456789"


def isolation(**settings: object) -> TenantIsolation:
    return TenantIsolation.from_settings(IsolationSettings(**settings), KEY_SECRET)


def test_salt_per_tenant_and_no_priority_unless_vllm_schedules_by_it() -> None:
    fields = isolation().body_fields(principal("tenant_a"))
    assert set(fields) == {"cache_salt"}
    assert fields != isolation().body_fields(principal("tenant_b"))
    assert fields == isolation().body_fields(principal("tenant_a"))


def test_shared_group_members_get_one_salt() -> None:
    shared = {"cache_salt": "shared:docs"}
    first = isolation().body_fields(principal("tenant_a", shared))["cache_salt"]
    second = isolation().body_fields(principal("tenant_b", shared))["cache_salt"]
    alone = isolation().body_fields(principal("tenant_c"))["cache_salt"]
    assert first == second != alone


def test_priority_follows_the_tier_and_a_key_overrides_its_tenant() -> None:
    gateway = isolation(priority_enabled=True)
    assert gateway.body_fields(principal())["priority"] == 10  # default tier: standard
    premium = principal(tenant_metadata={"tier": "premium"})
    assert gateway.body_fields(premium)["priority"] == 0
    batch_key = principal(tenant_metadata={"tier": "premium"}, key_metadata={"tier": "batch"})
    assert gateway.body_fields(batch_key)["priority"] == 20
    assert gateway.weight(premium) == 4.0 and gateway.weight(batch_key) == 1.0


def test_an_unknown_tier_counts_as_the_default_never_higher() -> None:
    gateway = isolation(priority_enabled=True)
    typo = principal(tenant_metadata={"tier": "premuim"})
    assert gateway.body_fields(typo)["priority"] == 10
    assert gateway.weight(typo) == 2.0


def test_salting_can_be_off_and_needs_a_tenant() -> None:
    assert isolation(cache_salt_enabled=False).body_fields(principal()) == {}
    assert isolation(priority_enabled=True).body_fields(None) == {"priority": 10}


def test_a_configured_secret_replaces_the_derived_one() -> None:
    derived = isolation().body_fields(principal())["cache_salt"]
    configured = isolation(cache_salt_secret="operator-chosen-secret")
    assert configured.body_fields(principal())["cache_salt"] != derived


def test_tier_and_salt_mode_are_counted() -> None:
    before = sample("vllm_gateway_isolation_requests_total", tier="batch", cache_salt_mode="shared")
    isolation().body_fields(principal(tenant_metadata={"tier": "batch", "cache_salt": "shared:g"}))
    after = sample("vllm_gateway_isolation_requests_total", tier="batch", cache_salt_mode="shared")
    assert after == before + 1


def test_client_chosen_salt_and_priority_are_dropped() -> None:
    body = {"model": "m", "cache_salt": "someone-elses", "priority": -100}
    assert strip_client_fields(body) is True
    assert body == {"model": "m"}
    assert strip_client_fields(body) is False


@pytest.mark.parametrize(
    "settings",
    [
        {"default_tier": "gold"},
        {"tier_priorities": {"a": 0}, "tier_weights": {"b": 1.0}, "default_tier": "a"},
        {"tier_priorities": {"a": 0}, "tier_weights": {"a": 0.0}, "default_tier": "a"},
        {"fair_queue": {"on_timeout": 500}},
    ],
)
def test_inconsistent_tier_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IsolationSettings(**settings)
