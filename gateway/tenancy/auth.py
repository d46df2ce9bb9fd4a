"""Authenticate API keys on the hot path without a store round trip on the common path.

Validated lookups (and unknown keys) are cached in process memory by the key's hash for a
short TTL; the store's invalidation channel (Redis pub/sub, or SQLite's data_version) clears
the cache on every instance when an operator revokes, rotates or disables something, so such a
change is seen everywhere within about a second. Expiry, revocation and grace periods are
checked on every request against the cached record, so they take effect to the second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.observability import metrics
from gateway.tenancy.models import ApiKey, ModelRoute, Tenant
from gateway.tenancy.secrets import KEY_PREFIX, KeyHasher
from gateway.tenancy.store import Store

logger = logging.getLogger("gateway.auth")

_MAX_CACHED = 100_000
_BEARER = b"bearer "


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its tenant, and the public model names this key may use."""

    key: ApiKey
    tenant: Tenant
    models: dict[str, ModelRoute]

    @classmethod
    def of(cls, key: ApiKey, tenant: Tenant) -> Principal:
        allowed = key.allowed_models
        models = {
            name: route
            for name, route in tenant.models.items()
            if allowed is None or name in allowed
        }
        return cls(key, tenant, models)


def unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401,
        message,
        "invalid_request_error",
        None,
        "invalid_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def invalid_key() -> GatewayError:
    """One message for every rejected key, so the answer does not tell whether a key exists."""
    return unauthorized(
        "Invalid API key: it is unknown, expired, revoked, or its tenant is disabled."
    )


def missing_key() -> GatewayError:
    return unauthorized("Missing API key: send it as the header 'Authorization: Bearer sk-...'.")


class KeyAuthenticator:
    def __init__(self, store: Store, hasher: KeyHasher, cache_ttl_s: float) -> None:
        self._store = store
        self._hasher = hasher
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._last_used: dict[str, float] = {}

    async def authenticate(self, authorization: bytes | None) -> Principal:
        if not authorization:
            raise missing_key()
        if authorization[:7].lower() != _BEARER:
            raise unauthorized("The Authorization header must be 'Bearer sk-...'.")
        presented = authorization[7:].strip().decode(errors="replace")
        digest = self._hasher.hash(presented)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
            metrics.key_cache_lookup(hit=True)
        else:
            metrics.key_cache_lookup(hit=False)
            principal = await self._load(digest) if presented.startswith(KEY_PREFIX) else None
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        wall_now = time.time()
        if principal is None or not _usable(principal, digest, wall_now):
            raise invalid_key()
        self._last_used[principal.key.id] = wall_now
        return principal

    def invalidate(self) -> None:
        self._cache.clear()

    async def flush_last_used(self) -> None:
        """Write last-used times in one batch; called periodically, never per request."""
        if self._last_used:
            batch, self._last_used = self._last_used, {}
            await self._store.touch_keys(batch)

    async def run_background(self, flush_interval_s: float = 5.0) -> None:
        """Follow invalidations and flush last-used times until cancelled."""
        listener = asyncio.create_task(self._store.listen_invalidations(self.invalidate))
        try:
            while True:
                await asyncio.sleep(flush_interval_s)
                try:
                    await self.flush_last_used()
                except Exception:  # the store may be briefly away; times are best-effort
                    logger.warning("could not record key last-used times", exc_info=True)
        finally:
            listener.cancel()

    async def _load(self, digest: str) -> Principal | None:
        key = await self._store.find_key_by_hash(digest)
        if key is None:
            return None
        tenant = await self._store.get_tenant(key.tenant_id)
        return None if tenant is None else Principal.of(key, tenant)


def _usable(principal: Principal, digest: str, now: float) -> bool:
    key = principal.key
    if key.revoked_at is not None or not principal.tenant.enabled:
        return False
    if key.expires_at is not None and now >= key.expires_at:
        return False
    if digest == key.secret_hash:
        return True
    return digest == key.grace_secret_hash and key.grace_until is not None and now < key.grace_until
