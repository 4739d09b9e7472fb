"""The CLI for the release gates: --tier auto in a real git repository (skip with a note, smoke with borderline
escalation), `evalgate tier`, --shard + `evalgate merge`, and the usage errors of the new options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evalgate.cli import main
from tests.fakes.bedrock_fake import BedrockFake

ROOT = Path(__file__).resolve().parents[2]
HEAVY = "us.anthropic.claude-sonnet-4-20250514-v1:0"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "HOME": str(repo),
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache") / "cache.sqlite"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in (
        "EVALGATE_BASE_COMMIT",
        "EVALGATE_BRANCH",
        "SOURCE_BRANCH",
        "CODEBUILD_WEBHOOK_HEAD_REF",
        "CODEBUILD_RESOLVED_SOURCE_VERSION",
    ):
        monkeypatch.delenv(var, raising=False)
    r = tmp_path / "repo"
    shutil.copytree(ROOT / "golden", r / "golden")
    shutil.copytree(ROOT / "prompts", r / "prompts")
    (r / "README.md").write_text("# service\n")
    (r / "app").mkdir()
    (r / "app" / "handler.py").write_text("x = 1\n")
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "approved")
    return r


def approved_baseline(repo: Path, cache: Path, out: Path) -> dict:
    code = main(
        [
            "run",
            "--tier",
            "offline",
            "--no-progress",
            "--golden",
            str(repo / "golden"),
            "--cache",
            str(cache),
            "--candidate",
            f"replay:{repo}/golden/responses/baseline.jsonl",
            "--repo",
            str(repo),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["commit"] == git(repo, "rev-parse", "HEAD").strip()  # recorded for the next --tier auto
    return data


def auto(repo: Path, baseline: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--tier",
            "auto",
            "--no-progress",
            "--golden",
            str(repo / "golden"),
            "--cache",
            str(cache),
            "--candidate",
            f"replay:{repo}/golden/responses/baseline.jsonl",
            "--repo",
            str(repo),
            "--baseline",
            str(baseline),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_docs_only_change_is_skipped_and_carries_the_approved_results(
    repo: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    base = approved_baseline(repo, cache, tmp_path / "approved")
    (repo / "README.md").write_text("# service\n\nNow with docs.\n")
    git(repo, "commit", "-qam", "docs")
    code = auto(repo, tmp_path / "approved" / "results.json", tmp_path / "out", cache)
    out = capsys.readouterr().out
    assert code == 0
    assert "tier auto → skip: only docs changed since the approved commit" in out and "README.md" in out
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["skipped"] and data["tier"] == "skip" and data["verdict"]["verdict"] == "PASS"
    assert data["tier_decision"]["tier"] == "skip" and data["tier_decision"]["files"] == {"docs": ["README.md"]}
    assert [c["id"] for c in data["cases"]] == [c["id"] for c in base["cases"]]
    assert data["commit"] == git(repo, "rev-parse", "HEAD").strip() != base["commit"]
    assert any("carried forward unchanged" in r for r in data["verdict"]["reasons"])
    for name in ("junit.xml", "summary.md", "report.html"):
        assert (tmp_path / "out" / name).exists()
    # the skipped run's results.json is itself a valid baseline (commit moves on)
    code = main(
        [
            "tier",
            "--golden",
            str(repo / "golden"),
            "--repo",
            str(repo),
            "--baseline",
            str(tmp_path / "out" / "results.json"),
            "--json",
        ]
    )
    decision = json.loads(capsys.readouterr().out)
    assert code == 0 and decision["tier"] == "skip" and "nothing changed" in decision["reasons"][0]


def test_code_change_runs_smoke_with_the_cheap_judge_and_escalates_borderline_cases(
    repo: Path,
    cache: Path,
    tmp_path: Path,
    bedrock_fake: BedrockFake,
    capsys: pytest.CaptureFixture[str],
    calibrated_judges: Path,
):
    approved_baseline(repo, cache, tmp_path / "approved")
    (repo / "app" / "handler.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", "code")
    cheap = "us.anthropic.claude-3-5-haiku-20241022-v1:0"

    def judge(req) -> dict:  # scores that sit on either side of the 0.85 faithfulness threshold
        if req.model_id == cheap:
            return {"score": 0.86, "verdict": "pass", "reasons": "close call", "unsupported_claims": []}
        return {"score": 0.97, "verdict": "pass", "reasons": "heavy judge: fine", "unsupported_claims": []}

    bedrock_fake.judge_fn = judge
    code = auto(repo, tmp_path / "approved" / "results.json", tmp_path / "out", cache, "--no-cache")
    out = capsys.readouterr().out
    assert "tier auto → smoke: code changed (1 file(s): app/handler.py)" in out
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["tier"] == "smoke" and len(data["cases"]) == 32  # smoke-tagged, topped up per gated group
    assert data["tier_decision"]["smoke_topup"]
    esc = data["escalation"]
    assert esc["judge"]["model_id"] == HEAVY and esc["cases"] and esc["calls"] == bedrock_fake.count(model=HEAVY)
    faith = [c["metrics"]["faithfulness"] for c in data["cases"] if "faithfulness" in c["metrics"]]
    escalated = [f for f in faith if f["details"].get("escalated_from") == cheap]
    assert escalated and all(f["value"] == 0.97 for f in escalated)
    assert data["verdict"]["reasons"][-1].startswith("tier auto → smoke")
    assert f"re-judged by {HEAVY}" in out
    assert code in (0, 1, 3)


def test_shards_merge_to_the_verdict_of_the_whole_run(
    repo: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    base_dir = tmp_path / "approved"
    approved_baseline(repo, cache, base_dir)
    common = [
        "--tier",
        "offline",
        "--no-progress",
        "--golden",
        str(repo / "golden"),
        "--cache",
        str(cache),
        "--candidate",
        f"replay:{repo}/golden/responses/regressed.jsonl",
        "--repo",
        str(repo),
        "--baseline",
        str(base_dir / "results.json"),
    ]
    whole = main(["run", *common, "--out", str(tmp_path / "whole")])
    codes = [main(["run", *common, "--shard", f"{k}/3", "--out", str(tmp_path / f"s{k}")]) for k in (1, 2, 3)]
    assert codes == [0, 0, 0]  # a shard's verdict is partial
    assert "this verdict is partial" in capsys.readouterr().out
    shards = [str(tmp_path / f"s{k}" / "results.json") for k in (1, 2, 3)]
    merged = main(["merge", *shards, "--baseline", str(base_dir / "results.json"), "--out", str(tmp_path / "m")])
    assert whole == merged == 1
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((tmp_path / "m" / "results.json").read_text())
    assert a["verdict"]["reasons"] == b["verdict"]["reasons"]
    assert [x["value"] for x in a["aggregates"]] == [x["value"] for x in b["aggregates"]]
    capsys.readouterr()
    assert main(["merge", *shards[:2], "--baseline", str(base_dir / "results.json"), "--out", str(tmp_path / "x")]) == 2
    assert "missing shard(s) 3 of 3" in capsys.readouterr().err
    assert main(["merge", *shards, "--out", str(tmp_path / "y")]) == 2
    assert "pass the same one" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "4/3"], "--shard: '4/3' is not K/N"),
        (["--release"], "--release/--since: only apply to --tier auto"),
        (["--evaluation-job"], "--evaluation-job: applies to the release tier only"),
        (["--tier", "auto", "--release", "--evaluation-job"], "[evaluation_job]: role_arn: required"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], bedrock_fake: BedrockFake
):
    code = main(
        [
            "run",
            "--no-cache",
            "--no-progress",
            "--candidate",
            f"replay:{ROOT}/golden/responses/baseline.jsonl",
            "--out",
            str(tmp_path),
            *args,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
