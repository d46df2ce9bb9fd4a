"""vLLM's per-request `cache_salt`, derived from the tenant with a keyed hash.

vLLM folds the salt into the hash of the first prefix-cache block, so only requests with the
same salt can hit each other's cached blocks. Without a salt, a tenant can time its own
requests to learn whether another tenant recently sent a given prompt prefix. The salt is an
HMAC of the tenant id under a server secret, so it cannot be guessed from the id, and the
gateway strips any salt a client sends, so a client cannot pick another tenant's salt.

Modes, from tenant metadata `cache_salt`: "isolated" (default: a salt of the tenant's own) or
"shared:<group>" (every tenant naming that group gets the group's salt and shares its cache).
Anything else falls back to "isolated": an unreadable setting must not open the cache up.
"""

from __future__ import annotations

import hashlib
import hmac

ISOLATED = "isolated"
SHARED = "shared"
_SHARED_PREFIX = "shared:"
_MAX_CACHED = 100_000


def derive_secret(configured: str | None, key_hash_secret: bytes) -> bytes:
    """The salt secret: as configured, else derived from the key-hash secret.

    Derived (not reused as is) so that a salt, which vLLM may log, never equals a key hash
    computed with the same secret.
    """
    if configured:
        return configured.encode()
    return hmac.digest(key_hash_secret, b"vllm-gateway cache_salt", hashlib.sha256)


def salt_mode(metadata_value: str | None) -> tuple[str, str | None]:
    """(mode, group) for a tenant's `cache_salt` metadata value; group only when shared."""
    if metadata_value and metadata_value.startswith(_SHARED_PREFIX):
        group = metadata_value[len(_SHARED_PREFIX) :].strip()
        if group:
            return SHARED, group
    return ISOLATED, None


class CacheSalter:
    """Salts by tenant or group, computed once each and kept (an HMAC per request adds up)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cache-salt secret must be at least 16 bytes")
        self._secret = secret
        self._salts: dict[str, str] = {}

    def salt(self, tenant_id: str, mode: str, group: str | None) -> str:
        # Prefixes keep a tenant id and a group name that happen to be equal apart.
        source = f"group:{group}" if mode == SHARED else f"tenant:{tenant_id}"
        salt = self._salts.get(source)
        if salt is None:
            # 64 hex characters: within vLLM's 128-character limit, none of its forbidden ones.
            salt = hmac.new(self._secret, source.encode(), hashlib.sha256).hexdigest()
            if len(self._salts) >= _MAX_CACHED:
                self._salts.clear()
            self._salts[source] = salt
        return salt
