"""The one AppSpec reader: which function, alias and versions a CodeDeploy Lambda deployment shifts.

Used by the deployment hooks and by the notifier, which must not ship the hooks' evaluation engine to read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeploymentVersions:
    function_name: str | None
    alias: str | None
    current: str | None
    target: str | None


def versions_from_deployment(client: Any, deployment_id: str) -> DeploymentVersions:
    """Function, alias and versions from the Lambda deployment's AppSpec (``GetDeployment``)."""
    return appspec_versions(client.get_deployment(deploymentId=deployment_id)["deploymentInfo"])


def appspec_versions(info: Mapping[str, Any]) -> DeploymentVersions:
    """Function, alias and versions from a Lambda deployment's ``deploymentInfo`` (its AppSpec, JSON or YAML):
    the one AppSpec reader, for the hooks and the notifier."""
    content = ((info.get("revision") or {}).get("appSpecContent") or {}).get("content") or ""
    props: dict[str, Any] = {}
    try:
        spec = json.loads(content)
        for resource in spec.get("Resources") or spec.get("resources") or []:
            for value in resource.values():
                props = value.get("Properties") or value.get("properties") or {}
                break
            if props:
                break
    except (ValueError, AttributeError):
        for key in ("Name", "Alias", "CurrentVersion", "TargetVersion"):  # YAML AppSpec: read the scalars
            m = re.search(rf"^\s*{key}\s*:\s*['\"]?([^'\"\s]+)", content, re.MULTILINE)
            if m:
                props[key] = m.group(1)
    return DeploymentVersions(
        function_name=_str(props.get("Name")),
        alias=_str(props.get("Alias")),
        current=_str(props.get("CurrentVersion")),
        target=_str(props.get("TargetVersion")),
    )


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
