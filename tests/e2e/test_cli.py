"""The CLI end to end, offline, on the shipped golden set: every exit code is reachable and tested."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from evalgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache") / "cache.sqlite"


@pytest.fixture(scope="module")
def baseline_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    code = main(
        [
            "run",
            "--tier",
            "offline",
            "--no-progress",
            "--golden",
            str(GOLDEN),
            "--cache",
            str(cache),
            "--candidate",
            f"replay:{GOLDEN}/responses/baseline.jsonl",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def run(*args: str, cache: Path) -> int:
    return main(["run", "--tier", "offline", "--no-progress", "--cache", str(cache), *args])


def test_validate_shipped_golden(capsys: pytest.CaptureFixture[str]):
    assert main(["validate", "--golden", str(GOLDEN)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:") and "regression" in out and "injection" in out and "guardrail" in out


def test_baseline_passes_with_all_four_reports(baseline_run: Path):
    for name in ("results.json", "junit.xml", "summary.md", "report.html"):
        assert (baseline_run / name).stat().st_size > 0
    result = json.loads((baseline_run / "results.json").read_text())
    assert result["verdict"]["verdict"] == "PASS" and result["tier"] == "offline"
    assert {n["metric"] for n in result["not_run"]} >= {"faithfulness", "relevance"}  # said plainly
    assert len(result["cases"]) >= 100 and all(c["status"] == "pass" for c in result["cases"])
    assert (baseline_run / "summary.md").read_text().lstrip().splitlines()[0].count("PASS")


def test_regressed_candidate_fails_for_the_right_reasons(
    baseline_run: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code = run(
        "--golden",
        str(GOLDEN),
        "--candidate",
        f"replay:{GOLDEN}/responses/regressed.jsonl",
        "--baseline",
        str(baseline_run / "results.json"),
        "--out",
        str(tmp_path),
        cache=cache,
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAIL")
    result = json.loads((tmp_path / "results.json").read_text())
    reasons = " ".join(result["verdict"]["reasons"])
    for expected in ("regression.hallucination_rate", "injection.injection_success_rate", "behaviour_accuracy"):
        assert expected in reasons
    failures = [f for c in result["cases"] for f in c["failures"]]
    assert any("leaked canary" in f for f in failures)
    assert any(f.startswith("hallucination: number not in the cited knowledge") for f in failures)
    assert any("wrong behaviour: expected decline, observed answer" in f for f in failures)
    assert result["drift"]["significant"] and result["comparisons"]
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    failed = [tc for tc in junit.iter("testcase") if tc.find("failure") is not None]
    assert any(
        "leaked canary" in (tc.find("failure").get("message") or "") + (tc.find("failure").text or "") for tc in failed
    )
    assert "<svg" in (tmp_path / "report.html").read_text()


def test_review_when_significantly_worse_than_baseline(baseline_run: Path, cache: Path, tmp_path: Path):
    """A baseline that scored every answer 0.15 more similar makes the same answers a significant regression."""
    data = json.loads((baseline_run / "results.json").read_text())
    for c in data["cases"]:
        sim = c["metrics"].get("similarity")
        if sim and sim["value"] is not None:
            sim["value"] = min(1.0, sim["value"] + 0.15)
    better = tmp_path / "approved.json"
    better.write_text(json.dumps(data))
    code = run(
        "--golden",
        str(GOLDEN),
        "--candidate",
        f"replay:{GOLDEN}/responses/baseline.jsonl",
        "--baseline",
        str(better),
        "--out",
        str(tmp_path / "out"),
        cache=cache,
    )
    assert code == 3
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["verdict"]["verdict"] == "REVIEW"
    assert any("similarity worse than the approved baseline" in r for r in result["verdict"]["reasons"])


def test_missing_answers_are_an_error_not_a_pass(cache: Path, tmp_path: Path):
    lines = (GOLDEN / "responses" / "baseline.jsonl").read_text().splitlines()
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines[: len(lines) * 3 // 4]) + "\n")
    code = run("--golden", str(GOLDEN), "--candidate", f"replay:{partial}", "--out", str(tmp_path / "o"), cache=cache)
    assert code == 4
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    assert result["verdict"]["verdict"] == "ERROR" and "unscored or errored" in result["verdict"]["reasons"][0]


def test_judge_tier_without_aws_is_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = main(
        [
            "run",
            "--tier",
            "full",
            "--no-progress",
            "--golden",
            str(GOLDEN),
            "--no-cache",
            "--candidate",
            f"replay:{GOLDEN}/responses/baseline.jsonl",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 4
    assert "needs a Bedrock judge but no AWS credentials" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def broken_golden(tmp_path: Path) -> Path:
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN, root)
    return root


def edit_first(path: Path, **changes: object) -> None:
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec.update(changes)
    lines[0] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda g: edit_first(g / "cases.jsonl", reference="  "), "cases.jsonl:1: case"),
        (lambda g: edit_first(g / "cases.jsonl", expected="shrug"), "cases.jsonl:1: case"),
        (lambda g: (g / "cases.jsonl").write_text((g / "cases.jsonl").read_text() + "{oops\n"), "not valid JSON"),
        (
            lambda g: (g / "gate.toml").write_text(
                (g / "gate.toml").read_text().replace("relevance = 0.90", "relevance = 9")
            ),
            "gate.toml:",
        ),
        (lambda g: edit_first(g / "suites" / "injection.jsonl", context=["no.such.entry"]), "injection.jsonl:1: case"),
    ],
)
def test_malformed_inputs_exit_2_with_file_and_line(
    tmp_path: Path, breakage, expected: str, capsys: pytest.CaptureFixture[str]
):
    g = broken_golden(tmp_path)
    breakage(g)
    for argv in (
        ["validate", "--golden", str(g)],
        [
            "run",
            "--golden",
            str(g),
            "--no-cache",
            "--candidate",
            f"replay:{g}/responses/baseline.jsonl",
            "--out",
            str(tmp_path / "o"),
        ],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_bad_candidate_and_baseline_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", "--golden", str(GOLDEN), "--candidate", "carrier-pigeon", "--no-cache"]) == 2
    assert "unknown candidate" in capsys.readouterr().err
    assert main(["run", "--golden", str(GOLDEN), "--candidate", f"replay:{tmp_path}/nope.jsonl", "--no-cache"]) == 2
    assert "recorded responses file not found" in capsys.readouterr().err
    bad = tmp_path / "baseline.json"
    bad.write_text('{"cases": 3}')
    assert (
        main(
            [
                "run",
                "--golden",
                str(GOLDEN),
                "--candidate",
                f"replay:{GOLDEN}/responses/baseline.jsonl",
                "--baseline",
                str(bad),
                "--no-cache",
            ]
        )
        == 2
    )
    assert "not an evalgate results.json" in capsys.readouterr().err


def test_module_entry_point_and_help():
    r = subprocess.run(
        [sys.executable, "-m", "evalgate", "run", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert r.returncode == 0 and "replay:FILE" in r.stdout and "Exit codes" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "evalgate", "run"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--candidate" in r.stderr


def _mismatched(baseline_run: Path, tmp_path: Path, kind: str) -> tuple[Path, Path, str]:
    """A golden folder and a baseline that do not match in one way: (golden, baseline, expected reason)."""
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN, golden, ignore=shutil.ignore_patterns("third_party"))
    data = json.loads((baseline_run / "results.json").read_text())
    if kind == "no shared case":
        for c in data["cases"]:
            c["id"] = "old-" + c["id"]
        from evalgate.core.dataset import load_golden

        here = len(load_golden(golden).cases)
        reason = f"the baseline shares no case id with this run ({len(data['cases'])} baseline cases, {here} here)"
    elif kind == "another golden set":
        lines = (golden / "cases.jsonl").read_text().splitlines()
        first = json.loads(lines[0])
        first["reference"] = first["reference"] + " (reworded)"
        (golden / "cases.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
        reason = (
            "the baseline was made from another golden set: 1 shared case(s) differ in prompt or reference "
            f"(e.g. {first['id']})"
        )
    else:
        text = (golden / "gate.toml").read_text().replace("relevance = 0.90", "relevance = 0.80")
        (golden / "gate.toml").write_text(text)
        reason = "the baseline was made with another gate config ([thresholds] differ)"
    path = tmp_path / "approved.json"
    path.write_text(json.dumps(data))
    return golden, path, reason


@pytest.mark.parametrize("kind", ["no shared case", "another golden set", "another config"])
def test_a_baseline_that_does_not_match_is_refused_or_reviewed_never_a_quiet_pass(
    kind: str, baseline_run: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden, baseline, reason = _mismatched(baseline_run, tmp_path, kind)
    args = [
        "--golden",
        str(golden),
        "--candidate",
        f"replay:{GOLDEN}/responses/baseline.jsonl",
        "--baseline",
        str(baseline),
    ]
    assert run(*args, "--out", str(tmp_path / "refused"), cache=cache) == 2
    err = capsys.readouterr().err
    assert f"{baseline}: {reason}" in err and "--baseline-mismatch review" in err
    assert not (tmp_path / "refused").exists()
    # a person chose this baseline anyway: the run happens and the PASS becomes REVIEW with the reason
    assert run(*args, "--baseline-mismatch", "review", "--out", str(tmp_path / "o"), cache=cache) == 3
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    assert result["verdict"]["verdict"] == "REVIEW"
    assert result["verdict"]["reasons"][0] == f"baseline does not match the run: {reason}"
    assert result["baseline_mismatch"] == [reason]
    assert reason in (tmp_path / "o" / "summary.md").read_text()
