"""The input of completions and embeddings: a string, strings, token ids or token-id arrays."""

from __future__ import annotations

from typing import Any

from gateway.core.errors import BadRequest
from gateway.core.request import InferenceRequest, RequestTexts, TextSlot
from gateway.limits.estimate import input_tokens
from gateway.surfaces.openai import OpenAISurface

# The role of a completion prompt or embedding input, for rules limited to some roles.
PROMPT_ROLE = "user"


class PromptSurface(OpenAISurface):
    """A surface whose input field holds text or token ids."""

    def check_input(self, value: Any) -> None:
        if not _is_text_or_tokens(value):
            raise BadRequest(
                f"Invalid '{self.input_field}': expected a string, an array of strings, an "
                "array of token ids or an array of token-id arrays.",
                self.input_field,
            )

    def texts(self, request: InferenceRequest) -> RequestTexts:
        field = self.input_field
        body = request.body
        value = body[field]
        if isinstance(value, str):
            return RequestTexts(field, [TextSlot(body, field, PROMPT_ROLE, field)], 1)
        if all(isinstance(item, str) for item in value):
            slots = [TextSlot(value, i, PROMPT_ROLE, f"{field}[{i}]") for i in range(len(value))]
            return RequestTexts(field, slots, len(slots))
        return RequestTexts(field, messages=len(value), unreadable=True)

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        return input_tokens(request.body[self.input_field])


def _is_text_or_tokens(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, str):
        return all(isinstance(item, str) for item in value)
    if isinstance(first, int):
        return all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    if isinstance(first, list):
        return all(
            isinstance(item, list)
            and item
            and _is_text_or_tokens(item)
            and isinstance(item[0], int)
            for item in value
        )
    return False
