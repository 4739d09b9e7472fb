"""Synthesized IAM against the runtime's calls: for every path in ``paths.PATHS``, each call's IAM action is
allowed to that path's role in the template, on a resource that names what the call touches (or on ``*`` only
where the action has no resource-level permissions). ``test_runtime_requests`` keeps the table complete."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from tests.infra.conftest import PIPELINE, PROD, Synth, as_list, statements

from .paths import ANY, PATHS, RuntimePath, action

STACKS = {"service": PROD, "pipeline": PIPELINE}


def _role(template: dict[str, Any], path: RuntimePath) -> str:
    resources = template["Resources"]
    if path.handler is not None:
        roles = [
            r["Properties"]["Role"]["Fn::GetAtt"][0]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == path.handler
        ]
    else:
        roles = [
            k
            for k, r in resources.items()
            if r["Type"] == "AWS::IAM::Role" and path.role_prefix is not None and k.startswith(path.role_prefix)
        ]
    assert len(roles) == 1, f"{path.name}: expected one role, found {roles}"
    return roles[0]


def _allowed(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    attached = {
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"].get("Roles", [])
    }
    return [st for k, st in statements(template) if (k in attached or k == role) and st.get("Effect") == "Allow"]


def _grants(st: dict[str, Any], wanted: str) -> bool:
    return any(fnmatch.fnmatchcase(wanted, pattern) for pattern in as_list(st["Action"]))


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_call_of_the_path_is_allowed_to_its_role(synth: Synth, name: str) -> None:
    path = PATHS[name]
    template = synth.templates[STACKS[path.stack]]
    allowed = _allowed(template, _role(template, path))
    missing = []
    for (service, operation), hint in sorted(path.calls.items()):
        wanted = action(service, operation)
        grants = [st for st in allowed if _grants(st, wanted)]
        resources = [json.dumps(r) for st in grants for r in as_list(st["Resource"])]
        if not grants:
            missing.append(f"{service}.{operation} needs {wanted}: not granted")
        elif hint == ANY:
            continue
        elif not any(hint in r and r != '"*"' for r in resources):
            missing.append(f"{service}.{operation} ({wanted}) is granted on {resources}, none naming {hint!r}")
    assert not missing, f"{name}:\n  " + "\n  ".join(missing)


def test_every_action_the_table_names_is_a_real_iam_action() -> None:
    """The table's actions use the services' IAM prefixes (appconfigdata -> appconfig, bedrock-runtime ->
    bedrock, ...), so a typo cannot make a check vacuous."""
    prefixes = {
        "appconfig",
        "bedrock",
        "cloudwatch",
        "codedeploy",
        "codepipeline",
        "dynamodb",
        "events",
        "lambda",
        "logs",
        "s3",
        "sns",
        "sqs",
        "ssm",
    }
    for path in PATHS.values():
        for service, operation in path.calls:
            assert action(service, operation).split(":")[0] in prefixes, (path.name, service, operation)


def test_the_role_that_creates_evaluation_jobs_can_pass_their_service_role(synth: Synth) -> None:
    """CreateEvaluationJob hands Bedrock ``roleArn``: the caller needs iam:PassRole on exactly that role."""
    template = synth.templates[PIPELINE]
    path = PATHS["quality gate, release tier"]
    allowed = _allowed(template, _role(template, path))
    (job_role,) = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith("EvalResultsEvaluationJobRole")
    ]
    (passing,) = [st for st in allowed if _grants(st, "iam:PassRole")]
    assert passing["Resource"] == {"Fn::GetAtt": [job_role, "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
