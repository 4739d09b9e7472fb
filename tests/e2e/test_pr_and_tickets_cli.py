"""`evalgate run` on a pull request (reads the main cache, writes its own) and with known-error tickets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from evalgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"


def offline(*args: str) -> int:
    return main(["run", "--tier", "offline", "--no-progress", "--suite", "regression", "--golden", str(GOLDEN), *args])


@pytest.mark.slow
def test_a_pull_request_reads_the_main_cache_and_writes_only_its_own(tmp_path: Path):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="evals")
        code = offline(
            "--candidate",
            f"replay:{GOLDEN}/responses/baseline.jsonl",
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "c.sqlite"),
            "--cache-s3",
            "s3://evals/cache/evalgate-cache.sqlite",
            "--cache-s3-push",
            "s3://evals/pr-cache/7/evalgate-cache.sqlite",
        )
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="evals").get("Contents", [])]
    assert code == 0
    assert keys == ["pr-cache/7/evalgate-cache.sqlite"]  # the main cache is never written by a pull request


def test_cache_push_needs_a_cache_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert offline("--candidate", "replay:x.jsonl", "--cache-s3-push", "s3://b/k") == 2
    assert "--cache-s3-push: goes with --cache-s3" in capsys.readouterr().err


@pytest.mark.slow
def test_a_passing_run_with_a_hallucination_opens_one_ticket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    answers = []
    for line in (GOLDEN / "responses" / "baseline.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["id"] == "ret-window-basic":
            rec["output"] = rec["output"].replace("30 days", "45 days")  # a number the knowledge base never states
        answers.append(json.dumps(rec))
    replay = tmp_path / "answers.jsonl"
    replay.write_text("\n".join(answers) + "\n")

    ssm = boto3.client("ssm", region_name="us-east-1")
    stub = Stubber(ssm)
    stub.add_response("describe_ops_items", {"OpsItemSummaries": []})
    stub.add_response(
        "create_ops_item",
        {"OpsItemId": "oi-123"},
        {
            "Title": "Hallucination in case ret-window-basic",
            "Description": ANY,
            "Source": "evalgate",
            "Category": "Quality",
            "Severity": "3",
            "OperationalData": ANY,
        },
    )
    stub.add_response("describe_ops_items", {"OpsItemSummaries": []})
    made: list[Any] = []

    def make_client(service: str, *_: Any, **__: Any) -> Any:
        made.append(service)
        return ssm

    monkeypatch.setattr("evalgate.adapters.aws.make_client", make_client)
    with stub:
        code = offline(
            "--candidate", f"replay:{replay}", "--out", str(tmp_path / "out"), "--no-cache", "--tickets", "opscenter"
        )
        stub.assert_no_pending_responses()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 0 and results["verdict"]["verdict"] == "PASS"
    assert made == ["ssm"]
    assert [t["id"] for t in results["tickets"]] == ["oi-123"] and results["tickets"][0]["created"] is True
    assert (
        "Hallucination in case ret-window-basic: oi-123 (new, seen 1×)" in (tmp_path / "out" / "summary.md").read_text()
    )
