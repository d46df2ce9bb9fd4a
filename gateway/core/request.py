"""An inference request as the pipeline carries it, and the texts in it a policy reads.

The surface's codec (gateway/surfaces/) builds both: the pipeline knows no API's shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class InferenceRequest:
    raw: bytes
    body: dict[str, Any]
    model: str | None
    stream: bool
    client_wants_usage: bool
    changed: bool = False  # a stage rewrote `body`: send it re-serialised, not `raw`
    content_type: str = "application/json"  # of the upstream body (multipart: its boundary)


@dataclass(slots=True)
class TextSlot:
    """Where one text of the request lives, so a rewrite (redact, mask) can put it back."""

    container: Any  # the dict or list that holds the text
    key: str | int
    role: str
    param: str  # the client's name for it, e.g. messages[2].content

    @property
    def text(self) -> str:
        text: str = self.container[self.key]
        return text

    @text.setter
    def text(self, value: str) -> None:
        self.container[self.key] = value


@dataclass(slots=True)
class RequestTexts:
    """The texts of a request, as its surface reads them.

    `param`: the top-level field they come from (an error's param). `messages`: how many
    messages (or inputs) the request has, for size limits. `unreadable`: set when the input
    is not text (token ids), which a text policy cannot check.
    """

    param: str
    slots: list[TextSlot] = field(default_factory=list)
    messages: int = 0
    unreadable: bool = False
