"""Deterministic fake tokens: counting prompts, drawing answers, embedding inputs.

A "token" here is one whitespace-separated word. Prompt sizes follow a fixed rule so that
tests can predict `usage` exactly:
  completions: 1 (BOS) + words of the prompt (a list of token ids counts its length);
  chat: 2 (the generation prompt) + for every message 4 + words of its text content.
/tokenize returns pieces and ids built by the same rule, so its count always equals
prompt_tokens; /detokenize spells back the specials and the answer vocabulary.

Answers are words drawn by a PRNG seeded from (seed, model, prompt text): the same request
always gets the same answer, and each adapter answers the same prompt differently.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

VOCABULARY = (
    "the", "a", "model", "answer", "token", "adapter", "tenant", "gateway", "stream", "cloud",
    "river", "stone", "light", "quiet", "rapid", "green", "orange", "number", "seven", "eleven",
    "north", "south", "signal", "window", "garden", "engine", "paper", "silver", "bridge",
    "winter", "summer", "market", "pencil", "lantern", "harbor", "meadow", "copper", "violet",
    "thunder", "compass", "falcon", "island", "velvet", "marble", "canyon", "ember", "glacier",
    "orbit", "prism", "quartz", "saddle", "timber", "tunnel", "walnut", "zephyr", "and", "of",
    "to", "in", "is", "with", "for", "on", "we",
)  # fmt: skip

BOS_TOKENS = 1
GENERATION_PROMPT_TOKENS = 2
MESSAGE_OVERHEAD_TOKENS = 4
EMBEDDING_DIMENSIONS = 16
# The shortest and longest answer a prompt "naturally" has before the model would stop.
NATURAL_LENGTH_RANGE = (8, 64)

# Token pieces as a byte-level BPE spells them, "Ġ" marking a word that follows a space.
# Ids: the specials 1-4, the answer vocabulary (bare and spaced) from 16, any other word
# hashed into 256-4095.
_SPECIAL_IDS = {"<s>": 1, "<|start|>": 2, "<|sep|>": 3, "<|end|>": 4}
_SPACE = "Ġ"
_FIRST_KNOWN_ID = 16
_FIRST_WORD_ID = 256
_VOCAB_SIZE = 4096


@dataclass(frozen=True)
class Answer:
    """The generated tokens as text pieces, one per token, and why generation ended.

    An answer that ends with "stop" ends with the end-of-sequence token, whose piece is "":
    vLLM counts it in completion_tokens and streams it as an empty delta that carries the
    finish_reason, and so does the stand-in.
    """

    pieces: tuple[str, ...]
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)


def message_text(content: object) -> str:
    """The text of a chat message's content: a string, or the text parts of a part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def chat_prompt_tokens(messages: Sequence[dict]) -> int:
    return GENERATION_PROMPT_TOKENS + sum(
        MESSAGE_OVERHEAD_TOKENS + len(message_text(m.get("content")).split()) for m in messages
    )


def completion_prompt_tokens(prompt: str | list[int]) -> int:
    if isinstance(prompt, str):
        return BOS_TOKENS + len(prompt.split())
    return len(prompt)


def chat_prompt_key(messages: Sequence[dict]) -> str:
    """The whole conversation as one string, so every message affects the answer."""
    return "\n".join(f"{m.get('role')}: {message_text(m.get('content'))}" for m in messages)


def _text_pieces(text: str) -> list[str]:
    return [word if i == 0 else _SPACE + word for i, word in enumerate(text.split())]


def chat_prompt_pieces(messages: Sequence[dict]) -> list[str]:
    pieces: list[str] = []
    for message in messages:
        pieces += ["<|start|>", str(message.get("role")), "<|sep|>"]
        pieces += _text_pieces(message_text(message.get("content")))
        pieces.append("<|end|>")
    return [*pieces, "<|start|>", "assistant"]


def completion_prompt_pieces(prompt: str, add_special_tokens: bool = True) -> list[str]:
    words = _text_pieces(prompt)
    return ["<s>", *words] if add_special_tokens else words


# The pieces the stand-in spells back: its specials and the words it answers with, which
# have ids of their own below the hashed ids of any other word.
_KNOWN_IDS = {
    **_SPECIAL_IDS,
    **{
        piece: _FIRST_KNOWN_ID + index
        for index, piece in enumerate((*VOCABULARY, *(_SPACE + word for word in VOCABULARY)))
    },
}
_PIECES_BY_ID = {token_id: piece for piece, token_id in _KNOWN_IDS.items()}


def piece_id(piece: str) -> int:
    known = _KNOWN_IDS.get(piece)
    if known is not None:
        return known
    return _FIRST_WORD_ID + zlib.crc32(piece.encode()) % (_VOCAB_SIZE - _FIRST_WORD_ID)


def detokenize(ids: Sequence[int]) -> str:
    """Any other word's id is a hash, so it is left out, as vLLM leaves out ids beyond its
    vocabulary."""
    return "".join(_PIECES_BY_ID.get(i, "") for i in ids).replace(_SPACE, " ")


def _rng(seed: int, model: str, text: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}\0{model}\0{text}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def answer(
    seed: int, model: str, prompt_key: str, max_tokens: int, ignore_eos: bool = False
) -> Answer:
    """Draw the answer for a prompt. Its natural length (end-of-sequence token included) is
    drawn from the prompt too: within `max_tokens` it ends with "stop", else it is cut at
    `max_tokens` with "length"; `ignore_eos` always generates `max_tokens`, as in vLLM."""
    rng = _rng(seed, model, prompt_key)
    natural_length = rng.randint(*NATURAL_LENGTH_RANGE)
    stops = not ignore_eos and natural_length <= max_tokens
    words = rng.choices(VOCABULARY, k=natural_length - 1 if stops else max_tokens)
    pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
    if stops:
        return Answer((*pieces, ""), "stop")
    return Answer(tuple(pieces), "length")


def embedding(seed: int, model: str, text: str) -> list[float]:
    """A unit-length vector that depends only on (seed, model, text)."""
    rng = _rng(seed, model, text)
    vector = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIMENSIONS)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]
