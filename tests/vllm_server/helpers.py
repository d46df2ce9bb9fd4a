"""What the stand-in tests share: the one conversation most of them send, its prompt size
under the stand-in's documented token rule, and plain requests."""

from __future__ import annotations

import httpx

from tests.fixtures.processes import ServerProcess

HELLO = [{"role": "user", "content": "tell me about rivers"}]
# the documented rule: 2 for the generation prompt, 4 per message, 1 per word
HELLO_PROMPT_TOKENS = 2 + 4 + 4


def post(server: ServerProcess, path: str, body: object, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=timeout)


def chat(server: ServerProcess, **body: object) -> dict:
    response = post(server, "/v1/chat/completions", {"messages": HELLO, **body})
    assert response.status_code == 200, response.text
    return response.json()
