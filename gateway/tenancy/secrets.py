"""API key secrets: generation, the keyed hash that is stored, and the prefix humans see.

A key is ``sk-`` followed by 43 URL-safe base64 characters (32 random bytes = 256 bits). The
store keeps only HMAC-SHA-256(server secret, key): a leaked database alone cannot be used to
find or forge keys. Every presented key, known or not, costs exactly one HMAC and one lookup by
hash, so response timing does not tell a known prefix from an unknown key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "sk-"
SHOWN_PREFIX_LENGTH = 8


class KeyHasher:
    def __init__(self, server_secret: bytes) -> None:
        if len(server_secret) < 16:
            raise ValueError("the key-hash server secret must be at least 16 bytes")
        self._secret = server_secret

    def hash(self, presented_key: str) -> str:
        return hmac.new(self._secret, presented_key.encode(), hashlib.sha256).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(secret: str) -> str:
    """What lists and logs may show of a key: enough to recognise it, too little to use it."""
    return secret[:SHOWN_PREFIX_LENGTH]


def new_id(kind: str) -> str:
    """Record ids like ``tenant_3f9c…``: unique, unguessable, and tell what they name."""
    return f"{kind}_{secrets.token_hex(8)}"


def server_secret(configured: str | None, redis_url: str | None, sqlite_path: Path) -> bytes:
    """The HMAC secret: as configured; for the embedded store, made once beside its file.

    With Redis, every instance must hash keys alike, so the secret must be configured.
    """
    if configured:
        return configured.encode()
    if redis_url:
        raise ValueError(
            "auth.key_hash_secret (VLLM_GATEWAY_AUTH__KEY_HASH_SECRET) is required with Redis"
        )
    path = sqlite_path.with_name(sqlite_path.name + ".secret")
    if not path.exists():
        # Written aside, then linked into place: workers starting together agree on one secret.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()
