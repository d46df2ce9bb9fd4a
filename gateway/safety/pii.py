"""Built-in PII detectors: e-mail, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Each pattern is tuned against the benign corpus in bench/safety_corpus: it requires the
formatting real values have (separators in phone numbers and SSNs, issuer prefixes on cards)
and refuses to start or end inside a longer token, so order numbers, timestamps, versions,
dates and hex IDs pass. Checksums (Luhn, IBAN mod 97) and `ipaddress` confirm candidates.
Look-behinds sit after the first character, where they do not slow the scan (see detector).
"""

from __future__ import annotations

import ipaddress
import re

from gateway.safety.checksums import IBAN_LENGTHS, card_number_valid, iban_valid
from gateway.safety.detector import NUMBER_TAIL, Detector, Scan, Tail, contains, has_digit


def _has_at(text: str) -> bool:
    return "@" in text


EMAIL = Detector(
    label="EMAIL",
    scans=(
        Scan(
            re.compile(
                r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                r"(?![\w-]|\.[A-Za-z0-9])"
            )
        ),
    ),
    max_span=254,
    word_tail=True,
    not_after=re.compile(r"[\w.%+-]"),
    gate=_has_at,
)

_END_OF_NUMBER = r"(?![\w-]|[./][0-9]|\)|[ .-][0-9])"
_INTERNATIONAL = r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}"
_NANP = (
    r"(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-]|[2-9][0-9]{2}([ .-])[2-9][0-9]{2}\1)"
    r"[0-9]{4}"
)
_NATIONAL = r"0[0-9]{1,4}([ /-])[0-9]{2,8}(?:\1[0-9]{2,8}){0,3}"


def _phone_digits_plausible(text: str, start: int, end: int) -> int | None:
    digits = sum(char.isdigit() for char in text[start:end])
    return end if 9 <= digits <= 15 or (text[start] == "+" and digits >= 8) else None


PHONE = Detector(
    label="PHONE",
    scans=(
        Scan(re.compile(_INTERNATIONAL + _END_OF_NUMBER), contains("+")),
        Scan(re.compile(_NANP + _END_OF_NUMBER)),
        Scan(re.compile(_NATIONAL + _END_OF_NUMBER)),
    ),
    max_span=30,
    tails=(NUMBER_TAIL,),
    confirm=_phone_digits_plausible,
    not_after=re.compile(r"[\w+./-]"),
    gate=has_digit,
)


def _card_confirmed(text: str, start: int, end: int) -> int | None:
    digits = text[start:end].replace(" ", "").replace("-", "")
    return end if card_number_valid(digits) else None


PAYMENT_CARD = Detector(
    label="CARD",
    scans=(
        Scan(
            re.compile(
                r"[0-9](?<![\w.-][0-9])[0-9]{3}"
                r"(?:([ -]?)[0-9]{4}\1[0-9]{4}\1[0-9]{1,7}|([ -]?)[0-9]{6}\2[0-9]{4,5})"
                r"(?![\w-]|\.[0-9])"
            )
        ),
    ),
    max_span=23,
    tails=(NUMBER_TAIL,),
    confirm=_card_confirmed,
    gate=has_digit,
)


def _iban_confirmed(text: str, start: int, end: int) -> int | None:
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
                return cut if iban_valid(compact) else None
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
            )
        ),
    ),
    max_span=11,
    tails=(NUMBER_TAIL,),
    gate=has_digit,
)

_IPV4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_IPV6 = (
    r"[0-9A-Fa-f]{0,4}:(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
)


_TWO_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")


def _has_two_colons(text: str) -> bool:
    """Every IPv6 address has two colons at most four hex digits apart."""
    return ":" in text and _TWO_COLONS.search(text) is not None


def _ip_confirmed(text: str, start: int, end: int) -> int | None:
    """A valid address that says something about a host: loopback and "any" (127.0.0.1,
    0.0.0.0, ::1) fill code and docs and say nothing. Code is also full of hex-lettered paths
    such as `a::b`, while real IPv6 addresses nearly always hold a digit."""
    candidate = text[start:end]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    if address.version == 6 and not any(char.isdigit() for char in candidate):
        return None
    return end


IP_ADDRESS = Detector(
    label="IP",
    # An IPv4 address may be followed by ":port"; an IPv6 one may not be followed by ":".
    scans=(
        Scan(re.compile(rf"{_IPV4}(?!\w|\.[0-9])")),
        Scan(re.compile(rf"{_IPV6}(?![\w:]|\.[0-9])"), _has_two_colons),
    ),
    max_span=45,
    word_tail=True,
    confirm=_ip_confirmed,
    not_after=re.compile(r"[\w.:]"),
    gate=has_digit,
)
