"""Reversible masking: PII becomes a placeholder the model sees, and comes back in the answer.

Placeholders are numbered per label in order of first appearance in the request, so the same
value gets the same placeholder wherever it occurs, and a conversation re-sent turn after turn
masks its earlier turns the same way each time. Only placeholders this request created are
restored: text that merely looks like one passes unchanged.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\[[A-Z]+_\d{1,6}\]")
PLACEHOLDER_MAX_CHARS = 24


class MaskVault:
    """The placeholders of one request and the values they stand for."""

    __slots__ = ("_by_placeholder", "_by_value", "_counts")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._by_placeholder)

    def placeholder(self, label: str, value: str) -> str:
        key = (label, value)
        placeholder = self._by_value.get(key)
        if placeholder is None:
            number = self._counts.get(label, 0) + 1
            self._counts[label] = number
            placeholder = f"[{label}_{number}]"
            self._by_value[key] = placeholder
            self._by_placeholder[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        if not self._by_placeholder or "[" not in text:
            return text
        return PLACEHOLDER.sub(lambda match: self._by_placeholder.get(match[0], match[0]), text)
