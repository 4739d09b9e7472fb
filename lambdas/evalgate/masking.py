"""The one masking function for personal data in questions and answers: e-mail addresses, phone and card numbers.

Everything that logs or stores a question or an answer outside the encrypted capture record (which the online
judge needs verbatim) passes it through :func:`mask_pii` first: service logs, judged records, shadow pairs, the
rollback e-mail. Masks are typed placeholders (``[email]``, ``[phone]``, ``[card]``) so a masked text still
reads, and a judged example in an e-mail still shows *what kind* of data the user had typed.

Rules: an e-mail is ``local@domain.tld``; a card number is 13-19 digits (spaces or dashes allowed between
groups) that pass the Luhn check; a phone number is 10-15 digits, or 8-15 digits after a leading ``+``, with
spaces, dots, dashes or brackets between groups. Shorter digit runs (order numbers, quantities, dates) stay.
"""

from __future__ import annotations

import re
from typing import Any

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# a run of digits with single separators between groups, optionally led by "+" or "("
_NUMBER = re.compile(r"(?<![\w+])(?:\+|\()?\d(?:[ .()-]{0,2}\d){6,22}\)?(?![\w])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _number(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if 13 <= len(digits) <= 19 and not re.search(r"[.()]", text) and _luhn(digits):
        return CARD
    if 10 <= len(digits) <= 15 or (text.startswith("+") and 8 <= len(digits) <= 15):
        return PHONE
    return text


def mask_pii(text: str) -> str:
    """``text`` with e-mail addresses, card numbers and phone numbers replaced by typed placeholders."""
    if not text:
        return text
    return _NUMBER.sub(_number, _EMAIL.sub(EMAIL, text))


def mask_fields(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``record`` with the named text fields masked (other fields untouched)."""
    out = dict(record)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str):
            out[name] = mask_pii(value)
    return out
