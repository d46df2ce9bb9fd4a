"""Secrets that should never reach a model or leave in an answer: API keys and private keys.

Only formats with a recognisable shape are matched (a vendor prefix and a length, a PEM
header, a JWT's two base64url JSON segments), so random identifiers and hashes in code pass.
Each format is its own scan behind a test for its literal prefix (see detector), and the
whole detector is skipped for text (most stream chunks) that holds none of "-", "_" and the
prefixes without them.
"""

from __future__ import annotations

import re

from gateway.safety.detector import Detector, Scan, Tail, contains

_END = r"(?![\w-])"
# A JWT can be long: its first 512 characters (header, most of the payload) are matched, so
# the match stays within the stream window and the token is useless once they are removed.
_JWT = r"eyJ[A-Za-z0-9_-]{8,150}\.eyJ[A-Za-z0-9_-]{8,250}(?:\.[A-Za-z0-9_-]{1,100})?"
_FORMATS = (
    # (literal prefixes a match starts with, pattern)
    (("sk-",), r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,200}" + _END),  # OpenAI
    (("AKIA", "ASIA"), r"A(?:KIA|SIA)[0-9A-Z]{16}" + _END),  # AWS access key id
    (("gh",), r"gh[pousr]_[A-Za-z0-9]{36,251}" + _END),  # GitHub
    (("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,242}" + _END),
    (("glpat-",), r"glpat-[A-Za-z0-9_-]{20,200}" + _END),  # GitLab
    (("xox",), r"xox[abprs]-[A-Za-z0-9-]{10,200}" + _END),  # Slack
    (("AIza",), r"AIza[0-9A-Za-z_-]{35}" + _END),  # Google API key
    (("k_live_", "k_test_"), r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,200}" + _END),  # Stripe
    (("hf_",), r"hf_[A-Za-z0-9]{30,200}" + _END),  # Hugging Face
    (("eyJ",), _JWT),
    (("-----BEGIN",), r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
)


def _may_hold_secret(text: str) -> bool:
    """Every format above holds "-" or "_" or one of these prefixes: most prose holds none,
    and is spared the scans one by one."""
    return (
        "-" in text
        or "_" in text
        or "AKIA" in text
        or "ASIA" in text
        or "AIza" in text
        or "eyJ" in text
    )


SECRET = Detector(
    label="SECRET",
    scans=tuple(Scan(re.compile(pattern), contains(*prefixes)) for prefixes, pattern in _FORMATS),
    max_span=512,
    # A token is one word; the PEM header has spaces, so it has a tail of its own.
    word_tail=True,
    tails=(Tail(r"-----BEGIN[A-Z0-9 ]*-{0,5}", contains("-----BEGIN")),),
    not_after=re.compile(r"[\w-]"),
    gate=_may_hold_secret,
)
