"""Deployment config by change type: runtime changes -> canary; infrastructure-only -> all at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stacks.change_type import (
    change_types,
    changed_settings,
    classify_change,
    diff_since,
    judge_changed,
    main,
    resolve_mode,
    service_patterns,
)


@pytest.mark.parametrize("paths", [
    ["lambdas/store_assistant/handler.py"],
    ["lambdas/evalgate/engine/judge.py", "README.md"],
    ["prompts/support/v1/system.md"],
    ["golden/knowledge/returns.md"],
    ["requirements-lambda.txt"],
    ["guardrails/store-assistant.toml"],  # a guardrail change changes what users see: canary, never all at once
])
def test_runtime_changes_go_through_the_canary(paths: list[str]) -> None:
    assert classify_change(paths) == "canary"


@pytest.mark.parametrize("paths", [
    ["stacks/service_stack.py"],
    ["app.py", "tests/infra/test_x.py", "README.md"],
    ["golden/cases.jsonl", "golden/gate.toml"],  # evaluation data: gated by the eval step, not shipped
    ["cdk.json"],
    [],
])
def test_infrastructure_only_changes_shift_all_at_once(paths: list[str]) -> None:
    assert classify_change(paths) == "all-at-once"


def test_model_or_prompt_settings_in_cdk_json_are_runtime_changes() -> None:
    before = {"context": {"generatorModelId": "a", "peakRps": 2}}
    after = {"context": {"generatorModelId": "b", "peakRps": 3}}
    keys = changed_settings(before, after)
    assert keys == {"generatorModelId", "peakRps"}
    assert classify_change(["cdk.json"], keys) == "canary"
    assert classify_change(["cdk.json"], {"peakRps"}) == "all-at-once"


def test_switching_to_another_guardrail_file_is_a_runtime_change() -> None:
    keys = changed_settings({"context": {"guardrailConfig": "guardrails/a.toml"}},
                            {"context": {"guardrailConfig": "guardrails/b.toml"}})
    assert classify_change(["cdk.json"], keys) == "canary"


def test_unknown_diff_fails_safe_to_canary() -> None:
    assert classify_change(None) == "canary"
    assert diff_since("") == (None, set())


def test_explicit_mode_wins_over_auto() -> None:
    assert resolve_mode("all-at-once", ["lambdas/x.py"]) == "all-at-once"
    assert resolve_mode("canary", []) == "canary"
    assert resolve_mode("auto", ["stacks/x.py"]) == "all-at-once"
    assert resolve_mode("auto", None) == "canary"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_cli_classifies_a_real_git_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "ci@example.com")
    _git(tmp_path, "config", "user.name", "ci")
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"generatorModelId": "a", "peakRps": 2}}))
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "s.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "base")
    base = _git(tmp_path, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(tmp_path)

    (tmp_path / "stacks" / "s.py").write_text("x = 2\n")
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"generatorModelId": "a", "peakRps": 3}}))
    _git(tmp_path, "commit", "-qam", "infra only")
    assert main(["--base", base]) == 0
    assert capsys.readouterr().out.strip() == "all-at-once"

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"generatorModelId": "b", "peakRps": 3}}))
    _git(tmp_path, "commit", "-qam", "new model")
    assert main(["--base", base, "--explain"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "canary" and "generatorModelId" in captured.err

    assert main(["--base", "0" * 40]) == 0  # a base git does not know -> fail safe
    assert capsys.readouterr().out.strip() == "canary"


def test_a_judge_change_is_its_own_change_type() -> None:
    assert change_types(["lambdas/evalgate/engine/judge.py"]) == ["runtime", "judge"]  # bundled evalgate: canary too
    assert change_types(["cdk.json"], {"judgeModelId"}) == ["infrastructure", "judge"]
    assert change_types(["cdk.json"], {"heavyJudgeModelId", "branch"}) == ["infrastructure", "judge"]
    assert change_types(["lambdas/store_assistant/handler.py"], {"generatorModelId"}) == ["runtime"]
    assert not judge_changed(["stacks/service_stack.py"], {"branch"})
    assert judge_changed(None)  # unknown diff: recalibration is checked (fail safe)


def test_the_folders_cdk_json_names_for_the_service_are_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    own = {"serviceCodeRoot": "services/acme/src", "promptsDir": "services/acme/prompts",
           "goldenDir": "services/acme/golden"}
    patterns = service_patterns(own)
    for path in ("services/acme/src/acme_desk/handler.py", "services/acme/prompts/acme/v1/system.md",
                 "services/acme/golden/knowledge/help.md"):
        assert classify_change([path], (), patterns) == "canary", path
        assert classify_change([path]) == "all-at-once"  # without the settings, a folder like any other
    assert classify_change(["services/acme/golden/cases.jsonl"], (), patterns) == "all-at-once"  # cases: no deploy
    for key in own:  # pointing the stacks at other code, prompts or knowledge changes what users get
        assert classify_change(["cdk.json"], {key}) == "canary", key

    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "ci@example.com")
    _git(tmp_path, "config", "user.name", "ci")
    (tmp_path / "cdk.json").write_text(json.dumps({"context": own}))
    (tmp_path / "services/acme/src").mkdir(parents=True)
    (tmp_path / "services/acme/src/h.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "base")
    base = _git(tmp_path, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "services/acme/src/h.py").write_text("x = 2\n")
    _git(tmp_path, "commit", "-qam", "the service's code")
    assert main(["--base", base]) == 0
    assert capsys.readouterr().out.strip() == "canary"
