"""Prompt-injection and jailbreak heuristics: the phrasings that try to unseat a system prompt.

Each phrase names both the move (ignore, reveal, pretend) and its object (previous
instructions, the system prompt, no restrictions), so everyday text that uses one of the
words ("please ignore my previous e-mail", "how do I jailbreak an iPhone") passes. Heuristics
catch the common, copy-pasted attacks; a guard model is the answer to novel ones.

The phrases match a lower-cased copy of the text and each starts with a literal word, which
keeps the scan within the input budget (see detector).
"""

from __future__ import annotations

import re

from gateway.safety.detector import Detector, Scan, Tail, contains

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

# (words one of which every match contains, phrase): each phrase is its own scan behind a
# substring test for its words (see detector).
PHRASES = (
    (
        ("ignore", "disregard", "forget", "override", "bypass", "skip"),
        rf"(?:ignore|disregard|forget|override|bypass|skip)\s+(?:{_PRIOR}\s+|all\s+(?:of\s+)?"
        rf"(?:the\s+|your\s+)?|your\s+){_RULES}",
    ),
    (
        ("you",),
        r"you(?:\s+are|'re)\s+(?:now\s+)?(?:dan\b|in\s+developer\s+mode|jailbroken|unfiltered|"
        r"uncensored|unrestricted|free\s+(?:of|from)\s+(?:all\s+)?(?:rules|restrictions))",
    ),
    (("anything",), r"do\s+anything\s+now\b"),
    (("developer",), r"developer\s+mode\s+(?:enabled|on|activated)"),
    (
        ("pretend", "imagine", "act"),
        rf"(?:pretend|imagine|act\s+as\s+if)\s+(?:that\s+)?you\s+(?:are|have|had)\s+"
        rf"(?:no|without)\s+(?:\w+\s+){{0,2}}{_LIMITS}",
    ),
    (
        ("act",),
        r"act\s+as\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|evil|jailbroken)\b",
    ),
    (
        ("prompt", "instructions", "message"),
        r"(?:reveal|print|show|repeat|output|leak|display|tell\s+me)\s+(?:me\s+)?(?:your|the)\s+"
        r"(?:full\s+|entire\s+|exact\s+|complete\s+)?(?:system|initial|hidden|original|secret)\s+"
        r"(?:prompt|instructions|message)",
    ),
    (("bound",), rf"(?:no\s+longer|not)\s+bound\s+by\s+(?:any\s+)?(?:\w+\s+)?{_LIMITS}"),
    (("without",), rf"without\s+(?:any\s+)?(?:ethical|moral|safety)\s+{_LIMITS}"),
    (("jailbreak",), r"jailbreak(?:ed)?\s+(?:mode|prompt)\b"),
    (("system",), r"(?:new|updated)\s+system\s+(?:prompt|instructions)\s*:"),
    (
        ("system", "inst]"),
        r"<\|im_start\|>\s*system|\[\s*/?\s*(?:system|inst)\s*\]|<\s*/?\s*system\s*>",
    ),
)
# The longest phrase above spans about a dozen words.
_MAX_WORDS = 12

PROMPT_INJECTION = Detector(
    label="INJECTION",
    scans=tuple(Scan(re.compile(phrase), contains(*words)) for words, phrase in PHRASES),
    max_span=160,
    tails=(Tail(rf"(?:\S+\s+){{0,{_MAX_WORDS - 1}}}\S*"),),
    not_after=re.compile(r"\w"),
    lowercase=True,
)
