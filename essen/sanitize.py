"""Message previews with the personal data masked, for the dashboard and the logs.

Users write phone numbers, e-mail addresses and sometimes card numbers into a
chat; the admin dashboard shows a preview of every message.  The preview is
made here, and only here, so there is one place to audit: every preview that
leaves the bot went through :func:`sanitize_text`.

The masking is deliberately greedy.  A date or an order number that looks like
a phone number is masked too: a preview that hides too much costs the reader
a little context, one that hides too little leaks a customer's data.  Masks
run before truncation, so a cut never shows the first half of a secret.

Order matters, and each step explains why it comes where it does:

1. control and invisible format characters are removed (they could split a
   number so that it no longer looks like one), whitespace is collapsed;
2. ``password: ...`` style pairs lose their value;
3. URLs keep only scheme and host (their path and query carry tokens, and an
   address in ``user@host`` form would otherwise be half-masked as an e-mail);
4. e-mail addresses;
5. IBANs (before digit runs, which would mask only the digits);
6. long tokens (hex, base64) — mixed letters and digits only, so that long
   German compound words survive;
7. digit runs: 13 or more digits are a card number, 7 or more a phone number.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ("MASKS", "sanitize_text")

EMAIL_MASK: Final = "[email]"
PHONE_MASK: Final = "[phone]"
CARD_MASK: Final = "[card]"
IBAN_MASK: Final = "[iban]"
TOKEN_MASK: Final = "[token]"
SECRET_MASK: Final = "[secret]"
#: Every placeholder a preview can contain (truncation never cuts one in half).
MASKS: Final = (EMAIL_MASK, PHONE_MASK, CARD_MASK, IBAN_MASK, TOKEN_MASK, SECRET_MASK)
ELLIPSIS: Final = "…"

# Control characters that are not whitespace, invisible format characters
# (zero-width, bidi overrides, soft hyphen, BOM) and lone surrogates.
# Whitespace controls (\t \n \r \v \f \x1c-\x1f \x85) are collapsed, not removed.
_INVISIBLE: Final = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)
_WHITESPACE: Final = re.compile(r"\s+")
_SECRET_PAIR: Final = re.compile(
    r"(?i)\b(password|passwort|passwd|pwd|pin|secret|token|access[_-]?token|api[_-]?key)"
    r"(\s?[:=]\s?)\S+"
)
_URL: Final = re.compile(r"(?i)\b(?:(?:https?|ftp|wss?)://|www\.)[^\s<>\"'`]+")
_URL_END: Final = re.compile(r"[/?#]")
# The local part is bounded (RFC 5321: 64 characters) so a long run of
# letters without an "@" costs linear time, not quadratic.
_EMAIL: Final = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_IBAN: Final = re.compile(
    r"(?i)(?<![a-z0-9])[a-z]{2}\d{2}"
    r"(?:[a-z0-9]{11,30}|(?: [a-z0-9]{4}){2,7}(?: [a-z0-9]{1,4})?)(?![a-z0-9])"
)
_TOKEN: Final = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
# Digits, or digits in parentheses, with at most one separator between them:
# "+49 (0)171 123-4567", "4111 1111 1111 1111", "030/1234567".
_NUMBER: Final = re.compile(r"\+?(?:\(\d{1,6}\)|\d)(?:[ ./-]?(?:\(\d{1,6}\)|\d))*")
_DATE: Final = re.compile(r"(\d{1,2})([./-])(\d{1,2})\2(\d{2}|\d{4})|(\d{4})-(\d{2})-(\d{2})")
_DIGIT: Final = re.compile(r"\d")

_MIN_PHONE_DIGITS: Final = 7
_MIN_CARD_DIGITS: Final = 13
_MIN_IBAN_DIGITS: Final = 10


def sanitize_text(text: str, *, limit: int = 120) -> str:
    """A preview of ``text`` that is safe to show: personal data masked, one line, short.

    Args:
        text: what the user (or the bot) wrote.
        limit: the longest result, in characters (the ellipsis included);
            ``limit < 1`` gives ``""``.

    Returns:
        The text with e-mail addresses, phone numbers, card-like digit runs,
        IBANs, long tokens and ``password: ...`` values replaced by
        placeholders (:data:`MASKS`), URLs reduced to scheme and host, control
        characters removed, whitespace collapsed, and cut to ``limit`` with
        ``…`` (masking happens first; a placeholder is never cut in half).

    Never raises.
    """
    if limit < 1:
        return ""
    cleaned = _WHITESPACE.sub(" ", _INVISIBLE.sub("", text)).strip()
    masked = _SECRET_PAIR.sub(rf"\1\2{SECRET_MASK}", cleaned)
    masked = _URL.sub(_mask_url, masked)
    if "@" in masked:
        masked = _EMAIL.sub(EMAIL_MASK, masked)
    masked = _IBAN.sub(_mask_iban, masked)
    masked = _TOKEN.sub(_mask_token, masked)
    masked = _NUMBER.sub(_mask_number, masked)
    return _truncate(masked, limit)


def _mask_url(match: re.Match[str]) -> str:
    url = match.group(0)
    scheme, separator, rest = url.partition("://")
    prefix = f"{scheme}://" if separator else ""
    if not separator:
        rest = url
    end = _URL_END.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    host = authority.rpartition("@")[2]  # user:password@ never shows
    return prefix + host + (tail if tail in ("", "/") else "/" + ELLIPSIS)


def _mask_iban(match: re.Match[str]) -> str:
    found = match.group(0)
    if len(_DIGIT.findall(found)) < _MIN_IBAN_DIGITS:
        return found  # "AB12 this word": letters, not an account
    return IBAN_MASK


def _mask_token(match: re.Match[str]) -> str:
    found = match.group(0)
    has_digit = any(char.isdigit() for char in found)
    has_letter = any(char.isalpha() for char in found)
    # All letters: a long (compound) word.  All digits: left to the digit
    # rule, which names it a card or phone number.
    return TOKEN_MASK if has_digit and has_letter else found


def _mask_number(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = len(_DIGIT.findall(found))
    if digits < _MIN_PHONE_DIGITS or _is_date(found):
        return found
    international = found.startswith(("+", "00"))
    if digits >= _MIN_CARD_DIGITS and not international:
        return CARD_MASK
    return PHONE_MASK


def _is_date(found: str) -> bool:
    """``15.01.2025``, ``1/2/26`` or ``2025-01-15`` with a plausible day and month."""
    date = _DATE.fullmatch(found)
    if date is None:
        return False
    if date.group(5) is not None:
        month, day = int(date.group(6)), int(date.group(7))
    else:
        first, second = int(date.group(1)), int(date.group(3))
        # Day-first (Europe) or month-first (US): either reading will do.
        day, month = (first, second) if second <= 12 else (second, first)
    return 1 <= month <= 12 and 1 <= day <= 31


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    opening = cut.rfind("[")
    if opening > cut.rfind("]") and any(text.startswith(mask, opening) for mask in MASKS):
        cut = cut[:opening]  # never "[ema…"
    return cut.rstrip() + ELLIPSIS
