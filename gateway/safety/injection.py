"""Prompt-injection and jailbreak heuristics: the phrasings that try to unseat a system prompt.

Each phrase names both the move (ignore, reveal, pretend) and its object (previous
instructions, the system prompt, no restrictions), so everyday text that uses one of the
words ("please ignore my previous e-mail", "how do I jailbreak an iPhone") passes. Heuristics
catch the common, copy-pasted attacks; a guard model is the answer to novel ones.

The phrases match a lower-cased copy of the text, grouped into one scan per first letter of
their leading words (see detector).
"""

from __future__ import annotations

import re

from gateway.safety.detector import Detector, Scan, Tail

_PRIOR = (
    r"(?:(?:all|any|the|your|my|these|those|of)\s+)*"
    r"(?:previous|prior|above|earlier|preceding|original|initial|system|developer|safety)"
)
_RULES = (
    r"(?:instructions?|rules|prompts?|guidelines|directions|directives|guardrails|"
    r"restrictions|policies|programming|constraints|context)"
)
_LIMITS = (
    r"(?:restrictions|rules|limits|limitations|filters|guidelines|boundaries|censorship|policies)"
)

# (leading words, the rest of the phrase).
PHRASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("ignore", "disregard", "forget", "override", "bypass", "skip"),
        rf"\s+(?:{_PRIOR}\s+|all\s+(?:of\s+)?(?:the\s+|your\s+)?|your\s+){_RULES}",
    ),
    (
        ("you are", "you're"),
        r"\s+(?:now\s+)?(?:dan\b|in\s+developer\s+mode|jailbroken|unfiltered|uncensored|"
        r"unrestricted|free\s+(?:of|from)\s+(?:all\s+)?(?:rules|restrictions))",
    ),
    (("do anything now",), r"\b"),
    (("developer mode",), r"\s+(?:enabled|on|activated)"),
    (
        ("pretend", "imagine", "act as if"),
        rf"\s+(?:that\s+)?you\s+(?:are|have|had)\s+(?:no|without)\s+(?:\w+\s+){{0,2}}{_LIMITS}",
    ),
    (("act as",), r"\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|evil|jailbroken)\b"),
    (
        ("reveal", "print", "show", "repeat", "output", "leak", "display", "tell me"),
        r"\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+|exact\s+|complete\s+)?"
        r"(?:system|initial|hidden|original|secret)\s+(?:prompt|instructions|message)",
    ),
    (("no longer", "not"), rf"\s+bound\s+by\s+(?:any\s+)?(?:\w+\s+)?{_LIMITS}"),
    (("without",), rf"\s+(?:any\s+)?(?:ethical|moral|safety)\s+{_LIMITS}"),
    (("jailbreak",), r"(?:ed)?\s+(?:mode|prompt)\b"),
    (("new", "updated"), r"\s+system\s+(?:prompt|instructions)\s*:"),
    (("<|im_start|>system", "[inst]", "[/inst]", "[system]", "<system>", "</system>"), ""),
)


def _scans() -> tuple[Scan, ...]:
    """One scan per first character of the leading words, which the engine skips to. No
    substring gates: on a long prompt, testing for the words costs as much as the scan."""
    by_char: dict[str, list[str]] = {}
    for leads, rest in PHRASES:
        for lead in leads:
            first, *others = lead.split()
            after_first_char = r"\s+".join([re.escape(first[1:]), *map(re.escape, others)])
            by_char.setdefault(lead[0], []).append(after_first_char + rest)
    return tuple(
        Scan(re.compile(f"{re.escape(char)}(?:{'|'.join(alternatives)})"))
        for char, alternatives in by_char.items()
    )


# The longest phrase above spans about a dozen words.
_MAX_WORDS = 12

PROMPT_INJECTION = Detector(
    label="INJECTION",
    scans=_scans(),
    max_span=160,
    tails=(Tail(rf"(?:\S+\s+){{0,{_MAX_WORDS - 1}}}\S*", words=_MAX_WORDS),),
    not_after=re.compile(r"\w"),
    lowercase=True,
)
