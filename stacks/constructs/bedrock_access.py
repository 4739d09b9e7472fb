"""Least-privilege Bedrock permissions: named actions only, scoped to the configured model and profile ARNs.

* a foundation-model id (``anthropic.claude-...``) -> ``arn:<p>:bedrock:<region>::foundation-model/<id>``;
* a cross-Region inference-profile id (``us.anthropic...``, ``eu.``, ``apac.``, ``global.`` ...) ->
  the profile ARN in this account and Region, plus the underlying foundation model in the destination
  Regions (``bedrock:*``), usable ONLY through that profile (``bedrock:InferenceProfileArn`` condition);
* a full ``arn:...:bedrock:...`` (application inference profile, provisioned model) -> as given;
* a guardrail id -> ``bedrock:ApplyGuardrail`` on that guardrail only.

Converse/ConverseStream are authorised by ``bedrock:InvokeModel`` / ``bedrock:InvokeModelWithResponseStream``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from stacks.nag import acknowledge, nag_text

GEO_PREFIXES: frozenset[str] = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})
INVOKE = "bedrock:InvokeModel"
INVOKE_STREAM = "bedrock:InvokeModelWithResponseStream"


def split_profile(model_id: str) -> tuple[str | None, str]:
    """("us", "anthropic.claude...") for a profile id; (None, model_id) for a foundation-model id."""
    head, _, rest = model_id.partition(".")
    if rest and head in GEO_PREFIXES:
        return head, rest
    return None, model_id


def foundation_models_behind_profiles(model_ids: Iterable[str]) -> list[str]:
    """Base model ids reached through cross-Region profiles (their ARNs use a Region wildcard)."""
    out: list[str] = []
    for m in model_ids:
        if m.startswith("arn:"):
            continue
        geo, base = split_profile(m)
        if geo is not None and base not in out:
            out.append(base)
    return out


def model_statements(
    scope: IConstruct, model_ids: Sequence[str], *, sid: str, streaming: bool = False
) -> list[iam.PolicyStatement]:
    stack = Stack.of(scope)
    p, region, account = stack.partition, stack.region, stack.account
    actions = [INVOKE, INVOKE_STREAM] if streaming else [INVOKE]
    direct: list[str] = []
    profiles: list[str] = []
    behind: list[str] = []
    for m in dict.fromkeys(model_ids):
        if m.startswith("arn:"):
            direct.append(m)
            continue
        geo, base = split_profile(m)
        if geo is None:
            direct.append(f"arn:{p}:bedrock:{region}::foundation-model/{m}")
        else:
            profiles.append(f"arn:{p}:bedrock:{region}:{account}:inference-profile/{m}")
            behind.append(f"arn:{p}:bedrock:*::foundation-model/{base}")
    statements: list[iam.PolicyStatement] = []
    if direct or profiles:
        statements.append(iam.PolicyStatement(sid=f"{sid}Invoke", actions=actions, resources=direct + profiles))
    if behind:
        statements.append(
            iam.PolicyStatement(
                sid=f"{sid}InvokeViaProfile",
                actions=actions,
                resources=list(dict.fromkeys(behind)),
                conditions={"StringEquals": {"bedrock:InferenceProfileArn": profiles}},
            )
        )
    return statements


def guardrail_statement(scope: IConstruct, guardrail_id: str, *, sid: str) -> iam.PolicyStatement:
    stack = Stack.of(scope)
    return iam.PolicyStatement(
        sid=f"{sid}ApplyGuardrail",
        actions=["bedrock:ApplyGuardrail"],
        resources=[f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:guardrail/{guardrail_id}"],
    )


def grant_models(
    principal: iam.IGrantable,
    scope: IConstruct,
    model_ids: Sequence[str],
    *,
    sid: str,
    guardrail_id: str | None = None,
    streaming: bool = False,
) -> None:
    for statement in model_statements(scope, model_ids, sid=sid, streaming=streaming):
        principal.grant_principal.add_to_principal_policy(statement)
    if guardrail_id:
        principal.grant_principal.add_to_principal_policy(guardrail_statement(scope, guardrail_id, sid=sid))
    acknowledge_profile_regions(scope, model_ids)


def acknowledge_profile_regions(scope: IConstruct, model_ids: Sequence[str]) -> None:
    """The foundation model behind a cross-Region profile must be allowed in every destination Region."""
    shown = nag_text(scope, Stack.of(scope).partition)
    for base in foundation_models_behind_profiles(model_ids):
        acknowledge(
            scope,
            f"AwsSolutions-IAM5[Resource::arn:{shown}:bedrock:*::foundation-model/{base}]",
            (
                "Cross-Region inference profiles route to the foundation model in any destination Region of the "
                "profile's geography; the Region is wildcarded but the statement only works through the "
                "configured profile (bedrock:InferenceProfileArn condition)."
            ),
        )
