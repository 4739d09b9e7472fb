"""CodeConnections permissions whose action prefix matches the connection ARN's service prefix.

AWS renamed CodeStar Connections to CodeConnections (2024): connections created since then have ARNs
``arn:aws:codeconnections:...`` and, per the Developer Tools console guide ("When specifying a resource in the IAM
policy, the service prefix needs to match that of the resource",
https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html), a role must be allowed
``codeconnections:UseConnection`` on such an ARN. CDK Pipelines (``CodePipelineSource.connection``) grants only
``codestar-connections:UseConnection`` -- to the source action's role and, with ``code_build_clone_output``, to
every CodeBuild project that clones the source -- so on a ``codeconnections`` ARN each of those roles gets the
matching action here. A ``codestar-connections`` ARN needs nothing added.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

LEGACY_USE = "codestar-connections:UseConnection"
USE = "codeconnections:UseConnection"
SID = "UseCodeConnection"


def service_prefix(connection_arn: str) -> str:
    """``codeconnections`` or ``codestar-connections`` (the ARN's service field)."""
    parts = connection_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {connection_arn!r}")
    return parts[2]


def _grants_legacy_use(document: dict[str, Any], connection_arn: str) -> bool:
    for st in document.get("Statement", []):
        actions = st.get("Action", [])
        resources = st.get("Resource", [])
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        if st.get("Effect") == "Allow" and LEGACY_USE in actions and connection_arn in resources:
            return True
    return False


def match_connection_prefix(scope: IConstruct, connection_arn: str) -> list[iam.Policy]:
    """Add ``codeconnections:UseConnection`` beside every ``codestar-connections:UseConnection`` grant on a
    ``codeconnections`` ARN under ``scope``. Call after the pipeline is built. Returns the policies changed."""
    if service_prefix(connection_arn) != "codeconnections":
        return []
    changed = []
    for node in scope.node.find_all():
        if isinstance(node, iam.Policy):
            document = Stack.of(node).resolve(node.document)
            if isinstance(document, dict) and _grants_legacy_use(document, connection_arn):
                node.add_statements(iam.PolicyStatement(sid=SID, actions=[USE], resources=[connection_arn]))
                changed.append(node)
    return changed
