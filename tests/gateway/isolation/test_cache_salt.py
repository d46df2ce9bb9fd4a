"""Salts: one per tenant unless tenants name a shared group, unguessable, valid for vLLM."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.isolation.cache_salt import ISOLATED, SHARED, CacheSalter, derive_secret, salt_mode

SECRET = b"0123456789abcdef-secret"
# vLLM 0.32 refuses salts over 128 characters or with any of these (validate_cache_salt).
VLLM_FORBIDDEN = set("@/\\\0")


def test_each_tenant_gets_its_own_salt_and_the_same_one_every_time() -> None:
    salter = CacheSalter(SECRET)
    first = salter.salt("tenant_a", ISOLATED, None)
    assert first == salter.salt("tenant_a", ISOLATED, None)
    assert first == CacheSalter(SECRET).salt("tenant_a", ISOLATED, None)  # other instances too
    assert first != salter.salt("tenant_b", ISOLATED, None)


def test_tenants_naming_one_group_share_its_salt() -> None:
    salter = CacheSalter(SECRET)
    assert salter.salt("tenant_a", SHARED, "docs") == salter.salt("tenant_b", SHARED, "docs")
    assert salter.salt("tenant_a", SHARED, "docs") != salter.salt("tenant_a", SHARED, "other")
    # a group named like a tenant id still has a salt of its own
    assert salter.salt("x", SHARED, "tenant_a") != salter.salt("tenant_a", ISOLATED, None)


def test_salts_depend_on_the_secret_and_are_not_a_plain_hash_of_the_id() -> None:
    salt = CacheSalter(SECRET).salt("tenant_a", ISOLATED, None)
    assert salt != CacheSalter(b"another-secret-of-16+").salt("tenant_a", ISOLATED, None)
    assert salt not in {hashlib.sha256(b"tenant_a").hexdigest(), "tenant_a"}


def test_salts_pass_vllms_validation() -> None:
    salt = CacheSalter(SECRET).salt("tenant/with@odd\\chars", ISOLATED, None)
    assert 0 < len(salt) <= 128
    assert not VLLM_FORBIDDEN & set(salt)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (ISOLATED, None)),
        ("isolated", (ISOLATED, None)),
        ("shared:docs", (SHARED, "docs")),
        ("shared: docs ", (SHARED, "docs")),
        ("shared:", (ISOLATED, None)),  # no group named: never share by accident
        ("open", (ISOLATED, None)),
    ],
)
def test_unreadable_modes_fall_back_to_isolated(
    value: str | None, expected: tuple[str, str | None]
) -> None:
    assert salt_mode(value) == expected


def test_the_derived_secret_is_not_the_key_hash_secret() -> None:
    key_secret = b"key-hash-secret-0123456789"
    derived = derive_secret(None, key_secret)
    assert derived != key_secret
    assert derived == derive_secret(None, key_secret)
    assert derive_secret("configured-salt-secret", key_secret) == b"configured-salt-secret"
    # a salt is never the stored hash of a key that happens to equal "tenant:<id>"
    salt = CacheSalter(derived).salt("t", ISOLATED, None)
    assert salt != hmac.new(key_secret, b"tenant:t", hashlib.sha256).hexdigest()


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CacheSalter(b"short")
