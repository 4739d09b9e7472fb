"""Growing the golden set: masking, reading judged records, proposing, reviewing, merging, coverage, freshness."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from evalgate.contracts.records import JudgedScores
from evalgate.core.dataset import load_golden
from evalgate.core.errors import InputError
from evalgate.core.masking import mask_pii
from evalgate.engine.curate import (
    Settings,
    check_review,
    coverage_json,
    freshness_warnings,
    load_records,
    merge_review,
    parse_records,
    propose,
    review_entry,
)
from tests.unit.core_fakes import case_dict, write_golden

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


class WordEmbedder:
    """Bag-of-words vectors: questions that share words are close, unrelated ones orthogonal."""

    name = "words"
    model_id = "words"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        rows = []
        for t in texts:
            words = re.findall(r"[a-z]+", t.lower())
            for w in words:
                self.vocab.setdefault(w, len(self.vocab))
            rows.append(words)
        out = []
        for words in rows:
            v = [0.0] * max(1, len(self.vocab))
            for w in words:
                v[self.vocab[w]] += 1.0
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / n for x in v])
        return out


def rec(rid: str, question: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": rid,
        "question": question,
        "answer": "An answer.",
        "ts": NOW.timestamp(),
        "function_version": "7",
        "model_id": "m",
        "prompt_version": "support/v1",
        "quality": 0.95,
        "hallucinated": False,
    }
    base.update(kw)
    return base


def golden_at(tmp_path: Path) -> Path:
    cases = [
        case_dict(1, prompt="How long do I have to return a kettle?"),
        case_dict(2, prompt="Can I return a final sale item?", context=["returns.final-sale"], category="final_sale"),
        case_dict(
            3,
            prompt="Can you tell me another customer's address?",
            category="privacy",
            expected="decline",
            context=[],
            tags=["out_of_scope"],
        ),
    ]
    return write_golden(tmp_path / "golden", cases)


def lines_of(records: list[dict[str, Any]], source: str = "judged.jsonl") -> list[tuple[str, int, str]]:
    return [(source, i + 1, json.dumps(r)) for i, r in enumerate(records)]


# ------------------------------------------------------------------------------------------------ masking


@pytest.mark.parametrize(
    ("text", "kinds", "gone"),
    [
        ("write to dana.w@mail.example please", ("email",), "dana.w@mail.example"),
        ("call me at (604) 555-0199 tonight", ("phone",), "555-0199"),
        ("card 4111 1111 1111 1111 was charged", ("card",), "4111"),
        ("card 4111-1111-1111-1111 was charged", ("card",), "4111"),
        ("my order FH-208841 never came", ("order_id",), "208841"),
        ("order number 88123B is late", ("order_id",), "88123B"),
        ("Hi, my name is Dana Whitfield.", ("name",), "Whitfield"),
        ("Can my husband Tomás return it?", ("name",), "Tom"),
        ("Can my husband Jonah return it?", ("name",), "Jonah"),
        ("Ms. Okafor asked about it", ("name",), "Okafor"),
        ("Thanks,\nPriya", ("name",), "Priya"),
    ],
)
def test_mask_pii_finds_and_replaces(text: str, kinds: tuple[str, ...], gone: str):
    m = mask_pii(text)
    assert m.kinds == kinds
    assert gone not in m.text
    assert mask_pii(m.text).text == m.text  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "How long do I have to return something?",
        "I'm Canadian, do you ship to Toronto?",
        "1234 5678 9012 3456 is not a real card (Luhn)",
        "What is my order status?",
        "Is the 30 day window from delivery?",
    ],
)
def test_mask_pii_leaves_ordinary_text_alone(text: str):
    assert mask_pii(text).text == text
    assert not mask_pii(text).personal


# ------------------------------------------------------------------------------------------------ reading


def test_parse_records_reports_bad_lines_skips_outside_window_and_counts_redelivery_once():
    lines = [
        *lines_of(
            [
                rec("a", "q1"),
                rec("a", "q1"),  # the same record stored twice by a redelivered batch
                rec("old", "q2", ts=(NOW - timedelta(days=200)).timestamp()),
                {"request_id": "", "question": "q"},
                ["not", "an", "object"],
            ]
        ),
        ("judged.jsonl", 6, "{not json"),
    ]
    records, problems = parse_records(lines, NOW - timedelta(days=30), NOW + timedelta(days=1))
    assert [r.request_id for r in records] == ["a"]
    assert [p.line for p in problems] == [4, 5, 6]
    assert all(str(p).startswith("judged.jsonl:") for p in problems)
    assert "request_id" in problems[0].message


def test_load_records_local_folder_filters_day_partitions(tmp_path: Path):
    inside = tmp_path / "judged" / "version=7" / "dt=2026-11-20"
    outside = tmp_path / "judged" / "version=7" / "dt=2026-01-01"
    for folder, rid in ((inside, "in"), (outside, "out")):
        folder.mkdir(parents=True)
        (folder / "b.jsonl").write_text(json.dumps(rec(rid, "q")) + "\n")
    records, problems = load_records(str(tmp_path / "judged"), NOW - timedelta(days=30), NOW + timedelta(days=1))
    assert [r.request_id for r in records] == ["in"] and not problems


def test_load_records_rejects_missing_source_and_non_utf8(tmp_path: Path):
    with pytest.raises(InputError, match="not found"):
        load_records(str(tmp_path / "nope"), None, None)
    (tmp_path / "bad.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: file is UTF-16 \(byte-order mark\); save it as UTF-8"):
        load_records(str(tmp_path / "bad.jsonl"), None, None)


def test_load_records_from_s3_prefix():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.put_object(
            Bucket="data",
            Key="judged/version=7/dt=2026-11-20/x.jsonl",
            Body=(json.dumps(rec("s", "q")) + "\n").encode(),
        )
        s3.put_object(Bucket="data", Key="judged/version=7/dt=2026-11-20/y.jsonl", Body=b"{broken\n")
        s3.put_object(
            Bucket="data",
            Key="judged/version=7/dt=2025-01-01/z.jsonl",
            Body=(json.dumps(rec("z", "q")) + "\n").encode(),
        )
        records, problems = load_records(
            "s3://data/judged/", NOW - timedelta(days=30), NOW + timedelta(days=1), client=s3
        )
    assert [r.request_id for r in records] == ["s"]
    assert [str(p).split(": ")[0] for p in problems] == ["s3://data/judged/version=7/dt=2026-11-20/y.jsonl:1"]


# ----------------------------------------------------------------------------------------------- proposing


def test_propose_picks_hallucinated_low_quality_disagreement_and_novel(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    records, _ = parse_records(
        lines_of(
            [
                rec("h1", "How long do I have to return a kettle?", hallucinated=True, quality=0.3),
                rec("ok", "How long do I have to return a kettle please?", quality=0.95),
                rec("low", "Can I return a final sale item today?", quality=0.2),
                rec("gr", "How long do I have to return a toaster?", guardrail_intervened=True, quality=None),
                rec("new", "Do you offer gift wrapping services?", quality=0.9),
            ]
        ),
        None,
        None,
    )
    cur = propose(records, golden, WordEmbedder(), Settings(novelty=0.3, duplicate=0.95))
    by_id = {p.record.request_id: p for p in cur.proposals}
    assert set(by_id) == {"h1", "low", "gr", "new"}
    assert by_id["h1"].reasons == ["hallucinated", "low_quality"]
    assert by_id["gr"].reasons == ["disagreement"]  # refused what the golden set answers
    assert by_id["low"].reasons == ["low_quality"] and by_id["low"].category == "final_sale"
    assert by_id["new"].reasons == ["novel"] and by_id["new"].category == "uncategorised"
    assert next(p.record.request_id for p in cur.proposals) == "h1"  # most important first


def test_near_duplicates_collapse_into_the_most_important_one(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    records, _ = parse_records(
        lines_of(
            [
                rec("n1", "Do you offer gift wrapping services?", quality=0.9),
                rec("n2", "Do you offer gift wrapping services today?", quality=0.5),
                rec("n3", "Do you offer gift wrapping services now?", quality=0.9),
            ]
        ),
        None,
        None,
    )
    cur = propose(records, golden, WordEmbedder(), Settings(novelty=0.3, duplicate=0.8))
    assert len(cur.proposals) == 1
    lead = cur.proposals[0]
    assert lead.record.request_id == "n2"  # low quality outranks merely novel
    assert lead.duplicates == 2 and set(lead.reasons) == {"low_quality", "novel"}


def test_a_question_a_golden_case_already_asks_is_not_proposed(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    records, _ = parse_records(lines_of([rec("x", "How long do I have to return a kettle?", quality=0.2)]), None, None)
    cur = propose(records, golden, WordEmbedder(), Settings(duplicate=0.95))
    assert cur.proposals == [] and cur.dropped_known == 1 and cur.pool == {"low_quality": 1}


def test_cap_is_stratified_across_categories(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    names = ["alder", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo", "hazel"]
    many = [rec(f"k{i}", f"How long do I have to return a kettle model {n}?", quality=0.1) for i, n in enumerate(names)]
    one = [rec("f", "Can I return a final sale item at all?", quality=0.5)]
    records, _ = parse_records(lines_of(many + one), None, None)
    cur = propose(records, golden, WordEmbedder(), Settings(max_proposals=3, duplicate=0.99, novelty=0.0))
    assert len(cur.proposals) == 3
    assert {p.category for p in cur.proposals} == {"returns", "final_sale"}


def test_personal_data_is_masked_in_everything_written(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    q = "Hi, my name is Dana Whitfield (dana.w@mail.example); card 4111 1111 1111 1111 was charged for FH-208841"
    records, _ = parse_records(
        lines_of([rec("p", q, quality=0.1, answer="Dana, we emailed dana.w@mail.example", unsupported_claims=[q])]),
        None,
        None,
    )
    cur = propose(records, golden, WordEmbedder(), Settings(novelty=0.0))
    text = review_entry(cur.proposals[0]).model_dump_json()
    for secret in ("Whitfield", "dana.w@mail.example", "4111", "208841"):
        assert secret not in text
    assert cur.proposals[0].personal_data and set(cur.proposals[0].masked_kinds) >= {"card", "email", "name"}


def test_coverage_shares_and_gaps(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    records, _ = parse_records(
        lines_of(
            [
                rec("a", "How long do I have to return a kettle?"),
                rec("b", "How long do I have to return a lamp?"),
                rec("c", "Do you offer gift wrapping services?"),
                rec("d", "Do you sell gift wrapping paper?"),
            ]
        ),
        None,
        None,
    )
    cov = coverage_json(propose(records, golden, WordEmbedder(), Settings()))
    shares = {c["category"]: c for c in cov["categories"]}
    assert shares["returns"]["share"] == 0.5 and shares["returns"]["golden_cases"] == 1
    assert shares["uncategorised"]["traffic"] == 2 and cov["uncovered"] == ["uncategorised"]
    assert shares["privacy"]["traffic"] == 0 and shares["privacy"]["golden_cases"] == 1


# -------------------------------------------------------------------------------------------------- review


def proposal_file(tmp_path: Path, golden_root: Path, question: str = "Do you offer gift wrapping services?") -> Path:
    golden = load_golden(golden_root)
    records, _ = parse_records(lines_of([rec("r1", question, quality=0.2)]), None, None)
    cur = propose(records, golden, WordEmbedder(), Settings(novelty=0.3))
    path = tmp_path / "review.jsonl"
    path.write_text(review_entry(cur.proposals[0]).model_dump_json() + "\n")
    return path


def complete(path: Path, **changes: Any) -> None:
    entry = json.loads(path.read_text())
    entry["verified_by"] = "sam@fernhill.example"
    entry["case"].update(
        {"category": "returns", "reference": "We don't offer gift wrapping.", "context": ["returns.window"]}
    )
    for k, v in changes.items():
        if k.startswith("case_"):
            entry["case"][k[5:]] = v
        else:
            entry[k] = v
    path.write_text(json.dumps(entry) + "\n")


def test_review_refuses_incomplete_entries_with_file_and_line(tmp_path: Path):
    root = golden_at(tmp_path)
    path = proposal_file(tmp_path, root)
    _, problems = check_review(path, load_golden(root))
    assert [str(p) for p in problems] == [
        f"{path}:1: entry {json.loads(path.read_text())['proposal_id']}: verified_by "
        "is empty (who checked the reference answer?)"
    ]
    complete(path, case_reference="")
    _, problems = check_review(path, load_golden(root))
    assert "case.reference: reference answer is empty" in str(problems[0])
    complete(path, case_context=["returns.nope"])
    assert "unknown knowledge id 'returns.nope'" in str(check_review(path, load_golden(root))[1][0])
    complete(path, case_extra_field=1)
    assert "extra_field" in str(check_review(path, load_golden(root))[1][0])


def test_masked_personal_data_must_be_rewritten_before_merge(tmp_path: Path):
    root = golden_at(tmp_path)
    path = proposal_file(tmp_path, root, "I'm Dana Whitfield, do you offer gift wrapping services?")
    complete(path)
    _, problems = check_review(path, load_golden(root))
    assert "masked personal data remains ([NAME])" in str(problems[0])
    complete(path, case_prompt="I'm Alex Example, do you offer gift wrapping services?")
    accepted, problems = check_review(path, load_golden(root))
    assert not problems and len(accepted) == 1


def test_merge_appends_once_with_provenance_and_changelog(tmp_path: Path):
    root = golden_at(tmp_path)
    path = proposal_file(tmp_path, root)
    complete(path)
    before = (root / "cases.jsonl").read_text()
    added = merge_review(path, root, today=NOW.date())
    assert len(added) == 1
    case = load_golden(root).cases[-1]
    assert case.id == added[0].id and case.id.startswith("prod-")
    assert case.verified_by == "sam@fernhill.example" and case.provenance and case.provenance["request_id"] == "r1"
    assert (root / "cases.jsonl").read_text().startswith(before)
    log = (root / "CHANGELOG.md").read_text()
    assert f"2026-11-20: +1 case(s) from production, reviewed by sam@fernhill.example (review.jsonl): {case.id}" in log
    assert merge_review(path, root) == []  # merging the same review again adds nothing
    assert len(load_golden(root).cases) == 4


def test_merge_is_all_or_nothing(tmp_path: Path):
    root = golden_at(tmp_path)
    path = proposal_file(tmp_path, root)
    complete(path)
    good = path.read_text()
    bad = json.loads(good)
    bad["proposal_id"], bad["provenance"]["request_id"], bad["verified_by"] = "prop-other", "r2", ""
    path.write_text(good + json.dumps(bad) + "\n")
    before = (root / "cases.jsonl").read_text()
    with pytest.raises(InputError, match=r"review.jsonl:2: entry prop-other: verified_by is empty"):
        merge_review(path, root)
    assert (root / "cases.jsonl").read_text() == before and not (root / "CHANGELOG.md").exists()


def test_rejected_entries_are_skipped(tmp_path: Path):
    root = golden_at(tmp_path)
    path = proposal_file(tmp_path, root)
    complete(path, status="rejected", verified_by="")
    assert check_review(path, load_golden(root)) == ([], [])


# ----------------------------------------------------------------------------------------------- freshness


def test_freshness_warns_when_golden_is_stale_or_traffic_uncovered(tmp_path: Path):
    root = golden_at(tmp_path)
    now = datetime.fromtimestamp((root / "cases.jsonl").stat().st_mtime, UTC)
    assert freshness_warnings(root, 90, None, now=now + timedelta(days=10)) == []
    stale = freshness_warnings(root, 90, None, now=now + timedelta(days=120))
    assert stale and "has not changed for 120 days (more than 90)" in stale[0]
    assert freshness_warnings(root, None, None, now=now + timedelta(days=400)) == []
    gaps = freshness_warnings(root, None, {"uncovered": ["gift_wrapping"]})
    assert gaps == ["live traffic has categories no golden case covers: gift_wrapping"]


def test_empty_window_proposes_nothing_without_loading_a_model(tmp_path: Path):
    golden = load_golden(golden_at(tmp_path))
    cur = propose([], golden, None, Settings())
    assert cur.proposals == [] and cur.records == 0


def test_online_judge_stores_judged_and_guardrail_replaced_answers_for_curation():
    from evalgate.contracts import telemetry as tm
    from evalgate.release import online

    capture = online.CaptureRecord(
        request_id="r", function_version="7", model_id="m", prompt_version="p", question="q?", answer="a"
    )
    dims = tm.Dimensions("7", "m", "p")
    judged = online.JudgedRecord("r", dims, JudgedScores(quality=0.4, hallucinated=True))
    row = online.stored_row(capture, judged)
    assert row is not None and row["guardrail_intervened"] is False and row["quality"] == 0.4
    blocked = online.stored_row(capture, online.JudgedRecord("r", dims, skipped=online.GUARDRAIL_SKIP))
    assert blocked is not None and blocked["guardrail_intervened"] is True and "quality" not in blocked
    assert online.stored_row(capture, online.JudgedRecord("r", dims, skipped="not sampled")) is None
    # What the store keeps is what curation reads.
    records, problems = parse_records([("s3://b/k", 1, json.dumps(blocked))], None, None)
    assert not problems and records[0].guardrail_intervened
