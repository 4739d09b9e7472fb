"""Lambda assets without Docker: folder-copy bundling, content hashes, the pip layer command, Bedrock ARNs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment, Stack

from stacks.constructs import lambda_bundle
from stacks.constructs.bedrock_access import guardrail_statement, model_statements, split_profile
from stacks.constructs.lambda_bundle import CODE_TREES, HOOK_TREES, CopyTreesBundler, PipLayerBundler, tree_hash

from .conftest import REPO


def _fake_repo(root: Path) -> Path:
    for rel, text in {
        "lambdas/store_assistant/handler.py": "def handler(e, c): ...\n",
        "lambdas/evalgate/__init__.py": "",
        "lambdas/evalgate/__pycache__/x.cpython-313.pyc": "junk",
        "lambdas/evalgate.egg-info/PKG-INFO": "Name: evalgate",
        "prompts/support/v1/system.md": "You are helpful. {canary}\n",
        "golden/knowledge/returns.md": "## returns.window: Returns\n30 days\n",
        "golden/cases.jsonl": '{"id": "a"}\n',
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_code_bundle_copies_lambdas_prompts_and_knowledge(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path / "repo")
    out = tmp_path / "out"
    assert CopyTreesBundler(CODE_TREES, repo).try_bundle(str(out)) is True
    assert (out / "store_assistant/handler.py").is_file()  # handler "store_assistant.handler.handler" at the code root
    assert (out / "prompts/support/v1/system.md").is_file()
    assert (out / "golden/knowledge/returns.md").is_file()
    assert not (out / "golden/cases.jsonl").exists()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.egg-info"))
    hook = tmp_path / "hook"
    CopyTreesBundler(HOOK_TREES, repo).try_bundle(str(hook))
    assert (hook / "golden/cases.jsonl").is_file()  # the pre-traffic hook's smoke subset


def test_code_hash_follows_runtime_content_only(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path / "repo")
    before = tree_hash(CODE_TREES, repo)
    (repo / "golden/cases.jsonl").write_text('{"id": "b"}\n')
    (repo / "lambdas/evalgate/__pycache__/y.pyc").write_text("junk")
    (repo / "lambdas/evalgate.egg-info/SOURCES.txt").write_text("changed by pip install -e .")
    assert tree_hash(CODE_TREES, repo) == before  # golden cases and caches do not publish a new version
    (repo / "prompts/support/v1/system.md").write_text("You are terse.\n")
    assert tree_hash(CODE_TREES, repo) != before  # a prompt edit does (and goes through the canary)


def test_deps_layer_is_pip_installed_for_arm64_cp313(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        (tmp_path / "out/python/scipy/tests").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(lambda_bundle.subprocess, "run", fake_run)
    assert PipLayerBundler(REPO / "requirements-lambda.txt").try_bundle(str(tmp_path / "out")) is True
    cmd = seen[0]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "out/python")
    assert "--only-binary=:all:" in cmd and cmd[cmd.index("--python-version") + 1] == "3.13"
    assert "manylinux2014_aarch64" in cmd
    assert not (tmp_path / "out/python/scipy/tests").exists()


def test_deps_layer_failure_explains_how_to_synth_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lambda_bundle.subprocess, "run",
                        lambda cmd, **_: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"))
    with pytest.raises(RuntimeError, match="bundle=true"):
        PipLayerBundler(REPO / "requirements-lambda.txt").try_bundle(str(tmp_path))


def test_requirements_lambda_lists_the_runtime_dependencies() -> None:
    names = {line.split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for line in (REPO / "requirements-lambda.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert names == {"pydantic", "numpy", "scipy"}  # boto3: runtime; powertools: its layer


def _resolved(stack: Stack, statements: list[Any]) -> list[dict[str, Any]]:
    return [stack.resolve(s.to_statement_json()) for s in statements]


def test_bedrock_statements_name_models_profiles_and_the_guardrail() -> None:
    app = App(context={"@aws-cdk/core:enablePartitionLiterals": True})
    stack = Stack(app, "Probe", env=Environment(account="111111111111", region="eu-west-1"))
    assert split_profile("eu.anthropic.m:0") == ("eu", "anthropic.m:0")
    assert split_profile("amazon.titan-embed-text-v2:0") == (None, "amazon.titan-embed-text-v2:0")
    direct, via = _resolved(stack, model_statements(stack, ["eu.anthropic.m:0", "amazon.titan-embed-text-v2:0"],
                                                     sid="T"))
    assert direct["Action"] == "bedrock:InvokeModel"
    assert direct["Resource"] == [
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0",
        "arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.anthropic.m:0",
    ]
    assert via["Resource"] == "arn:aws:bedrock:*::foundation-model/anthropic.m:0"
    assert via["Condition"] == {"StringEquals": {
        "bedrock:InferenceProfileArn": ["arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.anthropic.m:0"],
    }}
    (guard,) = _resolved(stack, [guardrail_statement(stack, "abcdef012345", sid="T")])
    assert guard == {"Sid": "TApplyGuardrail", "Effect": "Allow", "Action": "bedrock:ApplyGuardrail",
                     "Resource": "arn:aws:bedrock:eu-west-1:111111111111:guardrail/abcdef012345"}
