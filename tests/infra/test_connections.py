"""A CodeConnections ARN is usable: every role granted the connection has the action whose prefix matches it."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam

from stacks.connections import USE, match_connection_prefix, service_prefix

from .conftest import PIPELINE, Synth, as_list


def _grants(policy: dict[str, Any], action: str, arn: str) -> bool:
    return any(
        st["Effect"] == "Allow" and action in as_list(st["Action"]) and arn in as_list(st["Resource"])
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_every_role_that_uses_the_connection_has_the_codeconnections_action(synth: Synth) -> None:
    arn = synth.built.settings.connection_arn
    assert arn is not None and service_prefix(arn) == "codeconnections"
    policies = synth.resources(PIPELINE, "AWS::IAM::Policy")
    users = {
        k for k, p in policies.items() if _grants(p, "codestar-connections:UseConnection", arn) or _grants(p, USE, arn)
    }
    # the source action and every CodeBuild step that clones the repository (synth, gate, promote, load, smoke)
    assert len(users) >= 5, sorted(users)
    for logical_id in users:
        assert _grants(policies[logical_id], "codeconnections:UseConnection", arn), logical_id


def test_a_legacy_codestar_connections_arn_is_left_alone() -> None:
    legacy = "arn:aws:codestar-connections:us-east-1:111111111111:connection/00000000-0000-0000-0000-000000000000"
    stack = Stack(App(), "Probe")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["codestar-connections:UseConnection"], resources=[legacy]))
    assert service_prefix(legacy) == "codestar-connections"
    assert match_connection_prefix(stack, legacy) == []
    renamed = legacy.replace("codestar-connections", "codeconnections")
    role.add_to_policy(iam.PolicyStatement(actions=["codestar-connections:UseConnection"], resources=[renamed]))
    assert len(match_connection_prefix(stack, renamed)) == 1
    document = stack.resolve(role.node.find_child("DefaultPolicy").document)  # type: ignore[attr-defined]
    assert {"Sid": "UseCodeConnection", "Effect": "Allow", "Action": USE, "Resource": renamed} in document["Statement"]
