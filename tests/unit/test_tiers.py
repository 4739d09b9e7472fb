"""--tier auto on synthetic git histories: which tier each kind of change gets, and the reason it prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evalgate.core.config import GateConfig, load_config
from evalgate.core.dataset import load_golden
from evalgate.engine.tiers import decide_tier, glob_match, smoke_subset

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "golden" / "gate.toml"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def sh(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
    }
    for var in ("EVALGATE_BRANCH", "SOURCE_BRANCH", "CODEBUILD_WEBHOOK_HEAD_REF", "EVALGATE_BASE_COMMIT"):
        env.pop(var, None)
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def write(repo: Path, path: str, text: str) -> None:
    p = repo / path
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def commit(repo: Path, message: str) -> str:
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", message)
    return sh(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EVALGATE_BRANCH", "SOURCE_BRANCH", "CODEBUILD_WEBHOOK_HEAD_REF"):
        monkeypatch.delenv(var, raising=False)
    r = tmp_path / "repo"
    r.mkdir()
    sh(r, "init", "-q", "-b", "main")
    write(r, "README.md", "# demo\n")
    write(r, "docs/guide.md", "guide\n")
    write(r, "lambdas/app/handler.py", "def handler(e, c):\n    return 1\n")
    write(r, "prompts/support/v1/system.md", "You are a support assistant.\n")
    write(r, "golden/cases.jsonl", '{"id": "c-1"}\n')
    write(r, "golden/knowledge/returns.md", "## returns.window: Window\n30 days.\n")
    write(r, "golden/gate.toml", GATE.read_text())
    write(r, "cdk.json", json.dumps({"app": "python3 app.py", "context": {"generatorModelId": "m1", "branch": "main"}}))
    write(r, ".gitignore", "out/\n")
    commit(r, "initial")
    return r


@pytest.fixture
def config() -> GateConfig:
    return load_config(GATE)


def decide(repo: Path, config: GateConfig, base: str | None, **kw: object):
    return decide_tier(config, repo=repo, base=base, gate_file="golden/gate.toml", **kw)  # type: ignore[arg-type]


def base_of(repo: Path) -> str:
    return sh(repo, "rev-parse", "HEAD").strip()


def test_docs_only_is_skipped_with_a_note(repo: Path, config: GateConfig):
    base = base_of(repo)
    write(repo, "README.md", "# demo\nMore words.\n")
    write(repo, "docs/guide.md", "guide v2\n")
    commit(repo, "docs")
    d = decide(repo, config, base)
    assert d.tier == "skip"
    assert "only docs changed" in d.summary and "README.md" in d.summary and "docs/guide.md" in d.summary
    assert d.files == {"docs": ["README.md", "docs/guide.md"]}
    assert d.base == base and d.head == base_of(repo)


def test_code_without_prompt_model_golden_or_threshold_runs_smoke(repo: Path, config: GateConfig):
    base = base_of(repo)
    write(repo, "lambdas/app/handler.py", "def handler(e, c):\n    return 2\n")
    write(repo, "README.md", "# demo\nchanged too\n")
    commit(repo, "code")
    d = decide(repo, config, base)
    assert d.tier == "smoke"
    assert "code changed (1 file(s): lambdas/app/handler.py)" in d.summary and "cheap judge" in d.summary


@pytest.mark.parametrize(
    ("path", "text", "category"),
    [
        ("prompts/support/v1/system.md", "Be terse.\n", "prompts changed: prompts/support/v1/system.md"),
        ("prompts/support/v2/system.md", "new variant\n", "prompts changed: prompts/support/v2/system.md"),
        ("golden/cases.jsonl", '{"id": "c-1"}\n{"id": "c-2"}\n', "golden changed: golden/cases.jsonl"),
        ("golden/knowledge/returns.md", "## returns.window: Window\n60 days.\n", "golden changed: golden/knowledge"),
        ("guardrails/support.toml", 'name = "support"\n', "guardrails changed: guardrails/support.toml"),
    ],
)
def test_prompts_and_golden_data_run_the_full_set(repo: Path, config: GateConfig, path: str, text: str, category: str):
    base = base_of(repo)
    write(repo, path, text)
    write(repo, "lambdas/app/handler.py", "x = 1\n")
    commit(repo, "change")
    d = decide(repo, config, base)
    assert d.tier == "full"
    assert category in d.summary
    assert "code" in d.files  # the code change is recorded, but the full set wins


def test_threshold_change_runs_full_but_pricing_change_counts_as_code(repo: Path, config: GateConfig):
    base = base_of(repo)
    gate = repo / "golden" / "gate.toml"
    gate.write_text(gate.read_text().replace("faithfulness = 0.85", "faithfulness = 0.80"))
    commit(repo, "loosen faithfulness")
    d = decide(repo, config, base)
    assert d.tier == "full" and "thresholds changed: golden/gate.toml [thresholds]" in d.summary

    base = base_of(repo)
    gate.write_text(gate.read_text().replace("input_per_1k = 0.003", "input_per_1k = 0.0031"))
    commit(repo, "pricing")
    d = decide(repo, config, base)
    assert d.tier == "smoke"
    assert d.files["code"] == [
        "golden/gate.toml (outside thresholds, suites, models, gate, embedders, guardrail, version, judge_calibration)"
    ]


def test_model_change_in_cdk_json_runs_full_other_settings_are_code(repo: Path, config: GateConfig):
    base = base_of(repo)
    doc = json.loads((repo / "cdk.json").read_text())
    doc["context"]["branch"] = "trunk"
    write(repo, "cdk.json", json.dumps(doc))
    commit(repo, "branch setting")
    assert decide(repo, config, base).tier == "smoke"

    base = base_of(repo)
    doc["context"]["generatorModelId"] = "m2"
    write(repo, "cdk.json", json.dumps(doc))
    commit(repo, "new model")
    d = decide(repo, config, base)
    assert d.tier == "full" and "models changed: cdk.json [context.generatorModelId]" in d.summary


def test_a_judge_change_is_its_own_change_type_and_asks_for_recalibration(repo: Path, config: GateConfig):
    base = base_of(repo)
    gate = repo / "golden" / "gate.toml"
    gate.write_text(
        gate.read_text().replace('judge = "us.anthropic.claude-3-5-haiku', 'judge = "us.anthropic.claude-x')
    )
    commit(repo, "cheaper judge")
    d = decide(repo, config, base)
    assert d.tier == "full" and d.recalibrate and "judge changed: golden/gate.toml [models.judge]" in d.summary
    assert "thresholds" not in d.files  # a judge swap is not a threshold change
    assert "recalibrated (`evalgate calibrate --metric judge --if-needed`)" in d.summary
    assert d.to_dict()["recalibrate"] is True

    base = base_of(repo)
    doc = json.loads((repo / "cdk.json").read_text())
    doc["context"]["heavyJudgeModelId"] = "m-heavy-2"
    write(repo, "cdk.json", json.dumps(doc))
    commit(repo, "new heavy judge")
    d = decide(repo, config, base)
    assert d.recalibrate and d.files == {"judge": ["cdk.json [context.heavyJudgeModelId]"]}

    base = base_of(repo)
    write(repo, "lambdas/evalgate/engine/judge.py", "RUBRICS = {}  # reworded\n")
    commit(repo, "rubric")
    d = decide(repo, config, base)
    assert d.tier == "full" and d.recalibrate and d.files["judge"] == ["lambdas/evalgate/engine/judge.py"]

    base = base_of(repo)
    gate.write_text(gate.read_text().replace("faithfulness = 0.85", "faithfulness = 0.80"))
    commit(repo, "thresholds only")
    assert not decide(repo, config, base).recalibrate


def test_release_tag_or_branch_gets_the_release_tier_whatever_changed(repo: Path, config: GateConfig):
    base = base_of(repo)
    write(repo, "docs/guide.md", "release notes\n")
    commit(repo, "docs for the release")
    assert decide(repo, config, base).tier == "skip"
    sh(repo, "tag", "v1.2.0")
    d = decide(repo, config, base)
    assert d.tier == "release" and d.release
    assert d.summary == "tier auto → release: release candidate: tag 'v1.2.0' on HEAD matches 'v*'"
    sh(repo, "tag", "-d", "v1.2.0")
    sh(repo, "checkout", "-q", "-b", "release/2025-06")
    d = decide(repo, config, base)
    assert d.tier == "release" and "branch 'release/2025-06' matches 'release/*'" in d.summary
    sh(repo, "checkout", "-q", "main")
    assert decide(repo, config, base, release=True).summary.endswith("release candidate (--release)")
    assert decide(repo, config, base, branch="refs/heads/release/x").tier == "release"
    assert decide(repo, config, base, branch="feature/x").tier == "skip"


def test_fail_safe_full_when_the_approved_commit_is_unknown_or_missing(repo: Path, config: GateConfig):
    d = decide(repo, config, None)
    assert d.tier == "full" and "no approved commit" in d.summary
    d = decide(repo, config, "0123456789abcdef0123456789abcdef01234567")
    assert d.tier == "full" and "cannot diff against the approved commit 0123456789ab" in d.summary
    plain = repo.parent / "plain"
    plain.mkdir()
    d = decide(plain, config, "abc123")
    assert d.tier == "full" and "cannot diff" in d.summary


def test_nothing_changed_or_only_ignored_files_skips(repo: Path, config: GateConfig):
    base = base_of(repo)
    d = decide(repo, config, base)
    assert d.tier == "skip" and "nothing changed since the approved commit" in d.summary
    write(repo, ".gitignore", "out/\n.cache/\n")
    commit(repo, "ignore more")
    d = decide(repo, config, base)
    assert d.tier == "skip" and d.files == {"ignored": [".gitignore"]}


def test_renaming_a_prompt_away_counts_both_paths(repo: Path, config: GateConfig):
    base = base_of(repo)
    (repo / "attic").mkdir()
    sh(repo, "mv", "prompts/support/v1/system.md", "attic/system.md")
    commit(repo, "move the prompt away")
    d = decide(repo, config, base)
    assert d.tier == "full" and "prompts/support/v1/system.md" in d.files["prompts"]


def test_uncommitted_and_untracked_changes_count(repo: Path, config: GateConfig):
    base = base_of(repo)
    write(repo, "prompts/support/v1/system.md", "edited but not committed\n")
    assert decide(repo, config, base).tier == "full"
    assert decide(repo, config, base, worktree=False).tier == "skip"  # commits only
    sh(repo, "checkout", "--", "prompts/support/v1/system.md")
    write(repo, "lambdas/app/new_module.py", "y = 2\n")  # untracked
    assert decide(repo, config, base).tier == "smoke"


def test_custom_globs_from_config(repo: Path, config: GateConfig):
    base = base_of(repo)
    write(repo, "notes/todo.txt", "x\n")
    commit(repo, "notes")
    assert decide(repo, config, base).tier == "smoke"
    custom = config.model_copy(update={"tiers": config.tiers.model_copy(update={"docs": ["notes/**"]})})
    assert decide(repo, custom, base).tier == "skip"


def test_glob_semantics():
    assert glob_match("README.md", "**/*.md") and glob_match("a/b/c.md", "**/*.md")
    assert glob_match("docs/x/y.txt", "docs/**") and not glob_match("src/docs/x", "docs/**")
    assert glob_match("LICENSE", "LICENSE*") and not glob_match("pkg/LICENSE", "LICENSE*")
    assert not glob_match("prompts.py", "prompts/**")


def test_smoke_subset_tops_up_every_gated_group(config: GateConfig):
    golden = load_golden(ROOT / "golden")
    subset, notes = smoke_subset(golden.cases, config)
    tagged = [c for c in golden.cases if "smoke" in c.tags]
    assert set(c.id for c in tagged) <= {c.id for c in subset}
    groups: dict[str, int] = {}
    from evalgate.engine.guardrails import stratum

    for c in subset:
        groups[stratum(c, config.guardrail)] = groups.get(stratum(c, config.guardrail), 0) + 1
    assert all(n >= config.gate.min_cases for n in groups.values()), groups
    assert set(groups) == {"regression", "guardrail:unsafe", "guardrail:safe", "injection:direct", "injection:indirect"}
    assert len(subset) < len(golden.cases) / 3
    again, _ = smoke_subset(list(reversed(golden.cases)), config)
    assert {c.id for c in again} == {c.id for c in subset}  # deterministic, order-independent
    assert any("guardrail:unsafe" in n for n in notes)
