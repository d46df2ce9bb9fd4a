"""Authenticate API keys on the hot path without a store round trip on the common path.

Validated lookups (and unknown keys) are cached in process memory by the key's hash for a
short TTL; valid ones are also kept past it, as the copy served while the store is unavailable.
The store's invalidation channel (Redis pub/sub, or SQLite's data_version) makes every instance
check its cached keys again when an operator revokes, rotates or disables something, so such a
change is seen everywhere within about a second. Expiry, revocation and grace periods are
checked on every request against the cached record, so they take effect to the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from gateway.core.asgi import Scope, header
from gateway.core.errors import AuthenticationError, StoreUnavailable
from gateway.observability import metrics, tracing
from gateway.tenancy.models import ApiKey, ModelRoute, Tenant
from gateway.tenancy.secrets import KEY_PREFIX, KeyHasher
from gateway.tenancy.store import Store

_MAX_CACHED = 100_000
# a request's trace tells a key served from memory from one read from the store (a span)
_CACHE_HIT = {"gateway.auth.cache": "hit"}
_SERVED_STALE = {"gateway.auth.cache": "stale"}
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


def invalid_key() -> AuthenticationError:
    """One message for every rejected key, so the answer does not tell whether a key exists."""
    return AuthenticationError(
        "Invalid API key: it is unknown, expired, revoked, or its tenant is disabled."
    )


def missing_key() -> AuthenticationError:
    return AuthenticationError(
        "Missing API key: send it as the header 'Authorization: Bearer sk-...' "
        "or 'x-api-key: sk-...'."
    )


def presented_key(scope: Scope) -> str:
    """The API key a request presents: `Authorization: Bearer sk-...` (OpenAI's clients) or
    `x-api-key: sk-...` (Anthropic's); the bearer token wins when both are sent. 401 when
    neither carries one."""
    authorization = header(scope, b"authorization")
    if authorization and authorization[:7].lower() == _BEARER:
        return authorization[7:].strip().decode(errors="replace")
    api_key = header(scope, b"x-api-key")
    if api_key:
        return api_key.strip().decode(errors="replace")
    if authorization:
        raise AuthenticationError(
            "The Authorization header is not a bearer token: send the key as "
            "'Authorization: Bearer sk-...' or 'x-api-key: sk-...'."
        )
    raise missing_key()


class KeyAuthenticator:
    """Keys checked against the store at most once per TTL, from memory in between.

    While the store is unavailable, a key validated within `stale_window_s` keeps working
    from memory (serve-stale, as HTTP and DNS caches do); any other key gets 503 with
    Retry-After -- never 401, which would make a client drop a valid key. Unknown keys are
    cached apart and bounded on their own, so a flood of invalid keys never evicts valid ones.
    """

    def __init__(
        self, store: Store, hasher: KeyHasher, cache_ttl_s: float, stale_window_s: float = 300.0
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._ttl = cache_ttl_s
        self._stale_window_s = stale_window_s
        # digest -> (fresh until, validated at, principal), both times monotonic
        self._valid: dict[str, tuple[float, float, Principal]] = {}
        self._unknown: dict[str, float] = {}  # digest -> fresh until
        self._last_used: dict[str, float] = {}
        self._revalidation: asyncio.Task[None] | None = None

    async def authenticate(self, presented: str) -> Principal:
        """The principal of a presented key (`presented_key`); 401 for any key not usable."""
        digest = self._hasher.hash(presented)
        principal = await self._lookup(digest, presented)
        wall_now = time.time()
        if principal is None or not _usable(principal, digest, wall_now):
            raise invalid_key()
        self._last_used[principal.key.id] = wall_now
        return principal

    async def _lookup(self, digest: str, presented: str) -> Principal | None:
        now = time.monotonic()
        cached = self._valid.get(digest)
        if cached is not None and cached[0] > now:
            metrics.key_cache_lookup(hit=True)
            tracing.event("gateway.auth", _CACHE_HIT)
            return cached[2]
        if cached is None and self._unknown.get(digest, 0.0) > now:
            metrics.key_cache_lookup(hit=True)
            tracing.event("gateway.auth", _CACHE_HIT)
            return None
        metrics.key_cache_lookup(hit=False)
        if not presented.startswith(KEY_PREFIX):
            return self._remember(digest, None)
        stale = cached[2] if cached and now - cached[1] <= self._stale_window_s else None
        if stale is not None and not self._store.health.available:
            self._revalidate_later(digest)  # no wait for a store known to be down
            metrics.key_served_stale()
            tracing.event("gateway.auth", _SERVED_STALE)
            return stale
        try:
            with tracing.span("gateway.auth.store_read"):
                return self._remember(digest, await self._load(digest))
        except StoreUnavailable:
            if stale is None:
                raise
            metrics.key_served_stale()
            tracing.event("gateway.auth", _SERVED_STALE)
            return stale

    def _remember(self, digest: str, principal: Principal | None) -> Principal | None:
        now = time.monotonic()
        if principal is None:
            self._valid.pop(digest, None)
            if len(self._unknown) >= _MAX_CACHED:
                self._unknown.clear()
            self._unknown[digest] = now + self._ttl
        else:
            if len(self._valid) >= _MAX_CACHED:
                self._valid.clear()
            self._valid[digest] = (now + self._ttl, now, principal)
        return principal

    def _revalidate_later(self, digest: str) -> None:
        """Check one stale key in the background, one at a time: the probe that finds the
        store back, after which keys are checked on the request path again."""
        if self._revalidation is not None and not self._revalidation.done():
            return
        self._revalidation = asyncio.create_task(self._revalidate(digest))

    async def _revalidate(self, digest: str) -> None:
        with contextlib.suppress(StoreUnavailable):
            self._remember(digest, await self._load(digest))

    def invalidate(self) -> None:
        """Every cached answer is checked again on its next use. Valid keys stay in memory,
        past their TTL, as the stale copy served should the store fail meanwhile."""
        self._unknown.clear()
        self._valid = {digest: (0.0, at, p) for digest, (_, at, p) in self._valid.items()}

    async def flush_last_used(self) -> None:
        """Write last-used times in one batch; called periodically, never per request."""
        if self._last_used:
            batch, self._last_used = self._last_used, {}
            await self._store.touch_keys(batch)

    async def close(self) -> None:
        """Flush the last-used times of the last interval (best effort, as in the loop)."""
        with contextlib.suppress(StoreUnavailable):
            await self.flush_last_used()

    async def run_background(self, flush_interval_s: float = 5.0) -> None:
        """Follow invalidations and flush last-used times until cancelled."""
        listener = asyncio.create_task(self._store.listen_invalidations(self.invalidate))
        try:
            while True:
                await asyncio.sleep(flush_interval_s)
                # Last-used times are best-effort: an unavailable store was logged once by
                # its health, and the times of this interval are dropped.
                with contextlib.suppress(StoreUnavailable):
                    await self.flush_last_used()
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
