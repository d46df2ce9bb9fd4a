"""Admin key checks: constant-time, closed when no key is configured, never logging the key.

Presented and configured keys are compared as SHA-256 digests, so every comparison is over
equal lengths and takes the same time, and every configured key is compared (no early exit):
the answer time says nothing about how close a guess was or which key it matched. The audit
trail names an admin by a short digest of its key, which identifies it without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.core.errors import AuthenticationError

ADMIN_ID_HEX_CHARS = 12


def admin_key_id(admin_key: str) -> str:
    return "admin_" + hashlib.sha256(admin_key.encode()).hexdigest()[:ADMIN_ID_HEX_CHARS]


class AdminAuth:
    def __init__(self, admin_keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in admin_keys]

    def identify(self, presented: str | None) -> str:
        """The admin key id of `presented` (the bearer token), or 401."""
        if not self._digests:
            raise AuthenticationError(
                "Admin API keys are not configured: set VLLM_GATEWAY_ADMIN__KEYS or "
                "admin.keys_file to use the admin API."
            )
        if not presented:
            raise AuthenticationError(
                "Missing admin key: send 'Authorization: Bearer <admin key>'."
            )
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for configured in self._digests:
            matched |= hmac.compare_digest(digest, configured)
        if not matched:
            raise AuthenticationError("Invalid admin key.")
        return admin_key_id(presented)
