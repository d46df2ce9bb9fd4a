"""`POST /v1/chat/completions`: messages in, a message or a stream of deltas out."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import BadRequest
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest, RequestTexts, TextSlot
from gateway.limits.estimate import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    content_chars,
    text_tokens,
)
from gateway.safety.runtime import PolicyRuntime
from gateway.surfaces.openai import OpenAISurface, wrong_type


class ChatCompletions(OpenAISurface):
    path = "/v1/chat/completions"
    name = "chat.completions"
    input_field = "messages"

    def check_input(self, value: Any) -> None:
        if not isinstance(value, list):
            raise wrong_type("messages", "an array", value)
        if not value:
            raise BadRequest("'messages' must contain at least one message.", "messages")
        for index, message in enumerate(value):
            if not isinstance(message, dict):
                raise wrong_type(f"messages[{index}]", "an object", message)
            if not isinstance(message.get("role"), str):
                raise BadRequest(
                    f"Missing or invalid 'role' in messages[{index}].", f"messages[{index}].role"
                )

    def texts(self, request: InferenceRequest) -> RequestTexts:
        """The messages' string contents and text parts."""
        messages = request.body["messages"]
        texts = RequestTexts("messages", messages=len(messages))
        for index, message in enumerate(messages):
            role = message["role"]
            content = message.get("content")
            if isinstance(content, str):
                texts.slots.append(TextSlot(message, "content", role, f"messages[{index}].content"))
            elif isinstance(content, list):
                for part_index, part in enumerate(content):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        param = f"messages[{index}].content[{part_index}].text"
                        texts.slots.append(TextSlot(part, "text", role, param))
        return texts

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        """The texts, tool calls and tools by length, plus the template's per-message tokens."""
        body = request.body
        chars = 0
        for message in body["messages"]:
            chars += content_chars(message.get("content"))
            calls = message.get("tool_calls")
            if calls:
                chars += len(orjson.dumps(calls))
        tools = body.get("tools")
        if tools:
            chars += len(orjson.dumps(tools))
        overhead = MESSAGE_OVERHEAD_TOKENS * len(body["messages"]) + REPLY_PRIMING_TOKENS
        return overhead + text_tokens(chars)

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        return policy.output_guard()
