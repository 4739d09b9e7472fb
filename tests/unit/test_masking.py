"""Personal data is masked (``evalgate.core.masking``, the one function) wherever a question or answer leaves the
encrypted capture record: judged records and their log lines, shadow pairs. The capture record keeps it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import JudgedScores
from evalgate.contracts.service import ShadowMessage
from evalgate.core.masking import TOKENS, mask_pii
from evalgate.release.online import CaptureRecord, JudgedRecord, stored_row
from evalgate.release.shadow import ShadowSide, make_pair

EMAIL, PHONE, CARD = TOKENS["email"], TOKENS["phone"], TOKENS["card"]
PERSONAL = "Hello, jane.doe+shop@example.co.uk here, call me on +44 20 7946 0958; my card is 4111 1111 1111 1111."
RAW = ("example.co.uk", "7946", "4111")


def no_raw_personal_data(doc: Any) -> bool:
    text = json.dumps(doc)
    return not any(raw in text for raw in RAW)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call +44 20 7946 0958 today", f"call {PHONE} today"),
        ("from abroad: +33 1 42 68 53 00", f"from abroad: {PHONE}"),
        ("version +1 2, price +15.99", "version +1 2, price +15.99"),  # too few digits for a phone number
    ],
)
def test_international_phone_numbers(text: str, masked: str) -> None:
    assert mask_pii(text).text == masked and mask_pii(masked).text == masked


def test_judged_records_and_their_log_lines_are_masked() -> None:
    rec = JudgedRecord(
        "r-1",
        tm.Dimensions("7", "m", "support/v1"),
        JudgedScores(quality=0.2, unsupported_claims=["we charged 4111 1111 1111 1111"]),
    )
    line = rec.log_fields(PERSONAL, "We emailed jane.doe+shop@example.co.uk about card 4111 1111 1111 1111.")
    assert no_raw_personal_data(line)
    assert EMAIL in line["question"] and PHONE in line["question"] and CARD in line["answer"]
    assert line["personal_data"] is True and line["unsupported_claims"] == [f"we charged {CARD}"]


def test_guardrail_rows_are_masked_too() -> None:
    capture = CaptureRecord.model_validate(
        {
            "request_id": "r-2",
            "function_version": "7",
            "model_id": "m",
            "prompt_version": "support/v1",
            "question": PERSONAL,
            "answer": "I can't help with that.",
            "guardrail_intervened": True,
        }
    )
    result = JudgedRecord("r-2", tm.Dimensions("7", "m", "support/v1"), skipped="guardrail intervened (canned answer)")
    row = stored_row(capture, result)
    assert row is not None and no_raw_personal_data(row) and row["personal_data"] is True


def test_shadow_pairs_are_masked() -> None:
    msg = ShadowMessage.model_validate(
        {
            "request_id": "r-1",
            "request": {"question": PERSONAL, "user_id": "u-1"},
            "production": {"function_version": "8", "answer": "Noted, jane.doe+shop@example.co.uk."},
        }
    )
    pair = make_pair(msg, ShadowSide("9", "Card 4111 1111 1111 1111 charged.", None, 12.0))
    assert no_raw_personal_data(pair)
    assert EMAIL in pair["question"] and pair["shadow"]["answer"] == f"Card {CARD} charged."


def test_the_capture_record_for_the_judge_keeps_the_text_verbatim() -> None:
    """Only the (KMS-encrypted) capture record keeps the unmasked text: the judge needs what the user saw."""
    from tests.unit.test_service import make

    svc, (capture, _) = make()
    out = svc.ask(json.dumps({"question": PERSONAL}))
    assert out.status == 200
    [record] = capture.messages
    assert record["question"] == PERSONAL
    assert no_raw_personal_data(out.log)
