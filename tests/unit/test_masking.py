"""One masking function for personal data, and every place a question or answer leaves the capture record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evalgate import telemetry as tm
from evalgate.masking import CARD, EMAIL, PHONE, mask_fields, mask_pii
from evalgate.online import JudgedRecord
from evalgate.shadow import ShadowMessage, ShadowSide, make_pair

PERSONAL = "I'm jane.doe+shop@example.co.uk, call me on +44 20 7946 0958; my card is 4111 1111 1111 1111."


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to jane.doe+shop@example.co.uk today", f"write to {EMAIL} today"),
        ("ring (555) 123-4567 or 555.123.4567", f"ring {PHONE} or {PHONE}"),
        ("from abroad: +33 1 42 68 53 00", f"from abroad: {PHONE}"),
        ("card 4111-1111-1111-1111 and 5500 0000 0000 0004", f"card {CARD} and {CARD}"),
        ("amex 3782 822463 10005", f"amex {CARD}"),
        # not personal data: order numbers, dates, quantities, prices, a 16-digit number failing Luhn
        ("order 12345678 placed 2024-01-15, 3 items, $1,299.99",) * 2,
        ("tracking 4111-1111-1111-1112", "tracking 4111-1111-1111-1112"),
        ("", ""),
    ],
)
def test_mask_pii(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


def test_mask_fields_masks_named_text_fields_only() -> None:
    record = {"question": PERSONAL, "answer": "ok", "n": 3, "id": "jane@example.com"}
    out = mask_fields(record, ("question", "answer", "n"))
    assert out["question"] == f"I'm {EMAIL}, call me on {PHONE}; my card is {CARD}."
    assert out["id"] == "jane@example.com" and out["n"] == 3 and record["question"] == PERSONAL


def test_judged_records_and_their_log_lines_are_masked() -> None:
    rec = JudgedRecord("r-1", tm.Dimensions("7", "m", "support/v1"), judged=True, quality=0.2)
    line = rec.log_fields(PERSONAL, "We emailed jane.doe+shop@example.co.uk about card 4111 1111 1111 1111.")
    text = json.dumps(line)
    assert "example.co.uk" not in text and "4111" not in text and "7946" not in text
    assert EMAIL in line["question"] and CARD in line["answer"]


def test_shadow_pairs_are_masked() -> None:
    msg = ShadowMessage.model_validate({
        "request_id": "r-1",
        "request": {"question": PERSONAL, "user_id": "u-1"},
        "production": {"function_version": "8", "answer": "Noted, jane.doe+shop@example.co.uk."},
    })
    pair = make_pair(msg, ShadowSide("9", "Card 4111 1111 1111 1111 charged.", None, 12.0))
    text = json.dumps(pair)
    assert "example.co.uk" not in text and "4111" not in text and "7946" not in text
    assert pair["question"].startswith(f"I'm {EMAIL}") and pair["shadow"]["answer"] == f"Card {CARD} charged."


def test_the_capture_record_for_the_judge_keeps_the_text_verbatim() -> None:
    """Only the (KMS-encrypted) capture record keeps the unmasked text: the judge needs what the user saw."""
    from tests.unit.test_service import make

    svc, (capture, _) = make()
    out = svc.ask(json.dumps({"question": PERSONAL}))
    assert out.status == 200
    [record] = capture.messages
    assert record["question"] == PERSONAL
    logged: dict[str, Any] = out.log
    assert "example.co.uk" not in json.dumps(logged)
