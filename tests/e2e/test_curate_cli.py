"""`evalgate curate` end to end on recorded judged records: propose, review, validate, merge, coverage closes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalgate.cli import main
from evalgate.core.dataset import load_golden

ROOT = Path(__file__).resolve().parents[2]
RECORDS = Path(__file__).parent / "data" / "judged"
SECRETS = ("Whitfield", "dana.w@mail.example", "604-555-0199", "FH-377120", "4111 1111 1111 1111")


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    dest = tmp_path / "golden"
    shutil.copytree(ROOT / "golden", dest, ignore=shutil.ignore_patterns("responses", "third_party"))
    return dest


def curate(golden: Path, out: Path) -> int:
    return main(
        [
            "curate",
            "--records",
            str(RECORDS),
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-30",
            "--golden",
            str(golden),
            "--out",
            str(out),
        ]
    )


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_curate_review_merge_and_coverage(golden: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert curate(golden, tmp_path / "c1") == 0
    printed = capsys.readouterr().out
    assert "judged/version=7/dt=2026-11-20/20261120T100000-a1b2c3.jsonl:12: not valid JSON" in printed
    assert "10 record(s), 1 unreadable" in printed  # the redelivered duplicate counts once; March is outside

    review = tmp_path / "c1" / "review.jsonl"
    text = review.read_text()
    for secret in SECRETS:
        assert secret not in text
    props = {str(e["provenance"]["request_id"]): e for e in entries(review)}  # type: ignore[index]
    assert props["req-halluc-1"]["reasons"][0] == "hallucinated"  # type: ignore[index]
    assert "req-halluc-2" not in props  # a near-duplicate folds into the first
    assert props["req-guard-1"]["reasons"] == ["disagreement"]
    assert props["req-pii-1"]["personal_data"] is True and "novel" in props["req-pii-1"]["reasons"]  # type: ignore[operator]
    assert not {"req-ok-1", "req-ok-2", "req-old-1"} & set(props)
    before = json.loads((golden / "coverage.json").read_text())
    assert before["uncovered"] == ["uncategorised"]

    # An incomplete review file is refused with file:line.
    assert main(["validate", "--golden", str(golden), "--review", str(review)]) == 2
    assert f"{review}:1: entry prop-" in capsys.readouterr().err

    # The reviewer completes the novel gift-wrapping proposal with invented details and rejects the rest.
    completed = []
    for e in entries(review):
        case = e["case"]
        assert isinstance(case, dict)
        if "gift" in str(case["prompt"]).lower():
            e["verified_by"] = "sam@fernhill.example"
            case.update(
                category="gifts",
                reference="We don't offer gift wrapping or gift messages at the moment.",
                context=[],
                tags=["from_production", "out_of_scope"],
                expected="answer",
            )
        else:
            e["status"] = "rejected"
        completed.append(json.dumps(e))
    review.write_text("\n".join(completed) + "\n")
    assert main(["validate", "--golden", str(golden), "--review", str(review)]) == 0
    n_before = len(load_golden(golden).cases)
    assert main(["curate", "--merge", str(review), "--golden", str(golden)]) == 0
    merged = load_golden(golden)
    assert len(merged.cases) == n_before + 1
    new = next(c for c in merged.cases if c.id.startswith("prod-"))
    assert new.category == "gifts" and new.verified_by == "sam@fernhill.example"
    assert new.provenance and new.provenance["request_id"] == "req-novel-2"
    assert "from production, reviewed by sam@fernhill.example" in (golden / "CHANGELOG.md").read_text()
    assert main(["curate", "--merge", str(review), "--golden", str(golden)]) == 0
    assert len(load_golden(golden).cases) == n_before + 1  # merging twice adds nothing

    # The coverage report shows the gap the new case closed.
    assert curate(golden, tmp_path / "c2") == 0
    after = json.loads((golden / "coverage.json").read_text())
    gifts = next(c for c in after["categories"] if c["category"] == "gifts")
    assert gifts["traffic"] >= 1 and gifts["golden_cases"] == 1
    assert sum(c["traffic"] for c in after["categories"] if c["category"] == "uncategorised") < sum(
        c["traffic"] for c in before["categories"] if c["category"] == "uncategorised"
    )


def test_curate_input_errors_exit_2(golden: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["curate", "--golden", str(golden)]) == 2
    assert "--records: name a folder or s3:// prefix" in capsys.readouterr().err
    assert main(["curate", "--records", str(tmp_path / "none"), "--golden", str(golden)]) == 2
    assert "judged records not found" in capsys.readouterr().err
    assert main(["curate", "--merge", str(tmp_path / "none.jsonl"), "--golden", str(golden)]) == 2
    assert "review file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["curate", "--records", str(RECORDS), "--since", "last week"])


def test_run_warns_about_uncovered_traffic_from_golden_coverage(golden: Path, tmp_path: Path):
    (golden / "coverage.json").write_text(json.dumps({"records": 3, "categories": [], "uncovered": ["gifts"]}))
    code = main(
        [
            "run",
            "--tier",
            "offline",
            "--no-progress",
            "--no-cache",
            "--embedder",
            "local",
            "--suite",
            "regression",
            "--golden",
            str(golden),
            "--candidate",
            f"replay:{ROOT}/golden/responses/baseline.jsonl",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0  # a warning never changes the verdict
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Warnings" in summary and "live traffic has categories no golden case covers: gifts" in summary
    assert json.loads((tmp_path / "out" / "results.json").read_text())["warnings"] == [
        "live traffic has categories no golden case covers: gifts"
    ]
    (golden / "coverage.json").write_text("{}")
    assert main(["run", "--golden", str(golden), "--candidate", "replay:x.jsonl", "--no-progress"]) == 2
