"""Lambda assets without Docker: one asset per function (its import closure), content hashes, the pip layer
command, Bedrock ARNs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment, Stack

from evalgate.engine.change_type import SERVICE_HANDLER, deployed_functions, function_asset
from stacks.constructs import lambda_bundle
from stacks.constructs.bedrock_access import guardrail_statement, model_statements, split_profile
from stacks.constructs.lambda_bundle import AssetBundler, PipLayerBundler
from stacks.service_stack import ServiceStack, ServiceStackProps
from stacks.settings import load_settings, read_context

from .conftest import ACCOUNT, PROD, REGION, REPO, STAGING, Synth, cdk_context


def _fake_repo(root: Path) -> Path:
    for rel, text in {
        "lambdas/store_assistant/__init__.py": "",
        "lambdas/store_assistant/handler.py": "from evalgate.core import models\ndef handler(e, c): ...\n",
        "lambdas/evalgate/__init__.py": "",
        "lambdas/evalgate/core/__init__.py": "",
        "lambdas/evalgate/core/models.py": "",
        "lambdas/evalgate/reports/__init__.py": "",
        "lambdas/evalgate/__pycache__/x.cpython-313.pyc": "junk",
        "lambdas/evalgate.egg-info/PKG-INFO": "Name: evalgate",
        "lambdas/handlers/__init__.py": "",
        "lambdas/handlers/pre_traffic_hook.py": (
            'import evalgate.core.models\nREPOSITORY_DATA = ("prompts", "golden")\n'
        ),
        "prompts/support/v1/system.md": "You are helpful. {canary}\n",
        "golden/knowledge/returns.md": "## returns.window: Returns\n30 days\n",
        "golden/cases.jsonl": '{"id": "a"}\n',
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_function_bundle_holds_exactly_its_asset(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path / "repo")
    out = tmp_path / "out"
    asset = function_asset("store_assistant.handler.handler", repo=repo)
    assert AssetBundler(asset, repo).try_bundle(str(out)) is True
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert (
        copied
        == [dest for _, dest in asset.files]
        == [
            "evalgate/__init__.py",
            "evalgate/core/__init__.py",
            "evalgate/core/models.py",
            "golden/knowledge/returns.md",
            "prompts/support/v1/system.md",
            "store_assistant/__init__.py",
            "store_assistant/handler.py",  # handler "store_assistant.handler.handler"
        ]
    )  # no reports, no caches, no egg-info, no golden cases
    hook = tmp_path / "hook"
    AssetBundler(function_asset("handlers.pre_traffic_hook.handler", repo=repo), repo).try_bundle(str(hook))
    assert (hook / "golden/cases.jsonl").is_file()  # the pre-traffic hook's smoke subset
    assert not (hook / "store_assistant").exists()


def test_code_hash_follows_what_the_function_runs_only(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path / "repo")

    def digest() -> str:
        return function_asset("store_assistant.handler.handler", repo=repo).digest(repo)

    before = digest()
    (repo / "golden/cases.jsonl").write_text('{"id": "b"}\n')
    (repo / "lambdas/evalgate/__pycache__/y.pyc").write_text("junk")
    (repo / "lambdas/evalgate.egg-info/SOURCES.txt").write_text("changed by pip install -e .")
    (repo / "lambdas/evalgate/reports/__init__.py").write_text("x = 1\n")
    assert digest() == before  # golden cases, caches and reports do not publish a new version
    (repo / "prompts/support/v1/system.md").write_text("You are terse.\n")
    assert digest() != before  # a prompt edit does (and goes through the canary)


# ------------------------------------------------------------------------------ the synthesized app's functions


def test_each_function_ships_its_own_closure(synth: Synth) -> None:
    functions = deployed_functions(REPO)
    bundles = [c for c in synth.app.node.find_all() if isinstance(c, lambda_bundle.LambdaBundle)]
    shipped = {path: asset for b in bundles for path, asset in b.assets.items()}
    assert {a.handler for a in shipped.values()} == set(functions)  # the change type sees every deployed function
    assert all(a == functions[a.handler] for a in shipped.values())  # and the same files the stacks ship
    keys: dict[str, set[str]] = {}
    for stack in (STAGING, PROD):
        for res in synth.resources(stack, "AWS::Lambda::Function").values():
            keys.setdefault(functions[res["Properties"]["Handler"]].digest(REPO), set()).add(
                res["Properties"]["Code"]["S3Key"]
            )
    assert all(len(k) == 1 for k in keys.values())  # one code key per asset content, in every stage
    assert len(keys) == len(functions)  # no two functions ship the same files
    service = {dest for _, dest in functions[SERVICE_HANDLER].files}
    assert "store_assistant/handler.py" in service
    assert not any(d.startswith(("evalgate/reports/", "evalgate/cli/", "evalgate/release/")) for d in service)
    notifier = {dest for _, dest in functions["handlers.notifier.handler"].files}
    assert not any(d.startswith(("evalgate/adapters/local.py", "evalgate/adapters/minilm")) for d in notifier)
    assert not any(d.endswith(".onnx") or d.startswith("store_assistant/") for d in notifier)
    assert not any(d.startswith(("evalgate/engine/", "evalgate/release/deploy_hooks.py")) for d in notifier)


def _repo_copy(root: Path) -> Path:
    """The files a synth reads: lambdas/ copied (to edit), the data folders linked."""
    shutil.copytree(REPO / "lambdas", root / "lambdas", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("prompts", "golden", "guardrails"):
        (root / name).symlink_to(REPO / name)
    for req in REPO.glob("requirements*.txt"):
        shutil.copy(req, root / req.name)
    return root


def _code_keys(repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Handler -> code key of every function of a Prod service stack synthesized from ``repo``."""
    monkeypatch.setattr(lambda_bundle, "REPO_ROOT", repo)
    app = App(context=cdk_context())
    settings = load_settings(read_context(app.node))
    ServiceStack(
        app,
        "Probe",
        ServiceStackProps(settings=settings, stage_name="Prod", deployment_mode="canary"),
        env=Environment(account=ACCOUNT, region=REGION),
    )
    template = app.synth().get_stack_by_name("Probe").template
    return {
        r["Properties"]["Handler"]: r["Properties"]["Code"]["S3Key"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }


def test_a_report_or_cli_edit_deploys_nothing_and_a_notifier_edit_only_the_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo_copy(tmp_path / "repo")
    before = _code_keys(repo, monkeypatch)
    assert len(before) == 8
    for rel in ("evalgate/reports/html.py", "evalgate/reports/common.py", "evalgate/cli/__init__.py"):
        with (repo / "lambdas" / rel).open("a") as fh:
            fh.write("\n# edited\n")
    assert _code_keys(repo, monkeypatch) == before  # every function keeps its version: nothing is deployed

    functions = deployed_functions(repo)
    others = set().union(*(a.sources for h, a in functions.items() if h != "handlers.notifier.handler"))
    only = sorted(functions["handlers.notifier.handler"].sources - others)
    with (repo / only[0]).open("a") as fh:
        fh.write("\n# edited\n")
    after = _code_keys(repo, monkeypatch)
    assert {h for h in before if after[h] != before[h]} == {"handlers.notifier.handler"}


def test_a_bundled_synth_stages_exactly_the_functions_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CDK runs the local bundler (no Docker): the staged asset holds the function's files and nothing else."""
    monkeypatch.setattr(
        PipLayerBundler,
        "try_bundle",
        lambda self, output_dir, options=None: (Path(output_dir) / "python").mkdir() or True,
    )
    app = App(context={"aws:cdk:bundling-stacks": ["**"]}, outdir=str(tmp_path / "cdk.out"))
    stack = Stack(app, "Probe", env=Environment(account=ACCOUNT, region=REGION))
    bundle = lambda_bundle.LambdaBundle(
        stack, "Bundle", log_retention_days=7, metrics_namespace="Probe", service_name="probe", bundled=True
    )
    bundle.function(
        stack, "Notifier", lambda_bundle.FunctionSpec(handler="handlers.notifier.handler", description="probe")
    )
    template = app.synth().get_stack_by_name("Probe").template
    (fn,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    staged = tmp_path / "cdk.out" / f"asset.{fn['Properties']['Code']['S3Key'].removesuffix('.zip')}"
    shipped = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert shipped == [dest for _, dest in function_asset("handlers.notifier.handler", repo=REPO).files]
    assert "handlers/notifier.py" in shipped and not any(p.startswith("evalgate/reports/") for p in shipped)


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
    monkeypatch.setattr(
        lambda_bundle.subprocess,
        "run",
        lambda cmd, **_: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"),
    )
    with pytest.raises(RuntimeError, match="bundle=true"):
        PipLayerBundler(REPO / "requirements-lambda.txt").try_bundle(str(tmp_path))


def test_requirements_lambda_lists_the_runtime_dependencies() -> None:
    names = {
        line.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for line in (REPO / "requirements-lambda.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert names == {"pydantic", "numpy", "scipy"}  # boto3: runtime; powertools: its layer


def _resolved(stack: Stack, statements: list[Any]) -> list[dict[str, Any]]:
    return [stack.resolve(s.to_statement_json()) for s in statements]


def test_bedrock_statements_name_models_profiles_and_the_guardrail() -> None:
    app = App(context={"@aws-cdk/core:enablePartitionLiterals": True})
    stack = Stack(app, "Probe", env=Environment(account="111111111111", region="eu-west-1"))
    assert split_profile("eu.anthropic.m:0") == ("eu", "anthropic.m:0")
    assert split_profile("amazon.titan-embed-text-v2:0") == (None, "amazon.titan-embed-text-v2:0")
    direct, via = _resolved(
        stack, model_statements(stack, ["eu.anthropic.m:0", "amazon.titan-embed-text-v2:0"], sid="T")
    )
    assert direct["Action"] == "bedrock:InvokeModel"
    assert direct["Resource"] == [
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0",
        "arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.anthropic.m:0",
    ]
    assert via["Resource"] == "arn:aws:bedrock:*::foundation-model/anthropic.m:0"
    assert via["Condition"] == {
        "StringEquals": {
            "bedrock:InferenceProfileArn": [
                "arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.anthropic.m:0"
            ],
        }
    }
    (guard,) = _resolved(stack, [guardrail_statement(stack, "abcdef012345", sid="T")])
    assert guard == {
        "Sid": "TApplyGuardrail",
        "Effect": "Allow",
        "Action": "bedrock:ApplyGuardrail",
        "Resource": "arn:aws:bedrock:eu-west-1:111111111111:guardrail/abcdef012345",
    }
