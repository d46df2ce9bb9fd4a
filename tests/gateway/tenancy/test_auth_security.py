"""Key secrets never leak, and an unknown key costs what a wrong secret for a known one does."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.tenancy.auth import KeyAuthenticator
from gateway.tenancy.models import ApiKey, ModelRoute, Tenant
from gateway.tenancy.secrets import KeyHasher, new_id, new_secret, shown_prefix
from gateway.tenancy.sqlite_store import SqliteStore
from tests.fixtures.gateway import ADMIN_KEY, Gateway


class CountingStore(SqliteStore):
    """The real SQLite store, counting the lookups authentication makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hash_lookups: list[str] = []

    async def find_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        self.hash_lookups.append(secret_hash)
        return await super().find_key_by_hash(secret_hash)


async def test_unknown_key_and_wrong_secret_take_the_same_path(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "gw.db")
    hasher = KeyHasher(b"server-secret-for-this-test-0123")
    tenant = Tenant(new_id("tenant"), "acme", {"base": ModelRoute("base")})
    await store.create_tenant(tenant)
    secret = new_secret()
    await store.create_key(
        ApiKey(new_id("key"), tenant.id, "k", shown_prefix(secret), hasher.hash(secret))
    )
    authenticator = KeyAuthenticator(store, hasher, cache_ttl_s=60)
    unknown = "sk-" + "A" * 43
    wrong_secret_same_prefix = secret[:12] + ("B" if secret[12] != "B" else "C") + secret[13:]
    errors = []
    for presented in (unknown, wrong_secret_same_prefix):
        try:
            await authenticator.authenticate(presented)
        except Exception as error:
            errors.append(error)
    # one hashed lookup each, of a full-length HMAC digest; the same answer for both
    assert len(store.hash_lookups) == 2
    assert all(len(digest) == 64 for digest in store.hash_lookups)
    assert [e.body() for e in errors] == [errors[0].body()] * 2  # type: ignore[attr-defined]
    await store.close()


def test_secrets_never_reach_logs_or_error_messages(gateway: Gateway) -> None:
    wrong = gateway.api_key[:-4] + "zzzz"
    for key in (gateway.api_key, wrong):
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
        )
        assert key not in response.text
    created = gateway.admin("POST", "/keys", json={"tenant_id": gateway.tenant_id, "name": "x"})
    secret = created.json()["secret"]
    httpx.post(
        gateway.url + "/admin/v1/keys",
        json={"tenant_id": "missing", "name": "x"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    log = gateway.server.log()
    assert '"event":"request"' in log  # the access log did write these requests
    for leaked in (gateway.api_key, wrong, secret, ADMIN_KEY):
        assert leaked not in log
