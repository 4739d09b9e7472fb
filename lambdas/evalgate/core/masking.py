"""Masking of personal data in free text: one function used wherever a question or answer leaves its request.

``mask_pii`` replaces e-mail addresses, phone numbers, payment card numbers (Luhn-checked), order ids and
personal names with fixed tokens (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ORDER_ID]``, ``[NAME]``) and says which
kinds it found. It is deterministic and idempotent (masking masked text changes nothing).

Names cannot be found by pattern alone; the rules catch the ways people write them in support requests
("my name is …", "I'm …", "this is …", titles such as "Ms. …", a name after a relation such as "my wife …", and a
sign-off line), and err on the side of masking. Free-standing names elsewhere in a sentence are not caught: text
masked here is reviewed by a person before it becomes a golden case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKENS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "order_id": "[ORDER_ID]",
    "name": "[NAME]",
}
MASK_TOKEN = re.compile(r"\[(EMAIL|PHONE|CARD|ORDER_ID|NAME)\]")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes; kept only when the Luhn check passes.
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
# Phone numbers: North American and international forms with at least 10 digits.
_PHONE = re.compile(r"(?<![\w-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}(?![\w-])")
# ... and any other number written with a leading "+" country code (8 to 15 digits in groups): +44 20 7946 0958
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-])")
# Order ids: the store's "FH-123456" form, and any id written after "order (number|no|#)".
_ORDER = re.compile(r"\b[A-Z]{2,4}-\d{5,}\b")
_ORDER_AFTER = re.compile(r"(?i)(\border\s*(?:number|no\.?|#|id)?\s*[:#]?\s*)([A-Z0-9][A-Z0-9-]{4,})\b")
_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"  # Latin letters, accented ones included
_NAME_WORD = rf"[{_UPPER}][{_LOWER}]+(?:[-'][{_UPPER}][{_LOWER}]+)?"
_FULL_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}}"
_NAME_INTRO = re.compile(rf"(?i:\b(?:my name is|my name's|this is|i am|i'm|name:)\s+)({_FULL_NAME})")
_NAME_TITLE = re.compile(rf"\b((?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)({_FULL_NAME})")
_NAME_RELATION = re.compile(
    rf"(?i:\bmy\s+(?:wife|husband|partner|son|daughter|mother|mom|mum|father|dad|brother|sister|friend|"
    rf"neighbou?r|colleague|boss|aunt|uncle|cousin|grandmother|grandfather)\s*,?\s+)({_FULL_NAME})"
)
_NAME_SIGNOFF = re.compile(
    rf"(?i:\b(?:thanks|thank you|regards|best|cheers|sincerely)\s*[,!.]?\s*[\r\n]+\s*-?\s*)({_FULL_NAME})\s*$"
)
# Words that follow "I'm"/"this is" without being a name.
_NOT_NAMES = frozenset(
    {
        "I",
        "The",
        "A",
        "An",
        "It",
        "This",
        "That",
        "My",
        "Your",
        "Our",
        "Not",
        "Just",
        "Still",
        "So",
        "Very",
        "Really",
        "Trying",
        "Looking",
        "Writing",
        "Calling",
        "Asking",
        "Canadian",
        "American",
        "Here",
        "There",
        "Sorry",
        "Happy",
        "Unhappy",
        "Confused",
        "Wondering",
        "Interested",
        "Going",
        "Having",
    }
)


@dataclass(frozen=True)
class Masked:
    text: str
    kinds: tuple[str, ...]  # which kinds of personal data were found, sorted

    @property
    def personal(self) -> bool:
        return bool(self.kinds)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mask_pii(text: str) -> Masked:
    """``text`` with personal data replaced by tokens, and the kinds that were found."""
    found: set[str] = set()

    def sub(kind: str) -> str:
        found.add(kind)
        return TOKENS[kind]

    out = _EMAIL.sub(lambda _m: sub("email"), text)

    def card(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return sub("card") if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)

    out = _CARD.sub(card, out)
    out = _ORDER.sub(lambda _m: sub("order_id"), out)
    out = _ORDER_AFTER.sub(
        lambda m: m.group(1) + sub("order_id") if any(c.isdigit() for c in m.group(2)) else m.group(0),
        out,
    )
    out = _PHONE.sub(lambda _m: sub("phone"), out)

    def intl_phone(m: re.Match[str]) -> str:
        return sub("phone") if 8 <= len(re.sub(r"\D", "", m.group(0))) <= 15 else m.group(0)

    out = _PHONE_INTL.sub(intl_phone, out)

    def name(m: re.Match[str]) -> str:
        words = m.group(m.lastindex or 0).split()
        if words and words[0] in _NOT_NAMES:
            return m.group(0)
        start, end = m.span(m.lastindex or 0)
        return m.group(0)[: start - m.start()] + sub("name") + m.group(0)[end - m.start() :]

    for pattern in (_NAME_INTRO, _NAME_TITLE, _NAME_RELATION, _NAME_SIGNOFF):
        out = pattern.sub(name, out)
    return Masked(out, tuple(sorted(found)))


def mask_text(text: str) -> str:
    """``mask_pii(text).text``: for logs and records that only need the masked text."""
    return mask_pii(text).text
