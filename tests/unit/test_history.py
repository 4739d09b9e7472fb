"""evalgate history: runs read from a folder or S3, trends per gated metric, the comparison data, the pages."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from evalgate.cli import main
from evalgate.core.results import Aggregate, CaseResult, RunResult, Verdict
from evalgate.engine.history import compare_data, load_runs, render_site, trends, write_site

EXIT = {"PASS": 0, "FAIL": 1, "REVIEW": 3, "ERROR": 4}


def run(run_id: str, started: str, verdict: str, value: float, answer: str = "A.") -> RunResult:
    return RunResult(
        run_id=run_id,
        started_at=started,
        finished_at=started,
        tool_version="0.1.0",
        tier="full",
        suites=["regression"],
        candidate={"name": "x"},
        cases=[
            CaseResult(
                id="c1",
                suite="regression",
                category="returns",
                expected="answer",
                output=answer,
                status="pass" if verdict == "PASS" else "fail",
            )
        ],
        aggregates=[
            Aggregate(
                metric="faithfulness",
                suite="regression",
                n=1,
                value=value,
                ci_low=value - 0.05,
                ci_high=value + 0.05,
                threshold=0.85,
                direction="min",
                status="pass" if value >= 0.85 else "fail",
            ),
            Aggregate(metric="latency_ms", suite="regression", n=1, value=812.0),  # not gated: no trend
        ],
        verdict=Verdict(verdict=verdict, exit_code=EXIT[verdict]),  # type: ignore[arg-type]
    )


def write(folder: Path, r: RunResult) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(r.model_dump_json())


def test_runs_are_read_in_start_order_and_bad_files_are_reported(tmp_path: Path):
    write(tmp_path / "b", run("r2", "2026-12-02T00:00:00Z", "FAIL", 0.80, "B."))
    write(tmp_path / "a", run("r1", "2026-12-01T00:00:00Z", "PASS", 0.90))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{not json")
    runs, problems = load_runs(str(tmp_path))
    assert [r.result.run_id for r in runs] == ["r1", "r2"]
    assert len(problems) == 1 and str(problems[0]).startswith(f"{tmp_path}/c/results.json: skipped")
    points = trends(runs)
    assert list(points) == ["regression.faithfulness"]
    assert [(p["value"], p["verdict"]) for p in points["regression.faithfulness"]] == [(0.90, "PASS"), (0.80, "FAIL")]
    data = compare_data(runs)
    assert data[1]["cases"]["c1"] == {"s": "fail", "a": "B.", "m": {}}


def test_the_page_is_self_contained_and_its_script_allowed_by_hash(tmp_path: Path):
    write(tmp_path / "a", run("r1", "2026-12-01T00:00:00Z", "PASS", 0.90, "</script><img src=x>"))
    runs, _ = load_runs(str(tmp_path))
    page = render_site(runs)
    assert page.count('<svg class="trend"') == 1 and "<img" not in page.replace("&lt;img", "")
    assert "\\u003c/script>" in page  # a model's answer cannot close the data block
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page and "http" not in script


def test_history_from_s3_to_s3():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="evals")
        for i, v in enumerate(("PASS", "REVIEW")):
            r = run(f"r{i}", f"2026-12-0{i + 1}T00:00:00Z", v, 0.9 - i * 0.03)
            s3.put_object(Bucket="evals", Key=f"runs/exec-{i}/results.json", Body=r.model_dump_json().encode())
        s3.put_object(Bucket="evals", Key="runs/exec-0/summary.md", Body=b"# not a run")
        runs, problems = load_runs("s3://evals/runs/", client=s3)
        assert [r.result.verdict.verdict for r in runs] == ["PASS", "REVIEW"] and not problems
        assert runs[0].report and runs[0].report.endswith("runs/exec-0/report.html")
        written = write_site(runs, "s3://evals/history", client=s3)
        assert written == ["s3://evals/history/index.html"]
        page = s3.get_object(Bucket="evals", Key="history/index.html")["Body"].read().decode()
    assert "waiting for review" in page and "approved" in page


def test_cli_compare_and_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write(tmp_path / "runs" / "a", run("r1", "2026-12-01T00:00:00Z", "PASS", 0.90))
    write(tmp_path / "runs" / "b", run("r2", "2026-12-02T00:00:00Z", "FAIL", 0.80, "Changed."))
    assert (
        main(["history", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "h"), "--compare", "r1", "2"]) == 0
    )
    page = (tmp_path / "h" / "compare-r1-2.html").read_text()
    assert 'id="case-c1"' in page and "pass → fail" in page
    assert (
        main(["history", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "h"), "--compare", "r1", "r9"]) == 2
    )
    assert "no run 'r9'" in capsys.readouterr().err
    assert main(["history", "--runs", str(tmp_path / "empty-nothing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["history", "--runs", str(tmp_path / "empty")]) == 2
    assert "no readable results.json" in capsys.readouterr().err
