"""Built-in PII detectors: e-mail, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Each pattern is tuned against the benign corpus in bench/safety_corpus: it requires the
formatting real values have (separators in phone numbers and SSNs, issuer prefixes on cards)
and refuses to start or end inside a longer token, so order numbers, timestamps, versions,
dates and hex IDs pass. Checksums (Luhn, IBAN mod 97) and `ipaddress` confirm candidates.

For speed (see detector) every scan starts with a definite character: e-mail addresses are
found at their "@" and IPv6 addresses at their first colon, and `confirm` then reaches back
to where they begin; look-behinds sit after the first character.
"""

from __future__ import annotations

import ipaddress
import re
import string

from gateway.safety.checksums import IBAN_LENGTHS, card_number_valid, iban_valid
from gateway.safety.detector import NUMBER_TAIL, Detector, Scan, Tail, contains, has_digit

_EMAIL_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-")
_MAX_LOCAL = 64


def _email_start(text: str, start: int, end: int) -> tuple[int, int] | None:
    """From the "@" back to the first character of the local part (at most 64 of them),
    which must be a letter or digit and must not follow a word character."""
    local = start
    while local > 0 and start - local <= _MAX_LOCAL and text[local - 1] in _EMAIL_LOCAL_CHARS:
        local -= 1
    if start - local > _MAX_LOCAL:
        return None
    while local < start and not text[local].isalnum():
        local += 1
    if local == start or (local > 0 and text[local - 1].isalnum()):
        return None
    return local, end


EMAIL = Detector(
    label="EMAIL",
    scans=(
        Scan(
            re.compile(
                r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                r"(?![\w-]|\.[A-Za-z0-9])"
            )
        ),
    ),
    max_span=254,
    word_tail=True,
    confirm=_email_start,
    gate=contains("@"),
)

_END_OF_NUMBER = r"(?![\w-]|[./][0-9]|\)|[ .-][0-9])"
# One alternation: the scan runs inside short numeric runs only (see detector), where the
# engine's skipping to a first character matters little and every scan costs a call.
_PHONE_FORMATS = (
    r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}",  # international
    r"(?:1[ .-]?)?\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-][0-9]{4}",  # (415) 555-2671
    r"(?:1(?P<c>[ .-])?)?[2-9][0-9]{2}(?P<s>[ .-])[2-9][0-9]{2}(?P=s)[0-9]{4}",  # 415-555-2671
    r"0[0-9]{1,4}(?P<n>[ /-])[0-9]{2,8}(?:(?P=n)[0-9]{2,8}){0,3}",  # national: 020 7946 0958
)


def _phone_digits_plausible(text: str, start: int, end: int) -> tuple[int, int] | None:
    digits = sum(char.isdigit() for char in text[start:end])
    plausible = 9 <= digits <= 15 or (text[start] == "+" and digits >= 8)
    return (start, end) if plausible else None


PHONE = Detector(
    label="PHONE",
    scans=(
        Scan(
            re.compile("(?:" + "|".join(_PHONE_FORMATS) + ")" + _END_OF_NUMBER),
            numeric=True,
            min_span=9,
        ),
    ),
    max_span=30,
    tails=(NUMBER_TAIL,),
    confirm=_phone_digits_plausible,
    not_after=re.compile(r"[\w+./-]"),
    gate=has_digit,
)


def _card_confirmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    digits = text[start:end].replace(" ", "").replace("-", "")
    return (start, end) if card_number_valid(digits) else None


PAYMENT_CARD = Detector(
    label="CARD",
    scans=(
        Scan(
            re.compile(
                r"[0-9](?<![\w.-][0-9])[0-9]{3}"
                r"(?:([ -]?)[0-9]{4}\1[0-9]{4}\1[0-9]{1,7}|([ -]?)[0-9]{6}\2[0-9]{4,5})"
                r"(?![\w-]|\.[0-9])"
            ),
            numeric=True,
            min_span=13,
        ),
    ),
    max_span=23,
    tails=(NUMBER_TAIL,),
    confirm=_card_confirmed,
    gate=has_digit,
)


def _iban_confirmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The candidate may run into a following word of capitals: cut it at its country's length."""
    length = IBAN_LENGTHS.get(text[start : start + 2])
    if length is None:
        return None
    taken = 0
    for index in range(start, end):
        if text[index] != " ":
            taken += 1
            if taken == length:
                cut = index + 1
                if cut < len(text) and text[cut].isalnum():
                    return None
                compact = text[start:cut].replace(" ", "")
                return (start, cut) if iban_valid(compact) else None
    return None


IBAN = Detector(
    label="IBAN",
    scans=(
        Scan(
            re.compile(
                r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}"
                r"(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"
            )
        ),
    ),
    max_span=42,
    word_tail=True,  # up to the check digits; then the tail below
    tails=(Tail(r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]*", has_digit),),
    confirm=_iban_confirmed,
    gate=has_digit,
)

US_SSN = Detector(
    label="SSN",
    scans=(
        Scan(
            re.compile(
                r"[0-8](?<![\w.-][0-8])[0-9]{2}(?<!000)(?<!666)"
                r"([- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![\w-]|\.[0-9])"
            ),
            numeric=True,
            min_span=11,
        ),
    ),
    max_span=11,
    tails=(NUMBER_TAIL,),
    gate=has_digit,
)

_HEX = frozenset("0123456789abcdefABCDEF")
_IPV4 = r"[0-9](?<![\w.][0-9])[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
# From the first colon on; `_ip_confirmed` adds the hex group before it.
_IPV6_FROM_COLON = r":(?:[0-9A-Fa-f]{0,4}:){0,6}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"


def _ip_confirmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """A valid address that says something about a host: loopback and "any" (127.0.0.1,
    0.0.0.0, ::1) fill code and docs and say nothing. Code is also full of hex-lettered paths
    such as `a::b`, while real IPv6 addresses nearly always hold a digit."""
    if text[start] == ":":
        first_group = start
        while first_group > start - 4 and first_group > 0 and text[first_group - 1] in _HEX:
            first_group -= 1
        if first_group > 0 and (text[first_group - 1].isalnum() or text[first_group - 1] in ".:_"):
            return None
        start = first_group
    candidate = text[start:end]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    if address.version == 6 and not any(char.isdigit() for char in candidate):
        return None
    return start, end


IP_ADDRESS = Detector(
    label="IP",
    # An IPv4 address may be followed by ":port"; an IPv6 one may not be followed by ":".
    scans=(
        Scan(re.compile(rf"{_IPV4}(?!\w|\.[0-9])"), numeric=True, min_span=7),
        Scan(re.compile(rf"{_IPV6_FROM_COLON}(?![\w:]|\.[0-9])"), contains(":")),
    ),
    max_span=45,
    word_tail=True,
    confirm=_ip_confirmed,
    gate=has_digit,
)
