"""Label values with a ceiling on how many distinct ones a process will ever export.

Every distinct label value is a time series that Prometheus keeps; a value that comes from a
client (a model name when auth is off, say) could otherwise create series without end. Values
the gateway controls (tenant names, public model names, replica URLs) stay well under the
ceilings; anything beyond them is counted under "other" instead of disappearing.
"""

from __future__ import annotations

UNKNOWN = "unknown"
OTHER = "other"
_MAX_VALUE_CHARS = 128
# Statuses the gateway or vLLM answer on purpose; anything else is reported by class (5xx).
_EXACT_STATUSES = frozenset(
    {200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 499, 500, 502, 503, 504}
)
_STATUS_LABELS = {status: str(status) for status in _EXACT_STATUSES}


class BoundedValues:
    """Passes the first `limit` distinct values through, then answers OTHER for new ones."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return UNKNOWN
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or len(value) > _MAX_VALUE_CHARS:
            return OTHER
        self._seen.add(value)
        return value


def status_label(status: int) -> str:
    """The exact code for the statuses that mean something distinct, else its class ("5xx")."""
    label = _STATUS_LABELS.get(status)
    if label is not None:
        return label
    if 100 <= status < 600:
        return f"{status // 100}xx"
    return UNKNOWN
