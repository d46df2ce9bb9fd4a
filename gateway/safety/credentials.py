"""Secrets that should never reach a model or leave in an answer: API keys and private keys.

Only formats with a recognisable shape are matched (a vendor prefix and a length, a PEM
header, a JWT's two base64url JSON segments), so random identifiers and hashes in code pass.
Every alternative starts with its literal prefix, which keeps the scan fast (see detector).
"""

from __future__ import annotations

import re

from gateway.safety.detector import Detector, Tail

_TOKENS = (
    r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,200}",  # OpenAI / Anthropic style
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key id
    r"gh[pousr]_[A-Za-z0-9]{36,251}",  # GitHub
    r"github_pat_[A-Za-z0-9_]{22,242}",
    r"glpat-[A-Za-z0-9_-]{20,200}",  # GitLab
    r"xox[abprs]-[A-Za-z0-9-]{10,200}",  # Slack
    r"AIza[0-9A-Za-z_-]{35}",  # Google API key
    r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,200}",  # Stripe
    r"hf_[A-Za-z0-9]{30,200}",  # Hugging Face
)
# A JWT can be long: its first 512 characters (header, most of the payload) are matched, so
# the match stays within the stream window and the token is useless once they are removed.
_JWT = r"eyJ[A-Za-z0-9_-]{8,150}\.eyJ[A-Za-z0-9_-]{8,250}(?:\.[A-Za-z0-9_-]{1,100})?"
_PRIVATE_KEY = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"


def _has_pem_header(text: str) -> bool:
    return "-----BEGIN" in text


SECRET = Detector(
    label="SECRET",
    pattern=re.compile(rf"(?:{'|'.join(_TOKENS)})(?![\w-])|{_JWT}|{_PRIVATE_KEY}"),
    max_span=512,
    # A token is one word; the PEM header has spaces, so it has a tail of its own.
    word_tail=True,
    tails=(Tail(r"-----BEGIN[A-Z0-9 ]*-{0,5}", _has_pem_header),),
    not_after=re.compile(r"[\w-]"),
)
