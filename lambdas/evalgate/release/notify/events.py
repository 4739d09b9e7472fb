"""The events the notifier reads, parsed once: the EventBridge envelope and the detail of each kind.

- ``aws.codedeploy`` "CodeDeploy Deployment State-change Notification" (:class:`CodeDeployStateChange`);
- ``aws.appconfig`` deployment rollback (:class:`AppConfigRollback`; AppConfig's extension events and its
  EventBridge events spell the same fields differently, so each is read from any of its spellings);
- ``aws.codepipeline`` "CodePipeline Pipeline Execution State Change" (:class:`PipelineExecutionChange`);
- ``evalgate`` "EvalGate Verdict" (``evalgate.contracts.events.GateVerdictDetail``, the gate's own contract).

An event that is not an EventBridge event, or whose detail does not have its kind's shape, raises
``NotifyEventError``; an event of any other kind parses to no detail (the notifier ignores it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.contracts.events import GATE_DETAIL, GATE_SOURCE, GateVerdictDetail
from evalgate.core.errors import format_validation_error

CODEDEPLOY_DETAIL = "CodeDeploy Deployment State-change Notification"
PIPELINE_DETAIL = "CodePipeline Pipeline Execution State Change"


class NotifyEventError(ValueError):
    """Not an EventBridge event this notifier understands the shape of."""


class EventBridgeEvent(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type", min_length=1)
    time: str = ""
    region: str = ""
    account: str = ""
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any]


class CodeDeployStateChange(BaseModel):
    """``detail`` of a CodeDeploy deployment state change."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    state: str = ""
    deployment_id: str = Field("", alias="deploymentId")
    application: str | None = None
    deployment_group: str | None = Field(None, alias="deploymentGroup")

    @property
    def rolled_back(self) -> bool:
        return self.state.upper() in ("FAILURE", "STOP")


class PipelineExecutionChange(BaseModel):
    """``detail`` of a CodePipeline pipeline execution state change."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    state: str = ""
    pipeline: str = "?"
    execution_id: str = Field("?", alias="execution-id")

    @property
    def failed(self) -> bool:
        return self.state.upper() == "FAILED"


class AppConfigRollback(BaseModel):
    """An AppConfig deployment that was rolled back (ids, names and numbers from any of their spellings)."""

    kind: str
    application: str = "?"
    application_name: str = "?"
    environment: str = "?"
    environment_name: str = "?"
    profile: str | None = None
    profile_name: str = "?"
    number: int | None = None
    version: str | None = None

    @property
    def rolled_back(self) -> bool:
        kind = self.kind.lower()
        return "rollback" in kind or "rolledback" in kind.replace(" ", "")


Detail = CodeDeployStateChange | PipelineExecutionChange | AppConfigRollback | GateVerdictDetail


def parse_event(event: Any) -> EventBridgeEvent:
    if not isinstance(event, Mapping):
        raise NotifyEventError(f"expected an EventBridge event (an object), got {type(event).__name__}")
    try:
        return EventBridgeEvent.model_validate(dict(event))
    except ValidationError as exc:
        raise NotifyEventError(f"not an EventBridge event ({_fields(exc)})") from None


def parse_detail(ev: EventBridgeEvent) -> Detail | None:
    """The typed detail of an event the notifier reads; None for any other event."""
    try:
        if ev.source == "aws.codedeploy" and ev.detail_type == CODEDEPLOY_DETAIL:
            return CodeDeployStateChange.model_validate(ev.detail)
        if ev.source == "aws.appconfig":
            return _appconfig(ev)
        if ev.source == "aws.codepipeline" and ev.detail_type == PIPELINE_DETAIL:
            return PipelineExecutionChange.model_validate(ev.detail)
    except ValidationError as exc:
        raise NotifyEventError(f"not a {ev.source} {ev.detail_type} event detail ({_fields(exc)})") from None
    if ev.source == GATE_SOURCE and ev.detail_type == GATE_DETAIL:
        try:
            return GateVerdictDetail.model_validate(ev.detail)
        except ValidationError as exc:
            raise NotifyEventError(f"not an EvalGate Verdict event detail ({_fields(exc)})") from None
    return None


def _fields(exc: ValidationError) -> str:
    return "; ".join(format_validation_error(exc, root="(event)")[:5])


def _appconfig(ev: EventBridgeEvent) -> AppConfigRollback:
    d = ev.detail
    app = _pick(d, "Application.Id", "ApplicationId", "applicationId") or "?"
    env = _pick(d, "Environment.Id", "EnvironmentId", "environmentId") or "?"
    profile = _pick(d, "ConfigurationProfile.Id", "ConfigurationProfileId", "configurationProfileId")
    number = _pick(d, "DeploymentNumber", "deploymentNumber")
    return AppConfigRollback(
        kind=str(d.get("Type") or d.get("type") or ev.detail_type),
        application=str(app),
        application_name=str(_pick(d, "Application.Name") or app),
        environment=str(env),
        environment_name=str(_pick(d, "Environment.Name") or env),
        profile=str(profile) if profile is not None else None,
        profile_name=str(_pick(d, "ConfigurationProfile.Name") or profile or "?"),
        number=number,
        version=_s(_pick(d, "ConfigurationVersion", "configurationVersion")),
    )


def _s(x: Any) -> str | None:
    return str(x) if x not in (None, "") else None


def _pick(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        cur: Any = d
        for part in k.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if cur not in (None, ""):
            return cur
    return None
