"""One synth of the whole app per test session (it costs seconds), shared by every infra test.

The app is built exactly as ``app.py`` builds it (``stacks.application.build``) from ``cdk.json``'s context,
with asset bundling skipped (``aws:cdk:bundling-stacks = []``: fast, offline) and a fixed dummy environment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

ACCOUNT = "111111111111"
REGION = "us-east-1"
PIPELINE = "evalgate-pipeline"
STAGING = "evalgate-staging-service"
PROD = "evalgate-prod-service"


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context + test defaults (no bundling, dummy env) + overrides."""
    ctx = dict(json.loads((REPO / "cdk.json").read_text())["context"])
    ctx.update({"aws:cdk:bundling-stacks": [], "account": ACCOUNT, "region": REGION})
    ctx.update(overrides)
    return ctx


@dataclass
class Synth:
    app: Any
    built: Any
    outdir: Path
    templates: dict[str, dict[str, Any]]
    template_files: dict[str, Path]
    _assertions: dict[str, Any] = field(default_factory=dict)

    def template(self, stack_name: str) -> Any:
        """``aws_cdk.assertions.Template`` for a stack (cached)."""
        from aws_cdk.assertions import Template

        if stack_name not in self._assertions:
            self._assertions[stack_name] = Template.from_json(self.templates[stack_name])
        return self._assertions[stack_name]

    def resources(self, stack_name: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[stack_name]["Resources"].items() if v["Type"] == type_}


def _walk(assembly: Any) -> Iterator[Any]:
    yield from assembly.stacks
    for nested in assembly.nested_assemblies:
        yield from _walk(nested.nested_assembly)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk import App

    from stacks.application import build

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(context=cdk_context(), outdir=str(outdir))
    built = build(app, nag=False)  # nag runs in test_compliance through validate_scope (same rules, same acks)
    assembly = app.synth()
    templates: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for stack in _walk(assembly):
        path = Path(stack.template_full_path)
        files[stack.stack_name] = path
        templates[stack.stack_name] = json.loads(path.read_text())
    return Synth(app=app, built=built, outdir=outdir, templates=templates, template_files=files)


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement in a template: (resource logical id, statement)."""
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        docs = []
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(props.get("PolicyDocument", {}))
        if res["Type"] == "AWS::IAM::Role":
            docs += [p.get("PolicyDocument", {}) for p in props.get("Policies", [])]
        for doc in docs:
            for st in doc.get("Statement", []):
                yield logical_id, st


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
