"""Small helpers the admin API's tests share."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()
